//! Transfer learning. The frozen part of the network runs as pure inference (no autodiff,
//! BatchNorm on running statistics); only the trainable part lives on the autodiff device.
//! When the frozen part sees the same input every epoch (no augmentation) its output is
//! computed once and the head trains on that cache: the project's main speed lever.
//!
//! Strategies: `head` (feature extraction), `last-block`, `gradual` (stages that unfreeze more
//! blocks) and `full`, each with discriminative learning rates per layer group.

pub mod advisor;
pub mod config;
pub mod plan;
pub mod schedule;
pub mod share;

use burn::lr_scheduler::module_lr_scheduler::ModuleLrScheduler;
use burn::module::Module;
use burn::module::ParamGroup;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{DropoutConfig, LinearConfig};
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::{Device, Int, Tensor, TensorData};
use image::RgbImage;
use rand::Rng;
use rand::seq::SliceRandom;
use rand::{SeedableRng, rngs::StdRng};
use rand_distr::{Beta, Distribution};
use serde::{Deserialize, Serialize};
use web_time::Instant;

use crate::engine::EngineError;
use crate::engine::data::augment;
use crate::engine::data::preprocess;
use crate::engine::data::{Dataset, Sample};
use crate::engine::model::{
    Backbone, BackboneSpec, Classifier, ConvBn, FEATURE_DIM, FoldedBlock, FoldedConv, Head, MbConv,
};
use crate::engine::read_f32;
use crate::engine::train::schedule::Scheduled;
use crate::engine::train::share::Helpers;

use crate::engine::train::config::{Monitor, TrainConfig};
use crate::engine::train::plan::{RunPlan, Stage, Unfreeze};

/// Figures of one finished epoch.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
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

/// Validation metrics of a model on labelled images.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EvalReport {
    pub val_loss: f64,
    pub val_acc: f64,
    pub per_class_acc: Vec<f64>,
    /// `confusion[true][predicted]`.
    pub confusion: Vec<Vec<usize>>,
    /// Predicted class of each image, in input order.
    pub predicted: Vec<usize>,
}

/// The outcome of a run; the model in it carries the best epoch's weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainReport {
    pub strategy: String,
    pub epochs: Vec<EpochReport>,
    pub best_epoch: usize,
    pub val_acc: f64,
    pub per_class_acc: Vec<f64>,
    pub confusion: Vec<Vec<usize>>,
    /// The best epoch's predicted class of each validation image.
    pub val_predicted: Vec<usize>,
    pub seconds_total: f64,
    /// Why the run ended early (cancelled, early stopping, NaN loss), if it did.
    pub stopped: Option<String>,
}

/// The evaluation transform of working-size samples. A sample prepared for another backbone
/// (the page switched backbones while photos were decoding) is resized first, so its crop is
/// still square and of `spec`'s size.
pub(crate) fn eval_images(samples: &[Sample], spec: &BackboneSpec) -> Vec<RgbImage> {
    samples
        .iter()
        .map(|s| {
            let (w, h) = s.image.dimensions();
            if w.min(h) == spec.resize {
                preprocess::center_crop(&s.image, spec.input_size)
            } else {
                preprocess::eval_transform(&s.image, spec)
            }
        })
        .collect()
}

/// Metrics from logits (row-major, `classes` wide) and labels.
pub fn metrics(logits: &[f32], labels: &[usize], classes: usize) -> EvalReport {
    let mut confusion = vec![vec![0usize; classes]; classes];
    let mut loss = 0.0f64;
    let mut predicted = Vec::with_capacity(labels.len());
    for (row, &y) in logits.chunks(classes).zip(labels) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let lse = f64::from(max)
            + row
                .iter()
                .map(|&l| f64::from(l - max).exp())
                .sum::<f64>()
                .ln();
        loss += lse - f64::from(row[y]);
        let pred = (0..classes)
            .max_by(|&a, &b| row[a].total_cmp(&row[b]))
            .unwrap_or(0);
        confusion[y][pred] += 1;
        predicted.push(pred);
    }
    let n = labels.len().max(1) as f64;
    let correct: usize = (0..classes).map(|c| confusion[c][c]).sum();
    let per_class_acc = confusion
        .iter()
        .enumerate()
        .map(|(c, row)| {
            let total: usize = row.iter().sum();
            if total == 0 {
                0.0
            } else {
                row[c] as f64 / total as f64
            }
        })
        .collect();
    EvalReport {
        val_loss: loss / n,
        val_acc: correct as f64 / n,
        per_class_acc,
        confusion,
        predicted,
    }
}

