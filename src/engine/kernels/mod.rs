//! Our own operations, where burn's would be slower: `cpu` for burn's CPU backend (natively and
//! in the browser's worker), `gpu` for its cubecl backends (wgpu natively, WebGPU in the
//! browser). This module is the one place that decides which runs: the model calls
//! [`conv2d`], [`folded_conv`], [`folded_block`], [`batch_norm`], [`relu6`] and [`linear`],
//! each kernel says whether it `applies` to a layer and input, and nothing here knows the
//! model.

pub mod cpu;
pub mod gpu;
pub mod shared;

use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, Linear};
use burn::tensor::Tensor;

use shared::{POINTWISE_AS_MATMUL, as_matmul, batched_pointwise, relu6};

/// Which kernel runs a folded (frozen, eval-mode) convolution on an input, as
/// [`folded_route`] decides and `finetune profile` names in its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// One CubeCL kernel of the project's (a GPU): convolution, bias and ReLU6.
    Kernel,
    /// One pass of the project's on burn's CPU backend (natively and in the browser's
    /// workers): the depthwise loop, or a dense layer's matrix products block by block, each
    /// block's bias and ReLU6 after it.
    Pass,
    /// burn's convolution (a 1x1 one as a matrix product), then ReLU6 as its own operation.
    Burn,
}

/// The kernel [`folded_conv`] runs for `conv` (with its bias) on `x`.
pub fn folded_route(conv: &Conv2d, x: &Tensor<4>) -> Route {
    if gpu::conv::applies(conv, x) {
        Route::Kernel
    } else if cpu::depthwise::folded_applies(conv, x) || cpu::dense::applies(conv, x) {
        Route::Pass
    } else {
        Route::Burn
    }
}

/// A folded convolution (with a bias), then ReLU6 when `relu6`, by the kernel of
/// [`folded_route`].
pub fn folded_conv(conv: &Conv2d, x: Tensor<4>, relu6_after: bool) -> Tensor<4> {
    let ours = match folded_route(conv, &x) {
        Route::Kernel => gpu::conv::forward(conv, &x, relu6_after),
        Route::Pass => cpu::depthwise::folded(conv, &x, relu6_after)
            .or_else(|| cpu::dense::folded(conv, &x, relu6_after)),
        Route::Burn => None,
    };
    ours.unwrap_or_else(|| {
        let y = conv2d(conv, x);
        if relu6_after { relu6(y) } else { y }
    })
}

/// A folded block with an expansion (its expansion, depthwise layer, projection and residual)
/// as one pass band by band where [`cpu::block::applies`]; `None` elsewhere, where the block
/// runs its layers one by one.
pub fn folded_block(layers: cpu::block::Layers, x: &Tensor<4>) -> Option<Tensor<4>> {
    cpu::block::folded(layers, x)
}

/// `bn` on `x` (batch statistics when it trains, running statistics otherwise), then ReLU6
/// when `relu6_after`: one fused operation where [`cpu::batchnorm::applies`].
pub fn batch_norm(bn: &BatchNorm, x: Tensor<4>, relu6_after: bool) -> Tensor<4> {
    if cpu::batchnorm::applies(bn, &x.device(), x.dtype()) {
        return cpu::batchnorm::forward(bn, x, relu6_after);
    }
    let y = bn.forward(x);
    if relu6_after { relu6(y) } else { y }
}

/// A convolution; a depthwise or 1x1 one that trains on the CPU backend by our own operations
/// ([`cpu::depthwise`], [`cpu::pointwise`]); elsewhere a 1x1 one (stride 1, one group: the
/// expansions, projections and the head's) as one batched matrix product
/// `W[out, in] x X[n, in, h*w]` where [`POINTWISE_AS_MATMUL`], the same sums.
pub fn conv2d(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    if let Some(y) = cpu::depthwise::forward(conv, &x) {
        return y;
    }
    if let Some(y) = cpu::pointwise::forward(conv, &x) {
        return y;
    }
    if !as_matmul(conv) {
        return conv.forward(x);
    }
    let [_, _, h, w] = x.dims();
    let channel_major = x.device().is_autodiff() && h * w <= CHANNEL_MAJOR_MAX_PLANE;
    pointwise(conv, x, channel_major)
}

/// The largest plane (`h * w`) whose 1x1 layers train as one matrix product over every
/// pixel of the batch (see [`pointwise`]): Lite0's stages 4-7 (14x14 and 7x7).
const CHANNEL_MAJOR_MAX_PLANE: usize = 14 * 14;

