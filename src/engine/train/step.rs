//! One training step, the same for a run, `finetune bench` and `finetune profile`: the
//! trainable part's forward on a batch at the freeze boundary, cross-entropy (mixed labels
//! under mixup/CutMix), the backward pass, and AdamW's update at the scheduled rate of each
//! layer group (discriminative learning rates).

use burn::lr_scheduler::module_lr_scheduler::ModuleLrScheduler;
use burn::module::{Module, ParamGroup};
use burn::nn::loss::{CrossEntropyLoss, CrossEntropyLossConfig};
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor};

use crate::engine::model::{BackboneSpec, Classifier};
use crate::engine::train::batches::{Mix, index_tensor};
use crate::engine::train::config::TrainConfig;
use crate::engine::train::plan::Unfreeze;
use crate::engine::train::schedule::Scheduled;
use crate::engine::train::split::{Frozen, Trainable, freeze_batchnorm, split};

/// A model split for training, with its optimiser, schedule and loss.
pub struct TrainStep {
    pub frozen: Frozen,
    pub trainable: Trainable,
    optim: ModuleOptimizer,
    sched: ModuleLrScheduler,
    loss_fn: CrossEntropyLoss,
    ad: Device,
}

impl TrainStep {
    /// `model` split at `unfreeze`: its trainable part on the autodiff device in training mode
    /// (BatchNorm on running statistics when `cfg.freeze_bn`), AdamW with `cfg`'s weight decay,
    /// `cfg`'s schedule over `steps` steps, cross-entropy with `cfg`'s label smoothing.
    pub fn new(
        model: Classifier,
        unfreeze: Unfreeze,
        cfg: &TrainConfig,
        steps: usize,
        device: &Device,
    ) -> Self {
        let ad = device.clone().autodiff();
        let (frozen, trainable) = split(model, unfreeze);
        let first_block = frozen.blocks.len();
        let mut trainable = trainable.fork(&ad).train();
        if cfg.freeze_bn {
            trainable = freeze_batchnorm(trainable);
        }
        let sched = lr_scheduler(&trainable, first_block, cfg, steps.max(1));
        let smoothing = (cfg.label_smoothing > 0.0).then_some(cfg.label_smoothing as f32);
        Self {
            frozen,
            trainable,
            optim: AdamWConfig::new()
                .with_weight_decay(cfg.weight_decay as f32)
                .init(),
            sched,
            loss_fn: CrossEntropyLossConfig::new()
                .with_smoothing(smoothing)
                .init(&ad),
            ad,
        }
    }

    /// The trainable part's logits on `boundary` (the frozen part's output) and the loss
    /// against `labels`, each sample's label weighted against its partner's under `mix`.
    pub fn forward(
        &self,
        boundary: Tensor<4>,
        labels: &[usize],
        mix: Option<&Mix>,
    ) -> (Tensor<2>, Tensor<1>) {
        let logits = self.trainable.forward(boundary.autodiff());
        let own = self
            .loss_fn
            .forward(logits.clone(), index_tensor(labels, &self.ad));
        let loss = match mix {
            None => own,
            Some(mix) => {
                let other: Vec<usize> = mix.partner.iter().map(|&p| labels[p]).collect();
                let other = self
                    .loss_fn
                    .forward(logits.clone(), index_tensor(&other, &self.ad));
                own * mix.own_weight + other * (1.0 - mix.own_weight)
            }
        };
        (logits, loss)
    }

    /// The gradients of `loss` for the trainable part.
    pub fn gradients(&self, loss: Tensor<1>) -> GradientsParams {
        GradientsParams::from_grads(loss.backward(), &self.trainable)
    }

    /// One AdamW update with `grads`, each group at its scheduled rate for this step.
    pub fn apply(mut self, grads: GradientsParams) -> Self {
        let rates = self.sched.step();
        self.trainable = self.optim.step(rates, self.trainable, grads);
        self
    }

    /// The backward pass of `loss`, then the update.
    pub fn update(self, loss: Tensor<1>) -> Self {
        let grads = self.gradients(loss);
        self.apply(grads)
    }

    /// The model with the trainable part's weights now, on the inference device.
    pub fn model(&self) -> Classifier {
        crate::engine::train::split::merge(self.frozen.clone(), &self.trainable)
    }

    /// The trainable part in eval mode (dropout off, BatchNorm on running statistics).
    pub fn eval_part(&self) -> Trainable {
        self.trainable.valid()
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

/// The learning-rate schedule of each layer group of `trainable` (its first block is the
/// backbone's `first_block`) over `total_steps` steps.
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