/// Evaluates a classifier on samples with the evaluation transform.
pub async fn evaluate(
    model: &Classifier,
    samples: &[Sample],
    classes: usize,
    spec: &BackboneSpec,
    device: &Device,
) -> Result<EvalReport, EngineError> {
    let mut logits = Vec::new();
    for chunk in samples.chunks(16) {
        let x = preprocess::batch_tensor(&eval_images(chunk, spec), spec, device);
        logits.extend(read_f32(model.forward(x)).await?);
    }
    let labels: Vec<usize> = samples.iter().map(|s| s.label).collect();
    Ok(metrics(&logits, &labels, classes))
}

/// A new classifier layer for `classes` classes, as a run starts it.
pub(crate) fn new_head(classes: usize, dropout: f64, device: &Device) -> Head {
    Head {
        dropout: DropoutConfig::new(dropout).init(),
        fc: LinearConfig::new(FEATURE_DIM, classes).init(device),
    }
}

/// The stages a strategy runs (see [`crate::engine::train::plan::stages`]).
pub fn plan(cfg: &TrainConfig) -> Vec<Stage> {
    crate::engine::train::plan::stages(cfg)
}

/// The frozen front of the network: pure inference, BatchNorm on running statistics. It keeps
/// its layers as they are (a run's model is joined from them again) and runs them folded: each
/// convolution and its BatchNorm as one convolution with a bias (see [`FoldedConv`]).
#[derive(Module, Debug)]
pub struct Frozen {
    pub stem: Option<ConvBn>,
    pub blocks: Vec<MbConv>,
    /// Present when the head alone trains: the output is then the pooled feature.
    pub conv_head: Option<ConvBn>,
    folded_stem: Option<FoldedConv>,
    folded_blocks: Vec<FoldedBlock>,
    folded_head: Option<FoldedConv>,
}

impl Frozen {
    fn new(stem: Option<ConvBn>, blocks: Vec<MbConv>, conv_head: Option<ConvBn>) -> Self {
        Frozen {
            folded_stem: stem.as_ref().map(ConvBn::fold),
            folded_blocks: blocks.iter().map(MbConv::fold).collect(),
            folded_head: conv_head.as_ref().map(ConvBn::fold),
            stem,
            blocks,
            conv_head,
        }
    }

    /// The tensor at the freeze boundary (`[n, 1280, 1, 1]` when only the head trains).
    ///
    /// Natively on burn's CPU backend the batch is cut into one part per core, run side by
    /// side: that backend runs its element-wise operations (ReLU6, bias, residual adds) on one
    /// thread, so one pass left the second core mostly idle. Each photo's result is the same
    /// (a frozen pass has no batch statistics).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let parts = cpu_parts(&x);
        self.forward_in_parts(x, parts)
    }

    /// [`Frozen::forward`] with the batch cut into `parts` parts, run side by side in rayon's
    /// pool (burn-flex's own: a part's matrix products share its threads instead of competing
    /// with them; 1.2x over a thread per part, measured), joined back in order. Natively only
    /// (one part in the browser).
    pub fn forward_in_parts(&self, x: Tensor<4>, parts: usize) -> Tensor<4> {
        let n = x.dims()[0];
        let parts = parts.min(n);
        if parts < 2 {
            return self.forward_part(x);
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            use rayon::prelude::*;
            let outputs: Vec<Tensor<4>> = crate::engine::train::share::even_ranges(n, parts)
                .into_par_iter()
                .map(|r| self.forward_part(x.clone().slice([r])))
                .collect();
            Tensor::cat(outputs, 0)
        }
        #[cfg(target_arch = "wasm32")]
        self.forward_part(x)
    }

    fn forward_part(&self, mut x: Tensor<4>) -> Tensor<4> {
        if let Some(stem) = &self.folded_stem {
            x = stem.forward(x);
        }
        for b in &self.folded_blocks {
            x = b.forward(x);
        }
        match &self.folded_head {
            Some(ch) => ch.forward(x).mean_dim(3).mean_dim(2),
            None => x,
        }
    }
}

/// How many side-by-side parts a frozen pass over `x` runs in (see [`Frozen::forward`]): one
/// per core natively on burn's CPU backend; one elsewhere (a GPU runs
/// the batch as one, and a browser's worker has one thread: there helper workers share passes).
fn cpu_parts(x: &Tensor<4>) -> usize {
    #[cfg(not(target_arch = "wasm32"))]
    if crate::engine::kernels::shared::on_cpu_backend(&x.device()) {
        return rayon::current_num_threads();
    }
    #[cfg(target_arch = "wasm32")]
    let _ = x; // one thread per browser worker: one part
    1
}

