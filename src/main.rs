//! The `finetune` command line. (The browser build is the `web/` library, not this binary.)

#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    keep_freed_memory();
    std::process::exit(finetune::cli::main());
}

/// glibc maps each block over 32 MB (a training step's largest activations and gradients) on its
/// own and unmaps it when freed, and hands freed heap memory back to the system: every step then
/// faulted in fresh pages and flushed other cores' address caches. Served from the heap and kept
/// for the next step, the steps run faster at the same peak memory (figures and how they were
/// taken: docs/performance.md).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_freed_memory() {
    // SAFETY: `mallopt` only sets the allocator's parameters; this runs before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, libc::c_int::MAX);
    }
}
