//! Transfer learning. The frozen part of the network runs as pure inference (no autodiff,
//! BatchNorm on running statistics); only the trainable part lives on the autodiff device.
//! When the frozen part sees the same input every epoch (no augmentation) its output is
//! computed once and the head trains on that cache: the project's main speed lever.
//!
//! Implemented strategies: `head` (feature extraction). The others (`last-block`, `gradual`,
//! `full`) are declared so settings and the UI can name them, and are refused with a clear
//! message until they land.

use burn::config::Config;
use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{DropoutConfig, LinearConfig};
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::{Device, Int, Tensor, TensorData};
use image::RgbImage;
use rand::seq::SliceRandom;
use rand::{SeedableRng, rngs::StdRng};
use serde::{Deserialize, Serialize};
use web_time::Instant;

use super::augment::{self, AugmentConfig};
use super::data::{Dataset, Sample};
use super::model::{Backbone, BackboneSpec, Classifier, FEATURE_DIM, Head};
use super::schedule::{Schedule, Scheduled, lr_at};
use super::{EngineError, preprocess};

/// What to train.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Strategy {
    /// Feature extraction: only the new head learns.
    Head,
    /// The head, `_blocks.15` and `_conv_head`/`_bn1`.
    LastBlock,
    /// Head first, then more blocks stage by stage.
    Gradual,
    /// Every layer, at a low rate.
    Full,
}

impl Strategy {
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Head => "head",
            Strategy::LastBlock => "last-block",
            Strategy::Gradual => "gradual",
            Strategy::Full => "full",
        }
    }
}

/// Which validation figure early stopping watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Monitor {
    ValLoss,
    ValAcc,
}

/// Training settings, with the lesson's defaults.
#[derive(Config, Debug)]
pub struct TrainConfig {
    #[config(default = "Strategy::Head")]
    pub strategy: Strategy,
    #[config(default = 10)]
    pub epochs: usize,
    #[config(default = 16)]
    pub batch_size: usize,
    /// Peak learning rate of the head.
    #[config(default = 1e-3)]
    pub lr: f64,
    /// AdamW's decoupled weight decay.
    #[config(default = 0.01)]
    pub weight_decay: f64,
    #[config(default = "Schedule::OneCycle")]
    pub schedule: Schedule,
    /// OneCycle warmup fraction of all steps.
    #[config(default = 0.1)]
    pub warmup: f64,
    /// Label smoothing of the cross-entropy (0 = none).
    #[config(default = 0.0)]
    pub label_smoothing: f64,
    /// Dropout before the head's Linear (EfficientNet-Lite0 uses 0.2).
    #[config(default = 0.2)]
    pub dropout: f64,
    /// Augment training images (RandomResizedCrop + flip); off = cached features.
    #[config(default = false)]
    pub augment: bool,
    /// Stop after this many epochs without improvement, restoring the best weights.
    pub early_stop: Option<usize>,
    #[config(default = "Monitor::ValLoss")]
    pub monitor: Monitor,
    /// Smallest change that counts as an improvement.
    #[config(default = 0.0)]
    pub min_delta: f64,
    #[config(default = 0)]
    pub seed: u64,
}

/// Figures of one finished epoch.
#[derive(Debug, Clone, Serialize, PartialEq)]
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
}

/// Progress events, sent after every step and every epoch.
#[derive(Debug, Clone, Serialize)]
pub enum Progress {
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
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EvalReport {
    pub val_loss: f64,
    pub val_acc: f64,
    pub per_class_acc: Vec<f64>,
    /// `confusion[true][predicted]`.
    pub confusion: Vec<Vec<usize>>,
}

/// The outcome of a run; the model in it carries the best epoch's weights.
#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    pub strategy: &'static str,
    pub epochs: Vec<EpochReport>,
    pub best_epoch: usize,
    pub val_acc: f64,
    pub per_class_acc: Vec<f64>,
    pub confusion: Vec<Vec<usize>>,
    pub seconds_total: f64,
    /// Why the run ended early (cancelled, early stopping, NaN loss), if it did.
    pub stopped: Option<String>,
}

async fn read_f32<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>, EngineError> {
    t.into_data_async()
        .await
        .map_err(|e| EngineError::Device(format!("{e:?}")))?
        .try_to_vec::<f32>()
        .map_err(|e| EngineError::Device(format!("{e:?}")))
}

