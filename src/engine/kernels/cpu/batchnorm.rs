//! BatchNorm with batch statistics (a training BatchNorm), optionally followed by ReLU6, as one
//! operation on burn's CPU backend.
//!
//! burn's default `batch_norm_train` is built from tensor operations: two transposed copies, the
//! reductions and about six element-wise passes forward, a dozen backward, each on one thread of
//! burn-flex: the largest part of a full training step on the CPU (`finetune profile`). Here the
//! forward is two passes (statistics per channel, then scale, shift and clamp per plane) and the
//! backward two (two sums per channel, then the input's gradient per plane), in rayon's pool
//! natively. Elsewhere (wgpu, WebGPU) burn's own BatchNorm runs, as before.

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::ops::{FloatTensorOps, ModuleOps};
use burn::backend::tensor::FloatTensor;
use burn::backend::{
    AutodiffBackend, Backend, Dispatch, ExtensionType, Flex, TensorMetadata, backend_extension,
};
use burn::nn::BatchNorm;
use burn::tensor::{DType, Device, Tensor};
use burn_flex::FlexTensor;

use crate::engine::kernels::cpu::{tensor, values};
use crate::engine::kernels::shared::on_cpu_backend;

/// `bn` on `x` (`[batch, channels, h, w]`) with batch statistics, then ReLU6 when `relu6`,
/// as one operation, updating the running statistics as burn's `BatchNorm` does. Only where
/// [`applies`] (the caller decides: [`crate::engine::kernels::batch_norm`]).
pub fn forward(bn: &BatchNorm, x: Tensor<4>, relu6_after: bool) -> Tensor<4> {
    let device = x.device();
    let out = <Dispatch as FusedBatchNorm>::batch_norm_train_fused(
        x.into_dispatch(),
        bn.gamma.val().into_dispatch(),
        bn.beta.val().into_dispatch(),
        bn.epsilon,
        relu6_after,
    );
    // The running statistics as burn's `BatchNorm` updates them (biased variance).
    let mean = Tensor::<1>::from_dispatch(out.mean).detach();
    let variance = Tensor::<1>::from_dispatch(out.variance).detach();
    let m = bn.momentum;
    let running_mean = bn.running_mean.value_sync().to_device(&device);
    let running_var = bn.running_var.value_sync().to_device(&device);
    bn.running_mean
        .update((running_mean.mul_scalar(1.0 - m) + mean.mul_scalar(m)).detach());
    bn.running_var
        .update((running_var.mul_scalar(1.0 - m) + variance.mul_scalar(m)).detach());
    Tensor::from_dispatch(out.output)
}

/// Whether [`forward`] runs `bn` as the fused operation on activations of `dtype` on `device`:
/// a BatchNorm that trains (batch statistics, autodiff) on f32 on the CPU backend.
pub fn applies(bn: &BatchNorm, device: &Device, dtype: DType) -> bool {
    device.is_autodiff()
        && bn.training.is_enabled()
        && on_cpu_backend(device)
        && dtype == DType::F32
}

/// The output of [`FusedBatchNorm::batch_norm_train_fused`]: the normalised (and clamped)
/// input, and the batch's mean and biased variance per channel.
#[derive(ExtensionType)]
pub struct FusedBatchNormOutput<B: Backend> {
    pub output: FloatTensor<B>,
    pub mean: FloatTensor<B>,
    pub variance: FloatTensor<B>,
}

#[backend_extension(Flex, Autodiff)]
pub trait FusedBatchNorm: Backend {
    /// BatchNorm of `x` on its own batch statistics, then ReLU6 when `relu6`.
    fn batch_norm_train_fused(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        relu6: bool,
    ) -> FusedBatchNormOutput<Self>;
}

