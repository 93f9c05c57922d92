//! The run: stages (each with its own split, optimiser and schedule), the frozen part's pass
//! over the photos once per stage, epochs of steps, validation after each epoch, early
//! stopping, and the report. When the frozen part sees the same input every epoch (no
//! augmentation or mixing) its output is computed once and the rest trains on that cache.

use burn::tensor::{Device, Int, Tensor};
use image::RgbImage;
use rand::seq::SliceRandom;
use rand::{SeedableRng, rngs::StdRng};
use web_time::Instant;

use crate::engine::EngineError;
use crate::engine::data::preprocess;
use crate::engine::data::{Dataset, augment};
use crate::engine::model::{Backbone, BackboneSpec, Classifier};
use crate::engine::read_f32;
use crate::engine::train::batches::{EpochInput, Mix, augment_rng, index_tensor, mix_batch};
use crate::engine::train::config::TrainConfig;
use crate::engine::train::early_stop::{EarlyStopping, Verdict};
use crate::engine::train::evaluate::{eval_images, metrics};
use crate::engine::train::plan::{PlannedStage, RunPlan, Unfreeze};
use crate::engine::train::report::{EpochReport, NotFinite, Progress, Stop, TrainReport};
use crate::engine::train::share::{self, Helpers};
use crate::engine::train::split::{Frozen, new_head};
use crate::engine::train::step::TrainStep;

/// Seconds between two progress reads of the loss during an epoch (each read waits for the
/// device).
const PROGRESS_EVERY_S: f64 = 0.25;

/// Largest boundary cache, in floats (256 MB): beyond it the frozen part runs every epoch
/// instead.
const MAX_CACHE_FLOATS: usize = 64 << 20;

/// Trains a fresh head (and, per strategy, more layers) on `data`, starting from `pretrained`.
/// Returns the classifier with the best epoch's weights. `on_progress` returns `false` to
/// cancel between steps; the best model so far is still returned.
pub async fn train(
    pretrained: &Backbone,
    data: &Dataset,
    spec: &BackboneSpec,
    cfg: &TrainConfig,
    device: &Device,
    on_progress: impl FnMut(&Progress) -> bool,
) -> Result<(Classifier, TrainReport), EngineError> {
    let trainer = Trainer {
        pretrained,
        data,
        spec,
        cfg,
        device,
        helpers: None,
    };
    trainer.run(on_progress, |_, _| {}).await
}

/// A run to make: the network it starts from, the photos, the settings, the device, and
/// optionally helpers (other workers) that share the frozen part's pass.
pub struct Trainer<'a> {
    pub pretrained: &'a Backbone,
    pub data: &'a Dataset,
    pub spec: &'a BackboneSpec,
    pub cfg: &'a TrainConfig,
    pub device: &'a Device,
    pub helpers: Option<&'a dyn Helpers>,
}

impl Trainer<'_> {
    /// Runs it, handing `on_best` each new best model (with its epoch) as soon as its epoch is
    /// scored, so a caller can keep it safe from a failure later in the run.
    pub async fn run(
        &self,
        mut on_progress: impl FnMut(&Progress) -> bool,
        mut on_best: impl FnMut(usize, &Classifier),
    ) -> Result<(Classifier, TrainReport), EngineError> {
        self.check()?;
        let mut run = Run::new(self);
        let stop = run.stages(&mut on_progress, &mut on_best).await?;
        run.finish(stop)
    }

    fn check(&self) -> Result<(), EngineError> {
        let data = self.data;
        let classes = data.classes.len();
        if classes < 2 || data.train.is_empty() || data.val.is_empty() {
            return Err(EngineError::TooFewImages {
                classes,
                train: data.train.len(),
                val: data.val.len(),
            });
        }
        self.cfg.validate()?;
        // The settings, the preprocessing and the weights must name one backbone.
        let weights = self.pretrained.spec();
        if weights != Some(self.spec) || self.cfg.backbone.spec() != self.spec {
            return Err(EngineError::BackboneMismatch {
                settings: self.cfg.backbone.spec().name,
                photos: self.spec.name,
                weights: weights.map_or("of no known backbone", |s| s.name),
            });
        }
        Ok(())
    }
}

/// A run under way.
struct Run<'a> {
    job: &'a Trainer<'a>,
    plan: RunPlan,
    rng: StdRng,
    /// The evaluation transform of every training and validation photo.
    train_images: Vec<RgbImage>,
    val_images: Vec<RgbImage>,
    val_labels: Vec<usize>,
    model: Classifier,
    epochs: Vec<EpochReport>,
    early: EarlyStopping<Classifier>,
    start: Instant,
    /// Epochs and steps of the run so far, and passes over the training set (each augments
    /// afresh).
    epoch: usize,
    steps_done: usize,
    passes: u64,
}

