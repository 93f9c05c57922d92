//! Finetune Studio: teach a pretrained image classifier new classes, in the browser or natively.
//!
//! `engine` holds everything that computes (model, kernels, data, training, files, insight,
//! measurements) and runs on any burn device. The app logic that does not depend on the target
//! is tested natively, in `app`: `device` (where the network runs: WebGPU or the CPU),
//! `protocol` (the page <-> worker messages) and `run` (the page's run state machine). `browser` (wasm only) is
//! the page and its worker; `cli` (native only) is `finetune`.

pub mod app;
pub mod engine;

#[cfg(not(target_arch = "wasm32"))]
pub mod cli;

#[cfg(target_arch = "wasm32")]
pub mod browser;
