//! The depthwise convolution of a layer that trains, on burn's CPU backend, forward and
//! backward as loops of our own.
//!
//! burn's default backward for a grouped convolution computes the weight's gradient with one
//! convolution, one slice and one slice assignment per group (per channel here: up to 1152 in
//! Lite0), and the input's gradient with a general transposed 3-D convolution over a padded
//! copy. Depthwise convolutions were the largest share of a full step's operations on the CPU
//! (`finetune profile` shows it). Here the forward and both gradients are direct loops over each plane (output,
//! input gradient) and each channel (weight gradient), in rayon's pool natively. The same
//! forward loop runs the CPU backend's frozen (folded) depthwise layers, bias and ReLU6
//! included ([`folded`]), natively and in the browser's workers. On wgpu and WebGPU burn's convolution and [`crate::engine::kernels::gpu::conv`] run.

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::ops::ModuleOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::module::Param;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::tensor::{DType, Device, Tensor};
use burn_flex::FlexTensor;

use crate::engine::kernels::cpu::{burn_folded, conv_options, register_grad, tensor, values};
use crate::engine::kernels::shared::{on_cpu_backend, same_padding};

/// `conv` on `x` through [`FusedDepthwise`] when it applies (a depthwise convolution without a
/// bias, TF "same" padding, that trains on the CPU backend); `None` otherwise.
pub fn forward(conv: &Conv2d, x: &Tensor<4>) -> Option<Tensor<4>> {
    if !applies(conv, x) {
        return None;
    }
    let (stride, padding) = padding_of(conv, x);
    let y = <Dispatch as FusedDepthwise>::depthwise_conv2d(
        x.clone().into_dispatch(),
        conv.weight.val().into_dispatch(),
        stride,
        padding,
    );
    Some(Tensor::from_dispatch(y))
}

/// A folded depthwise layer (frozen, eval mode: with a bias) on the CPU backend without
/// autodiff: the convolution, its bias and ReLU6 (when `relu6`) in one pass over each plane
/// through [`FoldedDepthwise`]. burn's convolution, bias add, `relu` and `clamp_max` each
/// go over the whole activation (up to 77 MB in Lite0 at batch 16);
/// `None` where it does not apply.
pub fn folded(conv: &Conv2d, x: &Tensor<4>, relu6: bool) -> Option<Tensor<4>> {
    if !folded_applies(conv, x) {
        return None;
    }
    let bias = conv.bias.as_ref()?.val();
    let (stride, padding) = padding_of(conv, x);
    let y = <Dispatch as FoldedDepthwise>::folded_depthwise_conv2d(
        x.clone().into_dispatch(),
        conv.weight.val().into_dispatch(),
        bias.into_dispatch(),
        stride,
        padding,
        relu6,
    );
    Some(Tensor::from_dispatch(y))
}

/// Whether [`forward`] runs `conv` on `x`: a layer that trains (no bias, autodiff).
pub fn applies(conv: &Conv2d, x: &Tensor<4>) -> bool {
    let device = x.device();
    depthwise_on_cpu(conv, x.dims()[1], &device, x.dtype())
        && conv.bias.is_none()
        && device.is_autodiff()
}

/// Whether [`folded`] runs `conv` on `x`.
pub fn folded_applies(conv: &Conv2d, x: &Tensor<4>) -> bool {
    foldable(conv, x.dims()[1], &x.device(), x.dtype())
}

/// Whether the folded loop covers `conv` (with a bias) on an input of `channels` channels on
/// `device` (the CPU backend without autodiff), of `dtype`.
pub fn foldable(conv: &Conv2d, channels: usize, device: &Device, dtype: DType) -> bool {
    let f32s = |b: &Param<Tensor<1>>| {
        conv.weight.val().dtype() == DType::F32 && b.val().dtype() == DType::F32
    };
    conv.bias.as_ref().is_some_and(f32s)
        && depthwise_on_cpu(conv, channels, device, dtype)
        && !device.is_autodiff()
}

