//! What a run reports: progress as it goes, each epoch's figures, why it stopped early, the
//! report of the finished run (built here, in one place).

use serde::{Deserialize, Serialize};

use crate::engine::train::config::Strategy;

/// Figures of one finished epoch.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct EpochReport {
    pub epoch: usize,
    pub train_loss: f64,
    pub train_acc: f64,
    pub val_loss: f64,
    pub val_acc: f64,
    /// Head learning rate at the epoch's last step.
    pub lr: f64,
    pub seconds: f64,
    pub per_class_acc: Vec<f64>,
    pub confusion: Vec<Vec<usize>>,
    /// Predicted class of each validation image, in dataset order (the mistakes gallery).
    pub val_predicted: Vec<usize>,
}

/// Progress events: the frozen part's first pass over the images, then every step and epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Progress {
    /// `done` of `total` images went through the frozen layers (once per stage).
    Features {
        done: usize,
        total: usize,
    },
    Step {
        epoch: usize,
        step: usize,
        steps: usize,
        loss: f64,
        lr: f64,
        images_per_sec: f64,
        eta_seconds: f64,
    },
    Epoch(EpochReport),
}

/// The outcome of a run; the model in it carries the best epoch's weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainReport {
    pub strategy: Strategy,
    pub epochs: Vec<EpochReport>,
    pub best_epoch: usize,
    pub val_acc: f64,
    pub per_class_acc: Vec<f64>,
    pub confusion: Vec<Vec<usize>>,
    /// The best epoch's predicted class of each validation image.
    pub val_predicted: Vec<usize>,
    pub seconds_total: f64,
    /// Why the run ended early, if it did.
    pub stopped: Option<Stop>,
}

impl TrainReport {
    /// The report of a run whose best epoch is `best_epoch` (its figures are that epoch's).
    pub fn new(
        strategy: Strategy,
        epochs: Vec<EpochReport>,
        best_epoch: usize,
        seconds_total: f64,
        stopped: Option<Stop>,
    ) -> Self {
        let best = epochs.iter().find(|e| e.epoch == best_epoch).cloned();
        let best = best.unwrap_or_else(|| EpochReport {
            epoch: best_epoch,
            ..EpochReport::default()
        });
        Self {
            strategy,
            epochs,
            best_epoch,
            val_acc: best.val_acc,
            per_class_acc: best.per_class_acc,
            confusion: best.confusion,
            val_predicted: best.val_predicted,
            seconds_total,
            stopped,
        }
    }
}

/// Why a run ended before its last epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stop {
    /// The user cancelled during the frozen part's pass of stage `stage` (from 1).
    CancelledInFeaturePass { stage: usize },
    /// The user cancelled at `step` of `epoch`.
    Cancelled { epoch: usize, step: usize },
    /// The training loss became `value` at `step` of `epoch` (`None`: in the epoch's sum).
    LossNotFinite {
        epoch: usize,
        step: Option<usize>,
        value: NotFinite,
    },
    /// The validation loss of `epoch` became `value`; that epoch is not reported.
    ValLossNotFinite { epoch: usize, value: NotFinite },
    /// `waited` epochs after the best without improvement; the best, `restored`, is kept.
    EarlyStopping {
        epoch: usize,
        waited: usize,
        restored: usize,
    },
    /// A snapshot of a run still going (or one that failed later) after `epochs` epochs.
    Unfinished { epochs: usize },
    /// A reason in words, as reports saved before reasons had types carry it.
    #[serde(untagged)]
    Described(String),
}

