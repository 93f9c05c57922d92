//! The folded (frozen, eval-mode) depthwise and 1x1 convolutions on a GPU (burn's cubecl
//! backend: wgpu natively, WebGPU in the browser) as kernels of our own, bias and ReLU6 in the
//! same kernel.
//!
//! burn's direct convolution (cubek-convolution) works on NHWC: every call permutes the input
//! and output between NCHW and NHWC (two copies), then a bias add and a clamp follow as two
//! more kernels. These kernels read and write NCHW as the model keeps it, one launch per layer.
//! Each unit of work computes several outputs from the values it loads: 4 output channels of a
//! run of pixels for a 1x1 convolution, 4 neighbouring pixels of one channel for a depthwise one.
//! For prediction and frozen layers only (no autodiff); training layers keep burn's operations.

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Cube, Dispatch, backend_extension};
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::tensor::{DType, Tensor};
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_dtype;
use burn_cubecl::tensor::CubeTensor;
use cubecl::calculate_cube_count_elemwise;
use cubecl::prelude::*;

use super::depthwise::same_padding;
use super::model::on_cpu_backend;

/// Output channels a 1x1 unit computes (the output channel count must be a multiple).
const POINTWISE_CHANNELS: usize = 4;
/// Neighbouring output pixels a depthwise unit computes along a row.
const DEPTHWISE_RUN: usize = 4;

/// `conv` (folded: with a bias) then ReLU6 when `relu6`, on `x`, through these kernels where
/// they cover it; `None` otherwise (burn's operations run).
pub fn forward(conv: &Conv2d, x: &Tensor<4>, relu6: bool) -> Option<Tensor<4>> {
    let device = x.device();
    if on_cpu_backend(&device) || device.is_autodiff() || x.dtype() != DType::F32 {
        return None;
    }
    let bias = conv.bias.as_ref()?.val();
    let [out, per_group, kh, kw] = conv.weight.dims();
    let [_, channels, h, w] = x.dims();
    let weight = conv.weight.val();
    if conv.dilation != [1, 1] || kh != kw || conv.stride[0] != conv.stride[1] {
        return None;
    }
    let y = if kh == 1 && conv.groups == 1 && conv.stride == [1, 1] {
        if out % POINTWISE_CHANNELS != 0 {
            return None;
        }
        <Dispatch as CubeConv>::pointwise_conv(
            x.clone().into_dispatch(),
            weight.into_dispatch(),
            bias.into_dispatch(),
            relu6,
        )
    } else if per_group == 1 && conv.groups == channels && out == channels {
        let stride = conv.stride[0];
        let (top, left) = match &conv.padding {
            PaddingConfig2d::Same => (same_padding(kh, stride, h).0, same_padding(kh, stride, w).0),
            PaddingConfig2d::Valid => (0, 0),
            _ => return None,
        };
        let (oh, ow) = match &conv.padding {
            PaddingConfig2d::Same => (h.div_ceil(stride), w.div_ceil(stride)),
            _ => (
                (h.checked_sub(kh)?) / stride + 1,
                (w.checked_sub(kw)?) / stride + 1,
            ),
        };
        <Dispatch as CubeConv>::depthwise_conv(
            x.clone().into_dispatch(),
            weight.into_dispatch(),
            bias.into_dispatch(),
            DepthwiseShape {
                kernel: kh,
                stride,
                top,
                left,
                out: [oh, ow],
            }
            .pack(),
            relu6,
        )
    } else {
        return None;
    };
    Some(Tensor::from_dispatch(y))
}

/// The geometry of a depthwise layer, as the extension passes it (`[kernel, stride, top, left,
/// out height, out width]`).
struct DepthwiseShape {
    kernel: usize,
    stride: usize,
    top: usize,
    left: usize,
    out: [usize; 2],
}

impl DepthwiseShape {
    fn pack(&self) -> [usize; 6] {
        [
            self.kernel,
            self.stride,
            self.top,
            self.left,
            self.out[0],
            self.out[1],
        ]
    }
}

#[backend_extension(Cube)]
pub trait CubeConv: Backend {
    /// 1x1 convolution of `x` `[n, in, h, w]` by `weight` `[out, in, 1, 1]` plus `bias`
    /// `[out]`, then ReLU6 when `relu6`.
    fn pointwise_conv(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        relu6: bool,
    ) -> FloatTensor<Self>;