/// A 1x1 convolution as matrix products. Batched (`W[out, in] x X[n, in, h*w]`), the weight's
/// gradient is `n` products with `h*w` terms each, summed: on a 7x7 plane 49 terms, and an
/// `[n, out, in]` tensor to sum. `channel_major` first lays `x` out as `[in, n*h*w]`: one
/// product for the output and one for each gradient, over every pixel of the batch, at the
/// cost of copying the input and output into and out of that layout.
fn pointwise(conv: &Conv2d, x: Tensor<4>, channel_major: bool) -> Tensor<4> {
    let [out, inp, _, _] = conv.weight.dims();
    let [n, c, h, w] = x.dims();
    let x = x.reshape([n, c, h * w]);
    if channel_major {
        let x = x.swap_dims(0, 1).reshape([c, n * h * w]);
        let y = conv.weight.val().reshape([out, inp]).matmul(x);
        let y = match &conv.bias {
            Some(b) => y + b.val().reshape([out, 1]),
            None => y,
        };
        return y
            .reshape([out, n, h * w])
            .swap_dims(0, 1)
            .reshape([n, out, h, w]);
    }
    let y = batched_pointwise(conv, x);
    let y = match &conv.bias {
        Some(b) => y + b.val().reshape([1, out, 1]),
        None => y,
    };
    y.reshape([n, out, h, w])
}

/// The classifier layer: natively burn's matmul; in the browser a 1x1 convolution over the
/// pooled features (the same sums): on SwiftShader burn's matmul kernel was a large share of a
/// prediction for ImageNet's 1280 x 1000 layer (`?profile` shows it).
pub fn linear(fc: &Linear, x: Tensor<2>) -> Tensor<2> {
    if POINTWISE_AS_MATMUL {
        fc.forward(x)
    } else {
        linear_as_conv(fc, x)
    }
}

