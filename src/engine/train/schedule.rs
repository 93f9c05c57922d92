//! Learning-rate schedules, stepped once per batch. burn 0.22 has constant and cosine
//! schedulers but no OneCycle, so the formula lives here and plugs into burn's
//! [`ModuleLrScheduler`](burn::lr_scheduler::module_lr_scheduler::ModuleLrScheduler), which
//! gives each parameter group (stem, blocks, head) its own copy scaled by its multiplier.

use burn::lr_scheduler::{LrScheduler, LrSchedulerRecord};
use serde::{Deserialize, Serialize};

/// Which schedule to follow over the whole run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Schedule {
    /// The same rate every step.
    #[serde(alias = "Constant")]
    Constant,
    /// Cosine decay from the rate to zero.
    #[serde(alias = "Cosine")]
    Cosine,
    /// Linear warmup from rate/25 to the rate over the first `warmup` fraction, then cosine
    /// decay to rate/1e4 (Smith's OneCycle, as in fastai and PyTorch's `OneCycleLR` defaults).
    #[default]
    #[serde(alias = "OneCycle", alias = "onecycle")]
    OneCycle,
}

impl Schedule {
    pub const ALL: [Schedule; 3] = [Schedule::OneCycle, Schedule::Cosine, Schedule::Constant];

    /// The name used on the command line, in files and in the page.
    pub fn name(self) -> &'static str {
        match self {
            Schedule::Constant => "constant",
            Schedule::Cosine => "cosine",
            Schedule::OneCycle => "one-cycle",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// OneCycle's starting rate is `max / DIV_FACTOR` (PyTorch default 25).
const DIV_FACTOR: f64 = 25.0;
/// OneCycle's final rate is `start / FINAL_DIV_FACTOR` (PyTorch default 1e4).
const FINAL_DIV_FACTOR: f64 = 1e4;

/// The rate at `step` (0-based) of `total` steps, for peak rate `max`.
pub fn lr_at(schedule: Schedule, max: f64, warmup: f64, step: usize, total: usize) -> f64 {
    let total = total.max(1);
    let step = step.min(total - 1);
    let cos = |from: f64, to: f64, t: f64| {
        to + (from - to) * (1.0 + (std::f64::consts::PI * t).cos()) / 2.0
    };
    match schedule {
        Schedule::Constant => max,
        Schedule::Cosine => cos(max, 0.0, step as f64 / total as f64),
        Schedule::OneCycle => {
            let start = max / DIV_FACTOR;
            let end = start / FINAL_DIV_FACTOR;
            // As PyTorch: the peak is reached at step `warmup * total - 1`, the end at `total - 1`.
            let peak = ((warmup * total as f64) - 1.0).max(0.0);
            let s = step as f64;
            if s <= peak && peak > 0.0 {
                cos(start, max, s / peak)
            } else {
                let span = (total as f64 - 1.0 - peak).max(1.0);
                cos(max, end, ((s - peak) / span).clamp(0.0, 1.0))
            }
        }
    }
}

/// A schedule as a burn scheduler: each `step()` returns the next batch's rate.
#[derive(Debug, Clone)]
pub struct Scheduled {
    pub schedule: Schedule,
    pub max: f64,
    pub warmup: f64,
    pub total: usize,
    pub step: usize,
}

impl Scheduled {
    pub fn new(schedule: Schedule, max: f64, warmup: f64, total: usize) -> Self {
        Self {
            schedule,
            max,
            warmup,
            total,
            step: 0,
        }
    }
}

impl LrScheduler for Scheduled {
    fn step(&mut self) -> f64 {
        let lr = lr_at(self.schedule, self.max, self.warmup, self.step, self.total);
        self.step += 1;
        lr
    }

    fn to_record(&self) -> LrSchedulerRecord {
        LrSchedulerRecord::new()
    }

    fn load_record(&mut self, _record: LrSchedulerRecord) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_cycle_follows_the_formula() {
        let (max, total) = (1e-2, 100);
        // PyTorch OneCycleLR(max_lr=1e-2, total_steps=100, pct_start=0.1, anneal cos):
        // step 0 = max/25, peak at step 9, end at step 99 = max/25/1e4.
        assert!((lr_at(Schedule::OneCycle, max, 0.1, 0, total) - 4e-4).abs() < 1e-12);
        assert!((lr_at(Schedule::OneCycle, max, 0.1, 9, total) - max).abs() < 1e-12);
        assert!((lr_at(Schedule::OneCycle, max, 0.1, 99, total) - 4e-8).abs() < 1e-15);
        // Halfway through the warmup: the cosine midpoint between start and max.
        let mid = lr_at(Schedule::OneCycle, max, 0.1, 9, 200); // peak at 19, step 9 is 9/19
        let t = 9.0 / 19.0;
        let want = max + (4e-4 - max) * (1.0 + (std::f64::consts::PI * t).cos()) / 2.0;
        assert!((mid - want).abs() < 1e-12);
        // Decay: step 54 is halfway from the peak (9) to the end (99).
        let half = lr_at(Schedule::OneCycle, max, 0.1, 54, total);
        assert!((half - (max + 4e-8) / 2.0).abs() < 1e-9);
    }

    #[test]
    fn scheduler_steps_through_the_schedule() {
        let mut s = Scheduled::new(Schedule::Cosine, 1.0, 0.0, 4);
        let got: Vec<f64> = (0..4).map(|_| s.step()).collect();
        assert!((got[0] - 1.0).abs() < 1e-12);
        assert!((got[2] - 0.5).abs() < 1e-12);
        assert_eq!(lr_at(Schedule::Constant, 0.3, 0.1, 7, 10), 0.3);
    }
}
