//! The messages between the page and its worker, and their JSON text. The worker owns the
//! device and every model on it (the ImageNet classifier, the trained model), and decodes
//! photos, so neither the GPU nor a large decode ever runs on the page. Bulk bytes (weights,
//! files, pixels, the trained model) travel beside the text as transferable buffers; this
//! module only says which buffer goes with which message. Target-independent, so the whole
//! protocol is tested natively.
//!
//! Every [`Request`] gets exactly one [`FromWorker::Answer`] with its id. Events come between:
//! `Started` (once, unasked), `Progress` and `BestSoFar` during a run, and `Crashed` when the
//! worker is gone (the page then answers every open request with an error itself and starts a
//! new worker).

use serde::{Deserialize, Serialize};

use crate::app::device::DeviceKind;
use crate::engine::insight::inference::ClassScore;
use crate::engine::measure::bench::DeviceSpeed;
use crate::engine::model::BackboneKind;
use crate::engine::train::config::TrainConfig;
use crate::engine::train::plan::Unfreeze;
use crate::engine::train::report::{Progress, TrainReport};

/// One image sent for training; its RGB pixels travel as a buffer in the same order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageMeta {
    pub file: String,
    pub label: usize,
    pub width: u32,
    pub height: u32,
}

/// A request and the id its answer carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub id: u64,
    pub body: ToWorker,
}

/// Page -> worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ToWorker {
    /// The pretrained weights (safetensors) are the first buffer; the network goes on
    /// `device`. On the CPU, `helpers` helper workers share the frozen layers' pass (see
    /// [`ToHelper`]). Answer: `Initialized`.
    Init { device: DeviceKind, helpers: usize },
    /// Decode the photo file in the first buffer to `backbone`'s working size. Answer:
    /// `Decoded`, with the RGB pixels as its buffer.
    Decode {
        file: String,
        backbone: BackboneKind,
    },
    /// The ImageNet classes of the photo file in the first buffer. Answer: `Classified`.
    Classify { file: String, top_k: usize },
    /// Buffers: the train images' pixels, then the val images'. Answer: `RunEnded`.
    Train {
        classes: Vec<String>,
        config: Box<TrainConfig>,
        train: Vec<ImageMeta>,
        val: Vec<ImageMeta>,
    },
    /// Stop the run after the current step (its `RunEnded` keeps the best epoch). Answer: `Done`.
    Cancel,
    /// Use this exported model (the first buffer) for `Predict`; `file` names it in errors.
    /// Answer: `ModelLoaded`.
    LoadModel { file: String },
    /// Classify the photo file in the first buffer with the trained model. Answer: `Classified`.
    Predict { file: String, top_k: usize },
    /// Time the network on `device` (the one in use, or the other) at `batch` images a batch
    /// (the worker keeps it within `device::bench_batch`'s limits). Answer: `Benched`.
    Bench { device: DeviceKind, batch: usize },
    /// Where `model` looks in a photo: Grad-CAM heatmaps of `classes` (none: the predicted
    /// class). The first buffer is the photo file, or its working-size RGB pixels when
    /// `pixels` gives their size. Answer: `Explained`, with one PNG (the heatmap over the
    /// network's input) per class as its buffers.
    Explain {
        file: String,
        model: Which,
        pixels: Option<(u32, u32)>,
        classes: Vec<usize>,
    },
    /// What each layer of the pretrained network sees in the photo file in the first buffer.
    /// Answer: `Layers`, with one PNG (the layer's grid of channels) per view as its buffers.
    Layers { file: String },
    /// The last finished run's photos in the feature space. Answer: `FeatureSpace`.
    FeatureSpace,
    /// Where the time goes on the device in use: `passes` of the pretrained network on a
    /// batch of `batch` images, per operation (see `engine::measure::profile`). Answer: `Profiled`.
    Profile {
        batch: usize,
        passes: Vec<crate::engine::measure::profile::Pass>,
    },
}

/// Which of the worker's models a request means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Which {
    /// The pretrained ImageNet classifier.
    ImageNet,
    /// The trained (or loaded) model.
    Trained,
}