/// `fc` on `x` as a 1x1 convolution (see [`linear`]).
fn linear_as_conv(fc: &Linear, x: Tensor<2>) -> Tensor<2> {
    let [n, c] = x.dims();
    // burn keeps the weight as `[in, out]`; a convolution wants `[out, in, 1, 1]`.
    let w = fc.weight.val().transpose();
    let k = w.dims()[0];
    let y = burn::tensor::module::conv2d(
        x.reshape([n, c, 1, 1]),
        w.reshape([k, c, 1, 1]),
        fc.bias.as_ref().map(|b| b.val()),
        burn::tensor::ops::ConvOptions::new([1, 1], [0, 0], [1, 1], 1),
    );
    y.reshape([n, k])
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Param;
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::{Device, Distribution, TensorData};
    use shared::on_cpu_backend;

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    #[test]
    fn relu6_on_the_cpu_backend_is_the_clamp_forward_and_backward() {
        // Closed form: min(max(x, 0), 6), gradient 1 strictly between 0 and 6, else 0.
        let x = Tensor::<1>::from_data(
            TensorData::new(vec![-3.0f32, -0.5, 0.25, 3.0, 5.5, 6.5, 9.0], [7]),
            &Device::flex().autodiff(),
        )
        .require_grad();
        assert!(on_cpu_backend(&x.device()));
        let y = relu6(x.clone());
        let grads = (y.clone() * 1.0).sum().backward();
        assert_eq!(values(y), [0.0, 0.0, 0.25, 3.0, 5.5, 6.0, 6.0]);
        assert_eq!(
            values(x.grad(&grads).unwrap()),
            [0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0]
        );
    }

    #[test]
    fn pointwise_layers_in_either_form_are_the_same_forward_and_backward() {
        let device = Device::flex();
        // Closed form: out = 1*a + 2*b + 0.5 at every pixel.
        let conv = Conv2d {
            weight: Param::from_tensor(Tensor::from_data(
                TensorData::new(vec![1.0f32, 2.0], [1, 2, 1, 1]),
                &device,
            )),
            bias: Some(Param::from_tensor(Tensor::from_data(
                TensorData::new(vec![0.5f32], [1]),
                &device,
            ))),
            ..Conv2dConfig::new([2, 1], [1, 1]).init(&device)
        };
        let x = Tensor::<4>::from_data(
            TensorData::new(vec![1.0f32, 2.0, 3.0, 10.0, 20.0, 30.0], [1, 2, 1, 3]),
            &device,
        );
        assert_eq!(values(conv2d(&conv, x)), [21.5, 42.5, 63.5]);

        // Against burn's own convolution on random data: values, and the gradients of the
        // input and the weight.
        let ad = device.clone().autodiff();
        let conv = Conv2dConfig::new([8, 6], [1, 1]).init(&ad);
        let x = Tensor::<4>::random([2, 8, 5, 3], Distribution::Normal(0.0, 1.0), &ad);
        // Both layouts of the matrix product (`None`: burn's convolution).
        let run = |ours: Option<bool>| {
            let x = x.clone().require_grad();
            let y = match ours {
                Some(channel_major) => pointwise(&conv, x.clone(), channel_major),
                None => conv.forward(x.clone()),
            };
            let grads = (y.clone() * y.clone()).sum().backward();
            let gx = x.grad(&grads).unwrap();
            let gw = conv.weight.val().grad(&grads).unwrap();
            let gb = conv.bias.as_ref().unwrap().val().grad(&grads).unwrap();
            let flat = |t: Tensor<4>| t.flatten::<1>(0, 3);
            [flat(y.inner()), flat(gx), flat(gw), gb].map(values)
        };
        let close = |a: &[f32], b: &[f32]| {
            assert_eq!(a.len(), b.len());
            for (u, v) in a.iter().zip(b) {
                assert!((u - v).abs() <= 1e-4 * (1.0 + v.abs()), "{u} != {v}");
            }
        };
        let reference = run(None);
        for channel_major in [false, true] {
            for (ours, theirs) in run(Some(channel_major)).iter().zip(&reference) {
                close(ours, theirs);
            }
        }

        // The browser's classifier layer as a 1x1 convolution against burn's Linear.
        let fc = burn::nn::LinearConfig::new(12, 5).init(&ad);
        let x = Tensor::<2>::random([3, 12], Distribution::Normal(0.0, 1.0), &ad);
        let run = |ours: bool| {
            let x = x.clone().require_grad();
            let y = if ours {
                linear_as_conv(&fc, x.clone())
            } else {
                fc.forward(x.clone())
            };
            let grads = (y.clone() * y.clone()).sum().backward();
            let gx = x.grad(&grads).unwrap();
            let gw = fc.weight.val().grad(&grads).unwrap();
            let gb = fc.bias.as_ref().unwrap().val().grad(&grads).unwrap();
            (values(y.inner()), values(gx), values(gw), values(gb))
        };
        let (y, gx, gw, gb) = run(true);
        let (y_ref, gx_ref, gw_ref, gb_ref) = run(false);
        close(&y, &y_ref);
        close(&gx, &gx_ref);
        close(&gw, &gw_ref);
        close(&gb, &gb_ref);
    }

    #[test]
    fn a_folded_layer_names_its_route_and_each_route_is_burns_convolution_bias_and_relu6() {
        use crate::engine::test_util::assert_conv_bias_relu6;
        use burn::nn::PaddingConfig2d;
        let device = Device::flex();
        let c = 6;
        let layer = |conv: Conv2d| conv;
        let depthwise = layer(
            Conv2dConfig::new([c, c], [3, 3])
                .with_groups(c)
                .with_padding(PaddingConfig2d::Same)
                .init(&device),
        );
        let pointwise = layer(Conv2dConfig::new([c, 4], [1, 1]).init(&device));
        let dense = layer(Conv2dConfig::new([c, 4], [3, 3]).init(&device));
        let x = Tensor::<4>::random([2, c, 7, 9], Distribution::Normal(0.0, 8.0), &device);
        // Natively on the CPU backend the depthwise, 1x1 and dense 3x3 (the stem's kind) layers
        // take one pass of ours.
        for l in [&depthwise, &pointwise, &dense] {
            assert_eq!(folded_route(l, &x), Route::Pass);
        }
        // An input that tracks gradients keeps burn's operations.
        let tracked = Tensor::<4>::from_data(x.to_data(), &device.autodiff());
        assert_eq!(folded_route(&depthwise, &tracked), Route::Burn);
        assert_eq!(folded_route(&pointwise, &tracked), Route::Burn);
        for (what, l) in [
            ("depthwise", &depthwise),
            ("1x1", &pointwise),
            ("dense", &dense),
        ] {
            assert_conv_bias_relu6(what, folded_conv(l, x.clone(), true), l, &x, true);
        }
    }
}
