//! A folded 1x1 layer (frozen, eval mode: with a bias) on burn's CPU backend without
//! autodiff: the matrix product, then its bias and ReLU6 in one pass over the output.
//!
//! As tensor operations the bias add, `relu` and `clamp_max` each go over the whole output
//! (Lite0's expansions at batch 16: up to 77 MB); one loop reads it once and writes once.
//! Elsewhere (training layers, GPUs) the operations of [`crate::engine::kernels::conv2d`] run.

use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::nn::conv::Conv2d;
use burn::tensor::{DType, Tensor};
use burn_flex::FlexTensor;

use crate::engine::kernels::cpu::{for_each_plane, values};
use crate::engine::kernels::shared::{as_matmul, batched_pointwise, on_cpu_backend};

/// `conv` (1x1, stride 1, one group, with a bias) on `x`, then ReLU6 when `relu6`; `None`
/// where this does not apply.
pub fn pointwise(conv: &Conv2d, x: &Tensor<4>, relu6: bool) -> Option<Tensor<4>> {
    if !applies(conv, x) {
        return None;
    }
    let bias = conv.bias.as_ref()?.val();
    let out = conv.weight.dims()[0];
    let [n, c, h, w] = x.dims();
    let y = batched_pointwise(conv, x.clone().reshape([n, c, h * w]));
    let y = <Dispatch as BiasRelu6>::bias_relu6(y.into_dispatch(), bias.into_dispatch(), relu6);
    Some(Tensor::<3>::from_dispatch(y).reshape([n, out, h, w]))
}

/// Whether [`pointwise`] runs `conv` on `x`.
pub fn applies(conv: &Conv2d, x: &Tensor<4>) -> bool {
    let Some(bias) = &conv.bias else {
        return false;
    };
    as_matmul(conv)
        && x.dims()[1] == conv.weight.dims()[1]
        && !x.device().is_autodiff()
        && on_cpu_backend(&x.device())
        && [x.dtype(), conv.weight.val().dtype(), bias.val().dtype()] == [DType::F32; 3]
}

#[backend_extension(Flex)]
pub trait BiasRelu6: Backend {
    /// `y` `[n, c, hw]` plus `bias` `[c]` on every pixel, then clamped to [0, 6] when `relu6`.
    fn bias_relu6(y: FloatTensor<Self>, bias: FloatTensor<Self>, relu6: bool) -> FloatTensor<Self>;
}

impl BiasRelu6 for Flex {
    fn bias_relu6(y: FlexTensor, bias: FlexTensor, relu6: bool) -> FlexTensor {
        let shape = y.shape();
        let [_, c, hw] = shape.dims::<3>();
        if y.dtype() != DType::F32 || bias.dtype() != DType::F32 {
            let y = Flex::float_add(y, Flex::float_reshape(bias, [1, c, 1].into()));
            return if relu6 {
                Flex::float_clamp(y, 0.0f32.into(), 6.0f32.into())
            } else {
                y
            };
        }
        // In place: the product's buffer is this op's alone (a fresh buffer of that size
        // costs more than the pass, page faults included).
        let mut y = if y.is_contiguous() && y.layout().start_offset() == 0 {
            y
        } else {
            y.to_contiguous()
        };
        let bs = values(&bias);
        let numel = shape.num_elements();
        let data = y.storage_mut::<f32>();
        let n = numel.min(data.len());
        for_each_plane(&mut data[..n], hw, |p, o| {
            let b = bs.get(p % c.max(1)).copied().unwrap_or(0.0);
            if relu6 {
                o.iter_mut().for_each(|v| *v = (*v + b).clamp(0.0, 6.0));
            } else {
                o.iter_mut().for_each(|v| *v += b);
            }
        });
        y
    }
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
            let ours = pointwise(&conv, &x, relu6).expect("a folded 1x1 layer on the CPU");
            assert_conv_bias_relu6(&format!("relu6 {relu6}"), ours, &conv, &x, relu6);
        }
        // A layer that trains keeps burn's operations (its gradient).
        let tracked = Tensor::<4>::from_data(x.to_data(), &device.autodiff());
        assert!(pointwise(&conv, &tracked, true).is_none());
    }
}
