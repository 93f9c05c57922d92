//! A 1x1 convolution that trains (stride 1, one group, no bias: Lite0's expansions,
//! projections and the head's) on burn's CPU backend, forward and backward as matrix products
//! that read every operand in place.
//!
//! As burn's batched matmul, the backward made the weight's gradient once per image (an
//! `[n, out, in]` tensor, then summed) and copied transposed operands; laid out channel-major
//! (`[in, n*h*w]`) the input and output were copied into that layout and back. Here gemm reads
//! the operands through their strides (a transpose is a stride): the output and the input's
//! gradient in one task per image and block of pixels, the weight's gradient in one task per
//! block of its rows, summed over the images in place. Natively in rayon's pool, one task at a
//! time in the browser's workers. Elsewhere (wgpu, WebGPU, frozen layers) the operations of
//! [`crate::engine::kernels::conv2d`] and [`crate::engine::kernels::cpu::dense`] run.

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::ops::ModuleOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::tensor::{DType, Tensor};
use burn_flex::FlexTensor;

use crate::engine::kernels::cpu::{conv_options, register_grad, tensor, values};
use crate::engine::kernels::shared::on_cpu_backend;

/// `conv` on `x` through [`TrainedPointwise`] where [`applies`]; `None` otherwise.
pub fn forward(conv: &Conv2d, x: &Tensor<4>) -> Option<Tensor<4>> {
    if !applies(conv, x) {
        return None;
    }
    let y = <Dispatch as TrainedPointwise>::pointwise_conv2d(
        x.clone().into_dispatch(),
        conv.weight.val().into_dispatch(),
    );
    Some(Tensor::from_dispatch(y))
}

/// Whether [`forward`] runs `conv` on `x`: a 1x1 convolution at stride 1, one group, no bias
/// and no padding, on f32 values that train (autodiff) on the CPU backend.
pub fn applies(conv: &Conv2d, x: &Tensor<4>) -> bool {
    let [_, inputs, kh, kw] = conv.weight.dims();
    let device = x.device();
    (kh, kw, conv.groups, conv.stride) == (1, 1, 1, [1, 1])
        && matches!(conv.padding, PaddingConfig2d::Same | PaddingConfig2d::Valid)
        && conv.bias.is_none()
        && x.dims()[1] == inputs
        && device.is_autodiff()
        && on_cpu_backend(&device)
        && x.dtype() == DType::F32
        && conv.weight.val().dtype() == DType::F32
}

