//! The worker's side of its port: the global scope it listens on and posts to.

use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::DedicatedWorkerGlobalScope;

/// This worker's global scope.
pub(crate) fn scope() -> DedicatedWorkerGlobalScope {
    js_sys::global().unchecked_into()
}

/// Posts a packed message to whoever started this worker.
pub(crate) fn send(data: &JsValue, transfer: &js_sys::Array) {
    if let Err(e) = scope().post_message_with_transfer(data, transfer) {
        web_sys::console::error_1(&e);
    }
}