    /// Depthwise convolution of `x` `[n, c, h, w]` by `weight` `[c, 1, k, k]` plus `bias`
    /// `[c]`, then ReLU6 when `relu6`; `shape` is `[k, stride, top, left, out h, out w]`.
    fn depthwise_conv(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        shape: [usize; 6],
        relu6: bool,
    ) -> FloatTensor<Self>;
}

impl CubeConv for Cube {
    fn pointwise_conv(
        x: CubeTensor,
        weight: CubeTensor,
        bias: CubeTensor,
        relu6: bool,
    ) -> CubeTensor {
        let [n, cin, h, w] = x.meta.shape().dims();
        let cout = weight.meta.shape()[0];
        let plane = h * w;
        // Pixels as vectors where the plane allows: one load serves 4 (or 2) pixels.
        let vector = [4, 2, 1].into_iter().find(|v| plane % v == 0).unwrap_or(1);
        let (client, device, dtype) = (x.client.clone(), x.device.clone(), x.dtype);
        let y = empty_device_dtype(client.clone(), device, [n, cout, h, w].into(), dtype);
        let units = n * (cout / POINTWISE_CHANNELS) * (plane / vector);
        let cube_dim = CubeDim::new(&client, units);
        let cube_count = calculate_cube_count_elemwise(&client, units, cube_dim);
        // SAFETY: every index the kernel forms is below the sizes given here: `units` bounds
        // the unit, the tensors are contiguous with these shapes.
        unsafe {
            pointwise_kernel::launch_unchecked::<f32>(
                &client,
                cube_count,
                cube_dim,
                vector,
                into_contiguous(x).into_buffer_arg(),
                into_contiguous(weight).into_buffer_arg(),
                into_contiguous(bias).into_buffer_arg(),
                y.clone().into_buffer_arg(),
                cin,
                cout / POINTWISE_CHANNELS,
                plane / vector,
                units,
                relu6,
            );
        }
        y
    }

    fn depthwise_conv(
        x: CubeTensor,
        weight: CubeTensor,
        bias: CubeTensor,
        shape: [usize; 6],
        relu6: bool,
    ) -> CubeTensor {
        let [kernel, stride, top, left, oh, ow] = shape;
        let [n, c, h, w] = x.meta.shape().dims();
        let (client, device, dtype) = (x.client.clone(), x.device.clone(), x.dtype);
        let y = empty_device_dtype(client.clone(), device, [n, c, oh, ow].into(), dtype);
        let runs = ow.div_ceil(DEPTHWISE_RUN);
        let units = n * c * oh * runs;
        let cube_dim = CubeDim::new(&client, units);
        let cube_count = calculate_cube_count_elemwise(&client, units, cube_dim);
        // SAFETY: reads outside the input are masked to its first value and zeroed, writes
        // past the row's end are skipped, `units` bounds the unit.
        unsafe {
            depthwise_kernel::launch_unchecked::<f32>(
                &client,
                cube_count,
                cube_dim,
                into_contiguous(x).into_buffer_arg(),
                into_contiguous(weight).into_buffer_arg(),
                into_contiguous(bias).into_buffer_arg(),
                y.clone().into_buffer_arg(),
                c,
                h,
                w,
                oh,
                ow,
                runs,
                top,
                left,
                units,
                kernel,
                stride,
                relu6,
            );
        }
        y
    }
}

#[cube]
fn activation<F: Float, N: Size>(v: Vector<F, N>, #[comptime] relu6: bool) -> Vector<F, N> {
    if relu6 {
        clamp_nan(v, Vector::new(F::new(0.0)), Vector::new(F::new(6.0)))
    } else {
        v
    }
}

#[cube]
fn activation_one<F: Float>(v: F, #[comptime] relu6: bool) -> F {
    if relu6 {
        clamp_nan(v, F::new(0.0), F::new(6.0))
    } else {
        v
    }
}