/// Whether `conv` is a depthwise convolution with TF "same" padding that the kernels here
/// cover (one tap per channel, square kernel and stride, no dilation), over f32 `x` on the
/// CPU backend.
fn depthwise_on_cpu(conv: &Conv2d, channels: usize, device: &Device, dtype: DType) -> bool {
    let [out, per_group, kh, kw] = conv.weight.dims();
    on_cpu_backend(device)
        && dtype == DType::F32
        && per_group == 1
        && conv.groups == channels
        && out == channels
        && kh == kw
        && conv.stride[0] == conv.stride[1]
        && conv.dilation == [1, 1]
        && conv.padding == PaddingConfig2d::Same
}

/// The stride and `[top, bottom, left, right]` padding of `conv` on `x`.
pub fn padding_of(conv: &Conv2d, x: &Tensor<4>) -> (usize, [usize; 4]) {
    let [_, _, h, w] = x.dims();
    let k = conv.kernel_size[0];
    let stride = conv.stride[0];
    let (top, bottom) = same_padding(k, stride, h);
    let (left, right) = same_padding(k, stride, w);
    (stride, [top, bottom, left, right])
}

#[backend_extension(Flex, Autodiff)]
pub trait FusedDepthwise: Backend {
    /// Depthwise convolution of `x` `[n, c, h, w]` by `weight` `[c, 1, k, k]`, padded
    /// `[top, bottom, left, right]`.
    fn depthwise_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        stride: usize,
        padding: [usize; 4],
    ) -> FloatTensor<Self>;
}

#[backend_extension(Flex)]
pub trait FoldedDepthwise: Backend {
    /// [`FusedDepthwise::depthwise_conv2d`] plus `bias` `[c]`, then ReLU6 when `relu6`.
    fn folded_depthwise_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        stride: usize,
        padding: [usize; 4],
        relu6: bool,
    ) -> FloatTensor<Self>;
}

impl FusedDepthwise for Flex {
    fn depthwise_conv2d(
        x: FlexTensor,
        weight: FlexTensor,
        stride: usize,
        padding: [usize; 4],
    ) -> FlexTensor {
        if x.dtype() != DType::F32 || weight.dtype() != DType::F32 {
            let channels = x.shape().dims::<4>()[1];
            return Flex::conv2d(x, weight, None, conv_options(stride, padding, channels));
        }
        let g = Geometry::forward(&x, &weight, stride, padding);
        let y = kernels::forward(&values(&x), &values(&weight), None, false, g);
        tensor(y, [g.batch, g.channels, g.oh, g.ow].into())
    }
}

impl FoldedDepthwise for Flex {
    fn folded_depthwise_conv2d(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        stride: usize,
        padding: [usize; 4],
        relu6: bool,
    ) -> FlexTensor {
        let f32s = [&x, &weight, &bias].iter().all(|t| t.dtype() == DType::F32);
        if !f32s {
            let options = conv_options(stride, padding, x.shape().dims::<4>()[1]);
            return burn_folded(x, weight, bias, options, relu6);
        }
        let g = Geometry::forward(&x, &weight, stride, padding);
        let y = kernels::forward(
            &values(&x),
            &values(&weight),
            Some(&values(&bias)),
            relu6,
            g,
        );
        tensor(y, [g.batch, g.channels, g.oh, g.ow].into())
    }
}

impl<C: CheckpointStrategy> FusedDepthwise for Autodiff<Flex, C> {
    fn depthwise_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        stride: usize,
        padding: [usize; 4],
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct DepthwiseBackward;

        impl Backward<Flex, 2> for DepthwiseBackward {
            type State = (FlexTensor, FlexTensor, usize, [usize; 4]);

            fn backward(
                self,
                ops: Ops<Self::State, 2>,
                grads: &mut Gradients,
                _checkpointer: &mut Checkpointer,
            ) {
                let [node_x, node_weight] = ops.parents;
                let grad = grads.consume::<Flex>(&ops.node);
                let (x, weight, stride, padding) = ops.state;
                let geometry = Geometry::forward(&x, &weight, stride, padding);
                let (xs, ws, gs) = (values(&x), values(&weight), values(&grad));
                register_grad(grads, node_x.map(|n| n.id), &x, || {
                    kernels::input_grad(&ws, &gs, geometry)
                });
                register_grad(grads, node_weight.map(|n| n.id), &weight, || {
                    kernels::weight_grad(&xs, &gs, geometry)
                });
            }
        }

