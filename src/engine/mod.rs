//! The engine: model, weights, preprocessing and inference. No UI dependency; runs on any
//! burn device (CPU `flex` in tests, wgpu natively, WebGPU in the browser).

pub mod advisor;
pub mod augment;
pub mod bench;
pub mod data;
pub mod error;
pub mod inference;
pub mod labels;
pub mod model;
pub mod preprocess;
pub mod schedule;
pub mod training;
pub mod weights;

#[cfg(not(target_arch = "wasm32"))]
pub mod convert;

pub use error::EngineError;
