//! The engine: everything that computes, on any burn device (CPU `flex` in tests, wgpu
//! natively, WebGPU in the browser), with no UI dependency. One folder per concern:
//! `model` (EfficientNet-Lite and its layers), `kernels` (our own operations, `cpu` and `gpu`
//! apart, and the one place that chooses them), `data` (files to tensors, augmentation),
//! `train` (settings, plan, step, epochs, report), `io` (weights, model files, projects),
//! `insight` (predictions, Grad-CAM, PCA, layer views) and `measure` (bench, profile).

pub mod data;
pub mod error;
pub mod insight;
pub mod io;
pub mod kernels;
pub mod limits;
pub mod measure;
pub mod model;
#[cfg(test)]
mod test_util;
pub mod train;

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

/// Lets the host's event loop run now and then during long work. In a browser worker a run is
/// one chain of futures that the CPU backend never makes wait, so without this the worker would
/// read no message (a Cancel among them) until the run ended; there it yields a task at most
/// every [`HOST_PACE_MS`]. Natively it does nothing: the caller's threads run alongside.
pub(crate) async fn let_host_run() {
    #[cfg(target_arch = "wasm32")]
    {
        thread_local! {
            static LAST: std::cell::Cell<Option<web_time::Instant>> = const { std::cell::Cell::new(None) };
        }
        let due = LAST.with(|last| {
            last.get()
                .is_none_or(|t| t.elapsed().as_secs_f64() * 1000.0 >= HOST_PACE_MS)
        });
        if due {
            gloo_timers::future::TimeoutFuture::new(0).await;
            LAST.with(|last| last.set(Some(web_time::Instant::now())));
        }
    }
}

/// Longest stretch of engine work in a browser worker between two chances to read messages.
#[cfg(target_arch = "wasm32")]
const HOST_PACE_MS: f64 = 100.0;
