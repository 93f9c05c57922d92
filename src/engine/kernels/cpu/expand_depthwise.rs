//! A folded block's 1x1 expansion and its depthwise layer (frozen, eval mode: each with its
//! bias and ReLU6) as one pass on burn's CPU backend without autodiff, band by band.
//!
//! The expansion's output is the largest tensor of a block (Lite0's second block at batch 16:
//! 77 MB), written once by the expansion and read back by the depthwise layer. Here each task
//! expands one band of an image's rows (with the rows its window reaches past the band),
//! sized to stay in the core's cache, and runs the depthwise layer over that band there: the
//! expanded values never go out to memory.

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, Flex, backend_extension};
use burn::nn::conv::Conv2d;
use burn::tensor::Tensor;
use burn_flex::FlexTensor;

use crate::engine::kernels::cpu::{dense, depthwise};

/// `expand` (1x1, with a bias) then `depthwise` (with a bias) on `x`, each followed by ReLU6
/// where its flag says; `None` where this does not apply.
pub fn folded(
    expand: (&Conv2d, bool),
    depthwise: (&Conv2d, bool),
    x: &Tensor<4>,
) -> Option<Tensor<4>> {
    if !applies(expand.0, depthwise.0, x) {
        return None;
    }
    let (stride, padding) = depthwise::padding_of(depthwise.0, x);
    let expanded = depthwise.0.weight.dims()[0];
    let y = <Dispatch as FoldedExpandDepthwise>::folded_expand_depthwise(
        x.clone().into_dispatch(),
        expand.0.weight.val().into_dispatch(),
        expand.0.bias.as_ref()?.val().into_dispatch(),
        depthwise.0.weight.val().into_dispatch(),
        depthwise.0.bias.as_ref()?.val().into_dispatch(),
        Shape {
            expanded,
            k: depthwise.0.kernel_size[0],
            stride,
            padding,
        },
        [expand.1, depthwise.1],
    );
    Some(Tensor::from_dispatch(y))
}

/// Whether [`folded`] runs: natively, a 1x1 expansion at stride 1 into a depthwise layer of
/// the blocked loop's kernels and strides, both folded, on f32 values.
pub fn applies(expand: &Conv2d, depthwise: &Conv2d, x: &Tensor<4>) -> bool {
    let channels = x.dims()[1];
    let expanded = expand.weight.dims()[0];
    FUSED
        && expand.kernel_size == [1, 1]
        && expand.stride == [1, 1]
        && expand.weight.dims()[1] == channels
        && dense::applies(expand, x)
        && depthwise::folded_applies_to(depthwise, expanded, &x.device(), x.dtype())
        && matches!(
            (depthwise.kernel_size[0], depthwise.stride[0]),
            (3 | 5, 1 | 2)
        )
}

const FUSED: bool = cfg!(not(target_arch = "wasm32"));

/// The depthwise layer's sizes: expanded channels, kernel, stride, `[top, bottom, left,
/// right]` padding.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub expanded: usize,
    pub k: usize,
    pub stride: usize,
    pub padding: [usize; 4],
}

#[backend_extension(Flex)]
pub trait FoldedExpandDepthwise: Backend {
    /// `x` `[n, in, h, w]` through the expansion (weight `[expanded, in, 1, 1]` and bias)
    /// and the depthwise layer (weight `[expanded, 1, k, k]` and bias), each clamped to [0, 6]
    /// where `relu6` says.
    #[allow(clippy::too_many_arguments)]
    fn folded_expand_depthwise(
        x: FloatTensor<Self>,
        expand_weight: FloatTensor<Self>,
        expand_bias: FloatTensor<Self>,
        depthwise_weight: FloatTensor<Self>,
        depthwise_bias: FloatTensor<Self>,
        shape: Shape,
        relu6: [bool; 2],
    ) -> FloatTensor<Self>;
}