impl Stop {
    /// Whether the user asked for the stop.
    pub fn cancelled(&self) -> bool {
        matches!(
            self,
            Stop::Cancelled { .. } | Stop::CancelledInFeaturePass { .. }
        )
    }
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const KEPT: &str = "kept the best model so far";
        const LOWER: &str = "try a lower learning rate";
        match self {
            Stop::CancelledInFeaturePass { stage } => {
                write!(
                    f,
                    "cancelled during the feature pass of stage {stage}; {KEPT}"
                )
            }
            Stop::Cancelled { epoch, step } => {
                write!(f, "cancelled at epoch {epoch}, step {step}; {KEPT}")
            }
            Stop::LossNotFinite {
                epoch,
                step: Some(step),
                value,
            } => write!(
                f,
                "loss became {value} at epoch {epoch}, step {step}: {LOWER}; {KEPT}"
            ),
            Stop::LossNotFinite {
                epoch,
                step: None,
                value,
            } => write!(
                f,
                "loss became {value} during epoch {epoch}: {LOWER}; {KEPT}"
            ),
            Stop::ValLossNotFinite { epoch, value } => write!(
                f,
                "validation loss became {value} at epoch {epoch}: {LOWER}; {KEPT}"
            ),
            Stop::EarlyStopping {
                epoch,
                waited,
                restored,
            } => write!(
                f,
                "early stopping after epoch {epoch}: no improvement for {waited} epochs; restored epoch {restored}"
            ),
            Stop::Unfinished { epochs } => write!(f, "the run had finished {epochs} epochs"),
            Stop::Described(words) => f.write_str(words),
        }
    }
}

/// A value that is not a finite number (a loss that diverged).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NotFinite {
    NaN,
    Infinity,
    NegativeInfinity,
}

impl NotFinite {
    /// `None` for a finite `value`.
    pub fn of(value: f64) -> Option<Self> {
        match value {
            v if v.is_nan() => Some(NotFinite::NaN),
            f64::INFINITY => Some(NotFinite::Infinity),
            f64::NEG_INFINITY => Some(NotFinite::NegativeInfinity),
            _ => None,
        }
    }
}

impl std::fmt::Display for NotFinite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NotFinite::NaN => "NaN",
            NotFinite::Infinity => "inf",
            NotFinite::NegativeInfinity => "-inf",
        })
    }
}

/// One off-diagonal cell of a confusion matrix: `count` photos of class `truth` taken for
/// `predicted`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Confused {
    pub truth: usize,
    pub predicted: usize,
    pub count: usize,
}

/// The `n` largest off-diagonal cells of a confusion matrix, largest first: what a matrix too
/// large to draw is shown as.
pub fn most_confused(confusion: &[Vec<usize>], n: usize) -> Vec<Confused> {
    let mut cells: Vec<Confused> = confusion
        .iter()
        .enumerate()
        .flat_map(|(i, row)| {
            row.iter()
                .enumerate()
                .filter(move |&(j, &count)| j != i && count > 0)
                .map(move |(j, &count)| Confused {
                    truth: i,
                    predicted: j,
                    count,
                })
        })
        .collect();
    cells.sort_by(|a, b| {
        (b.count.cmp(&a.count)).then((a.truth, a.predicted).cmp(&(b.truth, b.predicted)))
    });
    cells.truncate(n);
    cells
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn most_confused_pairs_are_the_largest_off_diagonal_cells() {
        let confusion = vec![vec![5, 1, 0], vec![3, 4, 3], vec![0, 7, 2]];
        assert_eq!(
            most_confused(&confusion, 3),
            [(2, 1, 7), (1, 0, 3), (1, 2, 3)].map(|(truth, predicted, count)| Confused {
                truth,
                predicted,
                count
            })
        );
        assert!(most_confused(&[vec![4]], 5).is_empty());
    }

    #[test]
    fn a_stop_reads_back_typed_and_a_saved_reason_in_words_stays_words() {
        let stop = Stop::LossNotFinite {
            epoch: 3,
            step: Some(2),
            value: NotFinite::of(f64::NAN).unwrap(),
        };
        let json = serde_json::to_string(&stop).unwrap();
        assert_eq!(serde_json::from_str::<Stop>(&json).unwrap(), stop);
        assert_eq!(
            stop.to_string(),
            "loss became NaN at epoch 3, step 2: try a lower learning rate; kept the best model so far"
        );
        let old = "\"early stopping after epoch 4: no improvement for 2 epochs; restored epoch 2\"";
        let read: Stop = serde_json::from_str(old).unwrap();
        assert_eq!(read, Stop::Described(serde_json::from_str(old).unwrap()));
        assert_eq!(NotFinite::of(1.5), None);
        assert_eq!(
            NotFinite::of(f64::NEG_INFINITY),
            Some(NotFinite::NegativeInfinity)
        );
    }
}
