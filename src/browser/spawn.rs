//! Starting this same wasm module in a new Web Worker: the page starts its worker this way, and
//! the worker its helpers.

use web_sys::{Worker, WorkerOptions, WorkerType};

use crate::browser::js;
use crate::browser::object_url::ObjectUrl;

/// Where this app's JS glue and wasm are: a worker starts the same module from them, and hands
/// them on to its helper workers.
#[derive(Clone, Debug)]
pub(crate) struct Assets {
    pub script: String,
    pub wasm: String,
}

impl Assets {
    /// Name of the global where a worker finds its [`Assets`].
    const GLOBAL: &'static str = "finetuneAssets";

    /// The [`Assets`] a worker was started with.
    pub fn of_worker() -> Option<Assets> {
        let assets = js::get(&js_sys::global(), Self::GLOBAL)?;
        Some(Assets {
            script: js::get_string(&assets, "script")?,
            wasm: js::get_string(&assets, "wasm")?,
        })
    }

    /// Starts this module in a new module worker called `name` (how it knows its role). A
    /// failed start is reported as `Crashed`.
    pub fn start(&self, name: &str) -> Result<Worker, String> {
        let Assets { script, wasm } = self;
        // The glue's own default wasm name lacks Trunk's hash: pass the real one.
        let source = format!(
            "import init from {script:?};\n\
             self.{global} = {{ script: {script:?}, wasm: {wasm:?} }};\n\
             try {{ await init({{ module_or_path: {wasm:?} }}); }}\n\
             catch (e) {{ postMessage({{ json: JSON.stringify({{ Crashed: `the worker could not start: ${{e}}` }}) }}); }}\n",
            global = Self::GLOBAL,
        );
        let parts = js_sys::Array::of1(&source.into());
        let options = web_sys::BlobPropertyBag::new();
        options.set_type("text/javascript");
        let blob = web_sys::Blob::new_with_str_sequence_and_options(&parts, &options)
            .map_err(|e| js::error_text(&e))?;
        // Freed once the worker has its script (when `url` drops below).
        let url = ObjectUrl::of_blob(&blob)?;
        let worker_options = WorkerOptions::new();
        worker_options.set_type(WorkerType::Module);
        worker_options.set_name(name);
        Worker::new_with_options(url.as_str(), &worker_options)
            .map_err(|e| format!("the worker could not start: {}", js::error_text(&e)))
    }
}
