//! The browser entry point: mounts the app, or runs the training worker when loaded in one.

#[cfg(target_arch = "wasm32")]
unsafe extern "C" {
    /// The static constructors, which wasm-ld collects (cubecl registers items with
    /// `inventory`). Unless the code names this function, wasm-ld wraps *every* export in a call
    /// to it, so each of the many small JS->wasm calls that building the page makes ran all
    /// constructors again: 150-500 ms stalls, e.g. when training started.
    fn __wasm_call_ctors();
}

#[cfg(target_arch = "wasm32")]
#[wasm_bindgen::prelude::wasm_bindgen(start)]
pub fn start() {
    // SAFETY: runs once per wasm instance, first, before anything reads what it registers.
    unsafe { __wasm_call_ctors() };
    finetune::ui::start();
}
