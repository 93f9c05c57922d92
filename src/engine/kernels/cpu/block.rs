//! A folded inverted-residual block (frozen, eval mode: each layer with its bias) with a 1x1
//! expansion, as one pass on burn's CPU backend without autodiff, band by band: the
//! expansion, the depthwise layer, the projection and the residual.
//!
//! The expansion's output is the largest tensor of a block (Lite0's second block at batch 16:
//! 77 MB), and the depthwise layer's the next; layer by layer each went out to memory and was
//! read back by the next layer. Here each task expands one band of an image's rows (with the
//! rows the depthwise window reaches past the band), sized to stay in the core's cache, runs
//! the depthwise layer over that band there, projects the band and adds the block's input:
//! only the block's input and output go through memory.

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, Flex, backend_extension};
use burn::nn::conv::Conv2d;
use burn::tensor::Tensor;
use burn_flex::FlexTensor;

use crate::engine::kernels::cpu::{dense, depthwise};

/// A block's layers, each with whether ReLU6 follows it, and whether its input is added to
/// its output.
#[derive(Clone, Copy)]
pub struct Layers<'a> {
    pub expand: (&'a Conv2d, bool),
    pub depthwise: (&'a Conv2d, bool),
    pub project: (&'a Conv2d, bool),
    pub skip: bool,
}

/// The block on `x`; `None` where this does not apply.
pub fn folded(layers: Layers, x: &Tensor<4>) -> Option<Tensor<4>> {
    if !applies(layers, x) {
        return None;
    }
    let (expand, depthwise, project) = (layers.expand, layers.depthwise, layers.project);
    let (stride, padding) = depthwise::padding_of(depthwise.0, x);
    let weight = |c: &Conv2d| c.weight.val().into_dispatch();
    let bias = |c: &Conv2d| c.bias.as_ref().map(|b| b.val().into_dispatch());
    let y = <Dispatch as FoldedBlock>::folded_block(
        x.clone().into_dispatch(),
        weight(expand.0),
        bias(expand.0)?,
        weight(depthwise.0),
        bias(depthwise.0)?,
        weight(project.0),
        bias(project.0)?,
        Shape {
            expanded: depthwise.0.weight.dims()[0],
            outputs: project.0.weight.dims()[0],
            k: depthwise.0.kernel_size[0],
            stride,
            padding,
            relu6: [expand.1, depthwise.1, project.1],
            skip: layers.skip,
        },
    );
    Some(Tensor::from_dispatch(y))
}

/// Whether [`folded`] runs: a 1x1 expansion into a depthwise layer of the blocked
/// loop's kernels and strides into a 1x1 projection, all folded, on f32 values; a residual
/// only where the output has the input's shape.
pub fn applies(layers: Layers, x: &Tensor<4>) -> bool {
    let Layers {
        expand,
        depthwise,
        project,
        skip,
    } = layers;
    let [_, channels, _, _] = x.dims();
    let expanded = expand.0.weight.dims()[0];
    let outputs = project.0.weight.dims()[0];
    let pointwise = |c: &Conv2d| c.kernel_size == [1, 1] && c.stride == [1, 1];
    pointwise(expand.0)
        && pointwise(project.0)
        && dense::applies(expand.0, x)
        && project.0.weight.dims()[1] == expanded
        && project.0.bias.is_some()
        && depthwise::foldable(depthwise.0, expanded, &x.device(), x.dtype())
        && matches!(
            (depthwise.0.kernel_size[0], depthwise.0.stride[0]),
            (3 | 5, 1 | 2)
        )
        && (!skip || (depthwise.0.stride[0] == 1 && outputs == channels))
}

/// A block's sizes: expanded and output channels, the depthwise kernel, stride and `[top,
/// bottom, left, right]` padding, ReLU6 after each layer, the residual.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub expanded: usize,
    pub outputs: usize,
    pub k: usize,
    pub stride: usize,
    pub padding: [usize; 4],
    pub relu6: [bool; 3],
    pub skip: bool,
}

#[backend_extension(Flex)]
pub trait FoldedBlock: Backend {
    /// `x` `[n, in, h, w]` through the expansion (weight `[expanded, in, 1, 1]`), the
    /// depthwise layer (weight `[expanded, 1, k, k]`) and the projection (weight `[out,
    /// expanded, 1, 1]`), each with its bias and clamped to [0, 6] where `shape.relu6` says,
    /// plus `x` where `shape.skip`.
    #[allow(clippy::too_many_arguments)]
    fn folded_block(
        x: FloatTensor<Self>,
        expand_weight: FloatTensor<Self>,
        expand_bias: FloatTensor<Self>,
        depthwise_weight: FloatTensor<Self>,
        depthwise_bias: FloatTensor<Self>,
        project_weight: FloatTensor<Self>,
        project_bias: FloatTensor<Self>,
        shape: Shape,
    ) -> FloatTensor<Self>;
}

impl FoldedBlock for Flex {
    fn folded_block(
        x: FlexTensor,
        expand_weight: FlexTensor,
        expand_bias: FlexTensor,
        depthwise_weight: FlexTensor,
        depthwise_bias: FlexTensor,
        project_weight: FlexTensor,
        project_bias: FlexTensor,
        shape: Shape,
    ) -> FlexTensor {
        use crate::engine::kernels::cpu::{tensor, values};
        use burn::backend::TensorMetadata;
        {
            let [n, channels, h, w] = x.shape().dims::<4>();
            let pass = Pass::new([channels, h, w], shape);
            let weights = [
                expand_weight,
                expand_bias,
                depthwise_weight,
                depthwise_bias,
                project_weight,
                project_bias,
            ];
            let [we, be, wd, bd, wp, bp] = weights.each_ref().map(values);
            let y = pass.run(&values(&x), [&we, &be, &wd, &bd, &wp, &bp], n);
            tensor(y, [n, shape.outputs, pass.oh, pass.ow].into())
        }
    }
}

/// Bytes of one band's expanded rows: well inside a core's L2 cache, with room for the
/// depthwise loop's padded plane, its output and the projection's.
const BAND_BYTES: usize = 1024 * 1024;

/// One block's sizes, and how its rows are cut into bands.
struct Pass {
    channels: usize,
    h: usize,
    w: usize,
    shape: Shape,
    oh: usize,
    ow: usize,
    /// Output rows per band.
    band: usize,
}

impl Pass {
    fn new([channels, h, w]: [usize; 3], shape: Shape) -> Self {
        let Shape {
            expanded,
            k,
            stride,
            padding: [top, bottom, left, right],
            ..
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

    /// The block on `x` `[n, channels, h, w]` with its layers' weights and biases (expansion,
    /// depthwise, projection): `[n, outputs, oh, ow]`.
    fn run(&self, x: &[f32], weights: [&[f32]; 6], n: usize) -> Vec<f32> {
        use crate::engine::kernels::cpu::{Shared, for_each_index};

        let [we, be, wd, bd, wp, bp] = weights;
        let (c, e, o) = (self.channels, self.shape.expanded, self.shape.outputs);
        let kk = self.shape.k * self.shape.k;
        assert!(
            x.len() >= n * c * self.h * self.w
                && [we.len(), be.len(), wd.len(), bd.len(), wp.len(), bp.len()]
                    >= [e * c, e, e * kk, e, o * e, o],
            "a block's tensors are smaller than their shapes"
        );
        let len = n * o * self.oh * self.ow;
        let mut y = Vec::<f32>::with_capacity(len);
        let bands = self.oh.div_ceil(self.band);
        let dst = Shared::new(&mut y);
        for_each_index(n * bands, |task| {
            let (i, oy0) = (task / bands, task % bands * self.band);
            let oy1 = (oy0 + self.band).min(self.oh);
            // SAFETY: this task alone writes rows `oy0..oy1` of image `i`'s planes, inside
            // `y`'s `len` values.
            unsafe { self.band(x, weights, i, (oy0, oy1), &dst) };
        });
        // SAFETY: the bands cover every output row of every plane of every image.
        unsafe { y.set_len(len) };
        y
    }

    /// Output rows `oy0..oy1` of image `i`.
    ///
    /// # Safety
    /// `out` must hold the block's output, and no other task write those rows.
    unsafe fn band(
        &self,
        x: &[f32],
        [we, be, wd, bd, wp, bp]: [&[f32]; 6],
        i: usize,
        (oy0, oy1): (usize, usize),
        out: &crate::engine::kernels::cpu::Shared,
    ) {
        use crate::engine::kernels::cpu::dense::Product;
        use crate::engine::kernels::cpu::depthwise_blocked::Blocked;

        let (c, e, o) = (self.channels, self.shape.expanded, self.shape.outputs);
        let (kk, plane, out_plane) = (
            self.shape.k * self.shape.k,
            self.h * self.w,
            self.oh * self.ow,
        );
        let [relu6_e, relu6_d, relu6_p] = self.shape.relu6;
        let (start, end, pad) = self.rows(oy0, oy1);
        let (width, out_width) = ((end - start) * self.w, (oy1 - oy0) * self.ow);
        let Some(blocked) = Blocked::new(
            self.shape.k,
            self.shape.stride,
            (end - start, self.w),
            (oy1 - oy0, self.ow),
            (pad, self.shape.padding[2]),
        ) else {
            return;
        };
        let image = &x[i * c * plane..(i + 1) * c * plane];
        BANDS.with_borrow_mut(|(expanded, depthwise)| {
            expanded.resize(e * width, 0.0);
            depthwise.resize(e * out_width, 0.0);
            // SAFETY: `expanded` holds `e` rows of `width`; the input rows `start..end` lie
            // inside `image`, `plane` apart per channel.
            unsafe {
                let rhs = image.as_ptr().add(start * self.w);
                let expand = Product {
                    rows: e,
                    cols: width,
                    depth: c,
                };
                expand.run(
                    expanded.as_mut_ptr(),
                    width,
                    we,
                    rhs,
                    plane,
                    be,
                    relu6_e,
                    None,
                );
            }
            let rows = expanded.chunks_exact(width.max(1));
            let outs = depthwise.chunks_exact_mut(out_width.max(1));
            for (ch, (src, dw)) in rows.zip(outs).enumerate().take(e) {
                let taps = &wd[ch * kk..(ch + 1) * kk];
                blocked.plane(src, taps, bd[ch], relu6_d, dw);
            }
            // SAFETY: the output rows `oy0..oy1` of image `i` (and, for the residual, the
            // same rows of its input, which has the output's shape) lie inside `out` and `x`.
            unsafe {
                let at = out.at(i * o * out_plane + oy0 * self.ow);
                let skip = self.shape.skip.then(|| image.as_ptr().add(oy0 * self.ow));
                let project = Product {
                    rows: o,
                    cols: out_width,
                    depth: e,
                };
                project.run(
                    at,
                    out_plane,
                    wp,
                    depthwise.as_ptr(),
                    out_width,
                    bp,
                    relu6_p,
                    skip,
                );
            }
        });
    }
}

thread_local! {
    /// A task's expanded band and its depthwise output, kept between tasks of the thread.
    static BANDS: std::cell::RefCell<(Vec<f32>, Vec<f32>)> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::PaddingConfig2d;
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::{Device, Distribution};

    use crate::engine::kernels::shared::relu6;
    use crate::engine::test_util::assert_close;

    fn values(t: Tensor<4>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    #[test]
    fn one_pass_is_the_blocks_layers_one_after_another() {
        // Against the three layers as burn's convolutions, biases included, ReLU6 after the
        // first two, plus the input where the block has a residual; planes in one band and in
        // several (a wide expansion on a tall plane); each kernel and stride of Lite's, odd
        // and even sides (TF "same": the odd pixel padded at the bottom and right).
        let device = Device::flex();
        let cases = [
            // (inputs, expanded, kernel, stride, height, width, outputs)
            (4, 8, 3, 1, 9, 7, 4),
            (4, 8, 3, 2, 9, 7, 5),
            (3, 6, 5, 1, 8, 10, 2),
            (3, 6, 5, 2, 11, 6, 3),
            (8, 400, 3, 2, 40, 30, 6),
            (8, 300, 5, 1, 37, 33, 8),
        ];
        // Both clamps of the depthwise layer's ReLU6 bite somewhere.
        let mut clamped = [false; 2];
        for (inputs, expanded, k, stride, h, w, outputs) in cases {
            let expand = Conv2dConfig::new([inputs, expanded], [1, 1]).init(&device);
            let depthwise = Conv2dConfig::new([expanded, expanded], [k, k])
                .with_groups(expanded)
                .with_stride([stride, stride])
                .with_padding(PaddingConfig2d::Same)
                .init(&device);
            let project = Conv2dConfig::new([expanded, outputs], [1, 1]).init(&device);
            let x = Tensor::<4>::random([2, inputs, h, w], Distribution::Normal(0.0, 8.0), &device);
            let skip = stride == 1 && inputs == outputs;
            let what = format!("{inputs}->{expanded}->{outputs}, {k}x{k}/{stride} on {h}x{w}");
            let layers = Layers {
                expand: (&expand, true),
                depthwise: (&depthwise, true),
                project: (&project, false),
                skip,
            };
            let ours = folded(layers, &x).expect(&what);
            let hidden = relu6(depthwise.forward(relu6(expand.forward(x.clone()))));
            let reference = project.forward(hidden.clone());
            let reference = if skip {
                reference + x.clone()
            } else {
                reference
            };
            assert_eq!(ours.dims(), reference.dims(), "{what}");
            let hidden = values(hidden);
            clamped[0] |= hidden.contains(&0.0);
            clamped[1] |= hidden.contains(&6.0);
            assert_close(&what, &values(ours), &values(reference), 1e-4);

            let (_, padding) = depthwise::padding_of(&depthwise, &x);
            let shape = Shape {
                expanded,
                outputs,
                k,
                stride,
                padding,
                relu6: [true; 3],
                skip,
            };
            let pass = Pass::new([inputs, h, w], shape);
            if expanded >= 300 {
                assert!(pass.oh.div_ceil(pass.band) > 1, "{what}: one band");
            }
        }
        assert_eq!(clamped, [true; 2]);
        assert_eq!(
            cases.iter().filter(|c| c.3 == 1 && c.0 == c.6).count(),
            2,
            "residuals tested"
        );
    }
}