        let prep = DepthwiseBackward
            .prepare::<C>([x.node(), weight.node()])
            .compute_bound()
            .stateful();
        let (xp, wp) = (x.primitive().clone(), weight.primitive().clone());
        let y = Flex::depthwise_conv2d(xp.clone(), wp.clone(), stride, padding);
        match prep {
            OpsKind::Tracked(prep) => prep.finish((xp, wp, stride, padding), y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }
}

/// Sizes of one depthwise convolution.
#[derive(Clone, Copy, Debug)]
struct Geometry {
    batch: usize,
    channels: usize,
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
    k: usize,
    stride: usize,
    top: usize,
    left: usize,
}

impl Geometry {
    /// The sizes of a pass of `x` by `weight` (the backward's too: its gradient has the
    /// output's shape).
    fn forward(x: &FlexTensor, weight: &FlexTensor, stride: usize, padding: [usize; 4]) -> Self {
        let [batch, channels, h, w] = x.shape().dims::<4>();
        let k = weight.shape().dims::<4>()[2];
        let [top, bottom, left, right] = padding;
        Self {
            batch,
            channels,
            h,
            w,
            oh: (h + top + bottom).saturating_sub(k) / stride + 1,
            ow: (w + left + right).saturating_sub(k) / stride + 1,
            k,
            stride,
            top,
            left,
        }
    }

    /// Output columns `ox` whose input column `ox * stride + kx - left` lies in the row.
    fn columns(&self, kx: usize) -> std::ops::Range<usize> {
        let lo = self.left.saturating_sub(kx).div_ceil(self.stride);
        let hi = if self.w + self.left > kx {
            ((self.w + self.left - 1 - kx) / self.stride + 1).min(self.ow)
        } else {
            0
        };
        lo..hi.max(lo)
    }

    /// For each kernel column `kx`: the output columns it reaches ([`Self::columns`]) and the
    /// input column of the first. Computed once per layer (the divisions were a third of the
    /// loops' time when done per row).
    fn column_table(&self) -> Vec<(std::ops::Range<usize>, usize)> {
        (0..self.k)
            .map(|kx| {
                let cols = self.columns(kx);
                let first = (cols.start * self.stride + kx).saturating_sub(self.left);
                (cols, first)
            })
            .collect()
    }

    /// The input row of output row `oy` at kernel row `ky`, if inside the image.
    fn row(&self, oy: usize, ky: usize) -> Option<usize> {
        (oy * self.stride + ky)
            .checked_sub(self.top)
            .filter(|iy| *iy < self.h)
    }
}

mod kernels {
    use super::Geometry;
    use crate::engine::kernels::cpu::depthwise_blocked::Blocked;
    use crate::engine::kernels::cpu::{for_each_plane, map_indices, written_planes};

