//! Speed figures of the engine on any device: inference and one training step per strategy,
//! batch at 224x224, medians over timed iterations after a warm-up (shader compilation,
//! allocation). Reported by `finetune bench`; benches report numbers, tests assert behaviour.

use burn::tensor::{Device, Tensor};
use image::RgbImage;
use serde::Serialize;
use std::sync::Arc;
use web_time::Instant;

use crate::engine::EngineError;
use crate::engine::data::preprocess;
use crate::engine::data::{Dataset, Sample};
use crate::engine::measure::launches::Kernels;
use crate::engine::model::{Backbone, BackboneSpec, Classifier};
use crate::engine::train::batches::index_tensor;
use crate::engine::train::config::{Strategy, TrainConfig};
use crate::engine::train::plan::RunPlan;
use crate::engine::train::plan::Unfreeze;
use crate::engine::train::report::Progress;
use crate::engine::train::run::train;
use crate::engine::train::share::{self, Helpers};
use crate::engine::train::split::{new_head, split};
use crate::engine::train::step::TrainStep;

/// What `finetune bench` prints (ips = images per second).
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub batch: usize,
    pub inference_ips: f64,
    pub head_step_ips: f64,
    pub last_block_step_ips: f64,
    pub full_step_ips: f64,
    /// Wall time of one feature pass plus 20 head epochs on the cached features, over the
    /// feature pass alone (same images, same run). Goal: <= 1.2.
    pub cached_head_20_epochs_over_feature_pass: f64,
    /// One last-block training step over one inference pass of the same batch. Goal: <= 1.3.
    pub last_block_step_over_inference: f64,
    /// Host syncs (reads from the device) per optimiser step of a real run: see
    /// [`host_syncs`].
    pub host_syncs_per_step: f64,
    /// GPU kernels launched by one last-block step (the frozen part's pass, forward,
    /// backward, optimiser update, the read that ends it), and by one full step. `None` where
    /// the backend launches no kernels to count (burn's CPU backend).
    pub kernels_per_step: Option<usize>,
    pub kernels_per_full_step: Option<usize>,
    /// Photos a second that augmentation (the lesson's full set, from the working size) makes
    /// on one CPU thread: the work a run with augmentation does beside the device.
    pub augment_ips: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn sync(t: Tensor<1>) -> Result<(), EngineError> {
    t.into_data_async()
        .await
        .map(|_| ())
        .map_err(|e| EngineError::Device(format!("{e:?}")))
}

/// The kernel watch of pass `i`: only the extra pass after the `iters` timed ones, and only
/// when `kernels` asks (`Some(timed)`); its time is not one of the medians'.
fn watch_extra_pass(
    i: usize,
    iters: usize,
    kernels: Option<bool>,
    watched: &mut Option<Arc<Kernels>>,
) -> Option<cubecl_runtime::logging::LaunchObservation> {
    let timed = kernels.filter(|_| i > iters)?;
    let (k, guard) = Kernels::watch(timed);
    *watched = Some(k);
    Some(guard)
}

/// The training step that `finetune bench` times and `finetune profile` cuts into phases: a
/// run's own [`TrainStep`] with the default settings, `model` split at `unfreeze`, and the
/// labels `i % 2` of a batch of `batch`.
pub(crate) fn bench_step(
    model: &Classifier,
    unfreeze: Unfreeze,
    batch: usize,
    device: &Device,
) -> (TrainStep, Vec<usize>) {
    let cfg = TrainConfig::default();
    // The schedule's length only sets the rates, not the work of a step.
    let step = TrainStep::new(model.clone(), unfreeze, &cfg, 100, device);
    (step, (0..batch).map(|i| i % 2).collect())
}

/// `model`'s backbone with a new head for two classes, as a run that teaches two classes
/// trains it (the labels of [`bench_step`]). ImageNet's head of 1000 classes would time an
/// AdamW update over its 1.28 million weights, which no run has. `finetune profile` times the
/// same.
pub(crate) fn two_classes(model: &Classifier, device: &Device) -> Classifier {
    Classifier {
        backbone: model.backbone.clone(),
        head: new_head(2, TrainConfig::default().dropout, device),
    }
}

/// Seconds of one training step with `unfreeze` trainable (frozen part as inference).
pub(crate) async fn step_seconds(
    model: &Classifier,
    unfreeze: Unfreeze,
    x: &Tensor<4>,
    iters: usize,
    device: &Device,
) -> Result<f64, EngineError> {
    Ok(observed_steps(model, unfreeze, x, iters, device, None)
        .await?
        .0)
}