/// One class's heatmap, with the model's probability for the class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Explained {
    pub label: String,
    pub prob: f32,
    pub heat: crate::engine::insight::gradcam::Heatmap,
    /// Heat share of each quadrant (top-left, top-right, bottom-left, bottom-right).
    pub quadrants: [f32; 4],
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

/// Why `Init` failed: the device would not start (the page may choose the other one), or the
/// weights were refused (a cached copy is then downloaded again).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum InitError {
    Device(String),
    Weights(String),
}

impl std::fmt::Display for InitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InitError::Device(e) | InitError::Weights(e) => f.write_str(e),
        }
    }
}

/// A decoded photo's working-size pixels (the answer's buffer) and its size.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Decoded {
    pub width: u32,
    pub height: u32,
}

/// The answer to one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Answer {
    /// To `Init`: the ImageNet model is on the worker's device, or why not.
    Initialized(Result<(), InitError>),
    Decoded(Result<Decoded, String>),
    /// To `Classify` and `Predict`: the top classes, best first.
    Classified(Result<Vec<ClassScore>, String>),
    RunEnded(Result<RunOutcome, RunError>),
    /// To `LoadModel`: the model's class names, or why it was refused.
    ModelLoaded(Result<Vec<String>, String>),
    /// To `Cancel`.
    Done,
    Benched(Result<DeviceSpeed, String>),
    Explained(Result<Vec<Explained>, String>),
    Layers(Result<Vec<crate::engine::insight::layer_views::LayerView>, String>),
    FeatureSpace(Result<crate::engine::insight::pca::FeatureSpace, String>),
    Profiled(Result<Vec<crate::engine::measure::profile::Profiles>, String>),
}

impl Answer {
    /// The same kind of answer, failed with `reason`: what goes back when the real answer
    /// cannot be sent (a number JSON cannot carry), so the request still gets exactly one.
    pub fn failed(&self, reason: String) -> Answer {
        match self {
            Answer::Initialized(_) => Answer::Initialized(Err(InitError::Weights(reason))),
            Answer::Decoded(_) => Answer::Decoded(Err(reason)),
            Answer::Classified(_) => Answer::Classified(Err(reason)),
            Answer::RunEnded(_) => Answer::RunEnded(Err(RunError::Failed(reason))),
            Answer::ModelLoaded(_) => Answer::ModelLoaded(Err(reason)),
            Answer::Done => Answer::Done,
            Answer::Benched(_) => Answer::Benched(Err(reason)),
            Answer::Explained(_) => Answer::Explained(Err(reason)),
            Answer::Layers(_) => Answer::Layers(Err(reason)),
            Answer::FeatureSpace(_) => Answer::FeatureSpace(Err(reason)),
            Answer::Profiled(_) => Answer::Profiled(Err(reason)),
        }
    }
}

/// Worker -> page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FromWorker {
    /// The wasm module runs and listens (sent once, unasked).
    Started,
    Answer {
        id: u64,
        body: Answer,
    },
    Progress(Progress),
    /// The run's best model so far (the first buffer), sent after each epoch that improved it,
    /// so a worker that dies mid-run loses no finished epoch. `report` describes it.
    BestSoFar {
        report: TrainReport,
    },
    /// The worker stopped (a panic, or a message it could not read); it answers nothing more.
    Crashed(String),
}

/// A request from the worker to one of its helper workers (each with its own CPU device and
/// copy of the pretrained network), and the id its answer carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HelperRequest {
    pub id: u64,
    pub body: ToHelper,
}

/// Worker -> helper.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ToHelper {
    /// Build the pretrained network from the weights (safetensors) in the first buffer.
    Init,
    /// Run the frozen part below `unfreeze` on the images, one buffer of `size` x `size` RGB
    /// pixels each. The answer's buffer holds the outputs (little-endian f32, row-major).
    Boundary { unfreeze: Unfreeze, size: u32 },
}

/// Helper -> worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FromHelper {
    /// The wasm module runs and listens (sent once, unasked).
    Started,
    /// The one answer to request `id`.
    Answer { id: u64, result: Result<(), String> },
}

