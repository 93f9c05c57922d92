//! A training run as the page follows it: one state machine fed by the page's start and the
//! worker's events, from which the train panel draws its status line, progress bar, epoch
//! table and charts. Target-independent, so every transition is tested natively. What a
//! model file is stays the page's business (`M`: in the browser a buffer in JS memory).

use crate::app::protocol::{RunError, RunOutcome};
use crate::engine::train::plan::RunPlan;
use crate::engine::train::report::{EpochReport, Progress, TrainReport};

/// Where the run is.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Phase {
    #[default]
    Idle,
    /// Started: the images are being sent, then the frozen layers read them.
    Running,
    Done,
    Cancelled,
    Failed(String),
}

impl Phase {
    /// The name tests and styles read (`data-state`).
    pub fn name(&self) -> &'static str {
        match self {
            Phase::Idle => "idle",
            Phase::Running => "running",
            Phase::Done => "done",
            Phase::Cancelled => "cancelled",
            Phase::Failed(_) => "failed",
        }
    }
}

/// A model a run leaves behind, with what to say about it.
#[derive(Clone, Debug, PartialEq)]
pub struct RunModel<M> {
    pub report: TrainReport,
    /// Exported safetensors with metadata.
    pub bytes: M,
    pub classes: Vec<String>,
    pub note: String,
}

/// The page's view of the current (or last) run; `M` is a model file.
#[derive(Clone, Debug, PartialEq)]
pub struct RunState<M> {
    pub phase: Phase,
    pub classes: Vec<String>,
    pub plan: Option<RunPlan>,
    pub rows: Vec<EpochReport>,
    /// Optimiser steps done in the whole run (the LR chart's marker).
    pub steps_done: usize,
    /// Share of the run done, 0 to 1.
    pub progress: f64,
    /// The latest step or feature-pass line while running; the outcome afterwards.
    pub detail: String,
    /// The best model so far, safe in the page in case the worker dies.
    pub kept: Option<RunModel<M>>,
}

impl<M> Default for RunState<M> {
    fn default() -> Self {
        RunState {
            phase: Phase::Idle,
            classes: Vec::new(),
            plan: None,
            rows: Vec::new(),
            steps_done: 0,
            progress: 0.0,
            detail: String::new(),
            kept: None,
        }
    }
}

impl<M> RunState<M> {
    pub fn running(&self) -> bool {
        self.phase == Phase::Running
    }

    /// A new run starts (cleared of the last one's rows); `false` when one is going.
    pub fn begin(&mut self) -> bool {
        if self.running() {
            return false;
        }
        *self = RunState {
            phase: Phase::Running,
            detail: "Reading the images through the pretrained network…".into(),
            ..RunState::default()
        };
        true
    }

    /// The images are split and the plan made: the run is about to go to the worker.
    pub fn planned(&mut self, plan: RunPlan, classes: Vec<String>) {
        self.plan = Some(plan);
        self.classes = classes;
    }

    /// The run could not start, or stopped with no model to keep.
    pub fn fail(&mut self, reason: String) {
        self.phase = Phase::Failed(reason);
    }

    fn epochs(&self) -> usize {
        self.plan.as_ref().map_or(1, |p| p.epochs().max(1))
    }

    pub fn on_progress(&mut self, progress: &Progress) {
        if !self.running() {
            return;
        }
        match progress {
            Progress::Features { done, total } => {
                self.detail =
                    format!("Reading the images through the pretrained network: {done} of {total}");
            }
            &Progress::Step {
                epoch,
                step,
                steps,
                loss,
                images_per_sec,
                eta_seconds,
                ..
            } => {
                let epochs = self.epochs();
                self.steps_done = self
                    .plan
                    .as_ref()
                    .map_or(step, |p| p.steps_done(epoch, step));
                let done = (epoch as f64 - 1.0).max(0.0) + step as f64 / steps.max(1) as f64;
                self.progress = (done / epochs as f64).clamp(0.0, 1.0);
                self.detail = format!(
                    "Epoch {epoch}/{epochs}, step {step}/{steps}: loss {loss:.3}, {images_per_sec:.1} images/s, about {eta_seconds:.0} s left"
                );
            }
            Progress::Epoch(row) => {
                self.progress = (row.epoch as f64 / self.epochs() as f64).clamp(0.0, 1.0);
                self.rows.push(row.clone());
            }
        }
    }

