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
pub mod quant;
pub mod schedule;
pub mod share;
pub mod training;
pub mod weights;

#[cfg(not(target_arch = "wasm32"))]
pub mod convert;

pub use error::EngineError;

/// Reads from the device so far (this process): every engine read goes through [`read_f32`].
static HOST_READS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many times the engine has waited for the device to hand values back (a host sync).
pub fn host_reads() -> u64 {
    HOST_READS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Reads a tensor's values back to the host as f32 (a host sync, counted). Async, because
/// WebGPU can only map buffers asynchronously; native callers wrap it in `pollster::block_on`.
pub async fn read_f32<const D: usize>(t: burn::tensor::Tensor<D>) -> Result<Vec<f32>, EngineError> {
    HOST_READS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    t.into_data_async()
        .await
        .map_err(|e| EngineError::Device(format!("{e:?}")))?
        .try_to_vec::<f32>()
        .map_err(|e| EngineError::Device(format!("{e:?}")))
}
