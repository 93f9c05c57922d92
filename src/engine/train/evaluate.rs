//! Scoring a model on labelled photos: the evaluation transform, logits to metrics (loss,
//! accuracy, per-class accuracy, confusion matrix).

use burn::tensor::Device;
use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::engine::EngineError;
use crate::engine::data::Sample;
use crate::engine::data::preprocess;
use crate::engine::model::{BackboneSpec, Classifier};
use crate::engine::read_f32;

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