impl FoldedExpandDepthwise for Flex {
    fn folded_expand_depthwise(
        x: FlexTensor,
        expand_weight: FlexTensor,
        expand_bias: FlexTensor,
        depthwise_weight: FlexTensor,
        depthwise_bias: FlexTensor,
        shape: Shape,
        relu6: [bool; 2],
    ) -> FlexTensor {
        let weights = [expand_weight, expand_bias, depthwise_weight, depthwise_bias];
        #[cfg(not(target_arch = "wasm32"))]
        {
            use crate::engine::kernels::cpu::{tensor, values};
            use burn::backend::TensorMetadata;
            let [n, channels, h, w] = x.shape().dims::<4>();
            let pass = Pass::new([channels, h, w], shape, relu6);
            let [we, be, wd, bd] = weights.each_ref().map(values);
            let y = pass.run(&values(&x), [&we, &be, &wd, &bd], n);
            tensor(y, [n, shape.expanded, pass.oh, pass.ow].into())
        }
        // Never called in the browser (`applies` is false there).
        #[cfg(target_arch = "wasm32")]
        {
            let _ = (weights, shape, relu6);
            x
        }
    }
}

/// Bytes of one band's expanded rows: well inside a core's L2 cache, with room for the
/// depthwise loop's padded plane and its output.
#[cfg(not(target_arch = "wasm32"))]
const BAND_BYTES: usize = 1024 * 1024;

/// One block's sizes, and how its rows are cut into bands.
#[cfg(not(target_arch = "wasm32"))]
struct Pass {
    channels: usize,
    h: usize,
    w: usize,
    shape: Shape,
    relu6: [bool; 2],
    oh: usize,
    ow: usize,
    /// Output rows per band.
    band: usize,
}

#[cfg(not(target_arch = "wasm32"))]
impl Pass {
    fn new([channels, h, w]: [usize; 3], shape: Shape, relu6: [bool; 2]) -> Self {
        let Shape {
            expanded,
            k,
            stride,
            padding: [top, bottom, left, right],
        } = shape;
        let oh = (h + top + bottom).saturating_sub(k) / stride + 1;
        let ow = (w + left + right).saturating_sub(k) / stride + 1;
        let fit = BAND_BYTES / (4 * expanded * w).max(1);
        let band = (fit.saturating_sub(k) / stride + 1).clamp(1, oh.max(1));
        Pass {
            channels,
            h,
            w,
            shape,
            relu6,
            oh,
            ow,
            band,
        }
    }

    /// The input rows `start..end` that output rows `oy0..oy1` read, and the padding rows
    /// above them.
    fn rows(&self, oy0: usize, oy1: usize) -> (usize, usize, usize) {
        let (s, k, top) = (self.shape.stride, self.shape.k, self.shape.padding[0]);
        let start = (oy0 * s).saturating_sub(top);
        let pad = top.saturating_sub(oy0 * s);
        let end = ((oy1 - 1) * s + k).saturating_sub(top).min(self.h);
        (start, end.max(start), pad)
    }

    /// The pass over `x` `[n, channels, h, w]` with the expansion's weight and bias and the
    /// depthwise layer's weight and bias: `[n, expanded, oh, ow]`.
    fn run(&self, x: &[f32], [we, be, wd, bd]: [&[f32]; 4], n: usize) -> Vec<f32> {
        use crate::engine::kernels::cpu::Shared;
        use crate::engine::kernels::cpu::dense::Product;
        use crate::engine::kernels::cpu::depthwise_blocked::Blocked;
        use rayon::prelude::*;

        let (c, e, kk) = (
            self.channels,
            self.shape.expanded,
            self.shape.k * self.shape.k,
        );
        let (plane, out_plane) = (self.h * self.w, self.oh * self.ow);
        assert!(
            x.len() >= n * c * plane
                && we.len() >= e * c
                && be.len() >= e
                && wd.len() >= e * kk
                && bd.len() >= e,
            "a block's tensors are smaller than their shapes"
        );
        let len = n * e * out_plane;
        let mut y = Vec::<f32>::with_capacity(len);
        let bands = self.oh.div_ceil(self.band);
        let dst = Shared::new(&mut y);
        (0..n * bands).into_par_iter().for_each(|task| {
            let (i, oy0) = (task / bands, task % bands * self.band);
            let oy1 = (oy0 + self.band).min(self.oh);
            let (start, end, pad) = self.rows(oy0, oy1);
            let width = (end - start) * self.w;
            let left = self.shape.padding[2];
            let Some(blocked) = Blocked::new(
                self.shape.k,
                self.shape.stride,
                (end - start, self.w),
                (oy1 - oy0, self.ow),
                (pad, left),
            ) else {
                return;
            };
            EXPANDED.with_borrow_mut(|band| {
                band.resize(e * width, 0.0);
                let product = Product {
                    rows: e,
                    cols: width,
                    depth: c,
                };
                // SAFETY: `band` holds `e` rows of `width`; the input rows `start..end` of
                // image `i` lie inside `x` (checked above), `plane` apart per channel.
                unsafe {
                    let rhs = x.as_ptr().add(i * c * plane + start * self.w);
                    product.run(band.as_mut_ptr(), width, we, rhs, plane, be, self.relu6[0]);
                }
                for (ch, expanded) in band.chunks_exact(width.max(1)).enumerate().take(e) {
                    // SAFETY: this task alone writes rows `oy0..oy1` of plane `(i, ch)`,
                    // inside `y`'s `len` values.
                    let out = unsafe {
                        let at = dst.at((i * e + ch) * out_plane + oy0 * self.ow);
                        std::slice::from_raw_parts_mut(at, (oy1 - oy0) * self.ow)
                    };
                    let taps = &wd[ch * kk..(ch + 1) * kk];
                    blocked.plane(expanded, taps, bd[ch], self.relu6[1], out);
                }
            });
        });
        // SAFETY: the bands cover every output row of every plane of every image.
        unsafe { y.set_len(len) };
        y
    }
}