/// The trainable back of the network, on the autodiff device.
#[derive(Module, Debug)]
pub struct Trainable {
    pub stem: Option<ConvBn>,
    pub blocks: Vec<MbConv>,
    pub conv_head: Option<ConvBn>,
    pub head: Head,
}

impl Trainable {
    pub fn forward(&self, mut x: Tensor<4>) -> Tensor<2> {
        if let Some(stem) = &self.stem {
            x = stem.forward(x);
        }
        for b in &self.blocks {
            x = b.forward(x);
        }
        if let Some(ch) = &self.conv_head {
            x = ch.forward(x);
        }
        let [n, c, _, _] = x.dims();
        self.head.forward(x.mean_dim(3).mean_dim(2).reshape([n, c]))
    }
}

/// Splits a classifier at the freeze boundary of `unfreeze`.
pub fn split(model: Classifier, unfreeze: Unfreeze) -> (Frozen, Trainable) {
    let Classifier { backbone, head } = model;
    let Backbone {
        stem,
        mut blocks,
        conv_head,
    } = backbone;
    match unfreeze {
        Unfreeze::All => (
            Frozen::new(None, Vec::new(), None),
            Trainable {
                stem: Some(stem),
                blocks,
                conv_head: Some(conv_head),
                head,
            },
        ),
        Unfreeze::Blocks(0) => (
            Frozen::new(Some(stem), blocks, Some(conv_head)),
            Trainable {
                stem: None,
                blocks: Vec::new(),
                conv_head: None,
                head,
            },
        ),
        Unfreeze::Blocks(n) => {
            let tail = blocks.split_off(blocks.len().saturating_sub(n));
            (
                Frozen::new(Some(stem), blocks, None),
                Trainable {
                    stem: None,
                    blocks: tail,
                    conv_head: Some(conv_head),
                    head,
                },
            )
        }
    }
}

/// Joins the parts back into one classifier on the plain (inference) device.
pub fn merge(frozen: Frozen, trainable: &Trainable) -> Classifier {
    let t = trainable.valid();
    let mut blocks = frozen.blocks;
    blocks.extend(t.blocks);
    Classifier {
        backbone: Backbone {
            stem: t
                .stem
                .or(frozen.stem)
                .expect("the stem is frozen or trainable"),
            blocks,
            conv_head: t
                .conv_head
                .or(frozen.conv_head)
                .expect("the conv head is frozen or trainable"),
        },
        head: t.head,
    }
}

/// Layer groups for discriminative learning rates, deepest last. Source: the lesson's
/// "earlier layers learn general features, so they move less": each group's rate is the next
/// deeper group's times `cfg.lr_mult`.
/// 0: stem + stages 1-3; 1: stages 4-5; 2: stages 6-7 + conv head; the head is group 3 at the
/// full rate. Stages, not block numbers, so every backbone splits the same way (Lite0: blocks
/// 0-4, 5-10, 11-15).
pub fn block_group(spec: &BackboneSpec, block: usize) -> usize {
    let mut end = 0;
    for (stage, s) in spec.stages().iter().enumerate() {
        end += s.0;
        if block < end {
            return match stage {
                0..=2 => 0,
                3..=4 => 1,
                _ => 2,
            };
        }
    }
    2
}

/// The learning rate multiplier of each group (relative to the head's rate).
pub fn group_multipliers(lr_mult: f64) -> [f64; 4] {
    [lr_mult.powi(3), lr_mult.powi(2), lr_mult, 1.0]
}

pub fn lr_scheduler(
    trainable: &Trainable,
    first_block: usize,
    cfg: &TrainConfig,
    total_steps: usize,
) -> ModuleLrScheduler {
    let mult = group_multipliers(cfg.lr_mult);
    let sched = |m: f64| Scheduled::new(cfg.schedule, cfg.lr * m, cfg.warmup, total_steps);
    // The base matches every parameter; later groups take precedence.
    let mut s = ModuleLrScheduler::new(sched(1.0));
    if let Some(stem) = &trainable.stem {
        s = s.with_group(ParamGroup::ids_from_module(stem.clone()), sched(mult[0]));
    }
    for (i, b) in trainable.blocks.iter().enumerate() {
        let g = block_group(cfg.backbone.spec(), first_block + i);
        s = s.with_group(ParamGroup::ids_from_module(b.clone()), sched(mult[g]));
    }
    if let Some(ch) = &trainable.conv_head {
        s = s.with_group(ParamGroup::ids_from_module(ch.clone()), sched(mult[2]));
    }
    s.with_group(
        ParamGroup::ids_from_module(trainable.head.clone()),
        sched(1.0),
    )
}

