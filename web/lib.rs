//! The browser entry point: mounts the app, or runs the training worker when loaded in one.

// A `RUSTFLAGS` variable replaces `.cargo/config.toml`'s flags (cargo's rule), SIMD128 with
// them: the CPU backend would then run scalar code in the page (a feature pass 1.6x slower,
// ReLU6 5x) without a word.
#[cfg(all(target_arch = "wasm32", not(target_feature = "simd128")))]
compile_error!(
    "the browser build needs wasm SIMD128: a RUSTFLAGS variable replaced .cargo/config.toml's \
     flags; add -C target-feature=+simd128 to it or unset it"
);

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
    finetune::browser::start();
}
