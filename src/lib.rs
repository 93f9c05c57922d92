//! Finetune Studio: teach a pretrained image classifier new classes, in the browser or natively.
//!
//! `engine` holds everything that computes (model, weights, data, inference) and runs on any
//! burn device; `protocol` is the page <-> worker messages (tested natively); `ui` (browser
//! only) is the Leptos front end; `cli` (native only) is `finetune`.

pub mod engine;
pub mod protocol;

#[cfg(not(target_arch = "wasm32"))]
pub mod cli;

#[cfg(target_arch = "wasm32")]
pub mod ui;
