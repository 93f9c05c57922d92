//! The run plan: which stages a strategy runs, how many steps each epoch has and the learning
//! rate at every step. Training follows it and the page draws it (the LR chart, the step
//! counter), so both always agree.
//!
//! Tiny datasets: with 10 training photos and a batch of 16 an epoch is one optimiser step, and
//! two epochs of OneCycle are one step at the peak rate and one at almost zero: the model barely
//! moves. So an epoch always has at least [`MIN_STEPS_PER_EPOCH`] steps: the batch shrinks (down
//! to [`MIN_BATCH`]) and, if that is not enough, the epoch goes over the photos several times.
//! An epoch of the head alone on cached features costs milliseconds, so it gets at least
//! [`MIN_CACHED_HEAD_STEPS`] steps (Teachable Machine trains its head for 50 epochs for the
//! same reason). With augmentation each pass sees new variants of the photos.

use crate::engine::train::config::{Strategy, TrainConfig};
use crate::engine::train::schedule::lr_at;

/// Fewest optimiser steps in an epoch.
const MIN_STEPS_PER_EPOCH: usize = 8;
/// Fewest steps in an epoch that trains the head alone on cached features.
const MIN_CACHED_HEAD_STEPS: usize = 32;
/// Smallest batch the plan shrinks to (BatchNorm of trainable blocks needs a few images).
const MIN_BATCH: usize = 4;

/// How much of the network one stage trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Unfreeze {
    /// The last `n` MBConv blocks plus `_conv_head`/`_bn1` (0 = the head alone, conv head frozen).
    Blocks(usize),
    /// Everything, stem included.
    All,
}

/// One stage of a run: `epochs` epochs with `unfreeze` trainable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stage {
    pub epochs: usize,
    pub unfreeze: Unfreeze,
}

/// The stages a strategy runs, stages without epochs included (the page warns about them).
/// `gradual` splits the epochs over `cfg.gradual_unfreeze` (blocks unfrozen per stage, the
/// backbone's block count or more = all), unless `cfg.gradual_epochs` sets them.
pub fn stages(cfg: &TrainConfig) -> Vec<Stage> {
    let all = cfg.backbone.spec().block_count();
    let blocks = |n: usize| {
        if n >= all {
            Unfreeze::All
        } else {
            Unfreeze::Blocks(n)
        }
    };
    let one = |unfreeze| {
        vec![Stage {
            epochs: cfg.epochs,
            unfreeze,
        }]
    };
    match cfg.strategy {
        Strategy::Head => one(Unfreeze::Blocks(0)),
        Strategy::LastBlock => one(Unfreeze::Blocks(1)),
        Strategy::Full => one(Unfreeze::All),
        Strategy::Gradual => {
            let n = cfg.gradual_unfreeze.len().max(1);
            let epochs: Vec<usize> = match &cfg.gradual_epochs {
                Some(e) if e.len() == n => e.clone(),
                _ => (0..n)
                    .map(|i| cfg.epochs / n + usize::from(i < cfg.epochs % n))
                    .collect(),
            };
            cfg.gradual_unfreeze
                .iter()
                .zip(epochs)
                .map(|(&b, epochs)| Stage {
                    epochs,
                    unfreeze: blocks(b),
                })
                .collect()
        }
    }
}

/// A stage as the run plan runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedStage {
    pub epochs: usize,
    pub unfreeze: Unfreeze,
    /// Times an epoch of this stage goes over the training images (1 unless they are few).
    pub passes: usize,
}

/// The whole run for a config and a number of training images.
#[derive(Debug, Clone, PartialEq)]
pub struct RunPlan {
    /// Stages that run (those with epochs), in order.
    pub stages: Vec<PlannedStage>,
    /// Images per step (the config's batch, smaller on a tiny dataset).
    pub batch: usize,
    /// Steps of one pass over the training images.
    pub steps_per_pass: usize,
    pub train_images: usize,
    schedule: crate::engine::train::schedule::Schedule,
    lr: f64,
    warmup: f64,
}

