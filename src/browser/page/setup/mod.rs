//! Setting up: where the network runs, the weights, the pretrained model, the device check and
//! where its time goes.

pub(crate) mod backend;
pub(crate) mod bench;
pub(crate) mod pretrained;
pub(crate) mod profile;
pub(crate) mod weights;