impl FusedBatchNorm for Flex {
    fn batch_norm_train_fused(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        epsilon: f64,
        relu6: bool,
    ) -> FusedBatchNormOutput<Self> {
        if x.dtype() != DType::F32 || x.shape().num_dims() != 4 {
            // Not a case training meets (f32, [n, c, h, w]); burn's composition covers it.
            let r = Flex::batch_norm_train(x, gamma, beta, epsilon);
            let output = if relu6 {
                Flex::float_clamp(r.output, 0.0.into(), 6.0.into())
            } else {
                r.output
            };
            return FusedBatchNormOutput {
                output,
                mean: r.mean,
                variance: r.variance,
            };
        }
        let shape = x.shape();
        let x = values(&x);
        let planes = Planes::of(&shape.dims::<4>());
        let (gamma, beta) = (values(&gamma), values(&beta));
        let (output, mean, variance) = kernels::forward(&x, planes, &gamma, &beta, epsilon, relu6);
        FusedBatchNormOutput {
            output: tensor(output, shape),
            mean: tensor(mean, [planes.channels].into()),
            variance: tensor(variance, [planes.channels].into()),
        }
    }
}

impl<C: CheckpointStrategy> FusedBatchNorm for Autodiff<Flex, C> {
    fn batch_norm_train_fused(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        relu6: bool,
    ) -> FusedBatchNormOutput<Self> {
        #[derive(Debug)]
        struct FusedBackward;

        impl Backward<Flex, 3> for FusedBackward {
            // x, gamma, beta, the batch's mean and variance, epsilon, relu6.
            type State = (
                FlexTensor,
                FlexTensor,
                FlexTensor,
                FlexTensor,
                FlexTensor,
                f64,
                bool,
            );

            fn backward(
                self,
                ops: Ops<Self::State, 3>,
                grads: &mut Gradients,
                _checkpointer: &mut Checkpointer,
            ) {
                let [node_x, node_gamma, node_beta] = ops.parents;
                let grad = grads.consume::<Flex>(&ops.node);
                let (x, gamma, beta, mean, variance, epsilon, relu6) = ops.state;
                let g = backward(&x, &gamma, &beta, &mean, &variance, epsilon, relu6, &grad);
                if let Some(node) = node_x {
                    grads.register::<Flex>(node.id, g.x);
                }
                if let Some(node) = node_gamma {
                    grads.register::<Flex>(node.id, g.gamma);
                }
                if let Some(node) = node_beta {
                    grads.register::<Flex>(node.id, g.beta);
                }
            }
        }

        let prep = FusedBackward
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful();
        let (xp, gp, bp) = (
            x.primitive().clone(),
            gamma.primitive().clone(),
            beta.primitive().clone(),
        );
        let r = Flex::batch_norm_train_fused(xp.clone(), gp.clone(), bp.clone(), epsilon, relu6);
        let output = match prep {
            OpsKind::Tracked(prep) => prep.finish(
                (
                    xp,
                    gp,
                    bp,
                    r.mean.clone(),
                    r.variance.clone(),
                    epsilon,
                    relu6,
                ),
                r.output,
            ),
            OpsKind::UnTracked(prep) => prep.finish(r.output),
        };
        FusedBatchNormOutput {
            output,
            mean: Self::from_inner(r.mean),
            variance: Self::from_inner(r.variance),
        }
    }
}

/// Gradients of the fused operation with respect to `x`, `gamma` and `beta`.
struct FusedGrads {
    x: FlexTensor,
    gamma: FlexTensor,
    beta: FlexTensor,
}

#[allow(clippy::too_many_arguments)]
fn backward(
    x: &FlexTensor,
    gamma: &FlexTensor,
    beta: &FlexTensor,
    mean: &FlexTensor,
    variance: &FlexTensor,
    epsilon: f64,
    relu6: bool,
    grad: &FlexTensor,
) -> FusedGrads {
    let shape = x.shape();
    let planes = Planes::of(&shape.dims::<4>());
    let (x, grad, gamma) = (values(x), values(grad), values(gamma));
    let affine = Affine::new(
        &values(mean),
        &values(variance),
        &gamma,
        &values(beta),
        epsilon,
    );
    let (x_grad, sums) = kernels::backward(&x, &grad, planes, &affine, &gamma, relu6);
    let c = planes.channels;
    FusedGrads {
        x: tensor(x_grad, shape),
        gamma: tensor(sums.iter().map(|s| s.1 as f32).collect(), [c].into()),
        beta: tensor(sums.iter().map(|s| s.0 as f32).collect(), [c].into()),
    }
}

