//! Prediction: image bytes in, top-k classes out. Async so the same code reads results back
//! from WebGPU in the browser (native callers wrap it in `pollster::block_on`).

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::engine::EngineError;
use crate::engine::data::preprocess;
use crate::engine::io::export;
use crate::engine::io::weights;
use crate::engine::model::labels;
use crate::engine::model::{BackboneSpec, Classifier};
use crate::engine::train::plan::Unfreeze;
use crate::engine::train::split::Frozen;
use crate::engine::train::split::split;

/// One class with its score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassScore {
    pub index: usize,
    pub label: String,
    pub prob: f32,
    pub logit: f32,
}

/// What the model says about one image.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prediction {
    pub top: Vec<ClassScore>,
    pub logits: Vec<f32>,
}

/// A loaded classifier with its labels and input spec, ready to predict.
pub struct Predictor {
    pub model: Classifier,
    pub labels: Vec<String>,
    pub spec: BackboneSpec,
    pub device: Device,
    /// The backbone with its BatchNorms folded, which predictions run (half the kernels).
    folded: Frozen,
}

impl Predictor {
    pub fn new(model: Classifier, labels: Vec<String>, spec: BackboneSpec, device: Device) -> Self {
        let folded = split(model.clone(), Unfreeze::Blocks(0)).0;
        Self {
            model,
            labels,
            spec,
            device,
            folded,
        }
    }

    /// Builds the ImageNet classifier from the converted checkpoint's bytes, validating
    /// names and shapes first.
    pub fn from_safetensors(bytes: &[u8], device: &Device) -> Result<Self, EngineError> {
        const FILE: &str = "the pretrained weights";
        let predictor = Self::from_model_file(FILE, bytes, device)?;
        if predictor.labels != labels::imagenet() {
            return Err(EngineError::weights(
                FILE,
                format!(
                    "a model of {} classes, expected the 1000 ImageNet classes",
                    predictor.labels.len()
                ),
            ));
        }
        Ok(predictor)
    }

    /// Builds a predictor from a model trained here (class names from its metadata), or from
    /// the ImageNet checkpoint when the file has no class names and 1000 outputs.
    pub fn from_model_file(file: &str, bytes: &[u8], device: &Device) -> Result<Self, EngineError> {
        let map = weights::WeightMap::from_safetensors(file, bytes)?;
        let spec = map.backbone().clone();
        let model = map.classifier(device);
        let labels = match export::class_names(&map) {
            Some(names) => names,
            None if model.head.classes() == labels::imagenet().len() => labels::imagenet().to_vec(),
            None => return Err(EngineError::weights(file, "no class names in its metadata")),
        };
        if labels.len() != model.head.classes() {
            return Err(EngineError::weights(
                file,
                format!(
                    "{} class names for a head of {} outputs",
                    labels.len(),
                    model.head.classes()
                ),
            ));
        }
        Ok(Self::new(model, labels, spec, device.clone()))
    }

    /// Logits for already transformed images (all `spec.input_size` squared).
    pub async fn logits(&self, images: &[image::RgbImage]) -> Result<Vec<Vec<f32>>, EngineError> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let input = preprocess::batch_tensor(images, &self.spec, &self.device);
        let features = self.folded.forward(input);
        let [n, c, _, _] = features.dims();
        let logits = self.model.head.forward(features.reshape([n, c]));
        let [n, classes] = logits.dims();
        let values = crate::engine::read_f32(logits).await?;
        Ok((0..n)
            .map(|i| values[i * classes..(i + 1) * classes].to_vec())
            .collect())
    }

    /// Decodes, transforms and classifies one image file.
    pub async fn predict_image(
        &self,
        file_name: &str,
        bytes: &[u8],
        k: usize,
    ) -> Result<Prediction, EngineError> {
        let img = preprocess::eval_transform(&preprocess::decode(file_name, bytes)?, &self.spec);
        let logits = self.logits(std::slice::from_ref(&img)).await?.remove(0);
        Ok(Prediction {
            top: top_k(&logits, k, &self.labels),
            logits,
        })
    }
}

/// The `k` most probable classes, by softmax over all logits, best first.
pub fn top_k(logits: &[f32], k: usize, labels: &[String]) -> Vec<ClassScore> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = logits.iter().map(|&l| (l - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    order
        .into_iter()
        .take(k)
        .map(|i| ClassScore {
            index: i,
            label: labels
                .get(i)
                .cloned()
                .unwrap_or_else(|| format!("class {i}")),
            prob: exp[i] / sum,
            logit: logits[i],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_orders_and_normalises() {
        let labels: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let top = top_k(&[1.0, 3.0, 2.0], 2, &labels);
        assert_eq!(top.len(), 2);
        assert_eq!((top[0].index, top[0].label.as_str()), (1, "b"));
        assert_eq!(top[1].index, 2);
        let z = 1f32.exp() + 3f32.exp() + 2f32.exp();
        assert!((top[0].prob - 3f32.exp() / z).abs() < 1e-6);
    }
}