/// Puts every BatchNorm of the trainable part in eval mode (running statistics).
fn freeze_batchnorm(t: Trainable) -> Trainable {
    fn cb(mut c: ConvBn) -> ConvBn {
        c.bn.training = burn::module::Param::from_bool(false);
        c
    }
    fn block(b: MbConv) -> MbConv {
        MbConv {
            expand: b.expand.map(cb),
            depthwise: cb(b.depthwise),
            project: cb(b.project),
            skip: b.skip,
        }
    }
    Trainable {
        stem: t.stem.map(cb),
        blocks: t.blocks.into_iter().map(block).collect(),
        conv_head: t.conv_head.map(cb),
        head: t.head,
    }
}

/// Mixes a batch with a shuffled copy of itself (mixup or CutMix), returning the mixed images,
/// the partner of each sample and the weight of the sample's own label.
pub fn mix_batch(
    x: Tensor<4>,
    cfg: &TrainConfig,
    rng: &mut StdRng,
) -> (Tensor<4>, Option<(Vec<usize>, f64)>) {
    let [n, _, h, w] = x.dims();
    let use_mixup = cfg.mixup > 0.0;
    let use_cutmix = cfg.cutmix > 0.0;
    if n < 2 || !(use_mixup || use_cutmix) || !rng.random_bool(cfg.mix_prob.clamp(0.0, 1.0)) {
        return (x, None);
    }
    let cutmix = use_cutmix && (!use_mixup || rng.random_bool(0.5));
    let alpha = if cutmix { cfg.cutmix } else { cfg.mixup };
    let lambda = Beta::new(alpha, alpha)
        .map(|b| b.sample(rng))
        .unwrap_or(1.0);
    let mut perm: Vec<usize> = (0..n).collect();
    perm.shuffle(rng);
    let device = x.device();
    let idx = Tensor::<1, Int>::from_data(
        TensorData::new(perm.iter().map(|&i| i as i64).collect::<Vec<_>>(), [n]),
        &device,
    );
    let other = x.clone().select(0, idx);
    if !cutmix {
        return (x * lambda + other * (1.0 - lambda), Some((perm, lambda)));
    }
    let (bw, bh) = cutmix_box(w, h, lambda);
    let cx = rng.random_range(0..w);
    let cy = rng.random_range(0..h);
    let (x0, x1) = (cx.saturating_sub(bw / 2), (cx + bw / 2).min(w));
    let (y0, y1) = (cy.saturating_sub(bh / 2), (cy + bh / 2).min(h));
    let mut mask = vec![0.0f32; h * w];
    for y in y0..y1 {
        for xx in x0..x1 {
            mask[y * w + xx] = 1.0;
        }
    }
    let area = ((x1 - x0) * (y1 - y0)) as f64 / (w * h) as f64;
    let mask = Tensor::<4>::from_data(TensorData::new(mask, [1, 1, h, w]), &device);
    let mixed = x * (mask.clone().neg() + 1.0) + other * mask;
    (mixed, Some((perm, 1.0 - area)))
}

/// CutMix box side lengths for mixing weight `lambda` (area fraction `1 - lambda`).
pub fn cutmix_box(w: usize, h: usize, lambda: f64) -> (usize, usize) {
    let r = (1.0 - lambda).max(0.0).sqrt();
    ((w as f64 * r) as usize, (h as f64 * r) as usize)
}

/// Inputs of the training set for one epoch: transformed images, or the cache.
enum EpochInput {
    /// Boundary tensors of every training image, on the device; batches are `select`ed from it.
    Cached(Box<Tensor<4>>),
    /// Images to run through the frozen part this epoch.
    Images(Vec<RgbImage>),
    /// Augmented images, made a batch at a time while the device runs the step before.
    Augmented,
}

/// The random generator of image `image`'s augmentation in pass `pass` of a run: its own, so a
/// batch can be made ahead of the device, in any order, with the same result.
fn augment_rng(seed: u64, pass: u64, image: usize) -> StdRng {
    let mut z = seed
        ^ pass.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (image as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
    // splitmix64's finaliser: nearby inputs give unrelated seeds.
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    StdRng::seed_from_u64(z ^ (z >> 31))
}

/// Floats per image at the freeze boundary (what the cache would hold).
fn boundary_floats(frozen: &Frozen, spec: &BackboneSpec, device: &Device) -> usize {
    share::boundary_dims(frozen, spec, device).iter().product()
}

/// Seconds between two progress reads of the loss during an epoch (each read waits for the
/// device).
const PROGRESS_EVERY_S: f64 = 0.25;

/// Largest boundary cache, in floats (256 MB): beyond it the frozen part runs every epoch
/// instead.
pub const MAX_CACHE_FLOATS: usize = 64 << 20;

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
    train_with(
        pretrained,
        data,
        spec,
        cfg,
        device,
        None,
        on_progress,
        |_, _| {},
    )
    .await
}