#[cfg(not(target_arch = "wasm32"))]
thread_local! {
    /// A task's expanded band, kept between tasks of the thread.
    static EXPANDED: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::PaddingConfig2d;
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::{Device, Distribution};

    use crate::engine::kernels::{cpu, shared::relu6};
    use crate::engine::test_util::assert_close;

    fn values(t: Tensor<4>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    #[test]
    fn one_pass_is_the_expansion_then_the_depthwise_layer() {
        // Against the two layers as burn's convolutions, biases included, then ReLU6, on
        // planes cut into one band and into several (a wide expansion on a tall plane), for
        // each kernel and stride of Lite's, odd and even sides (TF "same": the odd pixel padded
        // at the bottom and right).
        let device = Device::flex();
        let cases = [
            // (inputs, expanded, kernel, stride, height, width)
            (4, 8, 3, 1, 9, 7),
            (4, 8, 3, 2, 9, 7),
            (3, 6, 5, 1, 8, 10),
            (3, 6, 5, 2, 11, 6),
            (8, 400, 3, 2, 40, 30),
            (8, 300, 5, 1, 37, 33),
        ];
        // Both clamps of the depthwise layer's ReLU6 bite somewhere.
        let mut clamped = [false; 2];
        for (inputs, expanded, k, stride, h, w) in cases {
            let expand = Conv2dConfig::new([inputs, expanded], [1, 1]).init(&device);
            let depthwise = Conv2dConfig::new([expanded, expanded], [k, k])
                .with_groups(expanded)
                .with_stride([stride, stride])
                .with_padding(PaddingConfig2d::Same)
                .init(&device);
            let x = Tensor::<4>::random([2, inputs, h, w], Distribution::Normal(0.0, 8.0), &device);
            let what = format!("{inputs}->{expanded}, {k}x{k}/{stride} on {h}x{w}");
            let (stride_, padding) = cpu::depthwise::padding_of(&depthwise, &x);
            assert_eq!(stride_, stride);
            let bands = Pass::new(
                [inputs, h, w],
                Shape {
                    expanded,
                    k,
                    stride,
                    padding,
                },
                [true, true],
            );
            if expanded >= 300 {
                assert!(bands.oh.div_ceil(bands.band) > 1, "{what}: one band");
            }
            let ours = folded((&expand, true), (&depthwise, true), &x).expect(&what);
            let reference = relu6(depthwise.forward(relu6(expand.forward(x.clone()))));
            assert_eq!(ours.dims(), reference.dims(), "{what}");
            let reference = values(reference);
            clamped[0] |= reference.contains(&0.0);
            clamped[1] |= reference.contains(&6.0);
            assert_close(&what, &values(ours), &reference, 1e-4);
        }
        assert_eq!(clamped, [true; 2]);
    }
}
