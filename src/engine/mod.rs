//! The engine: model, weights, preprocessing and inference. No UI dependency; runs on any
//! burn device (CPU `flex` in tests, wgpu natively, WebGPU in the browser).

pub mod advisor;
pub mod augment;
pub mod batchnorm;
pub mod bench;
pub mod config;
pub mod cpu_ops;
pub mod cube_conv;
pub mod data;
pub mod depthwise;
pub mod epilogue;
pub mod error;
pub mod explain;
pub mod inference;
pub mod labels;
pub mod layers;
pub mod limits;
pub mod model;
pub mod pca;
pub mod plan;
pub mod preprocess;
pub mod profile;
pub mod project;
pub mod quant;
pub mod schedule;
pub mod share;
#[cfg(test)]
mod test_util;
pub mod training;
pub mod weights;

#[cfg(not(target_arch = "wasm32"))]
pub mod convert;

pub use error::EngineError;

thread_local! {
    /// Reads from the device so far on this thread: every engine read goes through
    /// [`read_f32`]. Per thread, so a count around a run sees that run's reads only, not those
    /// of other runs or tests going on at the same time.
    static HOST_READS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// How many times the engine has waited on this thread for the device to hand values back
/// (a host sync).
pub fn host_reads() -> u64 {
    HOST_READS.with(std::cell::Cell::get)
}

/// Reads a tensor's values back to the host as f32 (a host sync, counted). Async, because
/// WebGPU can only map buffers asynchronously; native callers wrap it in `pollster::block_on`.
pub async fn read_f32<const D: usize>(t: burn::tensor::Tensor<D>) -> Result<Vec<f32>, EngineError> {
    HOST_READS.with(|n| n.set(n.get() + 1));
    t.into_data_async()
        .await
        .map_err(|e| EngineError::Device(format!("{e:?}")))?
        .try_to_vec::<f32>()
        .map_err(|e| EngineError::Device(format!("{e:?}")))
}