#[backend_extension(Flex, Autodiff)]
pub trait TrainedPointwise: Backend {
    /// The 1x1 convolution of `x` `[n, in, h, w]` by `weight` `[out, in, 1, 1]`.
    fn pointwise_conv2d(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self>;
}

impl TrainedPointwise for Flex {
    fn pointwise_conv2d(x: FlexTensor, weight: FlexTensor) -> FlexTensor {
        if x.dtype() != DType::F32 || weight.dtype() != DType::F32 {
            return Flex::conv2d(x, weight, None, conv_options(1, [0; 4], 1));
        }
        let s = Sizes::of(&x, &weight);
        let y = kernels::forward(&values(&x), &values(&weight), s);
        tensor(y, [s.batch, s.outputs, s.h, s.w].into())
    }
}

impl<C: CheckpointStrategy> TrainedPointwise for Autodiff<Flex, C> {
    fn pointwise_conv2d(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct PointwiseBackward;

        impl Backward<Flex, 2> for PointwiseBackward {
            type State = (FlexTensor, FlexTensor);

            fn backward(
                self,
                ops: Ops<Self::State, 2>,
                grads: &mut Gradients,
                _checkpointer: &mut Checkpointer,
            ) {
                let [node_x, node_weight] = ops.parents;
                let grad = grads.consume::<Flex>(&ops.node);
                let (x, weight) = ops.state;
                let s = Sizes::of(&x, &weight);
                let gs = values(&grad);
                // The first layer that trains takes the frozen part's output: no gradient.
                register_grad(grads, node_x.map(|n| n.id), &x, || {
                    kernels::input_grad(&values(&weight), &gs, s)
                });
                register_grad(grads, node_weight.map(|n| n.id), &weight, || {
                    kernels::weight_grad(&values(&x), &gs, s)
                });
            }
        }

        let prep = PointwiseBackward
            .prepare::<C>([x.node(), weight.node()])
            .compute_bound()
            .stateful();
        let (xp, wp) = (x.primitive().clone(), weight.primitive().clone());
        let y = Flex::pointwise_conv2d(xp.clone(), wp.clone());
        match prep {
            OpsKind::Tracked(prep) => prep.finish((xp, wp), y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }
}

/// The sizes of one 1x1 layer on one batch.
#[derive(Clone, Copy, Debug)]
struct Sizes {
    batch: usize,
    inputs: usize,
    outputs: usize,
    h: usize,
    w: usize,
}

impl Sizes {
    fn of(x: &FlexTensor, weight: &FlexTensor) -> Self {
        let [batch, inputs, h, w] = x.shape().dims::<4>();
        Self {
            batch,
            inputs,
            outputs: weight.shape().dims::<4>()[0],
            h,
            w,
        }
    }

    fn plane(&self) -> usize {
        self.h * self.w
    }
}

/// The products, on plain slices.
mod kernels {
    use super::Sizes;
    use crate::engine::kernels::cpu::{Shared, for_each_index};

    /// Bytes of output one task writes: well inside a core's L2 cache.
    const BLOCK_BYTES: usize = 256 * 1024;

    /// Pixels per task for `rows` output rows: a multiple of 16 (whole vectors), the whole
    /// plane where it fits.
    fn block(rows: usize, plane: usize) -> usize {
        let fit = BLOCK_BYTES / (4 * rows.max(1));
        if fit >= plane {
            plane.max(1)
        } else {
            (fit / 16 * 16).max(16)
        }
    }

    /// A matrix: its first value and the steps between its columns and between its rows.
    #[derive(Clone, Copy)]
    struct Matrix {
        at: *const f32,
        col: usize,
        row: usize,
    }

    /// `dst[m, n] = lhs[m, k] x rhs[k, n]` (plus `dst` where `accumulate`) in the calling
    /// thread; `dst`'s rows are `dst_row` values apart.
    ///
    /// # Safety
    /// Every matrix must hold the values its sizes and steps reach.
    unsafe fn product(
        [m, n, k]: [usize; 3],
        dst: *mut f32,
        dst_row: usize,
        accumulate: bool,
        lhs: Matrix,
        rhs: Matrix,
    ) {
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                dst,
                1,
                dst_row as isize,
                accumulate,
                lhs.at,
                lhs.col as isize,
                lhs.row as isize,
                rhs.at,
                rhs.col as isize,
                rhs.row as isize,
                1.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
    }

    /// `a[n, rows, plane] = w[rows, depth] x b[n, depth, plane]`, one task per image and
    /// block of pixels; `w` is read through `(col, row)` steps.
    fn per_block(
        b: &[f32],
        w: &[f32],
        [rows, depth]: [usize; 2],
        steps: [usize; 2],
        s: Sizes,
    ) -> Vec<f32> {
        let plane = s.plane();
        assert!(
            b.len() >= s.batch * depth * plane && w.len() >= rows * depth,
            "a layer's tensors are smaller than their shapes"
        );
        let len = s.batch * rows * plane;
        let mut a = Vec::<f32>::with_capacity(len);
        let block = block(rows, plane);
        let blocks = plane.div_ceil(block);
        let dst = Shared::new(&mut a);
        for_each_index(s.batch * blocks, |task| {
            let (i, first) = (task / blocks, task % blocks * block);
            let width = block.min(plane - first);
            let weight = Matrix {
                at: w.as_ptr(),
                col: steps[0],
                row: steps[1],
            };
            let input = Matrix {
                at: b[(i * depth * plane + first)..].as_ptr(),
                col: 1,
                row: plane,
            };
            // SAFETY: each task writes the rows `[i, .., first..first + width]` alone, inside
            // `a`'s `len` values; the reads stay inside `b` and `w` (checked above).
            unsafe {
                let out = dst.at(i * rows * plane + first);
                product([rows, width, depth], out, plane, false, weight, input);
            }
        });
        // SAFETY: the tasks wrote every value (gemm without accumulating stores each).
        unsafe { a.set_len(len) };
        a
    }

    /// The output `y[n] = W x[n]`.
    pub fn forward(x: &[f32], w: &[f32], s: Sizes) -> Vec<f32> {
        per_block(x, w, [s.outputs, s.inputs], [1, s.inputs], s)
    }

    /// The input's gradient `dx[n] = W^T dy[n]`.
    pub fn input_grad(w: &[f32], grad: &[f32], s: Sizes) -> Vec<f32> {
        per_block(grad, w, [s.inputs, s.outputs], [s.inputs, 1], s)
    }

    /// The weight's gradient `dW = sum over n of dy[n] x[n]^T`, one task per block of its
    /// rows, each summing over the images in place.
    pub fn weight_grad(x: &[f32], grad: &[f32], s: Sizes) -> Vec<f32> {
        let (plane, rows, cols) = (s.plane(), s.outputs, s.inputs);
        assert!(
            x.len() >= s.batch * cols * plane && grad.len() >= s.batch * rows * plane,
            "a layer's tensors are smaller than their shapes"
        );
        let len = rows * cols;
        if s.batch == 0 {
            return vec![0.0; len];
        }
        let mut dw = Vec::<f32>::with_capacity(len);
        // Two tasks a thread, for balance.
        let tasks = (2 * threads()).min(rows).max(1);
        let chunk = rows.div_ceil(tasks);
        let dst = Shared::new(&mut dw);
        for_each_index(rows.div_ceil(chunk), |t| {
            let first = t * chunk;
            let height = chunk.min(rows - first);
            for i in 0..s.batch {
                let g = Matrix {
                    at: grad[(i * rows + first) * plane..].as_ptr(),
                    col: 1,
                    row: plane,
                };
                let xt = Matrix {
                    at: x[i * cols * plane..].as_ptr(),
                    col: plane,
                    row: 1,
                };
                // SAFETY: each task writes rows `first..first + height` of `dw` alone; the
                // reads stay inside `grad` and `x` (checked above). The first image's product
                // stores every value; the others add to it.
                unsafe {
                    let out = dst.at(first * cols);
                    product([height, cols, plane], out, cols, i > 0, g, xt);
                }
            }
        });
        // SAFETY: the tasks wrote every row (there is at least one image).
        unsafe { dw.set_len(len) };
        dw
    }

    /// The threads the tasks run on.
    fn threads() -> usize {
        #[cfg(not(target_arch = "wasm32"))]
        return rayon::current_num_threads();
        #[cfg(target_arch = "wasm32")]
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::{Device, Distribution};

    use crate::engine::test_util::{assert_close, assert_trains_as_burns_conv, values};

    #[test]
    fn trained_pointwise_is_burns_convolution_forward_and_backward() {
        let device = Device::flex().autodiff();
        // A plane wider than one task's block (two blocks, the second partial), an odd one,
        // and a 7x7 one; a strided input (a transposed view) as the model's layouts give.
        for (outputs, [n, c, h, w]) in
            [(8, [2, 5, 100, 97]), (24, [3, 16, 7, 7]), (5, [1, 3, 4, 3])]
        {
            let conv = Conv2dConfig::new([c, outputs], [1, 1])
                .with_bias(false)
                .init(&device);
            let x = Tensor::<4>::random([n, c, w, h], Distribution::Normal(0.0, 1.0), &device)
                .swap_dims(2, 3);
            assert!(applies(&conv, &x.clone().require_grad()));
            let case = format!("{outputs} outputs on {n}x{c}x{h}x{w}");
            assert_trains_as_burns_conv(&case, &conv, &x, forward, 1e-3);
        }
    }

    #[test]
    fn trained_pointwise_is_the_closed_form_on_one_pixel() {
        // Two photos of one pixel, two channels; W = [[1, 2], [3, 4], [5, 6]]. y = W x;
        // with the loss sum(y): dx = W^T 1 = [9, 12] per photo, dW[o, i] = sum over photos of x_i.
        let device = Device::flex().autodiff();
        let mut conv = Conv2dConfig::new([2, 3], [1, 1])
            .with_bias(false)
            .init(&device);
        conv.weight = burn::module::Param::from_tensor(Tensor::from_data(
            burn::tensor::TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], [3, 2, 1, 1]),
            &device,
        ));
        let x = Tensor::<4>::from_data(
            burn::tensor::TensorData::new(vec![1.0f32, -1.0, 2.0, 0.5], [2, 2, 1, 1]),
            &device,
        )
        .require_grad();
        let y = forward(&conv, &x).expect("applies");
        assert_close(
            "output",
            &values(y.clone()),
            &[-1.0, -1.0, -1.0, 3.0, 8.0, 13.0],
            1e-6,
        );
        let grads = y.sum().backward();
        assert_close(
            "x grad",
            &values(x.grad(&grads).unwrap()),
            &[9.0, 12.0, 9.0, 12.0],
            1e-6,
        );
        let dw = values(conv.weight.val().grad(&grads).unwrap());
        assert_close("weight grad", &dw, &[3.0, -0.5, 3.0, -0.5, 3.0, -0.5], 1e-6);
    }
}
