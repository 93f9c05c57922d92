//! Early stopping: the best epoch so far by the monitored metric, and when to give up on a run
//! that no longer improves (the lesson's "patience"). The best model is kept either way.

use crate::engine::train::config::{Monitor, TrainConfig};
use crate::engine::train::report::EpochReport;

/// What an epoch meant for the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A new best epoch: its model is now the one kept.
    Improved,
    /// No better than the best by more than the minimum change; the run goes on.
    Waiting,
    /// No improvement for `patience` epochs: the run ends with the best epoch's model.
    Stop { waited: usize },
}

/// The best epoch so far and its model.
#[derive(Debug, Clone)]
pub struct Best<M> {
    pub epoch: usize,
    pub model: M,
    score: f64,
}

/// Tracks the best epoch (`M`: the model kept with it).
#[derive(Debug, Clone)]
pub struct EarlyStopping<M> {
    monitor: Monitor,
    min_delta: f64,
    patience: Option<usize>,
    best: Option<Best<M>>,
    since_best: usize,
}

impl<M> EarlyStopping<M> {
    pub fn new(cfg: &TrainConfig) -> Self {
        Self {
            monitor: cfg.monitor,
            min_delta: cfg.min_delta,
            patience: cfg.early_stop,
            best: None,
            since_best: 0,
        }
    }

    /// Scores `epoch`; `model` is asked for only when the epoch is a new best.
    pub fn observe(&mut self, epoch: &EpochReport, model: impl FnOnce() -> M) -> Verdict {
        let score = match self.monitor {
            Monitor::ValLoss => -epoch.val_loss,
            Monitor::ValAcc => epoch.val_acc,
        };
        if self
            .best
            .as_ref()
            .is_none_or(|b| score > b.score + self.min_delta)
        {
            self.best = Some(Best {
                epoch: epoch.epoch,
                model: model(),
                score,
            });
            self.since_best = 0;
            return Verdict::Improved;
        }
        self.since_best += 1;
        match self.patience {
            Some(p) if self.since_best >= p => Verdict::Stop {
                waited: self.since_best,
            },
            _ => Verdict::Waiting,
        }
    }

    pub fn best(&self) -> Option<&Best<M>> {
        self.best.as_ref()
    }

    pub fn into_best(self) -> Option<Best<M>> {
        self.best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch(epoch: usize, val_loss: f64, val_acc: f64) -> EpochReport {
        EpochReport {
            epoch,
            val_loss,
            val_acc,
            ..EpochReport::default()
        }
    }

    #[test]
    fn keeps_the_lowest_loss_and_stops_after_patience_epochs_without_improvement() {
        let cfg = TrainConfig::new()
            .with_early_stop(Some(2))
            .with_min_delta(0.05);
        let mut early = EarlyStopping::new(&cfg);
        let verdicts: Vec<Verdict> = [(1, 0.9), (2, 0.5), (3, 0.47), (4, 0.6)]
            .into_iter()
            .map(|(e, loss)| early.observe(&epoch(e, loss, 0.0), || e))
            .collect();
        // Epoch 3 is lower, but by less than min_delta: not an improvement.
        assert_eq!(
            verdicts,
            [
                Verdict::Improved,
                Verdict::Improved,
                Verdict::Waiting,
                Verdict::Stop { waited: 2 }
            ]
        );
        let best = early.into_best().unwrap();
        assert_eq!((best.epoch, best.model), (2, 2));
    }

    #[test]
    fn monitors_accuracy_when_asked_and_never_stops_without_patience() {
        let cfg = TrainConfig::new().with_monitor(Monitor::ValAcc);
        let mut early = EarlyStopping::new(&cfg);
        let mut asked = 0;
        for (e, acc) in [(1, 0.5), (2, 0.8), (3, 0.7), (4, 0.6), (5, 0.6), (6, 0.6)] {
            let verdict = early.observe(&epoch(e, 0.1, acc), || {
                asked += 1;
                e
            });
            assert!(!matches!(verdict, Verdict::Stop { .. }));
        }
        assert_eq!(early.best().map(|b| b.epoch), Some(2));
        assert_eq!(asked, 2, "the model is taken only for a new best");
    }
}