/// An epoch's sums on the device, read back once at its end.
struct EpochSums {
    loss: Tensor<1>,
    correct: Tensor<1, Int>,
    seen: usize,
    started: Instant,
}

impl<'a> Run<'a> {
    fn new(job: &'a Trainer<'a>) -> Self {
        let (cfg, data, device) = (job.cfg, job.data, job.device);
        device.seed(cfg.seed);
        device.clone().autodiff().seed(cfg.seed);
        Self {
            job,
            plan: RunPlan::new(cfg, data.train.len()),
            rng: StdRng::seed_from_u64(cfg.seed),
            train_images: eval_images(&data.train, job.spec),
            val_images: eval_images(&data.val, job.spec),
            val_labels: data.val.iter().map(|s| s.label).collect(),
            model: Classifier {
                backbone: job.pretrained.clone(),
                head: new_head(data.classes.len(), cfg.dropout, device),
            },
            epochs: Vec::new(),
            early: EarlyStopping::new(cfg),
            start: Instant::now(),
            epoch: 0,
            steps_done: 0,
            passes: 0,
        }
    }

    /// Every stage in turn; `Some` when the run stopped before its last epoch.
    async fn stages(
        &mut self,
        on_progress: &mut impl FnMut(&Progress) -> bool,
        on_best: &mut impl FnMut(usize, &Classifier),
    ) -> Result<Option<Stop>, EngineError> {
        let (cfg, device) = (self.job.cfg, self.job.device);
        for (index, stage) in self.plan.stages.clone().into_iter().enumerate() {
            let steps = self.plan.stage_steps(index);
            let mut step = TrainStep::new(self.model.clone(), stage.unfreeze, cfg, steps, device);
            let (cache, val_cache) = match self
                .feature_passes(&step.frozen, stage.unfreeze, on_progress)
                .await
            {
                Ok(passes) => passes,
                // Cancelled within one batch of the frozen pass.
                Err(EngineError::Cancelled) => {
                    return Ok(Some(Stop::CancelledInFeaturePass { stage: index + 1 }));
                }
                Err(e) => return Err(e),
            };
            for _ in 0..stage.epochs {
                self.epoch += 1;
                let sums;
                (step, sums) = self
                    .train_epoch(step, &stage, index, cache.as_ref(), on_progress)
                    .await?;
                let report = match sums {
                    Ok(sums) => self.score_epoch(&step, &val_cache, sums).await?,
                    Err(stop) => Err(stop),
                };
                let report = match report {
                    Ok(report) => report,
                    Err(stop) => return Ok(Some(stop)),
                };
                on_progress(&Progress::Epoch(report.clone()));
                let verdict = self.early.observe(&report, || step.model());
                self.epochs.push(report);
                match (verdict, self.early.best()) {
                    (Verdict::Improved, Some(best)) => on_best(best.epoch, &best.model),
                    (Verdict::Stop { waited }, best) => {
                        return Ok(Some(Stop::EarlyStopping {
                            epoch: self.epoch,
                            waited,
                            restored: best.map_or(0, |b| b.epoch),
                        }));
                    }
                    _ => {}
                }
            }
            self.model = step.model();
        }
        Ok(None)
    }

    /// The frozen part's output for the training photos (when it can be cached: the same
    /// input every epoch, small enough) and for the validation photos.
    async fn feature_passes(
        &self,
        frozen: &Frozen,
        unfreeze: Unfreeze,
        on_progress: &mut impl FnMut(&Progress) -> bool,
    ) -> Result<(Option<Tensor<4>>, Tensor<4>), EngineError> {
        let Trainer {
            cfg,
            spec,
            device,
            helpers,
            ..
        } = *self.job;
        let (train, val) = (&self.train_images, &self.val_images);
        let mixing = cfg.mixup > 0.0 || cfg.cutmix > 0.0;
        let per_image: usize = share::boundary_dims(frozen, spec, device).iter().product();
        let cache = !cfg.augment && !mixing && per_image * train.len() <= MAX_CACHE_FLOATS;
        let batch = cfg.batch_size.max(1);
        let total = train.len() + val.len();
        let train = match cache {
            true => Some(
                share::shared_pass(
                    frozen,
                    unfreeze,
                    train,
                    spec,
                    batch,
                    device,
                    helpers,
                    |done| on_progress(&Progress::Features { done, total }),
                )
                .await?,
            ),
            false => None,
        };
        let offset = if cache { self.train_images.len() } else { 0 };
        let val = share::shared_pass(
            frozen,
            unfreeze,
            val,
            spec,
            batch,
            device,
            helpers,
            |done| {
                on_progress(&Progress::Features {
                    done: offset + done,
                    total: offset + self.val_images.len(),
                })
            },
        )
        .await?;
        Ok((train, val))
    }

