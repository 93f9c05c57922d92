//! What the page holds across its parts: its client of the worker, the class cards and their
//! photos, and model files.

pub(crate) mod client;
pub(crate) mod file_button;
pub(crate) mod model_file;
pub(crate) mod workspace;
