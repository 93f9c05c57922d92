//! The app's logic that does not depend on where it runs, tested natively: where the network
//! runs ([`device`]: WebGPU or the CPU, helper workers), the messages between the page and its
//! worker ([`protocol`]) and the page's run state machine ([`run`]). The browser code only
//! wires these to the page and the worker.

pub mod device;
pub mod protocol;
pub mod run;
