//! Our own operations, where burn's would be slower: `cpu` for burn's CPU backend (natively and
//! in the browser's worker), `gpu` for its cubecl backends (wgpu natively, WebGPU in the
//! browser). The model never calls them directly: it asks this module.

pub mod cpu;
pub mod gpu;
