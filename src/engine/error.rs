//! Engine errors. Each names the file (or tensor) it concerns and the reason, so the UI and
//! the CLI can show it as it is, once.

use thiserror::Error;

/// Everything the engine can refuse or fail at.
#[derive(Debug, Error)]
pub enum EngineError {
    /// A user file that is not a usable image.
    #[error("{file}: {reason}")]
    Image { file: String, reason: String },

    /// A weights file that does not fit the model.
    #[error("weights {file}: {reason}")]
    Weights { file: String, reason: String },

    /// The checkpoint to convert is missing, corrupt or not the expected one.
    #[error("checkpoint {file}: {reason}")]
    Checkpoint { file: String, reason: String },

    /// The compute device failed (lost device, out of memory, failed read-back).
    #[error("device: {0}")]
    Device(String),

    /// A project file that cannot be opened.
    #[error("{file}: {reason}")]
    Project { file: String, reason: String },

    /// A training setting out of range (names the setting and the reason).
    #[error("setting {0}")]
    Config(#[from] crate::engine::train::config::ConfigError),

    /// The caller asked the work to stop (a run's Cancel) before it had a result.
    #[error("cancelled")]
    Cancelled,

    /// Too few photos to train on: at least 2 classes, each split has photos.
    #[error(
        "need at least 2 classes with training and validation images (have {classes} classes, {train} train, {val} val)"
    )]
    TooFewImages {
        classes: usize,
        train: usize,
        val: usize,
    },

    /// The settings, the photos' preparation and the weights name different backbones.
    #[error(
        "the settings ask for {settings}, the photos are prepared for {photos} and the weights are {weights}"
    )]
    BackboneMismatch {
        settings: &'static str,
        photos: &'static str,
        weights: &'static str,
    },

    /// A run that ended before any epoch finished, and why.
    #[error("{0}")]
    Stopped(crate::engine::train::report::Stop),

    /// A setting or request the engine cannot carry out.
    #[error("{0}")]
    Unsupported(String),

    /// Reading or writing a local file failed.
    #[error("{file}: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
}

impl EngineError {
    pub(crate) fn image(file: &str, reason: impl Into<String>) -> Self {
        Self::Image {
            file: file.to_string(),
            reason: reason.into(),
        }
    }

    pub(crate) fn weights(file: &str, reason: impl Into<String>) -> Self {
        Self::Weights {
            file: file.to_string(),
            reason: reason.into(),
        }
    }
}