/// [`train`], with `helpers` (other workers) sharing the frozen part's pass, and handing
/// `on_best` each new best model (with its epoch) as soon as its epoch is scored, so a caller
/// can keep it safe from a failure later in the run.
#[allow(clippy::too_many_arguments)]
pub async fn train_with(
    pretrained: &Backbone,
    data: &Dataset,
    spec: &BackboneSpec,
    cfg: &TrainConfig,
    device: &Device,
    helpers: Option<&dyn Helpers>,
    mut on_progress: impl FnMut(&Progress) -> bool,
    mut on_best: impl FnMut(usize, &Classifier),
) -> Result<(Classifier, TrainReport), EngineError> {
    let classes = data.classes.len();
    if classes < 2 || data.train.is_empty() || data.val.is_empty() {
        return Err(EngineError::Unsupported(format!(
            "need at least 2 classes with training and validation images (have {classes} classes, {} train, {} val)",
            data.train.len(),
            data.val.len()
        )));
    }
    cfg.validate()?;
    // The settings, the preprocessing and the weights must name one backbone.
    let weights_spec = pretrained.spec();
    if weights_spec != Some(spec) || cfg.backbone.spec() != spec {
        return Err(EngineError::Unsupported(format!(
            "the settings ask for {}, the photos are prepared for {} and the weights are {}",
            cfg.backbone.spec().name,
            spec.name,
            weights_spec.map_or("of no known backbone", |s| s.name)
        )));
    }
    let start = Instant::now();
    let run = RunPlan::new(cfg, data.train.len());
    let batch = run.batch;
    let ad = device.clone().autodiff();
    device.seed(cfg.seed);
    ad.seed(cfg.seed);
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let aug_cfg = cfg.augmentation.clone();
    let mixing = cfg.mixup > 0.0 || cfg.cutmix > 0.0;
    let val_images = eval_images(&data.val, spec);
    let val_labels: Vec<usize> = data.val.iter().map(|s| s.label).collect();
    let train_eval_images = eval_images(&data.train, spec);
    let loss_fn = CrossEntropyLossConfig::new()
        .with_smoothing((cfg.label_smoothing > 0.0).then_some(cfg.label_smoothing as f32))
        .init(&ad);

    let mut model = Classifier {
        backbone: pretrained.clone(),
        head: new_head(classes, cfg.dropout, device),
    };
    let all_steps = run.total_steps();
    let mut epochs = Vec::new();
    let mut best: Option<(usize, f64, Classifier)> = None;
    let mut since_best = 0usize;
    let mut stopped = None;
    let mut cancelled = false;
    let mut step_global = 0usize;
    let mut epoch = 0usize;
    // Passes over the training set so far (each augments afresh).
    let mut pass_id = 0u64;
    // Inference batches for the frozen part's pass (no gradients: the batch asked for).
    let infer_batch = cfg.batch_size.max(1);

    'stages: for (stage_index, stage) in run.stages.iter().enumerate() {
        let (frozen, trainable) = split(model.clone(), stage.unfreeze);
        let first_block = model.backbone.blocks.len() - trainable.blocks.len();
        let mut trainable = trainable.fork(&ad).train();
        if cfg.freeze_bn {
            trainable = freeze_batchnorm(trainable);
        }
        let mut optim = AdamWConfig::new()
            .with_weight_decay(cfg.weight_decay as f32)
            .init();
        let stage_steps = run.stage_steps(stage_index);
        let steps = run.steps_per_epoch(stage_index);
        let mut sched = lr_scheduler(&trainable, first_block, cfg, stage_steps);
        // The frozen part sees the same input every epoch without augmentation or mixing:
        // compute its output once.
        let total = train_eval_images.len() + val_images.len();
        let per_image = boundary_floats(&frozen, spec, device);
        let cache_train =
            !cfg.augment && !mixing && per_image * train_eval_images.len() <= MAX_CACHE_FLOATS;
        let passes = async {
            let train = match cache_train {
                true => Some(
                    share::shared_pass(
                        &frozen,
                        stage.unfreeze,
                        &train_eval_images,
                        spec,
                        infer_batch,
                        device,
                        helpers,
                        |done| on_progress(&Progress::Features { done, total }),
                    )
                    .await?,
                ),
                false => None,
            };
            let offset = if cache_train {
                train_eval_images.len()
            } else {
                0
            };
            let val = share::shared_pass(
                &frozen,
                stage.unfreeze,
                &val_images,
                spec,
                infer_batch,
                device,
                helpers,
                |done| {
                    on_progress(&Progress::Features {
                        done: offset + done,
                        total: offset + val_images.len(),
                    })
                },
            )
            .await?;
            Ok::<_, EngineError>((train, val))
        };
        let (cache, val_cache) = match passes.await {
            Ok(passes) => passes,
            // Cancelled within one batch of the frozen pass.
            Err(EngineError::Cancelled) => {
                cancelled = true;
                stopped = Some(format!(
                    "cancelled during the feature pass of stage {}; kept the best model so far",
                    stage_index + 1
                ));
                break 'stages;
            }
            Err(e) => return Err(e),
        };
        for _ in 0..stage.epochs {
            epoch += 1;
            let t_epoch = Instant::now();
            // Loss and correct counts add up on the device and are read back once per epoch
            // (and for the progress line at most every PROGRESS_EVERY_S): the GPU never waits
            // for the host between steps.
            let mut loss_sum_t = Tensor::<1>::zeros([1], device);
            let mut correct_t = Tensor::<1, Int>::zeros([1], device);
            let mut seen = 0usize;
            let mut step = 0usize;
            let (mut last_read, mut seen_at_read) = (Instant::now(), 0usize);
            // A tiny dataset is gone over several times per epoch (see `plan`).
            for _ in 0..stage.passes {
                pass_id += 1;
                let input = match &cache {
                    Some(features) => EpochInput::Cached(Box::new(features.clone())),
                    None if cfg.augment => EpochInput::Augmented,
                    None => EpochInput::Images(train_eval_images.clone()),
                };
                let mut order: Vec<usize> = (0..data.train.len()).collect();
                order.shuffle(&mut rng);
                let batches: Vec<&[usize]> = order.chunks(batch).collect();
                let augmented = |idx: &[usize]| -> Vec<RgbImage> {
                    idx.iter()
                        .map(|&i| {
                            let mut r = augment_rng(cfg.seed, pass_id, i);
                            augment::augment(
                                &data.train[i].image,
                                spec.input_size,
                                &aug_cfg,
                                &mut r,
                            )
                        })
                        .collect()
                };
                // Only the first batch is made before the first step; each next one while the
                // device runs the step before it.
                let mut next = match input {
                    EpochInput::Augmented => batches.first().map(|b| augmented(b)),
                    _ => None,
                };
                for (k, &idx) in batches.iter().enumerate() {
                    step += 1;
                    let labels: Vec<usize> = idx.iter().map(|&i| data.train[i].label).collect();
                    let (x, mix) = match &input {
                        EpochInput::Cached(features) => {
                            let rows = Tensor::<1, Int>::from_data(
                                TensorData::new(
                                    idx.iter().map(|&i| i as i64).collect::<Vec<_>>(),
                                    [idx.len()],
                                ),
                                device,
                            );
                            (features.clone().select(0, rows), None)
                        }
                        EpochInput::Images(images) => {
                            let imgs: Vec<RgbImage> =
                                idx.iter().map(|&i| images[i].clone()).collect();
                            let x = preprocess::batch_tensor(&imgs, spec, device);
                            let (x, mix) = mix_batch(x, cfg, &mut rng);
                            (frozen.forward(x), mix)
                        }
                        EpochInput::Augmented => {
                            let imgs = next.take().unwrap_or_else(|| augmented(idx));
                            let x = preprocess::batch_tensor(&imgs, spec, device);
                            let (x, mix) = mix_batch(x, cfg, &mut rng);
                            (frozen.forward(x), mix)
                        }
                    };
                    let logits = trainable.forward(x.autodiff());
                    let target = |ls: &[usize]| {
                        Tensor::<1, Int>::from_data(
                            TensorData::new(
                                ls.iter().map(|&l| l as i64).collect::<Vec<_>>(),
                                [ls.len()],
                            ),
                            &ad,
                        )
                    };
                    let loss = match &mix {
                        None => loss_fn.forward(logits.clone(), target(&labels)),
                        Some((perm, lambda)) => {
                            let other: Vec<usize> = perm.iter().map(|&p| labels[p]).collect();
                            loss_fn.forward(logits.clone(), target(&labels)) * *lambda
                                + loss_fn.forward(logits.clone(), target(&other)) * (1.0 - lambda)
                        }
                    };
                    let n = idx.len();
                    loss_sum_t = loss_sum_t + loss.clone().detach().inner() * n as f32;
                    let predicted = logits.clone().detach().inner().argmax(1).reshape([n]);
                    let truth = Tensor::<1, Int>::from_data(
                        TensorData::new(labels.iter().map(|&l| l as i64).collect::<Vec<_>>(), [n]),
                        device,
                    );
                    correct_t = correct_t + predicted.equal(truth).int().sum();
                    seen += n;
                    // The last step of the epoch is read too: its progress line is exact.
                    let read_now =
                        step == steps || last_read.elapsed().as_secs_f64() >= PROGRESS_EVERY_S;
                    let loss_now = loss.clone().detach().inner();
                    let lrs = sched.step();
                    let head_lr = run.lr_at(step_global);
                    let grads = GradientsParams::from_grads(loss.backward(), &trainable);
                    trainable = optim.step(lrs, trainable, grads);
                    step_global += 1;
                    if let (EpochInput::Augmented, Some(following)) = (&input, batches.get(k + 1)) {
                        // Hand the step to the device, then make the next batch meanwhile (a
                        // flush does not wait; on the CPU backend the step has already run).
                        device.flush().ok();
                        next = Some(augmented(following));
                    }
                    // A Cancel sent meanwhile is read here (in a browser worker).
                    crate::engine::let_host_run().await;
                    if !read_now {
                        continue;
                    }
                    let loss_value = f64::from(read_f32(loss_now).await?[0]);
                    if !loss_value.is_finite() {
                        stopped = Some(format!(
                            "loss became {loss_value} at epoch {epoch}, step {step}: try a lower learning rate; kept the best model so far"
                        ));
                        break 'stages;
                    }
                    let secs = last_read.elapsed().as_secs_f64().max(1e-9);
                    let images_per_sec = (seen - seen_at_read) as f64 / secs;
                    (last_read, seen_at_read) = (Instant::now(), seen);
                    let elapsed = start.elapsed().as_secs_f64();
                    let keep_going = on_progress(&Progress::Step {
                        epoch,
                        step,
                        steps,
                        loss: loss_value,
                        lr: head_lr,
                        images_per_sec,
                        eta_seconds: elapsed / step_global as f64
                            * all_steps.saturating_sub(step_global) as f64,
                    });
                    if !keep_going {
                        cancelled = true;
                        stopped = Some(format!(
                            "cancelled at epoch {epoch}, step {step}; kept the best model so far"
                        ));
                        break 'stages;
                    }
                }
            }
            // The epoch's sums, read back once.
            let loss_sum = f64::from(read_f32(loss_sum_t).await?[0]);
            let correct = read_f32(correct_t.float()).await?[0] as usize;
            if !loss_sum.is_finite() {
                stopped = Some(format!(
                    "loss became {loss_sum} during epoch {epoch}: try a lower learning rate; kept the best model so far"
                ));
                break 'stages;
            }
            // Validation in eval mode (dropout off, BatchNorm on running statistics).
            let eval_part = trainable.valid();
            let mut logits = Vec::with_capacity(val_labels.len() * classes);
            for start in (0..val_labels.len()).step_by(infer_batch) {
                let n = infer_batch.min(val_labels.len() - start);
                let x = val_cache.clone().narrow(0, start, n);
                logits.extend(read_f32(eval_part.forward(x)).await?);
            }
            let report = metrics(&logits, &val_labels, classes);
            // A non-finite validation loss ends the run like a non-finite training loss: the
            // epoch is not reported (its numbers mean nothing) and the best model is kept.
            if !report.val_loss.is_finite() {
                stopped = Some(format!(
                    "validation loss became {} at epoch {epoch}: try a lower learning rate; kept the best model so far",
                    report.val_loss
                ));
                break 'stages;
            }
            let epoch_report = EpochReport {
                epoch,
                train_loss: loss_sum / seen.max(1) as f64,
                train_acc: correct as f64 / seen.max(1) as f64,
                val_loss: report.val_loss,
                val_acc: report.val_acc,
                lr: run.lr_at(step_global.saturating_sub(1)),
                seconds: t_epoch.elapsed().as_secs_f64(),
                per_class_acc: report.per_class_acc,
                confusion: report.confusion,
                val_predicted: report.predicted,
            };
            on_progress(&Progress::Epoch(epoch_report.clone()));
            let score = match cfg.monitor {
                Monitor::ValLoss => -epoch_report.val_loss,
                Monitor::ValAcc => epoch_report.val_acc,
            };
            epochs.push(epoch_report);
            if best
                .as_ref()
                .is_none_or(|(_, s, _)| score > s + cfg.min_delta)
            {
                let model = merge(frozen.clone(), &trainable);
                on_best(epoch, &model);
                best = Some((epoch, score, model));
                since_best = 0;
            } else {
                since_best += 1;
                if cfg.early_stop.is_some_and(|p| since_best >= p) {
                    stopped = Some(format!(
                        "early stopping after epoch {epoch}: no improvement for {since_best} epochs; restored epoch {}",
                        best.as_ref().map_or(0, |b| b.0)
                    ));
                    break 'stages;
                }
            }
        }
        model = merge(frozen, &trainable);
    }
    let Some((best_epoch, _, best_model)) = best else {
        return Err(match stopped {
            _ if cancelled => EngineError::Cancelled,
            Some(reason) => EngineError::Unsupported(reason),
            None => EngineError::Unsupported("no epoch finished".to_string()),
        });
    };
    let Some(best_report) = epochs.iter().find(|e| e.epoch == best_epoch).cloned() else {
        return Err(EngineError::Unsupported(
            "the best epoch has no report".into(),
        ));
    };
    Ok((
        best_model,
        TrainReport {
            strategy: cfg.strategy.name().to_string(),
            epochs,
            best_epoch,
            val_acc: best_report.val_acc,
            per_class_acc: best_report.per_class_acc,
            confusion: best_report.confusion,
            val_predicted: best_report.val_predicted,
            seconds_total: start.elapsed().as_secs_f64(),
            stopped,
        },
    ))
}

