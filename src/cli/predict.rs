//! `finetune predict` and `finetune explain`: a model's top classes for photos, and where it
//! looked (Grad-CAM).

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::engine::EngineError;
use crate::engine::data;
use crate::engine::data::preprocess;
use crate::engine::insight::inference::{Predictor, top_k};
use crate::engine::io::convert;
use crate::engine::limits::MAX_PHOTO_BYTES;
use crate::engine::model::BackboneKind;

use super::{Backend, EXIT_SOME_FAILED, read_model, read_weights};

pub(crate) fn predict(
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

pub(crate) fn explain(
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
