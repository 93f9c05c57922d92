//! Transfer learning, in the lesson's parts: the settings ([`config`]) and what they plan
//! ([`plan`], [`schedule`], [`advisor`]), the network cut at the freeze boundary ([`split`]),
//! the batches ([`batches`]), one step ([`step`]), the run of stages and epochs ([`run`]),
//! early stopping ([`early_stop`]), scoring ([`evaluate`]) and what a run reports ([`report`]).
//! The frozen pass can be shared with helper workers ([`share`]). [`pytorch`] writes the run as
//! the lesson's PyTorch code.
//!
//! Strategies: `head` (feature extraction), `last-block`, `gradual` (stages that unfreeze more
//! blocks) and `full`, each with discriminative learning rates per layer group.

pub mod advisor;
pub mod batches;
pub mod config;
pub mod early_stop;
pub mod evaluate;
pub mod plan;
pub mod pytorch;
pub mod report;
pub mod run;
pub mod schedule;
pub mod share;
pub mod split;
pub mod step;