/// Per channel: the batch mean, `1 / sqrt(var + eps)`, and the output's `y = x * scale +
/// shift` (`scale = gamma / sqrt(var + eps)`, `shift = beta - mean * scale`).
struct Affine {
    mean: Vec<f32>,
    inv_std: Vec<f32>,
    scale: Vec<f32>,
    shift: Vec<f32>,
}

impl Affine {
    fn new(mean: &[f32], variance: &[f32], gamma: &[f32], beta: &[f32], epsilon: f64) -> Self {
        let mut a = Self {
            mean: mean.to_vec(),
            inv_std: Vec::with_capacity(mean.len()),
            scale: Vec::with_capacity(mean.len()),
            shift: Vec::with_capacity(mean.len()),
        };
        for c in 0..mean.len() {
            let (inv_std, scale, shift) =
                Self::channel(mean[c], variance[c], gamma[c], beta[c], epsilon);
            a.inv_std.push(inv_std);
            a.scale.push(scale);
            a.shift.push(shift);
        }
        a
    }

    /// One channel's `(inv_std, scale, shift)`, worked out in f64.
    fn channel(mean: f32, variance: f32, gamma: f32, beta: f32, epsilon: f64) -> (f32, f32, f32) {
        let inv_std = 1.0 / (f64::from(variance) + epsilon).sqrt();
        let scale = inv_std * f64::from(gamma);
        let shift = f64::from(beta) - f64::from(mean) * scale;
        (inv_std as f32, scale as f32, shift as f32)
    }
}

/// An activation `[n, c, h, w]` as `n * c` planes of `h * w` values, channel `p % c` for plane `p`.
#[derive(Clone, Copy, Debug)]
struct Planes {
    batch: usize,
    channels: usize,
    plane: usize,
}

impl Planes {
    fn of(dims: &[usize; 4]) -> Self {
        Self {
            batch: dims[0],
            channels: dims[1],
            plane: dims[2] * dims[3],
        }
    }
}

/// The loops, on plain slices, one task per channel. Each channel's work is one
/// `#[inline(always)]` function, compiled a second time for AVX2 and FMA where the CPU has
/// them (checked at run time, as the depthwise loop does); the ReLU6's mask is a select, not
/// a branch, so that the loops vectorise.
mod kernels {
    use super::{Affine, Planes};
    #[cfg(target_arch = "x86_64")]
    use crate::engine::kernels::cpu::avx2_fma_here;
    use crate::engine::kernels::cpu::written_channels;

    /// Lanes of the per-plane sums: one AVX-512 vector, two AVX2 or four SSE ones.
    const LANES: usize = 16;

    /// The planes of channel `c`.
    #[inline(always)]
    fn channel(x: &[f32], planes: Planes, c: usize) -> impl Iterator<Item = &[f32]> {
        (0..planes.batch).map(move |n| {
            let start = (n * planes.channels + c) * planes.plane;
            &x[start..start + planes.plane]
        })
    }