/// Header metadata of an exported model: class names (read back by import), backbone,
/// preprocessing, head layout, training settings and the best epoch's metrics.
pub fn export_metadata(
    classes: &[String],
    cfg: &TrainConfig,
    report: &TrainReport,
) -> std::collections::HashMap<String, String> {
    let json = |v: serde_json::Value| v.to_string();
    [
        (
            crate::engine::io::weights::META_CLASSES,
            json(serde_json::json!(classes)),
        ),
        (
            crate::engine::io::weights::META_BACKBONE,
            cfg.backbone.spec().id.to_string(),
        ),
        (
            "preprocessing",
            json(serde_json::json!(cfg.backbone.spec())),
        ),
        (
            "head",
            json(serde_json::json!({"layout": "dropout+linear", "dropout": cfg.dropout})),
        ),
        ("training", cfg.to_string()),
        (
            "metrics",
            json(serde_json::json!({
                "val_acc": report.val_acc,
                "best_epoch": report.best_epoch,
                "per_class_acc": report.per_class_acc,
            })),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// The `n` largest off-diagonal cells of a confusion matrix (true class, predicted class,
/// count), largest first: what a matrix too large to draw is shown as.
pub fn most_confused(confusion: &[Vec<usize>], n: usize) -> Vec<(usize, usize, usize)> {
    let mut cells: Vec<(usize, usize, usize)> = confusion
        .iter()
        .enumerate()
        .flat_map(|(i, row)| {
            row.iter()
                .enumerate()
                .filter(move |&(j, &count)| j != i && count > 0)
                .map(move |(j, &count)| (i, j, count))
        })
        .collect();
    cells.sort_by(|a, b| b.2.cmp(&a.2).then((a.0, a.1).cmp(&(b.0, b.1))));
    cells.truncate(n);
    cells
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_image_and_pass_has_its_own_augmentation_stream() {
        use rand::RngCore;
        let draw = |seed, pass, image| augment_rng(seed, pass, image).next_u64();
        assert_eq!(draw(7, 1, 3), draw(7, 1, 3), "made again, the same");
        let all = [
            draw(7, 1, 3),
            draw(7, 1, 4),
            draw(7, 2, 3),
            draw(8, 1, 3),
            draw(0, 0, 0),
            draw(0, 0, 1),
        ];
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn metrics_count_confusion_and_loss() {
        // Two classes, three samples: right, right, wrong.
        let logits = [2.0, 0.0, 0.0, 1.0, 3.0, 0.0];
        let r = metrics(&logits, &[0, 1, 1], 2);
        assert_eq!(r.confusion, vec![vec![1, 0], vec![1, 1]]);
        assert!((r.val_acc - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(r.per_class_acc, vec![1.0, 0.5]);
        let ce = |l: [f64; 2], y: usize| (l[0].exp() + l[1].exp()).ln() - l[y];
        let want = (ce([2.0, 0.0], 0) + ce([0.0, 1.0], 1) + ce([3.0, 0.0], 1)) / 3.0;
        assert!((r.val_loss - want).abs() < 1e-6);
    }

    #[test]
    fn most_confused_pairs_are_the_largest_off_diagonal_cells() {
        let confusion = vec![vec![5, 1, 0], vec![3, 4, 3], vec![0, 7, 2]];
        assert_eq!(
            most_confused(&confusion, 3),
            vec![(2, 1, 7), (1, 0, 3), (1, 2, 3)]
        );
        assert!(most_confused(&[vec![4]], 5).is_empty());
    }
}