    /// The worker's best model so far (ignored once the run has ended).
    pub fn on_best(&mut self, report: TrainReport, bytes: M) {
        if !self.running() {
            return;
        }
        let note = format!(
            "Kept from epoch {} of a run that did not finish: {}",
            report.best_epoch,
            self.classes.join(", ")
        );
        self.kept = Some(RunModel {
            report,
            bytes,
            classes: self.classes.clone(),
            note,
        });
    }

    /// The epoch whose model is safe in the page, while running.
    pub fn kept_epoch(&self) -> Option<usize> {
        self.kept.as_ref().map(|k| k.report.best_epoch)
    }

    /// The worker's answer to the run: the model to use from now on, if there is one. A run
    /// that failed after an epoch finished keeps that epoch's best model.
    pub fn finish(&mut self, result: Result<(RunOutcome, M), RunError>) -> Option<RunModel<M>> {
        let kept = self.kept.take();
        match result {
            Ok((outcome, bytes)) => {
                if outcome.cancelled {
                    self.detail = "Stopped; the best epoch so far is kept.".into();
                    self.phase = Phase::Cancelled;
                } else {
                    self.progress = 1.0;
                    self.detail = String::new();
                    self.phase = Phase::Done;
                }
                Some(RunModel {
                    report: outcome.report,
                    bytes,
                    classes: self.classes.clone(),
                    note: format!("Trained here on {}", self.classes.join(", ")),
                })
            }
            Err(RunError::Cancelled) => {
                self.detail =
                    "Stopped before the first epoch finished; nothing was trained.".into();
                self.phase = Phase::Cancelled;
                None
            }
            Err(RunError::Failed(reason)) => match kept {
                Some(kept) => {
                    self.phase = Phase::Failed(format!(
                        "{reason}. The best model so far (epoch {}) is kept.",
                        kept.report.best_epoch
                    ));
                    Some(kept)
                }
                None => {
                    self.phase = Phase::Failed(reason);
                    None
                }
            },
        }
    }

    /// The status line.
    pub fn status(&self) -> String {
        match &self.phase {
            Phase::Idle => "Not trained yet.".to_string(),
            Phase::Running => format!("Training… {}", self.detail),
            Phase::Done => "Done.".to_string(),
            Phase::Cancelled => self.detail.clone(),
            Phase::Failed(reason) => format!("Training stopped: {reason}"),
        }
    }
}

/// Why the classes as they are cannot be trained on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotReady {
    #[error("Add at least two classes.")]
    TooFewClasses,
    #[error("\"{0}\" needs at least 2 images (one is kept aside to check the model).")]
    TooFewImages(String),
    #[error("Two classes are called \"{0}\"; give each its own name.")]
    SameName(String),
}

