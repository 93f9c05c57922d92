//! Kernels of our own on burn's cubecl backends (wgpu natively, WebGPU in the browser).

pub mod conv;
