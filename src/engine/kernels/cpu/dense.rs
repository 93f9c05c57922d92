//! A folded dense convolution (frozen, eval mode: with a bias; one group: the 1x1 layers and
//! the stem) on burn's CPU backend without autodiff: the matrix product and its bias and ReLU6
//! in one task per image and block of output pixels.
//!
//! As a batched matrix product then a pass for the bias and ReLU6, the output (Lite0's
//! expansions at batch 16: up to 77 MB) went out to memory and back. Here each task multiplies
//! the weight by one block of an image's pixels (a layer wider than 1x1 or strided by the
//! block's patches, gathered first), sized so that its output stays in the core's cache, and
//! adds the bias and clamps that block before the next. Elsewhere (training layers, GPUs) the
//! operations of [`crate::engine::kernels::conv2d`] run.

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, Flex, backend_extension};
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::tensor::{DType, Tensor};
use burn_flex::FlexTensor;

use crate::engine::kernels::cpu::{Shared, burn_folded, conv_options, for_each_index};
use crate::engine::kernels::shared::{on_cpu_backend, same_padding};

/// `conv` (one group, with a bias) on `x`, then ReLU6 when `relu6`; `None` where this does
/// not apply.
pub fn folded(conv: &Conv2d, x: &Tensor<4>, relu6: bool) -> Option<Tensor<4>> {
    if !applies(conv, x) {
        return None;
    }
    let bias = conv.bias.as_ref()?.val();
    let [_, _, h, w] = x.dims();
    let y = <Dispatch as FoldedDense>::folded_dense(
        x.clone().into_dispatch(),
        conv.weight.val().into_dispatch(),
        bias.into_dispatch(),
        conv.stride[0],
        padding(conv, h, w)?,
        relu6,
    );
    Some(Tensor::from_dispatch(y))
}

/// Whether [`folded`] runs `conv` on `x`: a square kernel and stride, no dilation, TF "same"
/// or no padding, f32, on the CPU backend without autodiff.
pub fn applies(conv: &Conv2d, x: &Tensor<4>) -> bool {
    let Some(bias) = &conv.bias else {
        return false;
    };
    let [_, inputs, kh, kw] = conv.weight.dims();
    let [_, channels, h, w] = x.dims();
    conv.groups == 1
        && kh == kw
        && conv.stride[0] == conv.stride[1]
        && conv.dilation == [1, 1]
        && padding(conv, h, w).is_some()
        && channels == inputs
        && !x.device().is_autodiff()
        && on_cpu_backend(&x.device())
        && [x.dtype(), conv.weight.val().dtype(), bias.val().dtype()] == [DType::F32; 3]
}

/// `[top, bottom, left, right]` padding of `conv` on an `h` x `w` input: TF's "same" or none.
fn padding(conv: &Conv2d, h: usize, w: usize) -> Option<[usize; 4]> {
    let (k, stride) = (conv.kernel_size[0], conv.stride[0]);
    match conv.padding {
        PaddingConfig2d::Same => {
            let (top, bottom) = same_padding(k, stride, h);
            let (left, right) = same_padding(k, stride, w);
            Some([top, bottom, left, right])
        }
        PaddingConfig2d::Valid if h >= k && w >= k => Some([0; 4]),
        _ => None,
    }
}

#[backend_extension(Flex)]
pub trait FoldedDense: Backend {
    /// The convolution of `x` `[n, in, h, w]` by `weight` `[out, in, k, k]` at `stride`,
    /// padded `[top, bottom, left, right]`, plus `bias` `[out]`, then clamped to [0, 6] when
    /// `relu6`.
    fn folded_dense(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        stride: usize,
        padding: [usize; 4],
        relu6: bool,
    ) -> FloatTensor<Self>;
}

impl FoldedDense for Flex {
    fn folded_dense(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        stride: usize,
        padding: [usize; 4],
        relu6: bool,
    ) -> FlexTensor {
        if [&x, &weight, &bias].iter().all(|t| t.dtype() == DType::F32) {
            use crate::engine::kernels::cpu::{tensor, values};
            use burn::backend::TensorMetadata;
            let (xs, ws) = (x.shape().dims::<4>(), weight.shape().dims::<4>());
            let layer = Layer::new(xs, ws, stride, padding, relu6);
            let y = layer.run(&values(&x), &values(&weight), &values(&bias));
            return tensor(y, [layer.batch, layer.outputs, layer.oh, layer.ow].into());
        }
        // Other dtypes: burn's operations.
        burn_folded(x, weight, bias, conv_options(stride, padding, 1), relu6)
    }
}

/// One folded layer's sizes, on one batch.
struct Layer {
    batch: usize,
    channels: usize,
    h: usize,
    w: usize,
    outputs: usize,
    k: usize,
    stride: usize,
    top: usize,
    left: usize,
    oh: usize,
    ow: usize,
    relu6: bool,
}

/// Bytes one task keeps (its output before the bias and clamp, and its patches): well inside
/// a core's L2 cache.
const BLOCK_BYTES: usize = 256 * 1024;