/// The message as JSON text. A message that would not decode on the other side (JSON has no
/// NaN or infinity: serde writes `null`, which a number field refuses) is an error here, at the
/// sender, with the reason, instead of a lost answer there.
pub fn encode<T: Serialize + for<'de> Deserialize<'de>>(message: &T) -> Result<String, WireError> {
    let text = serde_json::to_string(message).map_err(WireError::Unwritable)?;
    serde_json::from_str::<T>(&text).map_err(WireError::WouldNotDecode)?;
    Ok(text)
}

pub fn decode<T: for<'de> Deserialize<'de>>(text: &str) -> Result<T, WireError> {
    serde_json::from_str(text).map_err(WireError::Unreadable)
}

/// A message that cannot cross between the page and a worker.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("unwritable message: {0}")]
    Unwritable(serde_json::Error),
    #[error("the message would not decode (a number that is not finite?): {0}")]
    WouldNotDecode(serde_json::Error),
    #[error("unreadable message: {0}")]
    Unreadable(serde_json::Error),
}

/// Worker deaths after which no new one starts (a device that fails at once).
pub const MAX_RESTARTS: u32 = 3;
/// A worker that ran this long was healthy: its crash starts the restart budget afresh.
const HEALTHY_MS: f64 = 60_000.0;

/// What the page does about a report that a worker died.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterCrash {
    /// Start a new worker.
    Restart,
    /// The budget is spent: no new worker.
    GiveUp,
    /// A second report of a death already handled (a panic posts `Crashed` and also fires the
    /// worker's `onerror`), or of an older worker: nothing to do.
    Ignore,
}

/// The page's count of worker deaths: each worker has a generation, and one death is counted
/// once, however many ways it is reported.
#[derive(Debug, Default)]
pub struct Lives {
    generation: u64,
    alive: bool,
    restarts: u32,
}

impl Lives {
    /// A new worker started: its generation, which its reports carry.
    pub fn started(&mut self) -> u64 {
        self.generation += 1;
        self.alive = true;
        self.generation
    }