/// Pooled features of transformed images, batch by batch, on the inference device.
pub async fn features(
    backbone: &Backbone,
    images: &[RgbImage],
    spec: &BackboneSpec,
    batch: usize,
    device: &Device,
) -> Result<Vec<f32>, EngineError> {
    let mut out = Vec::with_capacity(images.len() * FEATURE_DIM);
    for chunk in images.chunks(batch.max(1)) {
        let x = preprocess::batch_tensor(chunk, spec, device);
        out.extend(read_f32(backbone.forward(x)).await?);
    }
    Ok(out)
}

fn eval_images(samples: &[Sample], spec: &BackboneSpec) -> Vec<RgbImage> {
    samples
        .iter()
        .map(|s| preprocess::center_crop(&s.image, spec.input_size))
        .collect()
}

/// Metrics from logits (row-major, `classes` wide) and labels.
pub fn metrics(logits: &[f32], labels: &[usize], classes: usize) -> EvalReport {
    let mut confusion = vec![vec![0usize; classes]; classes];
    let mut loss = 0.0f64;
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

fn new_head(classes: usize, dropout: f64, device: &Device) -> Head {
    Head {
        dropout: DropoutConfig::new(dropout).init(),
        fc: LinearConfig::new(FEATURE_DIM, classes).init(device),
    }
}

/// Trains a fresh head (and, per strategy, more layers) on `data`. `backbone` stays as it is;
/// the returned classifier holds a copy with the best epoch's weights. `on_progress` returns
/// `false` to cancel between steps.
pub async fn train(
    backbone: &Backbone,
    data: &Dataset,
    spec: &BackboneSpec,
    cfg: &TrainConfig,
    device: &Device,
    mut on_progress: impl FnMut(&Progress) -> bool,
) -> Result<(Classifier, TrainReport), EngineError> {
    if cfg.strategy != Strategy::Head {
        return Err(EngineError::Unsupported(format!(
            "strategy `{}` is not implemented yet; use `head`",
            cfg.strategy.name()
        )));
    }
    let classes = data.classes.len();
    if data.train.is_empty() || data.val.is_empty() {
        return Err(EngineError::Unsupported(format!(
            "need training and validation images (have {} and {})",
            data.train.len(),
            data.val.len()
        )));
    }
    let start = Instant::now();
    let batch = cfg.batch_size.max(1);
    let ad = device.clone().autodiff();
    device.seed(cfg.seed);
    ad.seed(cfg.seed);
    let mut rng = StdRng::seed_from_u64(cfg.seed);

    // Frozen backbone: features of the validation set once; of the training set once too,
    // unless augmentation changes the input every epoch.
    let val_feats = features(backbone, &eval_images(&data.val, spec), spec, batch, device).await?;
    let val_labels: Vec<usize> = data.val.iter().map(|s| s.label).collect();
    let cached_train = if cfg.augment {
        None
    } else {
        Some(
            features(
                backbone,
                &eval_images(&data.train, spec),
                spec,
                batch,
                device,
            )
            .await?,
        )
    };

    let mut head = new_head(classes, cfg.dropout, &ad);
    let mut optim = AdamWConfig::new()
        .with_weight_decay(cfg.weight_decay as f32)
        .init();
    let loss_fn = CrossEntropyLossConfig::new()
        .with_smoothing((cfg.label_smoothing > 0.0).then_some(cfg.label_smoothing as f32))
        .init(&ad);
    let steps = data.train.len().div_ceil(batch);
    let total_steps = steps * cfg.epochs;
    let mut sched = Scheduled::new(cfg.schedule, cfg.lr, cfg.warmup, total_steps);
    let aug_cfg = AugmentConfig::default();

    let mut epochs = Vec::new();
    let mut best: Option<(usize, f64, Head)> = None;
    let mut since_best = 0usize;
    let mut stopped = None;
    let mut step_global = 0usize;
    'epochs: for epoch in 1..=cfg.epochs {
        let t_epoch = Instant::now();
        let train_feats = match &cached_train {
            Some(f) => f.clone(),
            None => {
                let views: Vec<RgbImage> = data
                    .train
                    .iter()
                    .map(|s| augment::augment(&s.image, spec.input_size, &aug_cfg, &mut rng))
                    .collect();
                features(backbone, &views, spec, batch, device).await?
            }
        };
        let mut order: Vec<usize> = (0..data.train.len()).collect();
        order.shuffle(&mut rng);
        let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0usize, 0usize);
        for (step, idx) in order.chunks(batch).enumerate() {
            let t_step = Instant::now();
            let mut x = Vec::with_capacity(idx.len() * FEATURE_DIM);
            for &i in idx {
                x.extend_from_slice(&train_feats[i * FEATURE_DIM..(i + 1) * FEATURE_DIM]);
            }
            let labels: Vec<i64> = idx.iter().map(|&i| data.train[i].label as i64).collect();
            let x = Tensor::<2>::from_data(TensorData::new(x, [idx.len(), FEATURE_DIM]), &ad);
            let y = Tensor::<1, Int>::from_data(TensorData::new(labels.clone(), [idx.len()]), &ad);
            let logits = head.forward(x);
            let loss = loss_fn.forward(logits.clone(), y);
            let loss_value = f64::from(read_f32(loss.clone()).await?[0]);
            if !loss_value.is_finite() {
                stopped = Some(format!(
                    "loss became {loss_value} at epoch {epoch}, step {}; kept the best model so far",
                    step + 1
                ));
                break 'epochs;
            }
            let row = read_f32(logits.clone()).await?;
            for (r, &l) in row.chunks(classes).zip(&labels) {
                let pred = (0..classes)
                    .max_by(|&a, &b| r[a].total_cmp(&r[b]))
                    .unwrap_or(0);
                correct += usize::from(pred as i64 == l);
            }
            seen += idx.len();
            loss_sum += loss_value * idx.len() as f64;
            let lr = burn::lr_scheduler::LrScheduler::step(&mut sched);
            let grads = GradientsParams::from_grads(loss.backward(), &head);
            head = optim.step(lr, head, grads);
            step_global += 1;
            let secs = t_step.elapsed().as_secs_f64().max(1e-9);
            let keep_going = on_progress(&Progress::Step {
                epoch,
                step: step + 1,
                steps,
                loss: loss_value,
                lr,
                images_per_sec: idx.len() as f64 / secs,
                eta_seconds: start.elapsed().as_secs_f64() / step_global as f64
                    * (total_steps - step_global) as f64,
            });
            if !keep_going {
                stopped = Some(format!("cancelled at epoch {epoch}, step {}", step + 1));
                break 'epochs;
            }
        }
        // Validation with the head in eval mode (dropout off), on cached features.
        let eval_head = head.valid();
        let vx = Tensor::<2>::from_data(
            TensorData::new(val_feats.clone(), [val_labels.len(), FEATURE_DIM]),
            device,
        );
        let report = metrics(
            &read_f32(eval_head.forward(vx)).await?,
            &val_labels,
            classes,
        );
        let lr_now = lr_at(
            cfg.schedule,
            cfg.lr,
            cfg.warmup,
            step_global.saturating_sub(1),
            total_steps,
        );
        let epoch_report = EpochReport {
            epoch,
            train_loss: loss_sum / seen.max(1) as f64,
            train_acc: correct as f64 / seen.max(1) as f64,
            val_loss: report.val_loss,
            val_acc: report.val_acc,
            lr: lr_now,
            seconds: t_epoch.elapsed().as_secs_f64(),
            per_class_acc: report.per_class_acc,
            confusion: report.confusion,
        };
        on_progress(&Progress::Epoch(epoch_report.clone()));
        let score = match cfg.monitor {
            Monitor::ValLoss => -epoch_report.val_loss,
            Monitor::ValAcc => epoch_report.val_acc,
        };
        epochs.push(epoch_report);
        let improved = best
            .as_ref()
            .is_none_or(|(_, s, _)| score > s + cfg.min_delta);
        if improved {
            best = Some((epoch, score, head.clone()));
            since_best = 0;
        } else {
            since_best += 1;
            if cfg.early_stop.is_some_and(|p| since_best >= p) {
                stopped = Some(format!(
                    "early stopping after epoch {epoch}: no improvement for {since_best} epochs"
                ));
                break;
            }
        }
    }
    let Some((best_epoch, _, best_head)) = best else {
        return Err(EngineError::Unsupported(
            stopped.unwrap_or_else(|| "no epoch finished".to_string()),
        ));
    };
    let best_report = epochs[best_epoch - 1].clone();
    let model = Classifier {
        backbone: backbone.clone(),
        head: best_head.valid(),
    };
    Ok((
        model,
        TrainReport {
            strategy: cfg.strategy.name(),
            epochs,
            best_epoch,
            val_acc: best_report.val_acc,
            per_class_acc: best_report.per_class_acc,
            confusion: best_report.confusion,
            seconds_total: start.elapsed().as_secs_f64(),
            stopped,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