    /// The convolution itself: per output row, each kernel tap adds a weighted (shifted) input
    /// row, plane by plane (in rayon's pool natively): faster than burn-flex's grouped
    /// convolution on Lite0's depthwise layers.
    /// Each plane starts from its channel's `bias` and ends clamped to [0, 6] when `relu6`,
    /// while it is still in the cache.
    pub fn forward(
        x: &[f32],
        weight: &[f32],
        bias: Option<&[f32]>,
        relu6: bool,
        g: Geometry,
    ) -> Vec<f32> {
        let (plane, out_plane, kk) = (g.h * g.w, g.oh * g.ow, g.k * g.k);
        let len = g.batch * g.channels * out_plane;
        if let Some(blocked) =
            Blocked::new(g.k, g.stride, (g.h, g.w), (g.oh, g.ow), (g.top, g.left))
        {
            let fill = |p: usize, yp: &mut [f32]| {
                let c = p % g.channels;
                let b = bias.and_then(|b| b.get(c)).copied().unwrap_or(0.0);
                let wc = &weight[c * kk..(c + 1) * kk];
                blocked.plane(&x[p * plane..(p + 1) * plane], wc, b, relu6, yp);
            };
            // SAFETY: the blocked loop stores every output of its plane and reads none.
            return unsafe { written_planes(len, out_plane, fill) };
        }
        let mut y = vec![0.0f32; len];
        let table = g.column_table();
        let fill = |p: usize, yp: &mut [f32]| {
            let c = p % g.channels;
            let wc = &weight[c * kk..(c + 1) * kk];
            let xp = &x[p * plane..(p + 1) * plane];
            if let Some(b) = bias.and_then(|b| b.get(c)) {
                yp.fill(*b);
            }
            for oy in 0..g.oh {
                let orow = &mut yp[oy * g.ow..(oy + 1) * g.ow];
                for ky in 0..g.k {
                    let Some(iy) = g.row(oy, ky) else { continue };
                    let xrow = &xp[iy * g.w..(iy + 1) * g.w];
                    for (kx, (cols, first)) in table.iter().enumerate() {
                        let (cols, first) = (cols.clone(), *first);
                        if cols.is_empty() {
                            continue;
                        }
                        let wv = wc[ky * g.k + kx];
                        if g.stride == 1 {
                            let src = &xrow[first..first + cols.len()];
                            for (o, v) in orow[cols].iter_mut().zip(src) {
                                *o += wv * v;
                            }
                        } else {
                            for (i, o) in orow[cols].iter_mut().enumerate() {
                                *o += wv * xrow[first + i * g.stride];
                            }
                        }
                    }
                }
            }
            if relu6 {
                yp.iter_mut().for_each(|v| *v = v.clamp(0.0, 6.0));
            }
        };
        for_each_plane(&mut y, out_plane, fill);
        y
    }

    /// The gradient of the input: each output gradient spread back over the pixels its
    /// kernel window read, plane by plane (in rayon's pool natively).
    pub fn input_grad(weight: &[f32], grad: &[f32], g: Geometry) -> Vec<f32> {
        let (plane, out_plane, kk) = (g.h * g.w, g.oh * g.ow, g.k * g.k);
        let len = grad.len() / out_plane.max(1) * plane;
        // At stride 1 this is a convolution of the gradient by the kernel turned half a turn,
        // padded by what the forward pass's padding left out: the forward's blocked loop.
        let turned = (g.k - 1)
            .checked_sub(g.top)
            .zip((g.k - 1).checked_sub(g.left));
        if let (1, Some(padding)) = (g.stride, turned)
            && let Some(blocked) = Blocked::new(g.k, 1, (g.oh, g.ow), (g.h, g.w), padding)
        {
            let flipped: Vec<f32> = weight
                .chunks(kk)
                .flat_map(|w| w.iter().rev().copied())
                .collect();
            let fill = |p: usize, dxp: &mut [f32]| {
                let c = p % g.channels;
                let gp = &grad[p * out_plane..(p + 1) * out_plane];
                blocked.plane(gp, &flipped[c * kk..(c + 1) * kk], 0.0, false, dxp);
            };
            // SAFETY: the blocked loop stores every value of its plane and reads none.
            return unsafe { written_planes(len, plane, fill) };
        }
        let table = g.column_table();
        let fill = |p: usize, dxp: &mut [f32]| {
            let c = p % g.channels;
            let wc = &weight[c * kk..(c + 1) * kk];
            let gp = &grad[p * out_plane..(p + 1) * out_plane];
            // At stride 2 the sums go into rows split in their even and odd columns, where a
            // tap's inputs lie side by side, and are put back in order at the end.
            let mut split = if g.stride == 2 {
                vec![0.0f32; plane]
            } else {
                Vec::new()
            };
            for oy in 0..g.oh {
                let grow = &gp[oy * g.ow..(oy + 1) * g.ow];
                for ky in 0..g.k {
                    let Some(iy) = g.row(oy, ky) else { continue };
                    let row = if g.stride == 2 {
                        &mut split[iy * g.w..(iy + 1) * g.w]
                    } else {
                        &mut dxp[iy * g.w..(iy + 1) * g.w]
                    };
                    for (kx, (cols, first)) in table.iter().enumerate() {
                        let (cols, first) = (cols.clone(), *first);
                        if cols.is_empty() {
                            continue;
                        }
                        let wv = wc[ky * g.k + kx];
                        let start = if g.stride == 2 {
                            split_index(first, g.w)
                        } else {
                            first
                        };
                        let dst = &mut row[start..start + cols.len()];
                        for (d, gv) in dst.iter_mut().zip(&grow[cols]) {
                            *d += wv * gv;
                        }
                    }
                }
            }
            if g.stride == 2 {
                join_columns(&split, g.w, dxp);
            }
        };
        if g.stride == 2 {
            // SAFETY: at stride 2 `fill` sums into its own rows and stores every value of its
            // plane from them at the end, reading none.
            return unsafe { written_planes(len, plane, fill) };
        }
        let mut dx = vec![0.0f32; len];
        for_each_plane(&mut dx, plane, fill);
        dx
    }

