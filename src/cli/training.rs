//! `finetune train` and `finetune eval`: the settings as flags, a run on a folder tree, a
//! model scored on one.

use std::path::{Path, PathBuf};

use clap::ValueEnum;
use serde_json::{Value, json};

use crate::engine::EngineError;
use crate::engine::data;
use crate::engine::data::augment::AugmentConfig;
use crate::engine::insight::inference::Predictor;
use crate::engine::io::convert;
use crate::engine::io::export;
use crate::engine::io::weights as weights_io;
use crate::engine::model::BackboneKind;
use crate::engine::train;
use crate::engine::train::config::{Strategy, TrainConfig};
use crate::engine::train::plan::RunPlan;
use crate::engine::train::report::Progress;
use crate::engine::train::schedule::Schedule;

use super::{Backend, read_model, read_weights};

/// `--augment-set` values.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum AugmentSet {
    Full,
    CropFlip,
}

/// `--strategy` by the engine's names (one spelling everywhere).
pub(crate) fn parse_strategy(s: &str) -> Result<Strategy, String> {
    Strategy::from_name(s).ok_or_else(|| {
        let names: Vec<_> = Strategy::ALL.iter().map(|s| s.name()).collect();
        format!("one of {}", names.join(", "))
    })
}

/// `--schedule` by the engine's names.
pub(crate) fn parse_schedule(s: &str) -> Result<Schedule, String> {
    Schedule::from_name(s).ok_or_else(|| {
        let names: Vec<_> = Schedule::ALL.iter().map(|s| s.name()).collect();
        format!("one of {}", names.join(", "))
    })
}

/// `--backbone` by the engine's names.
pub(crate) fn parse_backbone(s: &str) -> Result<BackboneKind, String> {
    BackboneKind::from_name(s).ok_or_else(|| {
        let names: Vec<_> = BackboneKind::ALL.iter().map(|k| k.name()).collect();
        format!("one of {}", names.join(", "))
    })
}

/// Training settings from the command line: each flag given replaces the engine's default
/// ([`TrainConfig`] is the only place defaults live), then the engine validates the result.
#[derive(clap::Args)]
pub(crate) struct TrainArgs {
    /// The pretrained backbone: lite0, lite1 or lite2.
    #[arg(long, value_parser = parse_backbone)]
    backbone: Option<BackboneKind>,
    /// head, last-block, gradual or full.
    #[arg(long, value_parser = parse_strategy)]
    strategy: Option<Strategy>,
    #[arg(long)]
    epochs: Option<usize>,
    /// Images per step (smaller on a tiny dataset, see the run plan).
    #[arg(long)]
    batch: Option<usize>,
    /// Peak learning rate of the head.
    #[arg(long)]
    lr: Option<f64>,
    /// one-cycle, cosine or constant.
    #[arg(long, value_parser = parse_schedule)]
    schedule: Option<Schedule>,
    /// Augment training images.
    #[arg(long, overrides_with = "no_augment")]
    augment: bool,
    /// Train on cached features of the evaluation transform (the default).
    #[arg(long)]
    no_augment: bool,
    /// Augmentations when --augment is on: the lesson's full set, or crop + flip only.
    #[arg(long, value_enum)]
    augment_set: Option<AugmentSet>,
    #[arg(long)]
    label_smoothing: Option<f64>,
    /// Mixup alpha (0 = off).
    #[arg(long)]
    mixup: Option<f64>,
    /// CutMix alpha (0 = off).
    #[arg(long)]
    cutmix: Option<f64>,
    /// Each earlier layer group learns at the next one's rate times this.
    #[arg(long)]
    lr_mult: Option<f64>,
    /// Keep BatchNorm of trainable blocks on running statistics.
    #[arg(long)]
    freeze_bn: bool,
    /// Stop after this many epochs without a better val loss; the best weights are kept.
    #[arg(long)]
    early_stop: Option<usize>,
    /// Validation fraction when DIR has no val/ folder.
    #[arg(long)]
    val_fraction: Option<f64>,
    #[arg(long)]
    seed: Option<u64>,
}

