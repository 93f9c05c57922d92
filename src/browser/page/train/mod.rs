//! The train panel: settings (with the network diagram and the augmentation grid), the run and
//! its charts and tables, and the trained model in use.

pub(crate) mod augment_grid;
pub(crate) mod charts;
pub(crate) mod diagram;
pub(crate) mod pytorch;
pub(crate) mod results;
pub(crate) mod run_view;
pub(crate) mod settings;
pub(crate) mod teach;
pub(crate) mod trained;
