//! The `finetune` command line. (The browser build is the `web/` library, not this binary.)

#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    std::process::exit(finetune::cli::main());
}