/// [`step_seconds`], and the kernels of one more step (after the timed ones) when `kernels` is
/// given: `Some(timed)` (see [`Kernels`]).
pub(crate) async fn observed_steps(
    model: &Classifier,
    unfreeze: Unfreeze,
    x: &Tensor<4>,
    iters: usize,
    device: &Device,
    kernels: Option<bool>,
) -> Result<(f64, Option<Arc<Kernels>>), EngineError> {
    let (mut step, labels) = bench_step(model, unfreeze, x.dims()[0], device);
    let mut times = Vec::new();
    let mut watched = None;
    for i in 0..=iters + usize::from(kernels.is_some()) {
        let guard = watch_extra_pass(i, iters, kernels, &mut watched);
        let t = Instant::now();
        let boundary = step.frozen.forward(x.clone());
        let (_, loss) = step.forward(boundary, &labels, None);
        step = step.update(loss.clone());
        // Reading a parameter waits for the whole step, optimizer update included.
        sync(
            step.trainable
                .head
                .fc
                .bias
                .as_ref()
                .map(|b| b.val())
                .unwrap_or_else(|| loss.clone()),
        )
        .await?;
        drop(guard);
        if i > 0 && i <= iters {
            times.push(t.elapsed().as_secs_f64());
        }
    }
    Ok((median(times), watched))
}

/// Seconds of one inference pass over `x`, as predictions run it (BatchNorm folded).
pub(crate) async fn inference_seconds(
    model: &Classifier,
    x: &Tensor<4>,
    iters: usize,
) -> Result<f64, EngineError> {
    Ok(observed_inference(model, x, iters, None).await?.0)
}

/// [`inference_seconds`], and the kernels of one more pass when `kernels` is given (see
/// [`observed_steps`]).
pub(crate) async fn observed_inference(
    model: &Classifier,
    x: &Tensor<4>,
    iters: usize,
    kernels: Option<bool>,
) -> Result<(f64, Option<Arc<Kernels>>), EngineError> {
    let (frozen, trainable) = split(model.clone(), Unfreeze::Blocks(0));
    let mut times = Vec::new();
    let mut watched = None;
    for i in 0..=iters + usize::from(kernels.is_some()) {
        let guard = watch_extra_pass(i, iters, kernels, &mut watched);
        let t = Instant::now();
        let features = frozen.forward(x.clone());
        let [n, c, _, _] = features.dims();
        let logits = trainable.head.forward(features.reshape([n, c]));
        let [n, c] = logits.dims();
        sync(logits.reshape([n * c])).await?;
        drop(guard);
        if i > 0 && i <= iters {
            times.push(t.elapsed().as_secs_f64());
        }
    }
    Ok((median(times), watched))
}

/// Augmented photos a second on this thread: 16 pattern photos at the working size through
/// the lesson's full augmentation, twice (the first warms up).
fn augment_ips(spec: &BackboneSpec) -> f64 {
    use rand::SeedableRng;
    let photos: Vec<RgbImage> = pattern_images(spec, 16)
        .iter()
        .map(|p| preprocess::resize_shorter(p, spec.resize))
        .collect();
    let cfg = crate::engine::data::augment::AugmentConfig::default();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let mut run = || {
        let t = Instant::now();
        for p in &photos {
            std::hint::black_box(crate::engine::data::augment::augment(
                p,
                spec.input_size,
                &cfg,
                &mut rng,
            ));
        }
        t.elapsed().as_secs_f64()
    };
    run();
    photos.len() as f64 / run().max(1e-9)
}

/// `n` fixed, non-trivial pictures (a pattern shifted per image, as different photos): speed
/// does not depend on the pixels.
fn pattern_images(spec: &BackboneSpec, n: usize) -> Vec<RgbImage> {
    let size = spec.input_size;
    (0..n as u32)
        .map(|k| {
            RgbImage::from_fn(size, size, |x, y| {
                image::Rgb([
                    ((x + 7 * k) % 251) as u8,
                    ((y + 3 * k) % 241) as u8,
                    ((x * y + k) % 239) as u8,
                ])
            })
        })
        .collect()
}

pub(crate) fn pattern_batch(spec: &BackboneSpec, batch: usize, device: &Device) -> Tensor<4> {
    preprocess::batch_tensor(&pattern_images(spec, batch), spec, device)
}