impl TrainArgs {
    /// The engine's defaults with the given flags applied, validated.
    fn config(&self) -> Result<TrainConfig, EngineError> {
        let d = TrainConfig::new();
        let cfg = TrainConfig {
            backbone: self.backbone.unwrap_or(d.backbone),
            strategy: self.strategy.unwrap_or(d.strategy),
            epochs: self.epochs.unwrap_or(d.epochs),
            batch_size: self.batch.unwrap_or(d.batch_size),
            lr: self.lr.unwrap_or(d.lr),
            schedule: self.schedule.unwrap_or(d.schedule),
            augment: self.augment || d.augment,
            augmentation: match self.augment_set {
                None => d.augmentation.clone(),
                Some(AugmentSet::Full) => AugmentConfig::default(),
                Some(AugmentSet::CropFlip) => AugmentConfig::crop_flip(),
            },
            label_smoothing: self.label_smoothing.unwrap_or(d.label_smoothing),
            mixup: self.mixup.unwrap_or(d.mixup),
            cutmix: self.cutmix.unwrap_or(d.cutmix),
            lr_mult: self.lr_mult.unwrap_or(d.lr_mult),
            freeze_bn: self.freeze_bn || d.freeze_bn,
            early_stop: self.early_stop.or(d.early_stop),
            val_fraction: self.val_fraction.unwrap_or(d.val_fraction),
            seed: self.seed.unwrap_or(d.seed),
            ..d
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

/// `finetune pytorch`: the script of the run, and with `split` (photos, file) the
/// validation photos the app would hold out of those photos.
pub(crate) fn pytorch(
    args: &TrainArgs,
    out: &Path,
    split: Option<(&Path, &Path)>,
) -> Result<i32, EngineError> {
    let cfg = &args.config()?;
    let script = train::pytorch::script(cfg)?;
    convert::write_atomic(out, script.text().as_bytes())?;
    eprintln!("wrote {}", out.display());
    if let Some((dir, file)) = split {
        let ds = data::load_image_folder(dir, cfg.backbone.spec(), cfg.val_fraction, cfg.seed)?;
        for s in &ds.skipped {
            eprintln!("skipped {}: {}", s.file, s.error);
        }
        // The script names photos by their path under DATA.
        let val: Vec<(usize, String)> = ds
            .val
            .iter()
            .map(|s| {
                let path = Path::new(&s.file);
                let name = path.strip_prefix(dir).unwrap_or(path);
                (s.label, name.to_string_lossy().into_owned())
            })
            .collect();
        let json = train::pytorch::split_json(&ds.classes, &val);
        convert::write_atomic(file, json.as_bytes())?;
        eprintln!("wrote {} ({} validation photos)", file.display(), val.len());
    }
    Ok(0)
}

pub(crate) fn train(
    backend: Backend,
    weights: Option<PathBuf>,
    dir: &Path,
    args: &TrainArgs,
    out: Option<PathBuf>,
) -> Result<i32, EngineError> {
    let cfg = &args.config()?;
    let spec = cfg.backbone.spec();
    let device = backend.device()?;
    let (file, bytes) = read_weights(weights, cfg.backbone)?;
    let pretrained = weights_io::load_classifier(&file, &bytes, &device)?;
    let ds = data::load_image_folder(dir, spec, cfg.val_fraction, cfg.seed)?;
    for s in &ds.skipped {
        eprintln!("skipped {}: {}", s.file, s.error);
    }
    eprintln!(
        "{} classes, {} train / {} val images, {}, strategy {}",
        ds.classes.len(),
        ds.train.len(),
        ds.val.len(),
        spec.name,
        cfg.strategy.name()
    );
    if let Some(note) = RunPlan::new(cfg, ds.train.len()).note(cfg) {
        eprintln!("{note}");
    }
    let (model, report) = pollster::block_on(train::run::train(
        &pretrained.backbone,
        &ds,
        spec,
        cfg,
        &device,
        |p| {
            if let Progress::Epoch(e) = p {
                eprintln!(
                    "epoch {}: train loss {:.4} acc {:.3} | val loss {:.4} acc {:.3} | lr {:.2e} | {:.1}s",
                    e.epoch, e.train_loss, e.train_acc, e.val_loss, e.val_acc, e.lr, e.seconds
                );
            }
            true
        },
    ))?;
    if let Some(path) = &out {
        let meta = export::export_metadata(&ds.classes, cfg, &report);
        let bytes = pollster::block_on(export::export_safetensors(&model, meta))?;
        convert::write_atomic(path, &bytes)?;
        eprintln!("wrote {}", path.display());
    }
    let epochs: Vec<Value> = report
        .epochs
        .iter()
        .map(|e| {
            json!({"epoch": e.epoch, "train_loss": e.train_loss, "train_acc": e.train_acc,
                   "val_loss": e.val_loss, "val_acc": e.val_acc, "lr": e.lr, "seconds": e.seconds})
        })
        .collect();
    println!(
        "{}",
        json!({
            "backend": backend.name(),
            "backbone": spec.id,
            "classes": ds.classes,
            "strategy": report.strategy,
            "train_images": ds.train.len(),
            "val_images": ds.val.len(),
            "skipped": ds.skipped,
            "epochs": epochs,
            "best_epoch": report.best_epoch,
            "val_acc": report.val_acc,
            "per_class_acc": report.per_class_acc,
            "confusion": report.confusion,
            "stopped": report.stopped,
            "seconds_total": report.seconds_total,
        })
    );
    Ok(0)
}

pub(crate) fn eval(backend: Backend, model_path: &Path, dir: &Path) -> Result<i32, EngineError> {
    let device = backend.device()?;
    let name = model_path.display().to_string();
    let predictor = Predictor::from_model_file(&name, &read_model(model_path)?, &device)?;
    let ds = data::load_image_folder(dir, &predictor.spec, 0.2, 0)?;
    // The model's classes decide the labels: map the folder's names onto them.
    let mut samples = Vec::new();
    for mut s in ds.val {
        let folder = &ds.classes[s.label];
        let key = data::class_key(folder);
        match predictor
            .labels
            .iter()
            .position(|c| data::class_key(c) == key)
        {
            Some(i) => {
                s.label = i;
                samples.push(s);
            }
            None => {
                return Err(EngineError::Unsupported(format!(
                    "{}: class folder `{folder}` is not one of the model's classes {:?}",
                    dir.display(),
                    predictor.labels
                )));
            }
        }
    }
    let report = pollster::block_on(train::evaluate::evaluate(
        &predictor.model,
        &samples,
        predictor.labels.len(),
        &predictor.spec,
        &device,
    ))?;
    println!(
        "{}",
        json!({
            "backend": backend.name(),
            "backbone": predictor.spec.id,
            "classes": predictor.labels,
            "val_images": samples.len(),
            "skipped": ds.skipped,
            "val_acc": report.val_acc,
            "val_loss": report.val_loss,
            "per_class_acc": report.per_class_acc,
            "confusion": report.confusion,
        })
    );
    Ok(0)
}