    /// The gradient of the weight: per channel, the sum over the batch and the output pixels
    /// of the output gradient times the input pixel each tap read (in rayon's pool natively).
    pub fn weight_grad(x: &[f32], grad: &[f32], g: Geometry) -> Vec<f32> {
        let (plane, out_plane, kk) = (g.h * g.w, g.oh * g.ow, g.k * g.k);
        let table = g.column_table();
        let batch = grad.len() / (out_plane * g.channels).max(1);
        let channel = |c: usize| -> Vec<f32> {
            let mut acc = vec![0.0f64; kk];
            let mut split = Vec::new();
            for n in 0..batch {
                let p = n * g.channels + c;
                let mut xp = &x[p * plane..(p + 1) * plane];
                if g.stride == 2 {
                    split_columns(xp, g.w, &mut split);
                    xp = &split;
                }
                let gp = &grad[p * out_plane..(p + 1) * out_plane];
                for ky in 0..g.k {
                    for (kx, (cols, first)) in table.iter().enumerate() {
                        let (cols, first) = (cols.clone(), *first);
                        if cols.is_empty() {
                            continue;
                        }
                        // Where the tap's inputs start in a row: at stride 2 they lie side by
                        // side in the row's even or odd half.
                        let start = if g.stride == 2 {
                            split_index(first, g.w)
                        } else {
                            first
                        };
                        let mut sum = 0.0f32;
                        for oy in 0..g.oh {
                            let Some(iy) = g.row(oy, ky) else { continue };
                            let grow = &gp[oy * g.ow + cols.start..oy * g.ow + cols.end];
                            let xrow = &xp[iy * g.w + start..];
                            sum += dot(grow, &xrow[..grow.len()]);
                        }
                        acc[ky * g.k + kx] += f64::from(sum);
                    }
                }
            }
            acc.into_iter().map(|v| v as f32).collect()
        };
        map_indices(g.channels, channel).concat()
    }

    /// Where column `j` of a row of `w` lies once the row is split in its even columns then its
    /// odd ones (so that every second column is side by side).
    fn split_index(j: usize, w: usize) -> usize {
        if j.is_multiple_of(2) {
            j / 2
        } else {
            w.div_ceil(2) + j / 2
        }
    }

    /// `plane`'s rows of `w`, each split in its even then its odd columns, into `out`.
    fn split_columns(plane: &[f32], w: usize, out: &mut Vec<f32>) {
        out.resize(plane.len(), 0.0);
        for (src, dst) in plane.chunks_exact(w).zip(out.chunks_exact_mut(w)) {
            let (even, odd) = dst.split_at_mut(w.div_ceil(2));
            even.iter_mut()
                .zip(src.iter().step_by(2))
                .for_each(|(d, s)| *d = *s);
            odd.iter_mut()
                .zip(src.iter().skip(1).step_by(2))
                .for_each(|(d, s)| *d = *s);
        }
    }

    /// The rows of [`split_columns`] back in order, into `plane`.
    fn join_columns(split: &[f32], w: usize, plane: &mut [f32]) {
        for (src, dst) in split.chunks_exact(w).zip(plane.chunks_exact_mut(w)) {
            let (even, odd) = src.split_at(w.div_ceil(2));
            dst.iter_mut()
                .step_by(2)
                .zip(even)
                .for_each(|(d, s)| *d = *s);
            dst.iter_mut()
                .skip(1)
                .step_by(2)
                .zip(odd)
                .for_each(|(d, s)| *d = *s);
        }
    }

