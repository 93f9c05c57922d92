//! Entry point: mounts the app in the browser, runs the `finetune` CLI natively.

#[cfg(target_arch = "wasm32")]
fn main() {
    finetune::ui::mount();
}

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    std::process::exit(finetune::cli::main());
}