/// The device check's figures (images per second), each after one untimed warm-up pass.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct DeviceSpeed {
    pub batch: usize,
    pub inference_ips: f64,
    pub head_step_ips: f64,
    pub last_block_step_ips: f64,
    pub full_step_ips: f64,
    /// The figures not timed because the check ran out of time (a software GPU compiles
    /// every new kernel slowly): estimated from the inference time with the cost ratios
    /// measured natively ([`STEP_OVER_INFERENCE`]).
    pub estimated: Vec<String>,
    /// The frozen layers' pass of head training, by this worker alone and shared with its
    /// helper workers (CPU only; `workers` 1 and the same figure twice without helpers).
    #[serde(default)]
    pub shared: Option<SharedPass>,
}

/// Images per second of the head's frozen pass over the same images: by one worker, and by
/// `workers` (it and its helpers) together.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct SharedPass {
    pub workers: usize,
    pub images: usize,
    pub alone_ips: f64,
    pub shared_ips: f64,
}

/// Times the head's frozen pass over `images` pattern images in batches of `batch` alone
/// (one untimed batch first: allocation), then shared with `helpers` where there are any.
pub async fn shared_pass_speed(
    model: &Classifier,
    spec: &BackboneSpec,
    images: usize,
    batch: usize,
    device: &Device,
    helpers: Option<&dyn Helpers>,
) -> Result<SharedPass, EngineError> {
    let imgs = pattern_images(spec, images);
    let frozen = share::frozen_part(&model.backbone, Unfreeze::Blocks(0), device);
    share::frozen_pass(
        &frozen,
        &imgs[..batch.min(images)],
        spec,
        batch,
        device,
        |_| true,
    )
    .await?;
    let t = Instant::now();
    share::frozen_pass(&frozen, &imgs, spec, batch, device, |_| true).await?;
    let alone = images as f64 / t.elapsed().as_secs_f64();
    let Some(helpers) = helpers.filter(|h| h.ready() > 0) else {
        return Ok(SharedPass {
            workers: 1,
            images,
            alone_ips: alone,
            shared_ips: alone,
        });
    };
    let workers = helpers.ready() + 1;
    let t = Instant::now();
    let out = share::shared_pass(
        &frozen,
        Unfreeze::Blocks(0),
        &imgs,
        spec,
        batch,
        device,
        Some(helpers),
        |_| true,
    )
    .await?;
    sync(out.flatten::<1>(0, 3).narrow(0, 0, 1)).await?;
    Ok(SharedPass {
        workers,
        images,
        alone_ips: alone,
        shared_ips: images as f64 / t.elapsed().as_secs_f64(),
    })
}

/// A training step's time over an inference pass of the same batch, measured with
/// `finetune bench` on burn's CPU backend (head, last block, full network): what the device
/// check assumes for the steps it had no time to time.
const STEP_OVER_INFERENCE: [f64; 3] = [1.05, 1.4, 6.0];

/// Whether timing a kind of step (a warm-up and a timed batch) still fits the device check's
/// budget, predicted from what the inference pass cost (its warm-up and timed batch) times the
/// step's cost ratio. Starting whatever fitted before the budget ran out took a software GPU
/// 20 s past it (one head step on SwiftShader).
pub fn step_fits(elapsed_s: f64, inference_cost_s: f64, ratio: f64, budget_s: f64) -> bool {
    elapsed_s + inference_cost_s * ratio <= budget_s
}

/// A short check of `device`: one timed batch of each kind (the page's "Test this device"),
/// as many as fit in `budget_s` seconds; the rest are estimated.
pub async fn device_speed(
    model: &Classifier,
    spec: &BackboneSpec,
    batch: usize,
    device: &Device,
    budget_s: f64,
) -> Result<DeviceSpeed, EngineError> {
    let started = Instant::now();
    let batch = batch.max(1);
    let x = pattern_batch(spec, batch, device);
    let model = &two_classes(model, device);
    let ips = |s: f64| batch as f64 / s;
    let inference = inference_seconds(model, &x, 1).await?;
    // Its warm-up (kernel compiles) and timed batch: what predicts each step's.
    let inference_cost = started.elapsed().as_secs_f64();
    let mut steps = [None; 3];
    let mut estimated = Vec::new();
    let kinds = [
        ("head_step_ips", Unfreeze::Blocks(0)),
        ("last_block_step_ips", Unfreeze::Blocks(1)),
        ("full_step_ips", Unfreeze::All),
    ];
    for (i, (name, unfreeze)) in kinds.into_iter().enumerate() {
        let elapsed = started.elapsed().as_secs_f64();
        if step_fits(elapsed, inference_cost, STEP_OVER_INFERENCE[i], budget_s) {
            steps[i] = Some(step_seconds(model, unfreeze, &x, 1, device).await?);
        } else {
            estimated.push(name.to_string());
        }
    }
    let step = |i: usize| ips(steps[i].unwrap_or(inference * STEP_OVER_INFERENCE[i]));
    Ok(DeviceSpeed {
        batch,
        inference_ips: ips(inference),
        head_step_ips: step(0),
        last_block_step_ips: step(1),
        full_step_ips: step(2),
        estimated,
        shared: None,
    })
}

