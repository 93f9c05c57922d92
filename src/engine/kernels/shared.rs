//! burn operations and facts the kernels and the dispatch in [`super`] share (a leaf: it
//! imports no kernel).

use burn::nn::conv::Conv2d;
use burn::tensor::{Device, Tensor};

/// Natively a 1x1 convolution runs as a matrix product: on burn's CPU backend its backward is
/// faster, and on wgpu burn's direct convolution was the slowest kernel. In the browser the
/// convolution stays: there the matrix product made SwiftShader's feature pass slower
/// (figures and commands in `docs/performance.md`).
pub const POINTWISE_AS_MATMUL: bool = cfg!(not(target_arch = "wasm32"));

/// Whether `conv` runs as matrix products: a 1x1 convolution (stride 1, one group) where
/// [`POINTWISE_AS_MATMUL`].
pub fn as_matmul(conv: &Conv2d) -> bool {
    let [_, _, kh, kw] = conv.weight.dims();
    POINTWISE_AS_MATMUL && (kh, kw, conv.groups, conv.stride) == (1, 1, 1, [1, 1])
}

/// A 1x1 convolution's sums without its bias, batched: `W[out, in] x X[n, in, h*w]`.
pub fn batched_pointwise(conv: &Conv2d, x: Tensor<3>) -> Tensor<3> {
    let [out, inp, _, _] = conv.weight.dims();
    conv.weight.val().reshape([1, out, inp]).matmul(x)
}

/// ReLU6, `min(max(x, 0), 6)`. On burn's CPU backend as `relu` then `clamp_max`: its `clamp`
/// is a scalar loop, about twice as slow forward and backward. On a GPU one clamp is one
/// kernel instead of two.
pub fn relu6<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if on_cpu_backend(&x.device()) {
        burn::tensor::activation::relu(x).clamp_max(6.0)
    } else {
        x.clamp(0.0, 6.0)
    }
}

/// Whether `device` is burn's CPU backend (with or without autodiff).
pub fn on_cpu_backend(device: &Device) -> bool {
    device.clone().inner() == Device::flex()
}

/// TensorFlow's "same" padding of one dimension: `(begin, end)`, the odd pixel at the end.
pub fn same_padding(kernel: usize, stride: usize, size: usize) -> (usize, usize) {
    let out = size.div_ceil(stride);
    let total = ((out.max(1) - 1) * stride + kernel).saturating_sub(size);
    (total / 2, total - total / 2)
}