    /// The worker of `generation`, which had run `alive_ms`, was reported dead.
    pub fn crashed(&mut self, generation: u64, alive_ms: f64) -> AfterCrash {
        if generation != self.generation || !self.alive {
            return AfterCrash::Ignore;
        }
        self.alive = false;
        if alive_ms >= HEALTHY_MS {
            self.restarts = 0;
        }
        if self.restarts >= MAX_RESTARTS {
            return AfterCrash::GiveUp;
        }
        self.restarts += 1;
        AfterCrash::Restart
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::measure::bench::SharedPass;
    use crate::engine::train::report::EpochReport;

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
            strategy: crate::engine::train::config::Strategy::Head,
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
            ToWorker::Init {
                device: DeviceKind::Cpu,
                helpers: 3,
            },
            ToWorker::Decode {
                file: "a.jpg".into(),
                backbone: BackboneKind::Lite2,
            },
            ToWorker::Classify {
                file: "coffee.png".into(),
                top_k: 5,
            },
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
            ToWorker::Bench {
                device: DeviceKind::WebGpu,
                batch: 16,
            },
        ];
        for (id, body) in to.into_iter().enumerate() {
            let m = Request {
                id: id as u64,
                body,
            };
            assert_eq!(decode::<Request>(&encode(&m).unwrap()).unwrap(), m);
        }
        for body in [
            ToHelper::Init,
            ToHelper::Boundary {
                unfreeze: Unfreeze::Blocks(1),
                size: 224,
            },
            ToHelper::Boundary {
                unfreeze: Unfreeze::All,
                size: 240,
            },
        ] {
            let m = HelperRequest { id: 3, body };
            assert_eq!(decode::<HelperRequest>(&encode(&m).unwrap()).unwrap(), m);
        }
        for m in [
            FromHelper::Started,
            FromHelper::Answer {
                id: 3,
                result: Err("no weights were sent".into()),
            },
            FromHelper::Answer {
                id: 4,
                result: Ok(()),
            },
        ] {
            assert_eq!(decode::<FromHelper>(&encode(&m).unwrap()).unwrap(), m);
        }
        let answer = |body| FromWorker::Answer { id: 7, body };
        let from = [
            FromWorker::Started,
            answer(Answer::Initialized(Ok(()))),
            answer(Answer::Initialized(Err(InitError::Device(
                "no adapter".into(),
            )))),
            answer(Answer::Decoded(Ok(Decoded {
                width: 341,
                height: 256,
            }))),
            answer(Answer::Classified(Ok(vec![ClassScore {
                index: 1,
                label: "bees".into(),
                prob: 0.875,
                logit: 2.5,
            }]))),
            answer(Answer::RunEnded(Ok(RunOutcome {
                report: report(0.3),
                cancelled: true,
            }))),
            answer(Answer::RunEnded(Err(RunError::Cancelled))),
            answer(Answer::RunEnded(Err(RunError::Failed(
                "device lost".into(),
            )))),
            answer(Answer::ModelLoaded(Ok(vec!["ants".into()]))),
            answer(Answer::Done),
            answer(Answer::Benched(Ok(DeviceSpeed {
                batch: 4,
                inference_ips: 3.5,
                head_step_ips: 3.25,
                last_block_step_ips: 2.5,
                full_step_ips: 1.0,
                estimated: vec!["full_step_ips".into()],
                shared: Some(SharedPass {
                    workers: 2,
                    images: 8,
                    alone_ips: 6.5,
                    shared_ips: 12.25,
                }),
            }))),
            FromWorker::Progress(Progress::Epoch(epoch(0.3))),
            FromWorker::BestSoFar {
                report: report(0.3),
            },
            FromWorker::Crashed("panicked".into()),
        ];
        for m in from {
            assert_eq!(decode::<FromWorker>(&encode(&m).unwrap()).unwrap(), m);
        }
    }

    #[test]
    fn a_non_finite_number_is_refused_at_the_sender() {
        let body = Answer::RunEnded(Ok(RunOutcome {
            report: report(f64::NAN),
            cancelled: false,
        }));
        let e = encode(&FromWorker::Answer {
            id: 1,
            body: body.clone(),
        })
        .unwrap_err();
        assert!(matches!(e, WireError::WouldNotDecode(_)), "{e}");
        // The request still gets one answer: the same kind, failed with the reason.
        let failed = body.failed(e.to_string());
        assert!(
            matches!(&failed, Answer::RunEnded(Err(RunError::Failed(r))) if r.contains("would not decode"))
        );
        assert!(
            encode(&FromWorker::Answer {
                id: 1,
                body: failed
            })
            .is_ok()
        );
        let m = FromWorker::Progress(Progress::Epoch(epoch(f64::INFINITY)));
        assert!(encode(&m).is_err());
    }

    #[test]
    fn a_death_reported_twice_uses_one_restart() {
        let mut lives = Lives::default();
        let first = lives.started();
        // The panic's `Crashed` message, then the same worker's `onerror`.
        assert_eq!(lives.crashed(first, 10.0), AfterCrash::Restart);
        assert_eq!(lives.crashed(first, 10.0), AfterCrash::Ignore);
        let second = lives.started();
        // A late report of the first worker does not touch the second.
        assert_eq!(lives.crashed(first, 10.0), AfterCrash::Ignore);
        assert_eq!(lives.crashed(second, 10.0), AfterCrash::Restart);
        let third = lives.started();
        assert_eq!(lives.crashed(third, 10.0), AfterCrash::Restart);
        let fourth = lives.started();
        assert_eq!(lives.crashed(fourth, 10.0), AfterCrash::GiveUp);
    }

    #[test]
    fn a_healthy_period_restores_the_budget() {
        let mut lives = Lives::default();
        for _ in 0..MAX_RESTARTS {
            let g = lives.started();
            assert_eq!(lives.crashed(g, 5.0), AfterCrash::Restart);
        }
        // This one ran a good while before it died: it gets a restart.
        let g = lives.started();
        assert_eq!(lives.crashed(g, HEALTHY_MS), AfterCrash::Restart);
        let g = lives.started();
        assert_eq!(lives.crashed(g, 5.0), AfterCrash::Restart);
    }
}
