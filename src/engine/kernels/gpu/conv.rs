//! The folded (frozen, eval-mode) convolutions on a GPU (burn's cubecl
//! backend: wgpu natively, WebGPU in the browser) as kernels of our own, bias and ReLU6 in the
//! same kernel.
//!
//! burn's direct convolution (cubek-convolution) works on NHWC: every call permutes the input
//! and output between NCHW and NHWC (two copies), then a bias add and a clamp follow as two
//! more kernels. These kernels read and write NCHW as the model keeps it, one launch per layer.
//! Each unit of work computes several outputs from the values it loads: 4 output channels of a
//! run of pixels for a 1x1 convolution, 4 neighbouring pixels of one channel for the others
//! (depthwise, and the stem's 3x3 over the 3 colours).
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

use crate::engine::kernels::shared::{POINTWISE_AS_MATMUL, on_cpu_backend, same_padding};

/// Output channels a 1x1 unit computes (the output channel count must be a multiple).
const POINTWISE_CHANNELS: usize = 4;
/// Neighbouring output pixels a unit of [`direct_kernel`] computes along a row.
const RUN: usize = 4;

/// Whether the 1x1 layers run here too. Natively burn's matrix product runs them (see
/// [`POINTWISE_AS_MATMUL`]), faster on lavapipe than this kernel; in the browser this kernel
/// replaces burn's direct convolution, faster on SwiftShader (`docs/performance.md`).
const POINTWISE: bool = !POINTWISE_AS_MATMUL;

/// `conv` (folded: with a bias) then ReLU6 when `relu6`, on `x`, through these kernels where
/// they cover it; `None` otherwise (burn's operations run).
pub fn forward(conv: &Conv2d, x: &Tensor<4>, relu6: bool) -> Option<Tensor<4>> {
    forward_with(conv, x, relu6, POINTWISE)
}

/// Whether [`forward`] runs `conv` on `x` with these kernels.
pub fn applies(conv: &Conv2d, x: &Tensor<4>) -> bool {
    launch(conv, x, POINTWISE).is_some()
}

/// [`forward`], the 1x1 kernel included when `pointwise`.
fn forward_with(conv: &Conv2d, x: &Tensor<4>, relu6: bool, pointwise: bool) -> Option<Tensor<4>> {
    let launch = launch(conv, x, pointwise)?;
    let bias = conv.bias.as_ref()?.val().into_dispatch();
    let (x, weight) = (x.clone().into_dispatch(), conv.weight.val().into_dispatch());
    let y = match launch {
        Launch::Pointwise => <Dispatch as CubeConv>::pointwise_conv(x, weight, bias, relu6),
        Launch::Direct(geometry) => {
            <Dispatch as CubeConv>::direct_conv(x, weight, bias, geometry, relu6)
        }
    };
    Some(Tensor::from_dispatch(y))
}

/// Which of the kernels here runs a layer, and with what geometry.
enum Launch {
    Pointwise,
    Direct(Direct),
}

/// The geometry of a [`CubeConv::direct_conv`] launch.
#[derive(Debug, Clone, Copy)]
pub struct Direct {
    pub kernel: usize,
    pub stride: usize,
    /// Padding above and to the left (TF "same" puts the odd pixel below and to the right).
    pub top: usize,
    pub left: usize,
    pub out_h: usize,
    pub out_w: usize,
    pub groups: usize,
}