/// Estimated seconds to train each strategy (in `Strategy::ALL` order) on `train` and `val`
/// images for `epochs` epochs without augmentation, from a device's speeds: the frozen layers
/// run once (their output is cached), the trained layers every epoch, validation every epoch;
/// gradual unfreezing spends a third of its epochs each on the head, the last block and all.
pub fn estimate_seconds(speed: &DeviceSpeed, train: usize, val: usize, epochs: usize) -> [f64; 4] {
    let (n, v, e) = (train as f64, val as f64, epochs as f64);
    let infer = 1.0 / speed.inference_ips.max(f64::MIN_POSITIVE);
    // The frozen layers' pass goes faster where helper workers share it.
    let gain = speed.shared.as_ref().map_or(1.0, |p| {
        (p.shared_ips / p.alone_ips.max(f64::MIN_POSITIVE)).max(f64::MIN_POSITIVE)
    });
    let frozen = infer / gain;
    let last = 1.0 / speed.last_block_step_ips.max(f64::MIN_POSITIVE);
    let full = 1.0 / speed.full_step_ips.max(f64::MIN_POSITIVE);
    let features = (n + v) * frozen;
    // Head epochs on cached features cost a small fraction of a feature pass.
    let head = features;
    let last_block = features + e * (n * last + v * infer);
    let full_run = e * (n * full + v * infer);
    let gradual = features + e / 3.0 * (n * (last + full) + 2.0 * v * infer);
    [head, last_block, gradual, full_run]
}

/// Host syncs (reads from the device) of a real training run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HostSyncs {
    /// Optimiser steps of the run.
    pub steps: usize,
    /// Every read from the device.
    pub reads: u64,
    /// Of those, the reads for the progress line (one per step line shown).
    pub progress_reads: u64,
}

impl HostSyncs {
    pub fn per_step(&self) -> f64 {
        self.reads as f64 / self.steps.max(1) as f64
    }
}

/// Counts the host syncs of a real run (`train::run::train`, last-block, 2 epochs over 16
/// pattern images and 4 for validation) where the engine reads from the device. A run reads
/// the loss and accuracy once per epoch, the validation logits, the frozen pass once per batch,
/// and the progress line at most every 0.25 s: a step slower than that has its loss read (a
/// slow device), a fast one does not.
pub async fn host_syncs(
    pretrained: &Backbone,
    spec: &BackboneSpec,
    device: &Device,
) -> Result<HostSyncs, EngineError> {
    let mut samples: Vec<Sample> = pattern_images(spec, 20)
        .into_iter()
        .enumerate()
        .map(|(i, image)| Sample {
            file: format!("pattern-{i}.png"),
            label: i % 2,
            image,
        })
        .collect();
    let val = samples.split_off(16);
    let data = Dataset {
        classes: vec!["even".into(), "odd".into()],
        train: samples,
        val,
        skipped: Vec::new(),
    };
    let cfg = TrainConfig::new()
        .with_strategy(Strategy::LastBlock)
        .with_epochs(2)
        .with_augment(false);
    let mut progress_reads = 0;
    let before = crate::engine::host_reads();
    train(pretrained, &data, spec, &cfg, device, |p| {
        if matches!(p, Progress::Step { .. }) {
            progress_reads += 1;
        }
        true
    })
    .await?;
    Ok(HostSyncs {
        steps: RunPlan::new(&cfg, data.train.len()).total_steps(),
        reads: crate::engine::host_reads() - before,
        progress_reads,
    })
}