impl RunPlan {
    pub fn new(cfg: &TrainConfig, train_images: usize) -> Self {
        let n = train_images.max(1);
        let wanted = cfg.batch_size.max(1);
        let batch = wanted.min(n.div_ceil(MIN_STEPS_PER_EPOCH).max(MIN_BATCH));
        let steps_per_pass = n.div_ceil(batch);
        // As `train::run` decides: without augmentation or mixing the frozen part's output
        // is computed once (tiny datasets always fit the cache).
        let cached = !cfg.augment && cfg.mixup <= 0.0 && cfg.cutmix <= 0.0;
        let stages = stages(cfg)
            .into_iter()
            .filter(|s| s.epochs > 0)
            .map(|s| {
                let min = if cached && s.unfreeze == Unfreeze::Blocks(0) {
                    MIN_CACHED_HEAD_STEPS
                } else {
                    MIN_STEPS_PER_EPOCH
                };
                PlannedStage {
                    epochs: s.epochs,
                    unfreeze: s.unfreeze,
                    passes: min.div_ceil(steps_per_pass).max(1),
                }
            })
            .collect();
        Self {
            stages,
            batch,
            steps_per_pass,
            train_images,
            schedule: cfg.schedule,
            lr: cfg.lr,
            warmup: cfg.warmup,
        }
    }

    /// The head's peak rate (the top of the LR chart).
    pub fn peak_lr(&self) -> f64 {
        self.lr
    }

    /// Steps of one epoch of stage `i`.
    pub fn steps_per_epoch(&self, i: usize) -> usize {
        self.stages
            .get(i)
            .map_or(0, |s| s.passes * self.steps_per_pass)
    }

    pub fn epochs(&self) -> usize {
        self.stages.iter().map(|s| s.epochs).sum()
    }

    /// Steps of stage `i` (each stage runs its own schedule from the start).
    pub fn stage_steps(&self, i: usize) -> usize {
        self.stages
            .get(i)
            .map_or(0, |s| s.epochs * self.steps_per_epoch(i))
    }

    pub fn total_steps(&self) -> usize {
        (0..self.stages.len()).map(|i| self.stage_steps(i)).sum()
    }

    /// Steps done in the whole run after `step` (1-based) of `epoch` (1-based, over all stages).
    pub fn steps_done(&self, epoch: usize, step: usize) -> usize {
        let mut done = 0;
        let mut first_epoch = 1;
        for (i, s) in self.stages.iter().enumerate() {
            if epoch < first_epoch + s.epochs {
                return done + (epoch - first_epoch) * self.steps_per_epoch(i) + step;
            }
            done += self.stage_steps(i);
            first_epoch += s.epochs;
        }
        done
    }

    /// The head's rate at 0-based global `step` of the run (0 past the end).
    pub fn lr_at(&self, step: usize) -> f64 {
        let mut start = 0;
        for i in 0..self.stages.len() {
            let n = self.stage_steps(i);
            if step < start + n {
                return lr_at(self.schedule, self.lr, self.warmup, step - start, n);
            }
            start += n;
        }
        0.0
    }

    /// Epochs done when each later stage begins (where the charts mark a new stage).
    pub fn stage_boundaries(&self) -> Vec<usize> {
        let mut done = 0;
        let mut out = Vec::new();
        for s in self.stages.iter().rev().skip(1).rev() {
            done += s.epochs;
            out.push(done);
        }
        out
    }

    /// Steps done when each later stage begins.
    pub fn stage_boundary_steps(&self) -> Vec<usize> {
        let mut done = 0;
        let mut out = Vec::new();
        for i in 0..self.stages.len().saturating_sub(1) {
            done += self.stage_steps(i);
            out.push(done);
        }
        out
    }