/// Which kernel runs `conv` on `x`: a folded layer (with a bias) on a GPU, not training, f32,
/// a 1x1 convolution with stride 1 over all channels (output channels a multiple of 4) or any
/// other (grouped: depthwise too) with square kernel and stride, TF "same" or no padding.
fn launch(conv: &Conv2d, x: &Tensor<4>, pointwise: bool) -> Option<Launch> {
    let device = x.device();
    if on_cpu_backend(&device) || device.is_autodiff() || x.dtype() != DType::F32 {
        return None;
    }
    let [out, per_group, k, kw] = conv.weight.dims();
    let [_, channels, h, w] = x.dims();
    let stride = conv.stride[0];
    let same = match &conv.padding {
        PaddingConfig2d::Same => true,
        PaddingConfig2d::Valid => false,
        _ => return None,
    };
    if conv.bias.is_none() || conv.dilation != [1, 1] || k != kw || conv.stride[1] != stride {
        return None;
    }
    if k == 1 && stride == 1 && conv.groups == 1 {
        return (pointwise && out % POINTWISE_CHANNELS == 0).then_some(Launch::Pointwise);
    }
    let groups = conv.groups;
    if groups == 0 || channels != per_group * groups || out % groups != 0 {
        return None;
    }
    let (top, left, out_h, out_w) = if same {
        let top = same_padding(k, stride, h).0;
        let left = same_padding(k, stride, w).0;
        (top, left, h.div_ceil(stride), w.div_ceil(stride))
    } else {
        (
            0,
            0,
            h.checked_sub(k)? / stride + 1,
            w.checked_sub(k)? / stride + 1,
        )
    };
    Some(Launch::Direct(Direct {
        kernel: k,
        stride,
        top,
        left,
        out_h,
        out_w,
        groups,
    }))
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

    /// Convolution of `x` `[n, in, h, w]` by `weight` `[out, in / groups, k, k]` plus `bias`
    /// `[out]`, then ReLU6 when `relu6`, with the launch's `geometry`.
    fn direct_conv(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        geometry: Direct,
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
        let Some((cube_count, cube_dim)) = grid(&client, units) else {
            return y;
        };
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
                POINTWISE_CHANNELS,
                relu6,
            );
        }
        y
    }

    fn direct_conv(
        x: CubeTensor,
        weight: CubeTensor,
        bias: CubeTensor,
        geometry: Direct,
        relu6: bool,
    ) -> CubeTensor {
        let Direct {
            kernel,
            stride,
            top,
            left,
            out_h: oh,
            out_w: ow,
            groups,
        } = geometry;
        let [n, cin, h, w] = x.meta.shape().dims();
        let cout = weight.meta.shape()[0];
        let (client, device, dtype) = (x.client.clone(), x.device.clone(), x.dtype);
        let y = empty_device_dtype(client.clone(), device, [n, cout, oh, ow].into(), dtype);
        let runs = ow.div_ceil(RUN);
        let units = n * cout * oh * runs;
        let Some((cube_count, cube_dim)) = grid(&client, units) else {
            return y;
        };
        // SAFETY: reads outside the input are masked to its first value and zeroed, writes
        // past the row's end are skipped, `units` bounds the unit.
        unsafe {
            direct_kernel::launch_unchecked::<f32>(
                &client,
                cube_count,
                cube_dim,
                into_contiguous(x).into_buffer_arg(),
                into_contiguous(weight).into_buffer_arg(),
                into_contiguous(bias).into_buffer_arg(),
                y.clone().into_buffer_arg(),
                cin,
                cout,
                cin / groups,
                cout / groups,
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

/// The launch grid of `units` units, one each; `None` for an empty output (nothing to launch).
fn grid(client: &Client, units: usize) -> Option<(CubeCount, CubeDim)> {
    if units == 0 {
        return None;
    }
    let cube_dim = CubeDim::new(client, units);
    Some((
        calculate_cube_count_elemwise(client, units, cube_dim),
        cube_dim,
    ))
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
    #[comptime] tile: usize,
    #[comptime] relu6: bool,
) {
    if ABSOLUTE_POS >= units {
        terminate!();
    }
    let p = ABSOLUTE_POS % plane;
    let rest = ABSOLUTE_POS / plane;
    let g = rest % groups;
    let image = rest / groups;
    let co = g * tile;
    let mut acc = Array::<Vector<F, N>>::new(tile);
    #[unroll]
    for j in 0..tile {
        acc[j] = Vector::<F, N>::new(bias[co + j]);
    }
    let mut xi = image * cin * plane + p;
    let w0 = co * cin;
    for ci in 0..cin {
        let v = x[xi];
        #[unroll]
        for j in 0..tile {
            acc[j] += v * Vector::<F, N>::new(weight[w0 + j * cin + ci]);
        }
        xi += plane;
    }
    let yi = (image * groups * tile + co) * plane + p;
    #[unroll]
    for j in 0..tile {
        y[yi + j * plane] = activation(acc[j], relu6);
    }
}

/// One unit: 4 neighbouring output pixels of a row of one output channel, over the input
/// channels of its group (one for a depthwise layer). Each kernel row's inputs are loaded once
/// (zero outside the image: TF "same" padding) and serve all 4.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
fn direct_kernel<F: Float>(
    x: &[F],
    weight: &[F],
    bias: &[F],
    y: &mut [F],
    cin: usize,
    cout: usize,
    in_per_group: usize,
    out_per_group: usize,
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
    let co = plane % cout;
    let image = plane / cout;
    let ox0 = run * 4;
    let b = bias[co];
    let mut acc = Array::<F>::new(4usize);
    #[unroll]
    for t in 0..4usize {
        acc[t] = b;
    }
    let span = comptime![3 * stride + kernel];
    let mut row = Array::<F>::new(span);
    let first_in = image * cin + (co / out_per_group) * in_per_group;
    for ci in 0..in_per_group {
        let x_plane = (first_in + ci) * h * w;
        let w_base = (co * in_per_group + ci) * kernel * kernel;
        accumulate_rows::<F>(
            x, weight, &mut acc, &mut row, x_plane, w_base, oy, ox0, h, w, top, left, kernel,
            stride,
        );
    }
    let yi = plane * oh * ow + oy * ow + ox0;
    #[unroll]
    for t in 0..4usize {
        if ox0 + t < ow {
            y[yi + t] = activation_one::<F>(acc[t], relu6);
        }
    }
}

/// Adds one input plane's contribution to the 4 outputs `acc` (see [`direct_kernel`]).
#[cube]
#[allow(clippy::too_many_arguments)]
fn accumulate_rows<F: Float>(
    x: &[F],
    weight: &[F],
    acc: &mut Array<F>,
    row: &mut Array<F>,
    x_plane: usize,
    w_base: usize,
    oy: usize,
    ox0: usize,
    h: usize,
    w: usize,
    top: usize,
    left: usize,
    #[comptime] kernel: usize,
    #[comptime] stride: usize,
) {
    let span = comptime![3 * stride + kernel];
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::test_util::{assert_close, values};
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
        let ours =
            forward_with(conv, &x, relu6, true).unwrap_or_else(|| panic!("{what}: not covered"));
        let reference = conv.forward(x);
        let reference = if relu6 {
            reference.clamp(0.0, 6.0)
        } else {
            reference
        };
        assert_eq!(ours.dims(), reference.dims(), "{what}: shape");
        let ours = values(ours);
        assert_close(what, &ours, &values(reference), 1e-4);
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
    fn grouped_and_full_convolutions_match_burns() {
        let device = wgpu();
        // The stem's shape (3 colours, 3x3, stride 2), and 2 groups of 2 inputs, 3 outputs.
        for (n, cin, cout, groups, k, stride, h, w, relu6) in [
            (2, 3, 8, 1, 3, 2, 17, 16, true),
            (1, 4, 6, 2, 3, 1, 9, 7, false),
        ] {
            let config = Conv2dConfig::new([cin, cout], [k, k])
                .with_groups(groups)
                .with_stride([stride, stride])
                .with_padding(PaddingConfig2d::Same);
            let c = conv(config, &device);
            let what = format!("{k}x{k}/{stride} {cin}->{cout} in {groups} groups on {h}x{w}");
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

    /// A depthwise 3x3 layer with stride 2 over 6 channels.
    fn depthwise_3x3_stride_2(device: &Device) -> Conv2d {
        let config = Conv2dConfig::new([6, 6], [3, 3])
            .with_groups(6)
            .with_stride([2, 2])
            .with_padding(PaddingConfig2d::Same);
        conv(config, device)
    }

    #[test]
    fn other_layers_devices_and_training_keep_burns_operations() {
        let device = wgpu();
        let x = Tensor::<4>::zeros([1, 6, 8, 8], &device);
        // 1x1 output channels not a multiple of 4; a kernel that is not square.
        let odd = conv(Conv2dConfig::new([6, 6], [1, 1]), &device);
        assert!(forward_with(&odd, &x, false, true).is_none());
        let tall = conv(Conv2dConfig::new([6, 8], [3, 1]), &device);
        assert!(forward_with(&tall, &x, false, true).is_none());
        // A 1x1 layer: here only where the 1x1 kernel is chosen (the browser), never for a
        // layer that trains (autodiff) or on burn's CPU backend.
        let pointwise = conv(Conv2dConfig::new([6, 8], [1, 1]), &device);
        assert!(forward_with(&pointwise, &x, false, true).is_some());
        // An empty batch launches nothing and gives an empty output.
        let empty = Tensor::<4>::zeros([0, 6, 8, 8], &device);
        let y = forward_with(&pointwise, &empty, false, true).unwrap();
        assert_eq!(y.dims(), [0, 8, 8, 8]);
        let y = forward_with(&depthwise_3x3_stride_2(&device), &empty, true, true).unwrap();
        assert_eq!(y.dims(), [0, 6, 4, 4]);
        assert_eq!(forward(&pointwise, &x, false).is_some(), POINTWISE);
        assert!(forward_with(&pointwise, &x.clone().autodiff(), false, true).is_none());
        let cpu = Device::flex();
        let on_cpu = conv(Conv2dConfig::new([6, 8], [1, 1]), &cpu);
        let x_cpu = Tensor::<4>::zeros([1, 6, 8, 8], &cpu);
        assert!(forward_with(&on_cpu, &x_cpu, false, true).is_none());
        // A depthwise layer on the GPU runs here on every target.
        let dw = conv(
            Conv2dConfig::new([6, 6], [3, 3])
                .with_groups(6)
                .with_padding(PaddingConfig2d::Same),
            &device,
        );
        assert!(applies(&dw, &x));
    }
}