/// Runs every measurement on `device` with a batch of `batch` synthetic 224x224 images.
pub async fn run(
    model: &Classifier,
    spec: &BackboneSpec,
    batch: usize,
    iters: usize,
    device: &Device,
) -> Result<BenchReport, EngineError> {
    let batch = batch.max(1);
    let iters = iters.max(1);
    let x = pattern_batch(spec, batch, device);
    let model = &two_classes(model, device);

    let inference = inference_seconds(model, &x, iters).await?;
    let head_step = step_seconds(model, Unfreeze::Blocks(0), &x, iters, device).await?;
    let launches = |k: Option<Arc<Kernels>>| k.map(|k| k.launches()).filter(|&n| n > 0);
    let (last_block, k) =
        observed_steps(model, Unfreeze::Blocks(1), &x, iters, device, Some(false)).await?;
    let kernels_per_step = launches(k);
    let (full, k) = observed_steps(model, Unfreeze::All, &x, iters, device, Some(false)).await?;
    let kernels_per_full_step = launches(k);

    // Cached head, as training does it: one feature pass over 4 batches kept on the device,
    // then 20 epochs of head steps on batches `select`ed from it (loss read every step).
    let (mut step, labels) = bench_step(model, Unfreeze::Blocks(0), batch, device);
    let t = Instant::now();
    let mut parts = Vec::new();
    for _ in 0..4 {
        let f = step.frozen.forward(x.clone());
        sync(f.clone().flatten::<1>(0, 3).narrow(0, 0, 1)).await?;
        parts.push(f);
    }
    let cache = Tensor::cat(parts, 0);
    let feature_pass = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for _ in 0..20 {
        for b in 0..4 {
            let rows: Vec<usize> = (b * batch..(b + 1) * batch).collect();
            let features = cache.clone().select(0, index_tensor(&rows, device));
            let (_, loss) = step.forward(features, &labels, None);
            step = step.update(loss.clone());
            sync(loss).await?;
        }
    }
    let head_epochs = t.elapsed().as_secs_f64();

    let host_syncs_per_step = host_syncs(&model.backbone, spec, device).await?.per_step();
    let ips = |s: f64| batch as f64 / s;
    Ok(BenchReport {
        augment_ips: augment_ips(spec),
        host_syncs_per_step,
        kernels_per_step,
        kernels_per_full_step,
        batch,
        inference_ips: ips(inference),
        head_step_ips: ips(head_step),
        last_block_step_ips: ips(last_block),
        full_step_ips: ips(full),
        cached_head_20_epochs_over_feature_pass: (feature_pass + head_epochs) / feature_pass,
        last_block_step_over_inference: last_block / inference,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_is_timed_only_when_its_predicted_cost_fits_the_budget() {
        // SwiftShader: inference took 18 s, a head step (1.05x) would end at 36.9 s.
        assert!(!step_fits(18.0, 18.0, STEP_OVER_INFERENCE[0], 20.0));
        // The CPU: 1 s of inference; after 3.5 s a full step (6x) ends at 9.5 s.
        assert!(step_fits(1.0, 1.0, STEP_OVER_INFERENCE[0], 20.0));
        assert!(step_fits(3.5, 1.0, STEP_OVER_INFERENCE[2], 20.0));
        // Exactly at the budget still fits; a hair over does not.
        assert!(step_fits(10.0, 5.0, 2.0, 20.0));
        assert!(!step_fits(10.0, 5.0, 2.0001, 20.0));
    }

    #[test]
    fn estimates_follow_the_cost_of_each_strategy() {
        // 10 images/s of inference, 5 of a last-block step, 2 of a full step.
        let speed = DeviceSpeed {
            batch: 4,
            inference_ips: 10.0,
            head_step_ips: 9.0,
            last_block_step_ips: 5.0,
            full_step_ips: 2.0,
            estimated: Vec::new(),
            shared: None,
        };
        let [head, last, gradual, full] = estimate_seconds(&speed, 32, 8, 10);
        // Head: one feature pass over 40 images.
        assert!((head - 4.0).abs() < 1e-9);
        // Last block: that pass, then 10 epochs of 32 steps at 0.2 s and 8 checks at 0.1 s.
        assert!((last - (4.0 + 10.0 * (6.4 + 0.8))).abs() < 1e-9);
        // Full: 10 epochs of 32 images at 0.5 s and 8 checks.
        assert!((full - 10.0 * (16.0 + 0.8)).abs() < 1e-9);
        assert!(head < last && last < gradual && gradual < full);
        // Helpers that double the frozen pass halve the head's time, and that pass in the
        // others; the trained layers cost the same.
        let shared = DeviceSpeed {
            shared: Some(SharedPass {
                workers: 2,
                images: 16,
                alone_ips: 10.0,
                shared_ips: 20.0,
            }),
            ..speed
        };
        let [head2, last2, _, full2] = estimate_seconds(&shared, 32, 8, 10);
        assert!((head2 - 2.0).abs() < 1e-9);
        assert!((last2 - (2.0 + 10.0 * (6.4 + 0.8))).abs() < 1e-9);
        assert!((full2 - full).abs() < 1e-9);
    }
}