impl Layer {
    /// The layer of a `weight` of shape `[outputs, channels, k, k]` on an input of shape
    /// `[batch, channels, h, w]`.
    fn new(x: [usize; 4], weight: [usize; 4], stride: usize, pad: [usize; 4], relu6: bool) -> Self {
        let [batch, channels, h, w] = x;
        let [outputs, _, k, _] = weight;
        let [top, bottom, left, right] = pad;
        let stride = stride.max(1);
        Layer {
            batch,
            channels,
            h,
            w,
            outputs,
            k,
            stride,
            top,
            left,
            oh: (h + top + bottom).saturating_sub(k) / stride + 1,
            ow: (w + left + right).saturating_sub(k) / stride + 1,
            relu6,
        }
    }

    /// Rows of the product: the values under the kernel at one output pixel.
    fn rows(&self) -> usize {
        self.channels * self.k * self.k
    }

    /// Whether the input itself is the product's right side (a 1x1 layer at stride 1).
    fn pointwise(&self) -> bool {
        self.k == 1 && self.stride == 1
    }

    /// Output pixels per task: a multiple of 16 (whole vectors), the whole plane where it fits.
    fn block(&self) -> usize {
        let patch = if self.pointwise() { 0 } else { self.rows() };
        let fit = BLOCK_BYTES / (4 * (self.outputs + patch).max(1));
        let pixels = self.oh * self.ow;
        if fit >= pixels {
            pixels.max(1)
        } else {
            (fit / 16 * 16).max(16)
        }
    }

    /// The layer on `x` `[batch, channels, h, w]`: `[batch, outputs, oh, ow]`.
    fn run(&self, x: &[f32], weight: &[f32], bias: &[f32]) -> Vec<f32> {
        let (rows, cout, plane) = (self.rows(), self.outputs, self.oh * self.ow);
        let image = self.channels * self.h * self.w;
        assert!(
            x.len() >= self.batch * image && weight.len() >= cout * rows && bias.len() >= cout,
            "a layer's tensors are smaller than their shapes"
        );
        let len = self.batch * cout * plane;
        let mut y = Vec::<f32>::with_capacity(len);
        let block = self.block();
        let blocks = plane.div_ceil(block);
        let dst = Shared::new(&mut y);
        for_each_index(self.batch * blocks, |task| {
            let (i, first) = (task / blocks, task % blocks * block);
            let width = block.min(plane - first);
            let x = &x[i * image..(i + 1) * image];
            PATCHES.with_borrow_mut(|patches| {
                // The right side: the input's own rows, or the block's patches.
                let (rhs, rhs_rs) = if self.pointwise() {
                    (x[first..].as_ptr(), plane)
                } else {
                    patches.resize(rows * width, 0.0);
                    self.gather(x, first, width, patches);
                    (patches.as_ptr(), width)
                };
                // SAFETY: each task writes the rows `[i, .., first..first + width]` alone, all
                // inside `y`'s `len` values; the reads stay inside `x` (or the patches) and
                // `weight` (checked above).
                unsafe {
                    let out = dst.at(i * cout * plane + first);
                    let product = Product {
                        rows: cout,
                        cols: width,
                        depth: rows,
                    };
                    product.run(out, plane, weight, rhs, rhs_rs, bias, self.relu6, None);
                }
            });
        });
        // SAFETY: the tasks above wrote every value (`gemm` without `read_dst` stores each).
        unsafe { y.set_len(len) };
        y
    }

    /// The patches of output pixels `first..first + width` of one image `x`: row
    /// `(c * k + ky) * k + kx` holds input channel `c` under tap `(ky, kx)`, zero in the padding.
    fn gather(&self, x: &[f32], first: usize, width: usize, patches: &mut [f32]) {
        let (k, s, ow) = (self.k, self.stride, self.ow);
        for (r, row) in patches.chunks_exact_mut(width).enumerate() {
            let (c, ky, kx) = (r / (k * k), r / k % k, r % k);
            let plane = &x[c * self.h * self.w..(c + 1) * self.h * self.w];
            // One output row's run at a time.
            let mut j = 0;
            while j < width {
                let (oy, ox) = ((first + j) / ow, (first + j) % ow);
                let run = (ow - ox).min(width - j);
                let out = &mut row[j..j + run];
                match (oy * s + ky)
                    .checked_sub(self.top)
                    .filter(|&iy| iy < self.h)
                {
                    None => out.fill(0.0),
                    Some(iy) => {
                        let line = &plane[iy * self.w..(iy + 1) * self.w];
                        for (t, v) in out.iter_mut().enumerate() {
                            let ix = ((ox + t) * s + kx).checked_sub(self.left);
                            *v = ix.and_then(|ix| line.get(ix)).copied().unwrap_or(0.0);
                        }
                    }
                }
                j += run;
            }
        }
    }
}