/// Whether classes (name, number of photos) can be trained on: two or more, each with two
/// photos or more (one is kept aside), no two named alike (`data::class_key`).
pub fn check_classes(classes: &[(String, usize)]) -> Result<(), NotReady> {
    if classes.len() < 2 {
        return Err(NotReady::TooFewClasses);
    }
    if let Some((name, _)) = classes.iter().find(|(_, n)| *n < 2) {
        return Err(NotReady::TooFewImages(name.clone()));
    }
    let mut seen = std::collections::HashSet::new();
    match classes
        .iter()
        .find(|(name, _)| !seen.insert(crate::engine::data::class_key(name)))
    {
        Some((name, _)) => Err(NotReady::SameName(name.clone())),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::train::config::TrainConfig;

    /// A model file, as the tests see one.
    type RunState = super::RunState<Vec<u8>>;

    fn row(epoch: usize) -> EpochReport {
        EpochReport {
            epoch,
            train_loss: 0.5,
            train_acc: 0.75,
            val_loss: 0.4,
            val_acc: 0.8,
            lr: 1e-3,
            seconds: 2.0,
            per_class_acc: vec![0.8, 0.8],
            confusion: vec![vec![4, 1], vec![1, 4]],
            val_predicted: vec![0; 10],
        }
    }

    fn report(best_epoch: usize) -> TrainReport {
        TrainReport {
            strategy: crate::engine::train::config::Strategy::Head,
            epochs: (1..=best_epoch).map(row).collect(),
            best_epoch,
            val_acc: 0.8,
            per_class_acc: vec![0.8, 0.8],
            confusion: vec![vec![4, 1], vec![1, 4]],
            val_predicted: vec![0; 10],
            seconds_total: 4.0,
            stopped: None,
        }
    }

    /// A running 4-epoch run of 40 training images.
    fn running() -> RunState {
        let mut run = RunState::default();
        assert!(run.begin());
        let plan = RunPlan::new(&TrainConfig::new().with_epochs(4), 40);
        run.planned(plan, vec!["ants".into(), "bees".into()]);
        run
    }

    #[test]
    fn steps_and_epochs_move_the_progress() {
        let mut run = running();
        let steps = run.plan.as_ref().unwrap().steps_per_epoch(0);
        run.on_progress(&Progress::Step {
            epoch: 2,
            step: steps / 2,
            steps,
            loss: 0.3,
            lr: 1e-3,
            images_per_sec: 10.0,
            eta_seconds: 5.0,
        });
        // Epoch 2 half done of 4: 1.5 / 4.
        assert!((run.progress - 1.5 / 4.0).abs() < 1e-9, "{}", run.progress);
        assert_eq!(run.steps_done, steps + steps / 2);
        assert!(run.status().starts_with("Training… Epoch 2/4"));
        run.on_progress(&Progress::Epoch(row(2)));
        assert_eq!(run.progress, 0.5);
        assert_eq!(run.rows.len(), 1);
    }

    #[test]
    fn a_second_start_is_refused_while_running() {
        let mut run = running();
        assert!(!run.begin());
        assert!(run.running());
    }

    #[test]
    fn a_failure_after_an_epoch_keeps_the_best_model() {
        let mut run = running();
        run.on_progress(&Progress::Epoch(row(1)));
        run.on_best(report(1), vec![1, 2, 3]);
        assert_eq!(run.kept_epoch(), Some(1));
        let kept = run
            .finish(Err(RunError::Failed(
                "the worker stopped: test crash".into(),
            )))
            .expect("the best model so far is kept");
        assert_eq!(kept.bytes, vec![1, 2, 3]);
        assert_eq!(kept.report.best_epoch, 1);
        assert!(kept.note.contains("epoch 1"), "{}", kept.note);
        assert_eq!(run.phase.name(), "failed");
        let status = run.status();
        assert!(
            status.contains("test crash") && status.contains("(epoch 1) is kept"),
            "{status}"
        );
        // The epochs that finished stay on show.
        assert_eq!(run.rows.len(), 1);
    }

    #[test]
    fn a_failure_before_any_epoch_keeps_nothing() {
        let mut run = running();
        assert!(
            run.finish(Err(RunError::Failed("device lost".into())))
                .is_none()
        );
        assert_eq!(run.status(), "Training stopped: device lost");
    }

    #[test]
    fn a_snapshot_after_the_end_is_ignored() {
        let mut run = running();
        let outcome = RunOutcome {
            report: report(2),
            cancelled: true,
        };
        let model = run.finish(Ok((outcome, vec![9]))).unwrap();
        assert_eq!(model.note, "Trained here on ants, bees");
        assert_eq!(run.phase, Phase::Cancelled);
        assert!(run.status().contains("best epoch so far is kept"));
        // A late snapshot of the ended run changes nothing.
        run.on_best(report(1), vec![0]);
        assert_eq!(run.kept, None);
    }

    #[test]
    fn classes_are_checked_before_a_run() {
        let c = |v: &[(&str, usize)]| -> Vec<(String, usize)> {
            v.iter().map(|(n, k)| (n.to_string(), *k)).collect()
        };
        assert_eq!(
            check_classes(&c(&[("ants", 5)])),
            Err(NotReady::TooFewClasses)
        );
        assert_eq!(
            check_classes(&c(&[("ants", 5), ("bees", 1)])),
            Err(NotReady::TooFewImages("bees".into()))
        );
        assert_eq!(
            check_classes(&c(&[("Bees ", 3), ("ants", 5), ("bees", 2)])),
            Err(NotReady::SameName("bees".into()))
        );
        assert_eq!(check_classes(&c(&[("ants", 2), ("bees", 2)])), Ok(()));
    }
}
