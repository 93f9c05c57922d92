//! Finetune Studio: teach a pretrained image classifier new classes, in the browser or natively.
//!
//! `engine` holds everything that computes (model, weights, data, inference) and runs on any
//! burn device; `device` chooses where the network runs (WebGPU or the CPU); `protocol` is the page <-> worker
//! messages and `run` the page's run state machine (both
//! tested natively); `ui` (browser
//! only) is the Leptos front end; `cli` (native only) is `finetune`.

pub mod device;
pub mod engine;
pub mod protocol;
pub mod run;

#[cfg(not(target_arch = "wasm32"))]
pub mod cli;

#[cfg(target_arch = "wasm32")]
pub mod ui;