/// One unit: output channels `4g..4g+4` of one vector of pixels of one image. Neighbouring
/// units take neighbouring pixels (contiguous input reads; the same weights).
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
fn pointwise_kernel<F: Float, N: Size>(
    x: &[Vector<F, N>],
    weight: &[F],
    bias: &[F],
    y: &mut [Vector<F, N>],
    cin: usize,
    groups: usize,
    plane: usize,
    units: usize,
    #[comptime] relu6: bool,
) {
    if ABSOLUTE_POS >= units {
        terminate!();
    }
    let p = ABSOLUTE_POS % plane;
    let rest = ABSOLUTE_POS / plane;
    let g = rest % groups;
    let image = rest / groups;
    let co = g * 4;
    let mut a0 = Vector::<F, N>::new(bias[co]);
    let mut a1 = Vector::<F, N>::new(bias[co + 1]);
    let mut a2 = Vector::<F, N>::new(bias[co + 2]);
    let mut a3 = Vector::<F, N>::new(bias[co + 3]);
    let mut xi = image * cin * plane + p;
    let w0 = co * cin;
    for ci in 0..cin {
        let v = x[xi];
        a0 += v * Vector::<F, N>::new(weight[w0 + ci]);
        a1 += v * Vector::<F, N>::new(weight[w0 + cin + ci]);
        a2 += v * Vector::<F, N>::new(weight[w0 + 2 * cin + ci]);
        a3 += v * Vector::<F, N>::new(weight[w0 + 3 * cin + ci]);
        xi += plane;
    }
    let yi = (image * groups * 4 + co) * plane + p;
    y[yi] = activation(a0, relu6);
    y[yi + plane] = activation(a1, relu6);
    y[yi + 2 * plane] = activation(a2, relu6);
    y[yi + 3 * plane] = activation(a3, relu6);
}