    /// One epoch of `stage`: every batch through `step`. The loss and the correct counts add
    /// up on the device and are read back once per epoch (and for the progress line at most
    /// every [`PROGRESS_EVERY_S`]): the GPU never waits for the host between steps.
    async fn train_epoch(
        &mut self,
        mut step: TrainStep,
        stage: &PlannedStage,
        stage_index: usize,
        cache: Option<&Tensor<4>>,
        on_progress: &mut impl FnMut(&Progress) -> bool,
    ) -> Result<(TrainStep, Result<EpochSums, Stop>), EngineError> {
        let (job, device) = (self.job, self.job.device);
        let steps = self.plan.steps_per_epoch(stage_index);
        let mut sums = EpochSums {
            loss: Tensor::zeros([1], device),
            correct: Tensor::zeros([1], device),
            seen: 0,
            started: Instant::now(),
        };
        let mut meter = Meter::new();
        let mut n = 0;
        // A tiny dataset is gone over several times per epoch (see `RunPlan`).
        for _ in 0..stage.passes {
            self.passes += 1;
            let input = match cache {
                Some(features) => EpochInput::Cached(features),
                None if job.cfg.augment => EpochInput::Augmented,
                None => EpochInput::Images(&self.train_images),
            };
            let mut order: Vec<usize> = (0..job.data.train.len()).collect();
            order.shuffle(&mut self.rng);
            let batches: Vec<&[usize]> = order.chunks(self.plan.batch).collect();
            // Only the first batch is made before the first step; each next one while the
            // device runs the step before it.
            let mut next = match input {
                EpochInput::Augmented => batches.first().map(|b| augmented(job, self.passes, b)),
                _ => None,
            };
            for (k, &idx) in batches.iter().enumerate() {
                n += 1;
                let labels: Vec<usize> = idx.iter().map(|&i| job.data.train[i].label).collect();
                let (x, mix) = batch(job, &input, idx, next.take(), self.passes, &mut self.rng);
                let x = match &input {
                    EpochInput::Cached(_) => x,
                    _ => step.frozen.forward(x),
                };
                let (logits, loss) = step.forward(x, &labels, mix.as_ref());
                let size = idx.len();
                sums.loss = sums.loss + loss.clone().detach().inner() * size as f32;
                let predicted = logits.detach().inner().argmax(1).reshape([size]);
                let truth = index_tensor(&labels, device);
                sums.correct = sums.correct + predicted.equal(truth).int().sum();
                sums.seen += size;
                let loss_now = loss.clone().detach().inner();
                let head_lr = self.plan.lr_at(self.steps_done);
                step = step.update(loss);
                self.steps_done += 1;
                if let (EpochInput::Augmented, Some(following)) = (&input, batches.get(k + 1)) {
                    // Hand the step to the device, then make the next batch meanwhile (a
                    // flush does not wait; on the CPU backend the step has already run).
                    device.flush().ok();
                    next = Some(augmented(job, self.passes, following));
                }
                // A Cancel sent meanwhile is read here (in a browser worker).
                crate::engine::let_host_run().await;
                // The last step of the epoch is read too: its progress line is exact.
                if n != steps && !meter.due() {
                    continue;
                }
                let loss = f64::from(read_f32(loss_now).await?[0]);
                if let Some(value) = NotFinite::of(loss) {
                    let epoch = self.epoch;
                    let stop = Stop::LossNotFinite {
                        epoch,
                        step: Some(n),
                        value,
                    };
                    return Ok((step, Err(stop)));
                }
                let progress = Progress::Step {
                    epoch: self.epoch,
                    step: n,
                    steps,
                    loss,
                    lr: head_lr,
                    images_per_sec: meter.read(sums.seen),
                    eta_seconds: self.eta_seconds(),
                };
                if !on_progress(&progress) {
                    let stop = Stop::Cancelled {
                        epoch: self.epoch,
                        step: n,
                    };
                    return Ok((step, Err(stop)));
                }
            }
        }
        Ok((step, Ok(sums)))
    }

    /// Seconds the rest of the run should take at its pace so far.
    fn eta_seconds(&self) -> f64 {
        let all = self.plan.total_steps();
        let elapsed = self.start.elapsed().as_secs_f64();
        elapsed / self.steps_done.max(1) as f64 * all.saturating_sub(self.steps_done) as f64
    }

