//! The messages between the page and its training worker, and their JSON text. Bulk bytes
//! (weights, pixels, the trained model) travel beside the text as transferable buffers; this
//! module only says which buffer goes with which message. Target-independent, so the whole
//! protocol is tested natively.
//!
//! Every request is answered exactly once: `Init` by `Initialized`, `Train` by `RunEnded` (after
//! any number of `Progress`), `LoadModel` by `ModelLoaded`, `Predict` by `Prediction`. `Cancel`
//! is answered by the `RunEnded` of the run it stops. `Crashed` is not an answer: the worker is
//! gone and the page starts a new one.

use serde::{Deserialize, Serialize};

use crate::engine::config::TrainConfig;
use crate::engine::training::{Progress, TrainReport};

/// One image sent for training; its RGB pixels travel as a buffer in the same order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageMeta {
    pub file: String,
    pub label: usize,
    pub width: u32,
    pub height: u32,
}

/// Page -> worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ToWorker {
    /// The pretrained weights (safetensors) are the first buffer.
    Init,
    /// Buffers: the train images' pixels, then the val images'.
    Train {
        classes: Vec<String>,
        config: Box<TrainConfig>,
        train: Vec<ImageMeta>,
        val: Vec<ImageMeta>,
    },
    /// Stop after the current step; the best epoch so far is still sent back.
    Cancel,
    /// Use this exported model (the first buffer) for `Predict`; `file` names it in errors.
    LoadModel { file: String },
    /// Classify the photo file in the first buffer with the current model.
    Predict { file: String, top_k: usize },
}

/// A finished run; the exported model (safetensors with metadata) is the first buffer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunOutcome {
    pub report: TrainReport,
    /// Stopped by the user after at least one epoch (the best epoch is kept).
    pub cancelled: bool,
}

/// Why a run gave no model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RunError {
    /// Stopped by the user before the first epoch finished.
    Cancelled,
    /// Anything else, with the reason to show.
    Failed(String),
}

/// Worker -> page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FromWorker {
    /// The wasm module runs and listens (sent once, unasked).
    Started,
    /// Answer to `Init`: the weights are on the worker's device, or why not.
    Initialized(Result<(), String>),
    Progress(Progress),
    /// Answer to `Train`.
    RunEnded(Result<RunOutcome, RunError>),
    /// Answer to `LoadModel`: the model's class names, or why it was refused.
    ModelLoaded {
        file: String,
        result: Result<Vec<String>, String>,
    },
    /// Answer to `Predict`: the top classes with their probabilities.
    Prediction {
        file: String,
        result: Result<Vec<(String, f32)>, String>,
    },
    /// The worker stopped (a panic, or a message it could not read); it answers nothing more.
    Crashed(String),
}

/// The message as JSON text. A message that would not decode on the other side (JSON has no
/// NaN or infinity: serde writes `null`, which a number field refuses) is an error here, at the
/// sender, with the reason, instead of a lost answer there.
pub fn encode<T: Serialize + for<'de> Deserialize<'de>>(message: &T) -> Result<String, String> {
    let text = serde_json::to_string(message).map_err(|e| format!("unwritable message: {e}"))?;
    serde_json::from_str::<T>(&text)
        .map_err(|e| format!("the message would not decode (a number that is not finite?): {e}"))?;
    Ok(text)
}

pub fn decode<T: for<'de> Deserialize<'de>>(text: &str) -> Result<T, String> {
    serde_json::from_str(text).map_err(|e| format!("unreadable message: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::training::EpochReport;

    fn epoch(val_loss: f64) -> EpochReport {
        EpochReport {
            epoch: 1,
            train_loss: 0.5,
            train_acc: 0.75,
            val_loss,
            val_acc: 1.0,
            lr: 1e-3,
            seconds: 0.25,
            per_class_acc: vec![1.0, 1.0],
            confusion: vec![vec![1, 0], vec![0, 1]],
            val_predicted: vec![0, 1],
        }
    }

    fn report(val_loss: f64) -> TrainReport {
        TrainReport {
            strategy: "head".into(),
            epochs: vec![epoch(val_loss)],
            best_epoch: 1,
            val_acc: 1.0,
            per_class_acc: vec![1.0, 1.0],
            confusion: vec![vec![1, 0], vec![0, 1]],
            val_predicted: vec![0, 1],
            seconds_total: 1.5,
            stopped: None,
        }
    }

    #[test]
    fn every_message_round_trips() {
        let to = [
            ToWorker::Init,
            ToWorker::Train {
                classes: vec!["ants".into(), "bees".into()],
                config: Box::new(TrainConfig::new().with_epochs(2)),
                train: vec![ImageMeta {
                    file: "a.jpg".into(),
                    label: 0,
                    width: 256,
                    height: 300,
                }],
                val: Vec::new(),
            },
            ToWorker::Cancel,
            ToWorker::LoadModel {
                file: "m.safetensors".into(),
            },
            ToWorker::Predict {
                file: "p.jpg".into(),
                top_k: 3,
            },
        ];
        for m in to {
            assert_eq!(decode::<ToWorker>(&encode(&m).unwrap()).unwrap(), m);
        }
        let from = [
            FromWorker::Started,
            FromWorker::Initialized(Ok(())),
            FromWorker::Initialized(Err("no adapter".into())),
            FromWorker::Progress(Progress::Epoch(epoch(0.3))),
            FromWorker::RunEnded(Ok(RunOutcome {
                report: report(0.3),
                cancelled: true,
            })),
            FromWorker::RunEnded(Err(RunError::Cancelled)),
            FromWorker::RunEnded(Err(RunError::Failed("device lost".into()))),
            FromWorker::Prediction {
                file: "p.jpg".into(),
                result: Ok(vec![("bees".into(), 0.875)]),
            },
            FromWorker::Crashed("panicked".into()),
        ];
        for m in from {
            assert_eq!(decode::<FromWorker>(&encode(&m).unwrap()).unwrap(), m);
        }
    }

    #[test]
    fn a_non_finite_number_is_refused_at_the_sender() {
        let m = FromWorker::RunEnded(Ok(RunOutcome {
            report: report(f64::NAN),
            cancelled: false,
        }));
        let e = encode(&m).unwrap_err();
        assert!(e.contains("would not decode"), "{e}");
        let m = FromWorker::Progress(Progress::Epoch(epoch(f64::INFINITY)));
        assert!(encode(&m).is_err());
    }
}