    /// One line for the page when the plan differs from the settings (few images).
    pub fn note(&self, cfg: &TrainConfig) -> Option<String> {
        let passes: Vec<usize> = self.stages.iter().map(|s| s.passes).collect();
        if self.batch == cfg.batch_size && passes.iter().all(|&p| p == 1) {
            return None;
        }
        let mut s = format!("{} training images: ", self.train_images);
        if self.batch != cfg.batch_size {
            s.push_str(&format!(
                "batches of {} instead of {}, ",
                self.batch, cfg.batch_size
            ));
        }
        let (lo, hi) = (
            passes.iter().copied().min().unwrap_or(1),
            passes.iter().copied().max().unwrap_or(1),
        );
        if hi > 1 {
            let times = if lo == hi {
                format!("{hi} times")
            } else {
                format!("{lo} to {hi} times")
            };
            s.push_str(&format!("each epoch goes over them {times}, "));
        }
        let steps: Vec<usize> = (0..self.stages.len())
            .map(|i| self.steps_per_epoch(i))
            .collect();
        let fewest = steps.iter().copied().min().unwrap_or(0);
        s.push_str(&format!(
            "so every epoch has at least {fewest} learning steps."
        ));
        Some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::train::schedule::Schedule;

    #[test]
    fn tiny_datasets_get_enough_steps_and_big_ones_keep_their_batch() {
        let cfg = TrainConfig::new().with_epochs(2).with_batch_size(16);
        // 10 photos (the browser test's 2 x 5): 16 -> 4 per batch, 3 steps per pass; the
        // cached head goes over them 11 times (33 steps per epoch).
        let p = RunPlan::new(&cfg, 10);
        assert_eq!((p.batch, p.steps_per_pass, p.stages[0].passes), (4, 3, 11));
        assert_eq!(p.total_steps(), 66);
        assert_eq!(
            p.note(&cfg).as_deref(),
            Some(
                "10 training images: batches of 4 instead of 16, each epoch goes over them 11 times, so every epoch has at least 33 learning steps."
            )
        );
        // With augmentation the frozen part runs every pass: 8 steps are enough.
        let aug = cfg.clone().with_augment(true);
        assert_eq!(RunPlan::new(&aug, 10).stages[0].passes, 3);
        // The last block trains through uncached layers: 3 passes of 3 steps.
        let last = cfg.clone().with_strategy(Strategy::LastBlock);
        assert_eq!(RunPlan::new(&last, 10).steps_per_epoch(0), 9);
        // 1000 photos: the batch asked for, one pass.
        let p = RunPlan::new(&cfg, 1000);
        assert_eq!(
            (p.batch, p.stages[0].passes, p.steps_per_epoch(0)),
            (16, 1, 63)
        );
        assert_eq!(p.note(&cfg), None);
        for n in 1..600 {
            for c in [&cfg, &aug, &last] {
                let p = RunPlan::new(c, n);
                assert!(p.steps_per_epoch(0) >= MIN_STEPS_PER_EPOCH, "{n}");
                assert!(p.batch <= 16 && p.batch >= MIN_BATCH, "{n}");
            }
        }
    }

    #[test]
    fn lr_restarts_per_stage_and_matches_the_schedule() {
        let cfg = TrainConfig::new()
            .with_strategy(Strategy::Gradual)
            .with_epochs(6)
            .with_batch_size(10)
            .with_schedule(Schedule::Cosine)
            .with_lr(1.0);
        // 100 photos, 10 steps per pass; the head stage (cached) 4 passes, the others 1.
        let p = RunPlan::new(&cfg, 100);
        assert_eq!(p.stages.len(), 3);
        assert_eq!(
            (0..3).map(|i| p.steps_per_epoch(i)).collect::<Vec<_>>(),
            vec![40, 10, 10]
        );
        assert_eq!(p.stage_boundaries(), vec![2, 4]);
        assert_eq!(p.stage_boundary_steps(), vec![80, 100]);
        assert_eq!(p.total_steps(), 120);
        assert_eq!(p.lr_at(0), 1.0);
        assert_eq!(p.lr_at(80), 1.0, "stage 2 starts its schedule again");
        // Cosine over 20 steps, step 10 is halfway: 0.5.
        assert!((p.lr_at(90) - 0.5).abs() < 1e-12);
        assert_eq!(p.lr_at(120), 0.0);
        assert_eq!(p.steps_done(1, 1), 1);
        assert_eq!(p.steps_done(2, 40), 80);
        assert_eq!(p.steps_done(3, 5), 85);
        assert_eq!(p.steps_done(6, 10), 120);
    }

    #[test]
    fn gradual_splits_epochs_and_skips_empty_stages() {
        let cfg = TrainConfig::new()
            .with_strategy(Strategy::Gradual)
            .with_epochs(2);
        assert_eq!(stages(&cfg).len(), 3);
        assert_eq!(RunPlan::new(&cfg, 100).stages.len(), 2);
    }
}