    /// The epoch's report: its sums read back, then validation in eval mode (dropout off,
    /// BatchNorm on running statistics). A non-finite loss ends the run: the epoch is not
    /// reported (its numbers mean nothing) and the best model is kept.
    async fn score_epoch(
        &self,
        step: &TrainStep,
        val_cache: &Tensor<4>,
        sums: EpochSums,
    ) -> Result<Result<EpochReport, Stop>, EngineError> {
        let epoch = self.epoch;
        let loss_sum = f64::from(read_f32(sums.loss).await?[0]);
        let correct = read_f32(sums.correct.float()).await?[0] as usize;
        if let Some(value) = NotFinite::of(loss_sum) {
            let step = None;
            return Ok(Err(Stop::LossNotFinite { epoch, step, value }));
        }
        let eval_part = step.eval_part();
        let classes = self.job.data.classes.len();
        let batch = self.job.cfg.batch_size.max(1);
        let mut logits = Vec::with_capacity(self.val_labels.len() * classes);
        for start in (0..self.val_labels.len()).step_by(batch) {
            let n = batch.min(self.val_labels.len() - start);
            let x = val_cache.clone().narrow(0, start, n);
            logits.extend(read_f32(eval_part.forward(x)).await?);
        }
        let val = metrics(&logits, &self.val_labels, classes);
        if let Some(value) = NotFinite::of(val.val_loss) {
            return Ok(Err(Stop::ValLossNotFinite { epoch, value }));
        }
        let seen = sums.seen.max(1) as f64;
        Ok(Ok(EpochReport {
            epoch,
            train_loss: loss_sum / seen,
            train_acc: correct as f64 / seen,
            val_loss: val.val_loss,
            val_acc: val.val_acc,
            lr: self.plan.lr_at(self.steps_done.saturating_sub(1)),
            seconds: sums.started.elapsed().as_secs_f64(),
            per_class_acc: val.per_class_acc,
            confusion: val.confusion,
            val_predicted: val.predicted,
        }))
    }

    /// The best epoch's model and the run's report, or why there is none.
    fn finish(self, stop: Option<Stop>) -> Result<(Classifier, TrainReport), EngineError> {
        let Some(best) = self.early.into_best() else {
            return Err(match stop {
                Some(stop) if stop.cancelled() => EngineError::Cancelled,
                Some(stop) => EngineError::Stopped(stop),
                None => EngineError::Unsupported("no epoch finished".to_string()),
            });
        };
        let seconds = self.start.elapsed().as_secs_f64();
        let strategy = self.job.cfg.strategy;
        let report = TrainReport::new(strategy, self.epochs, best.epoch, seconds, stop);
        Ok((best.model, report))
    }
}

/// The input of one step: the batch `idx` of the epoch's `input` (mixed under mixup/CutMix),
/// at the freeze boundary when cached, else as images to run the frozen part on. `ready` is
/// the batch when it was made ahead.
fn batch(
    job: &Trainer,
    input: &EpochInput,
    idx: &[usize],
    ready: Option<Vec<RgbImage>>,
    pass: u64,
    rng: &mut StdRng,
) -> (Tensor<4>, Option<Mix>) {
    let (spec, device) = (job.spec, job.device);
    let images = match input {
        EpochInput::Cached(features) => {
            let rows = index_tensor(idx, device);
            return ((*features).clone().select(0, rows), None);
        }
        EpochInput::Images(images) => idx.iter().map(|&i| images[i].clone()).collect(),
        EpochInput::Augmented => ready.unwrap_or_else(|| augmented(job, pass, idx)),
    };
    let x = preprocess::batch_tensor(&images, spec, device);
    mix_batch(x, job.cfg, rng)
}

/// The training photos `idx`, augmented as pass `pass` augments each.
fn augmented(job: &Trainer, pass: u64, idx: &[usize]) -> Vec<RgbImage> {
    let (cfg, data, spec) = (job.cfg, job.data, job.spec);
    idx.iter()
        .map(|&i| {
            let mut rng = augment_rng(cfg.seed, pass, i);
            augment::augment(
                &data.train[i].image,
                spec.input_size,
                &cfg.augmentation,
                &mut rng,
            )
        })
        .collect()
}

/// Images a second between two progress reads.
struct Meter {
    last: Instant,
    seen: usize,
}

impl Meter {
    fn new() -> Self {
        Self {
            last: Instant::now(),
            seen: 0,
        }
    }

    fn due(&self) -> bool {
        self.last.elapsed().as_secs_f64() >= PROGRESS_EVERY_S
    }

    /// Images a second since the last read, `seen` images in all so far.
    fn read(&mut self, seen: usize) -> f64 {
        let secs = self.last.elapsed().as_secs_f64().max(1e-9);
        let rate = (seen - self.seen) as f64 / secs;
        (self.last, self.seen) = (Instant::now(), seen);
        rate
    }
}