    /// `a . b` in eight lanes (so the compiler vectorises it).
    fn dot(a: &[f32], b: &[f32]) -> f32 {
        let mut lanes = [0.0f32; 8];
        let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
        let tail: f32 = ca
            .remainder()
            .iter()
            .zip(cb.remainder())
            .map(|(x, y)| x * y)
            .sum();
        for (x, y) in ca.zip(cb) {
            for i in 0..8 {
                lanes[i] += x[i] * y[i];
            }
        }
        lanes.iter().sum::<f32>() + tail
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::{Device, Distribution};

    use crate::engine::test_util::{assert_conv_bias_relu6, assert_trains_as_burns_conv};

    #[test]
    fn same_padding_is_tensorflows() {
        // Closed forms: k 3 stride 1 -> 1 each side; k 5 stride 2 on 112 -> 1 before, 2 after;
        // k 3 stride 2 on 7 -> 1 and 1; on 8 -> 0 and 1.
        assert_eq!(same_padding(3, 1, 10), (1, 1));
        assert_eq!(same_padding(5, 2, 112), (1, 2));
        assert_eq!(same_padding(3, 2, 7), (1, 1));
        assert_eq!(same_padding(3, 2, 8), (0, 1));
    }

    #[test]
    fn a_folded_depthwise_layer_is_burns_convolution_bias_and_relu6() {
        // Against burn's grouped convolution (its bias included) then min(max(y, 0), 6), for
        // Lite's kernels and strides, on values spread wide enough that both clamps bite.
        let device = Device::flex();
        // Planes narrow and wide enough for every block width of the blocked loop.
        for (k, stride, h, w) in [
            (3, 1, 7, 9),
            (3, 2, 8, 8),
            (5, 1, 6, 11),
            (5, 2, 9, 10),
            (3, 1, 5, 41),
            (3, 2, 6, 53),
            (5, 1, 4, 38),
            (5, 2, 7, 67),
        ] {
            let c = 4;
            let conv: Conv2d = Conv2dConfig::new([c, c], [k, k])
                .with_stride([stride, stride])
                .with_groups(c)
                .with_padding(PaddingConfig2d::Same)
                .init(&device);
            let x = Tensor::<4>::random([2, c, h, w], Distribution::Normal(0.0, 8.0), &device);
            for relu6 in [false, true] {
                let ours = folded(&conv, &x, relu6).expect("a folded depthwise layer on the CPU");
                let case = format!("k {k} stride {stride} {h}x{w} relu6 {relu6}");
                assert_conv_bias_relu6(&case, ours, &conv, &x, relu6);
            }
        }
    }

    #[test]
    fn depthwise_gradients_are_burns_for_each_kernel_stride_and_size() {
        // Against burn's own grouped convolution (its forward and its default backward): the
        // output, and the gradients of the input and the weight under a weighted loss, for
        // Lite's kernels (3, 5), strides (1, 2) and even, odd and small planes.
        let device = Device::flex().autodiff();
        for (k, stride, h, w) in [
            (3, 1, 7, 9),
            (3, 2, 8, 8),
            (3, 2, 7, 5),
            (5, 1, 6, 11),
            (5, 2, 9, 10),
            (5, 2, 2, 3),
            (3, 1, 1, 1),
            (3, 1, 4, 35),
            (5, 2, 5, 50),
        ] {
            let c = 3;
            let conv: Conv2d = Conv2dConfig::new([c, c], [k, k])
                .with_stride([stride, stride])
                .with_groups(c)
                .with_bias(false)
                .with_padding(PaddingConfig2d::Same)
                .init(&device);
            let x = Tensor::<4>::random([2, c, h, w], Distribution::Normal(0.0, 1.0), &device);
            let case = format!("k {k} stride {stride} {h}x{w}");
            assert_trains_as_burns_conv(&case, &conv, &x, forward, 1e-4);
        }
    }
}
