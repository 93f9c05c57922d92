//! What the CPU backend's own operations ([`crate::engine::kernels::cpu::batchnorm`],
//! [`crate::engine::kernels::cpu::depthwise`], [`crate::engine::kernels::cpu::pointwise`] and the folded ones) share:
//! burn-flex tensors as slices and back, and loops in rayon's pool natively (one thread in
//! the browser's worker).

pub mod batchnorm;
pub mod block;
pub mod dense;
pub mod depthwise;
mod depthwise_blocked;
pub mod pointwise;

use std::borrow::Cow;

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::ops::{FloatTensorOps, ModuleOps};
use burn::backend::{Flex, TensorMetadata};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Bytes, DType, Shape};
use burn_flex::{FlexTensor, Layout};

/// burn's convolution options: `stride`, `[top, bottom, left, right]` padding, `groups`.
pub fn conv_options(stride: usize, padding: [usize; 4], groups: usize) -> ConvOptions<2> {
    let [top, bottom, left, right] = padding;
    ConvOptions::new_with_padding(
        [stride, stride],
        [(top, bottom), (left, right)],
        [1, 1],
        groups,
    )
}

/// A folded convolution (with its bias) by burn's own operations, then ReLU6 when `relu6`:
/// where a loop of ours does not cover the values' type.
pub fn burn_folded(
    x: FlexTensor,
    weight: FlexTensor,
    bias: FlexTensor,
    options: ConvOptions<2>,
    relu6: bool,
) -> FlexTensor {
    let y = Flex::conv2d(x, weight, Some(bias), options);
    if relu6 {
        Flex::float_clamp(y, 0.0f32.into(), 6.0f32.into())
    } else {
        y
    }
}

/// Registers the gradient `grad()` (of `like`'s shape) for `node` where it tracks one: `None`
/// where nothing before a layer trains, or where its weight is frozen; `grad` runs only when
/// needed.
pub fn register_grad(
    grads: &mut Gradients,
    node: Option<NodeId>,
    like: &FlexTensor,
    grad: impl FnOnce() -> Vec<f32>,
) {
    if let Some(id) = node {
        grads.register::<Flex>(id, tensor(grad(), like.shape()));
    }
}

/// Whether this CPU runs AVX2 and FMA: the loops compiled a second time for them
/// (`#[target_feature]` copies) run only where this says so.
#[cfg(target_arch = "x86_64")]
pub fn avx2_fma_here() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

/// The values of an f32 tensor in row-major order (a copy only when it is strided).
pub fn values(t: &FlexTensor) -> Cow<'_, [f32]> {
    match t.as_slice::<f32>() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(t.to_contiguous().as_slice::<f32>().unwrap_or(&[]).to_vec()),
    }
}

/// An f32 tensor of `shape` holding `values`.
pub fn tensor(values: Vec<f32>, shape: Shape) -> FlexTensor {
    FlexTensor::new(
        Bytes::from_elems(values),
        Layout::contiguous(shape),
        DType::F32,
    )
}

/// `f(i)` for every `i` in `0..n`, in order.
pub fn map_indices<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync + Send) -> Vec<T> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        (0..n).into_par_iter().map(f).collect()
    }
    #[cfg(target_arch = "wasm32")]
    (0..n).map(f).collect()
}

/// `f(i)` for every `i` in `0..n`, in any order (in rayon's pool natively).
pub fn for_each_index(n: usize, f: impl Fn(usize) + Sync + Send) {
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        (0..n).into_par_iter().for_each(f);
    }
    #[cfg(target_arch = "wasm32")]
    (0..n).for_each(f);
}

/// `len` values made plane by plane (in rayon's pool natively), without a pass zeroing them
/// first: `f(plane index, plane)` gets each plane of `plane` values.
///
/// # Safety
/// `f` must write every value of its plane before it reads any.
pub unsafe fn written_planes(
    len: usize,
    plane: usize,
    f: impl Fn(usize, &mut [f32]) + Sync + Send,
) -> Vec<f32> {
    let plane = plane.max(1);
    let planes = len / plane;
    let mut y = Vec::<f32>::with_capacity(planes * plane);
    let dst = Shared::new(&mut y);
    for_each_index(planes, |p| {
        // SAFETY: plane `p` lies inside the capacity, and no other task touches it.
        let out = unsafe { std::slice::from_raw_parts_mut(dst.at(p * plane), plane) };
        f(p, out);
    });
    // SAFETY: every plane was written (the caller's promise).
    unsafe { y.set_len(planes * plane) };
    y
}

/// An activation `[batch, channels, plane]` made channel by channel (in rayon's pool natively),
/// without a pass zeroing it first: `f(channel, planes)` gets the channel's `batch` planes and
/// returns what the caller keeps of that channel. Channel by channel, a layer can read its
/// input's planes of a channel twice while they are still in the core's cache.
///
/// # Safety
/// `f` must write every value of its planes before it reads any.
pub unsafe fn written_channels<T: Send>(
    [batch, channels, plane]: [usize; 3],
    f: impl Fn(usize, &mut [&mut [f32]]) -> T + Sync + Send,
) -> (Vec<f32>, Vec<T>) {
    let len = batch * channels * plane;
    let mut y = Vec::<f32>::with_capacity(len);
    let dst = Shared::new(&mut y);
    let kept = map_indices(channels, |c| {
        let mut planes: Vec<&mut [f32]> = (0..batch)
            .map(|n| {
                // SAFETY: plane `(n, c)` lies inside the capacity, and only channel `c`'s task
                // touches it.
                unsafe { std::slice::from_raw_parts_mut(dst.at((n * channels + c) * plane), plane) }
            })
            .collect();
        f(c, &mut planes)
    });
    // SAFETY: every plane of every channel was written (the caller's promise).
    unsafe { y.set_len(len) };
    (y, kept)
}

/// Runs `f(plane index, plane)` over `out` cut into planes of `plane` values.
pub fn for_each_plane(out: &mut [f32], plane: usize, f: impl Fn(usize, &mut [f32]) + Sync + Send) {
    if plane == 0 {
        return;
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        out.par_chunks_mut(plane)
            .enumerate()
            .for_each(|(p, o)| f(p, o));
    }
    #[cfg(target_arch = "wasm32")]
    out.chunks_mut(plane).enumerate().for_each(|(p, o)| f(p, o));
}

/// An output buffer that parallel tasks fill, each its own disjoint values, through raw
/// addresses (parts that no slice split expresses: blocks of columns in rows of a plane).
pub struct Shared(*mut f32);

// SAFETY: the tasks that hold it write disjoint values (each user says how).
unsafe impl Sync for Shared {}

impl Shared {
    /// The buffer of `y`, whose capacity the tasks fill.
    pub fn new(y: &mut Vec<f32>) -> Self {
        Shared(y.as_mut_ptr())
    }

    /// The address `offset` values on (a method, so that closures capture `Shared` whole).
    ///
    /// # Safety
    /// `offset` must lie inside the buffer's capacity.
    pub unsafe fn at(&self, offset: usize) -> *mut f32 {
        unsafe { self.0.add(offset) }
    }
}
