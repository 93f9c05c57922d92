//! An exported model file as the page holds it: in JS memory, never copied into wasm's. A
//! trained model arrives from the worker as a transferred buffer; copying it (13 MB for Lite0)
//! into wasm memory could take longer than the 50 ms a task may take while training. Export, the autosave and the worker take the JS buffer as it is; only saving
//! a project file copies it.

use std::rc::Rc;

/// A model file (safetensors with metadata). Clones share the buffer; equality is identity.
#[derive(Clone, Debug)]
pub struct ModelFile(Rc<js_sys::Uint8Array>);

impl ModelFile {
    /// Takes a buffer the page owns (one the worker transferred).
    pub fn from_js(array: js_sys::Uint8Array) -> Self {
        Self(Rc::new(array))
    }

    /// Copies bytes from wasm memory (an imported file, a project's model).
    pub fn from_bytes(bytes: &[u8]) -> Self {
        Self::from_js(js_sys::Uint8Array::from(bytes))
    }

    /// The buffer itself, for the browser's APIs (a download, IndexedDB).
    pub fn js(&self) -> &js_sys::Uint8Array {
        &self.0
    }

    /// A copy in JS memory, for a message that transfers its buffers (this one stays usable).
    pub fn js_copy(&self) -> js_sys::Uint8Array {
        self.0.slice(0, self.0.length())
    }

    /// A copy in wasm memory (a project file holds one).
    pub fn to_vec(&self) -> Vec<u8> {
        self.0.to_vec()
    }
}

impl PartialEq for ModelFile {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.0, &other.0)
    }
}