/// One unit: 4 neighbouring output pixels of a row of one channel. Each kernel row's inputs
/// are loaded once (zero outside the image: TF "same" padding) and serve all 4.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
fn depthwise_kernel<F: Float>(
    x: &[F],
    weight: &[F],
    bias: &[F],
    y: &mut [F],
    channels: usize,
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
    runs: usize,
    top: usize,
    left: usize,
    units: usize,
    #[comptime] kernel: usize,
    #[comptime] stride: usize,
    #[comptime] relu6: bool,
) {
    if ABSOLUTE_POS >= units {
        terminate!();
    }
    let run = ABSOLUTE_POS % runs;
    let rest = ABSOLUTE_POS / runs;
    let oy = rest % oh;
    let plane = rest / oh;
    let c = plane % channels;
    let ox0 = run * 4;
    let b = bias[c];
    let mut acc = Array::<F>::new(4usize);
    #[unroll]
    for t in 0..4usize {
        acc[t] = b;
    }
    let span = comptime![3 * stride + kernel];
    let mut row = Array::<F>::new(span);
    let x_plane = plane * h * w;
    let w_base = c * kernel * kernel;
    #[unroll]
    for ky in 0..kernel {
        // Coordinates in the padded image; below `top`/`left` or past the end is padding.
        let py = oy * stride + ky;
        let row_ok = py >= top && py < top + h;
        let iy = select(row_ok, py - top, 0usize);
        #[unroll]
        for j in 0..span {
            let px = ox0 * stride + j;
            let ok = row_ok && px >= left && px < left + w;
            let ix = select(ok, px - left, 0usize);
            row[j] = select(ok, x[x_plane + iy * w + ix], F::new(0.0));
        }
        #[unroll]
        for kx in 0..kernel {
            let wv = weight[w_base + ky * kernel + kx];
            #[unroll]
            for t in 0..4usize {
                acc[t] += wv * row[t * stride + kx];
            }
        }
    }
    let yi = plane * oh * ow + oy * ow + ox0;
    #[unroll]
    for t in 0..4usize {
        if ox0 + t < ow {
            y[yi + t] = activation_one::<F>(acc[t], relu6);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Param;
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::{Device, Distribution};

    /// wgpu's device, set up once per process (a second set-up is refused).
    fn wgpu() -> Device {
        static DEVICE: std::sync::OnceLock<Device> = std::sync::OnceLock::new();
        DEVICE
            .get_or_init(|| {
                Device::wgpu_options()
                    .init()
                    .expect("a wgpu adapter (install mesa-vulkan-drivers for lavapipe)")
            })
            .clone()
    }

    /// A convolution with a bias, random weights and bias in `[-1, 1]`.
    fn conv(config: Conv2dConfig, device: &Device) -> Conv2d {
        let mut conv = config.with_bias(true).init(device);
        let w = conv.weight.val();
        conv.weight = Param::from_tensor(w.random_like(Distribution::Uniform(-1.0, 1.0)));
        let b = conv.bias.as_ref().unwrap().val();
        conv.bias = Some(Param::from_tensor(
            b.random_like(Distribution::Uniform(-1.0, 1.0)),
        ));
        conv
    }

    /// Ours against burn's convolution (and clamp) on the same device and data.
    fn check(what: &str, conv: &Conv2d, shape: [usize; 4], relu6: bool, device: &Device) {
        let x = Tensor::<4>::random(shape, Distribution::Uniform(-2.0, 2.0), device);
        let ours = forward(conv, &x, relu6).unwrap_or_else(|| panic!("{what}: not covered"));
        let reference = conv.forward(x);
        let reference = if relu6 {
            reference.clamp(0.0, 6.0)
        } else {
            reference
        };
        assert_eq!(ours.dims(), reference.dims(), "{what}: shape");
        let ours = ours.into_data().try_to_vec::<f32>().unwrap();
        let reference = reference.into_data().try_to_vec::<f32>().unwrap();
        for (i, (a, b)) in ours.iter().zip(&reference).enumerate() {
            assert!(
                (a - b).abs() <= 1e-4 * 1.0f32.max(b.abs()),
                "{what}[{i}]: {a} against {b}"
            );
        }
        if relu6 {
            // The clamp did something on both sides of the range.
            assert!(ours.contains(&0.0) && ours.iter().all(|v| (0.0..=6.0).contains(v)));
        }
    }

    #[test]
    fn pointwise_matches_burns_convolution_for_every_vector_width() {
        let device = wgpu();
        // Planes of 49 (scalar pixels), 98 (pairs) and 784 (fours) values.
        for (n, cin, cout, h, w, relu6) in [
            (2, 5, 8, 7, 7, true),
            (1, 3, 4, 7, 14, false),
            (2, 16, 12, 28, 28, true),
            (1, 24, 8, 28, 28, false),
        ] {
            let c = conv(Conv2dConfig::new([cin, cout], [1, 1]), &device);
            let what = format!("1x1 {cin}->{cout} on {n}x{h}x{w}, relu6 {relu6}");
            check(&what, &c, [n, cin, h, w], relu6, &device);
        }
    }

    #[test]
    fn depthwise_matches_burns_convolution_with_same_padding_and_strides() {
        let device = wgpu();
        // Odd and even sizes (TF's odd padding pixel at the end), rows shorter than a run of
        // 4 and than the kernel.
        for (n, c, k, stride, h, w, relu6) in [
            (2, 3, 3, 1, 7, 9, true),
            (1, 4, 5, 2, 15, 15, false),
            (1, 2, 5, 2, 16, 16, true),
            (1, 2, 3, 2, 8, 3, true),
            (1, 1, 5, 1, 2, 2, false),
            (2, 8, 5, 1, 14, 14, true),
        ] {
            let config = Conv2dConfig::new([c, c], [k, k])
                .with_groups(c)
                .with_stride([stride, stride])
                .with_padding(PaddingConfig2d::Same);
            let dw = conv(config, &device);
            let what = format!("depthwise {k}x{k}/{stride} on {n}x{c}x{h}x{w}, relu6 {relu6}");
            check(&what, &dw, [n, c, h, w], relu6, &device);
        }
    }

    #[test]
    fn other_layers_devices_and_training_keep_burns_operations() {
        let device = wgpu();
        let x = Tensor::<4>::zeros([1, 6, 8, 8], &device);
        // Output channels not a multiple of 4; a 3x3 convolution over all channels.
        let odd = conv(Conv2dConfig::new([6, 6], [1, 1]), &device);
        assert!(forward(&odd, &x, false).is_none());
        let full = conv(Conv2dConfig::new([6, 8], [3, 3]), &device);
        assert!(forward(&full, &x, false).is_none());
        // A layer that trains (autodiff) and burn's CPU backend.
        let pointwise = conv(Conv2dConfig::new([6, 8], [1, 1]), &device);
        assert!(forward(&pointwise, &x, false).is_some());
        assert!(forward(&pointwise, &x.clone().autodiff(), false).is_none());
        let cpu = Device::flex();
        let on_cpu = conv(Conv2dConfig::new([6, 8], [1, 1]), &cpu);
        assert!(forward(&on_cpu, &Tensor::<4>::zeros([1, 6, 8, 8], &cpu), false).is_none());
    }
}
