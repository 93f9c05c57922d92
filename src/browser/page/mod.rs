//! The page: the app ([`app`]) and one folder per part: [`state`] (what the page holds: its
//! client of the worker, the class cards, model files), [`setup`] (device, weights, pretrained model, device
//! check), [`gather`] (classes from files, folders and the webcam), [`train`] (settings, the
//! run, results, the trained model), [`insight`] (predictions, Grad-CAM, the feature space,
//! layer views, mistakes) and [`persistence`] (autosave, projects).

pub(crate) mod app;
pub(crate) mod gather;
pub(crate) mod insight;
pub(crate) mod persistence;
pub(crate) mod setup;
pub(crate) mod state;
pub(crate) mod train;
