//! The engine: model, weights, preprocessing and inference. No UI dependency; runs on any
//! burn device (CPU `flex` in tests, wgpu natively, WebGPU in the browser).

pub mod advisor;
pub mod augment;
pub mod bench;
pub mod config;
pub mod data;
pub mod error;
pub mod inference;
pub mod labels;
pub mod model;
pub mod plan;
pub mod preprocess;
pub mod project;
pub mod schedule;
pub mod share;
pub mod training;
pub mod weights;

#[cfg(not(target_arch = "wasm32"))]
pub mod convert;

pub use error::EngineError;

/// Reads a tensor's values back to the host as f32. Async, because WebGPU can only map buffers
/// asynchronously; native callers wrap it in `pollster::block_on`.
pub async fn read_f32<const D: usize>(t: burn::tensor::Tensor<D>) -> Result<Vec<f32>, EngineError> {
    t.into_data_async()
        .await
        .map_err(|e| EngineError::Device(format!("{e:?}")))?
        .try_to_vec::<f32>()
        .map_err(|e| EngineError::Device(format!("{e:?}")))
}