    /// The sums of `f(a[i], b[i])` (two outputs) over a plane, in [`LANES`] f32 lanes (so the
    /// compiler vectorises the loop; one f64 chain was latency-bound), totalled in f64.
    #[inline(always)]
    fn lane_sums(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> (f32, f32)) -> (f64, f64) {
        let (mut s0, mut s1) = ([0.0f32; LANES], [0.0f32; LANES]);
        let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
        let (mut t0, mut t1) = (0.0f64, 0.0f64);
        for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
            let (u, v) = f(*x, *y);
            t0 += f64::from(u);
            t1 += f64::from(v);
        }
        for (x, y) in ca.zip(cb) {
            for i in 0..LANES {
                let (u, v) = f(x[i], y[i]);
                s0[i] += u;
                s1[i] += v;
            }
        }
        let total = |s: [f32; LANES]| s.iter().map(|v| f64::from(*v)).sum::<f64>();
        (t0 + total(s0), t1 + total(s1))
    }

    /// The gradient reaching the BatchNorm's output `y = v * s + t`: `g`, zero where ReLU6
    /// clamped (`y <= 0` or `y > 6`, as burn's `relu` then `clamp_max` pass it).
    #[inline(always)]
    fn through_relu6(g: f32, v: f32, s: f32, t: f32, relu6: bool) -> f32 {
        let y = v * s + t;
        let kept = !relu6 | ((y > 0.0) & (y <= 6.0));
        if kept { g } else { 0.0 }
    }

    /// The output `x * scale + shift` (clamped to `[0, 6]` when `relu6`) with the batch's mean
    /// and biased variance per channel. Channel by channel: the statistics, then the output
    /// while the channel's planes are still in the cache (one read of the input from memory,
    /// not two).
    pub fn forward(
        x: &[f32],
        planes: Planes,
        gamma: &[f32],
        beta: &[f32],
        epsilon: f64,
        relu6: bool,
    ) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let dims = [planes.batch, planes.channels, planes.plane];
        #[cfg(target_arch = "x86_64")]
        let wide = avx2_fma_here();
        let channel_out = |c: usize, out: &mut [&mut [f32]]| {
            let layer = ForwardLayer {
                x,
                planes,
                gamma: gamma[c],
                beta: beta[c],
                epsilon,
                relu6,
            };
            #[cfg(target_arch = "x86_64")]
            if wide {
                // SAFETY: this CPU runs AVX2 and FMA (checked above).
                return unsafe { forward_channel_avx2(&layer, c, out) };
            }
            forward_channel(&layer, c, out)
        };
        // SAFETY: `channel_out` writes each value of its planes (one per input value) and
        // reads none.
        let (y, stats) = unsafe { written_channels(dims, channel_out) };
        let (mean, variance) = stats.into_iter().unzip();
        (y, mean, variance)
    }

    /// One layer's forward inputs for one channel (`gamma` and `beta` are the channel's).
    struct ForwardLayer<'a> {
        x: &'a [f32],
        planes: Planes,
        gamma: f32,
        beta: f32,
        epsilon: f64,
        relu6: bool,
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn forward_channel_avx2(layer: &ForwardLayer, c: usize, out: &mut [&mut [f32]]) -> (f32, f32) {
        forward_channel(layer, c, out)
    }

    /// Channel `c`'s mean and biased variance (two passes: no cancellation for channels far
    /// from zero; the second reads the planes from the core's cache), then its output planes.
    #[inline(always)]
    fn forward_channel(layer: &ForwardLayer, c: usize, out: &mut [&mut [f32]]) -> (f32, f32) {
        let ForwardLayer {
            x,
            planes,
            gamma,
            beta,
            epsilon,
            relu6,
        } = *layer;
        let count = (planes.batch * planes.plane).max(1) as f64;
        // Plain loops: an iterator's `fold` was left a call, compiled without AVX2.
        let mut sum = 0.0;
        for p in channel(x, planes, c) {
            sum += lane_sums(p, p, |v, _| (v, 0.0)).0;
        }
        let mean = (sum / count) as f32;
        let mut squares = 0.0;
        for p in channel(x, planes, c) {
            squares += lane_sums(p, p, |v, _| ((v - mean) * (v - mean), 0.0)).0;
        }
        let variance = (squares / count) as f32;
        let (_, s, t) = Affine::channel(mean, variance, gamma, beta, epsilon);
        for (o, xs) in out.iter_mut().zip(channel(x, planes, c)) {
            if relu6 {
                for (o, v) in o.iter_mut().zip(xs) {
                    *o = (v * s + t).clamp(0.0, 6.0);
                }
            } else {
                for (o, v) in o.iter_mut().zip(xs) {
                    *o = v * s + t;
                }
            }
        }
        (mean, variance)
    }

    /// The input's gradient, `gamma * inv_std * (g - mean(g) - x_hat * mean(g * x_hat))`, and
    /// per channel the sums of the output's gradient (beta's gradient) and of it times the
    /// normalised input (gamma's gradient). Channel by channel: the sums, then the input's
    /// gradient while the channel's planes of `x` and `grad` are still in the cache.
    pub fn backward(
        x: &[f32],
        grad: &[f32],
        planes: Planes,
        a: &Affine,
        gamma: &[f32],
        relu6: bool,
    ) -> (Vec<f32>, Vec<(f64, f64)>) {
        let dims = [planes.batch, planes.channels, planes.plane];
        #[cfg(target_arch = "x86_64")]
        let wide = avx2_fma_here();
        let channel_grad = |c: usize, out: &mut [&mut [f32]]| {
            let layer = BackwardLayer {
                x,
                grad,
                planes,
                coefficients: [a.mean[c], a.inv_std[c], a.scale[c], a.shift[c], gamma[c]],
                relu6,
            };
            #[cfg(target_arch = "x86_64")]
            if wide {
                // SAFETY: this CPU runs AVX2 and FMA (checked above).
                return unsafe { backward_channel_avx2(&layer, c, out) };
            }
            backward_channel(&layer, c, out)
        };
        // SAFETY: `channel_grad` writes each value of its planes (one per input value) and
        // reads none.
        unsafe { written_channels(dims, channel_grad) }
    }

    /// One layer's backward inputs for one channel; `coefficients` are the channel's mean,
    /// `1 / sqrt(var + eps)`, scale, shift and gamma.
    struct BackwardLayer<'a> {
        x: &'a [f32],
        grad: &'a [f32],
        planes: Planes,
        coefficients: [f32; 5],
        relu6: bool,
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn backward_channel_avx2(
        layer: &BackwardLayer,
        c: usize,
        out: &mut [&mut [f32]],
    ) -> (f64, f64) {
        backward_channel(layer, c, out)
    }

    /// Channel `c`'s two sums, then its planes of the input's gradient.
    #[inline(always)]
    fn backward_channel(layer: &BackwardLayer, c: usize, out: &mut [&mut [f32]]) -> (f64, f64) {
        let BackwardLayer {
            x,
            grad,
            planes,
            relu6,
            ..
        } = *layer;
        let [m, is, s, t, gamma] = layer.coefficients;
        let count = (planes.batch * planes.plane).max(1) as f64;
        // The sums of the gradient and of it times `x - mean` (times `inv_std` once, after).
        let (mut sum_g, mut sum_gx) = (0.0, 0.0);
        for (xp, gp) in channel(x, planes, c).zip(channel(grad, planes, c)) {
            let (a, b) = lane_sums(xp, gp, |v, g| {
                let g = through_relu6(g, v, s, t, relu6);
                (g, g * (v - m))
            });
            sum_g += a;
            sum_gx += b;
        }
        let sums = (sum_g, sum_gx * f64::from(is));
        let mean_g = (sums.0 / count) as f32;
        let mean_gx = (sums.1 / count) as f32;
        let (k, q) = (gamma * is, is * mean_gx);
        let inputs = channel(x, planes, c).zip(channel(grad, planes, c));
        for (o, (xp, gp)) in out.iter_mut().zip(inputs) {
            for ((o, v), g) in o.iter_mut().zip(xp).zip(gp) {
                let g = through_relu6(*g, *v, s, t, relu6);
                *o = k * (g - mean_g - (v - m) * q);
            }
        }
        sums
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    // The checkpoint's BatchNorm settings (the model's own constants; kernels import no model).
    const BN_EPS: f64 = 1e-3;
    const BN_MOMENTUM: f64 = 0.01;
    use burn::module::{Param, RunningState};
    use burn::tensor::{Device, Distribution, TensorData};

    use crate::engine::test_util::{assert_close, values};

    /// A training BatchNorm of `[gamma, beta, running mean, running variance]` (a clone of a
    /// BatchNorm would share its running statistics).
    fn layer(p: &[Tensor<1>; 4]) -> BatchNorm {
        BatchNorm {
            gamma: Param::from_tensor(p[0].clone()),
            beta: Param::from_tensor(p[1].clone()),
            training: Param::from_bool(true),
            running_mean: RunningState::new(p[2].clone()),
            running_var: RunningState::new(p[3].clone()),
            momentum: BN_MOMENTUM,
            epsilon: BN_EPS,
        }
    }

    #[test]
    fn fused_batch_norm_is_burns_batch_norm_then_relu6_forward_backward_and_running_statistics() {
        let device = Device::flex().autodiff();
        // Channels off zero and of different spreads (as conv outputs are), a weighted loss (a
        // plain sum has no input gradient through BatchNorm), a strided input as a transposed
        // view gives, and both with and without the ReLU6.
        let [n, c, h, w] = [3, 5, 4, 6];
        let offsets = Tensor::<1>::random([c], Distribution::Uniform(-4.0, 4.0), &device);
        let x = Tensor::<4>::random([n, c, w, h], Distribution::Normal(0.0, 2.0), &device)
            + offsets.reshape([1, c, 1, 1]);
        let x = x.swap_dims(2, 3);
        let weights = Tensor::<4>::random([n, c, h, w], Distribution::Normal(0.0, 1.0), &device);
        for relu6_after in [false, true] {
            // Channel 0 mostly below 0 after the shift, channel 3 often above 6.
            let per_channel =
                |v: [f32; 5]| Tensor::<1>::from_data(TensorData::new(v.to_vec(), [c]), &device);
            let params = [
                per_channel([0.5, 1.0, 2.0, 3.0, 1.5]),
                per_channel([-1.0, 0.0, 1.0, 4.5, 2.0]),
                per_channel([0.1, -0.2, 0.0, 0.5, 1.0]),
                per_channel([1.0, 0.5, 2.0, 1.5, 0.8]),
            ];
            let run = |fused: bool| {
                let bn = layer(&params);
                let x = x.clone().detach().require_grad();
                let y = if fused {
                    forward(&bn, x.clone(), relu6_after)
                } else {
                    let y = bn.forward(x.clone());
                    if relu6_after {
                        burn::tensor::activation::relu(y).clamp_max(6.0)
                    } else {
                        y
                    }
                };
                let grads = (y.clone() * weights.clone()).sum().backward();
                (
                    values(y),
                    values(x.grad(&grads).unwrap()),
                    values(bn.gamma.val().grad(&grads).unwrap()),
                    values(bn.beta.val().grad(&grads).unwrap()),
                    values(bn.running_mean.value_sync()),
                    values(bn.running_var.value_sync()),
                )
            };
            let (ours, burns) = (run(true), run(false));
            let case = if relu6_after { "with relu6" } else { "alone" };
            assert_close(&format!("output {case}"), &ours.0, &burns.0, 1e-5);
            assert_close(&format!("x grad {case}"), &ours.1, &burns.1, 1e-4);
            assert_close(&format!("gamma grad {case}"), &ours.2, &burns.2, 1e-4);
            assert_close(&format!("beta grad {case}"), &ours.3, &burns.3, 1e-4);
            assert_close(&format!("running mean {case}"), &ours.4, &burns.4, 1e-5);
            assert_close(&format!("running var {case}"), &ours.5, &burns.5, 1e-5);
            if relu6_after {
                // The clamp took effect on both sides, so the case is tested.
                assert!(ours.0.contains(&0.0) && ours.0.contains(&6.0));
            }
        }
    }

    #[test]
    fn fused_batch_norm_is_the_closed_form_on_one_channel() {
        // One channel of 1, 2, 3, 6 (two photos of a 1x2 plane): mean 3, biased variance 3.5.
        // gamma 2, beta 1, eps 1e-3: y = 2 (x - 3) / sqrt(3.501) + 1.
        let device = Device::flex().autodiff();
        let x = Tensor::<4>::from_data(
            TensorData::new(vec![1.0f32, 2.0, 3.0, 6.0], [2, 1, 1, 2]),
            &device,
        );
        let bn = BatchNorm {
            gamma: Param::from_tensor(Tensor::from_data(
                TensorData::new(vec![2.0f32], [1]),
                &device,
            )),
            beta: Param::from_tensor(Tensor::from_data(
                TensorData::new(vec![1.0f32], [1]),
                &device,
            )),
            training: Param::from_bool(true),
            running_mean: RunningState::new(Tensor::zeros([1], &device)),
            running_var: RunningState::new(Tensor::ones([1], &device)),
            momentum: 0.1,
            epsilon: 1e-3,
        };
        let y = forward(&bn, x, false);
        let s = 3.501f64.sqrt();
        let expected: Vec<f32> = [1.0, 2.0, 3.0, 6.0]
            .iter()
            .map(|v| (2.0 * (v - 3.0) / s + 1.0) as f32)
            .collect();
        assert_close("output", &values(y), &expected, 1e-6);
        // Running statistics: 0.9 * old + 0.1 * batch.
        assert_close(
            "running mean",
            &values(bn.running_mean.value_sync()),
            &[0.3],
            1e-6,
        );
        assert_close(
            "running var",
            &values(bn.running_var.value_sync()),
            &[1.25],
            1e-6,
        );
    }
}