/// `out[rows, cols] = weight[rows, depth] x rhs[depth, cols]` in the calling thread, then each
/// row plus its bias (and a residual's row where there is one), clamped to [0, 6] where
/// `relu6`, while the rows are in the cache.
#[derive(Clone, Copy)]
pub(super) struct Product {
    pub rows: usize,
    pub cols: usize,
    pub depth: usize,
}

impl Product {
    /// # Safety
    /// `out` (rows `out_stride` apart), `rhs` (rows `rhs_stride` apart) and `skip` (rows
    /// `out_stride` apart) must hold the product's rows of `cols` values; `weight` and `bias`
    /// at least `rows * depth` and `rows`.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn run(
        &self,
        out: *mut f32,
        out_stride: usize,
        weight: &[f32],
        rhs: *const f32,
        rhs_stride: usize,
        bias: &[f32],
        relu6: bool,
        skip: Option<*const f32>,
    ) {
        let Product { rows, cols, depth } = *self;
        unsafe {
            gemm::gemm(
                rows,
                cols,
                depth,
                out,
                1,
                out_stride as isize,
                false,
                weight.as_ptr(),
                1,
                depth as isize,
                rhs,
                1,
                rhs_stride as isize,
                0.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
            for (o, &b) in bias.iter().take(rows).enumerate() {
                let row = std::slice::from_raw_parts_mut(out.add(o * out_stride), cols);
                if let Some(skip) = skip {
                    let skip = std::slice::from_raw_parts(skip.add(o * out_stride), cols);
                    row.iter_mut().zip(skip).for_each(|(v, s)| *v += s);
                }
                if relu6 {
                    row.iter_mut().for_each(|v| *v = (*v + b).clamp(0.0, 6.0));
                } else {
                    row.iter_mut().for_each(|v| *v += b);
                }
            }
        }
    }
}

thread_local! {
    /// A task's patches, kept between tasks of the thread.
    static PATCHES: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::{Device, Distribution};

    use crate::engine::test_util::assert_conv_bias_relu6;

    #[test]
    fn a_folded_pointwise_layer_is_burns_convolution_bias_and_relu6() {
        // Against burn's convolution (its bias included) then min(max(y, 0), 6), on values
        // spread wide enough that both clamps bite.
        let device = Device::flex();
        let conv: Conv2d = Conv2dConfig::new([5, 7], [1, 1]).init(&device);
        let x = Tensor::<4>::random([2, 5, 3, 4], Distribution::Normal(0.0, 8.0), &device);
        for relu6 in [false, true] {
            let ours = folded(&conv, &x, relu6).expect("a folded 1x1 layer on the CPU");
            assert_conv_bias_relu6(&format!("relu6 {relu6}"), ours, &conv, &x, relu6);
        }
        // A layer that trains keeps burn's operations (its gradient).
        let tracked = Tensor::<4>::from_data(x.to_data(), &device.autodiff());
        assert!(folded(&conv, &tracked, true).is_none());
    }

    #[test]
    fn every_layer_kind_in_blocks_is_burns_convolution() {
        // 1x1 layers and the stem's kind (3x3, stride 2, TF "same": the odd pixel padded at the
        // bottom and right), a plane in one block and in several (the last one short: a
        // 300-wide 1x1 layer's block is 208 pixels, so 400 are 208 then 192), no padding.
        let device = Device::flex();
        let cases = [
            // (inputs, outputs, kernel, stride, padding, side, blocks an image)
            (24, 300, 1, 1, PaddingConfig2d::Same, 20, 2),
            (16, 96, 1, 1, PaddingConfig2d::Same, 35, 2),
            (3, 8, 1, 1, PaddingConfig2d::Valid, 4, 1),
            (3, 32, 3, 2, PaddingConfig2d::Same, 33, 1),
            (3, 300, 3, 2, PaddingConfig2d::Same, 50, 4),
            (8, 16, 3, 1, PaddingConfig2d::Same, 9, 1),
            (5, 6, 3, 1, PaddingConfig2d::Valid, 6, 1),
        ];
        for (inputs, outputs, k, stride, pad, side, blocks) in cases {
            let conv: Conv2d = Conv2dConfig::new([inputs, outputs], [k, k])
                .with_stride([stride, stride])
                .with_padding(pad.clone())
                .init(&device);
            let x = Tensor::<4>::random(
                [3, inputs, side, side],
                Distribution::Normal(0.0, 8.0),
                &device,
            );
            let what = format!("{inputs}->{outputs} {k}x{k}/{stride} {pad:?} on {side}x{side}");
            let layer = Layer::new(
                x.dims(),
                conv.weight.dims(),
                stride,
                padding(&conv, side, side).unwrap(),
                true,
            );
            let plane = layer.oh * layer.ow;
            assert_eq!(plane.div_ceil(layer.block()), blocks, "{what}");
            for relu6 in [false, true] {
                let ours = folded(&conv, &x, relu6).expect("a folded dense layer on the CPU");
                assert_conv_bias_relu6(&format!("{what}, relu6 {relu6}"), ours, &conv, &x, relu6);
            }
        }
    }
}
