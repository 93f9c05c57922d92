//! The feature space in 2-D: principal component analysis of the pooled 1280-d features of the
//! user's photos, so students see classes as clouds that training pulls apart. Power iteration
//! on the centred data (never the 1280 x 1280 covariance), deterministic, on the host: a few
//! hundred photos take milliseconds.

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::engine::EngineError;
use crate::engine::data::preprocess;
use crate::engine::data::{Dataset, Sample};
use crate::engine::model::{Backbone, BackboneSpec};
use crate::engine::read_f32;
use crate::engine::train::evaluate::eval_images;

/// Iterations of the power method per component (converges long before for real features).
const ITERATIONS: usize = 200;

/// The photos placed on the first two principal axes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Projection {
    /// One `[x, y]` per photo, in the order given.
    pub points: Vec<[f32; 2]>,
    /// Share of the total variance along each axis.
    pub explained: [f32; 2],
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn normalise(v: &mut [f32]) -> f32 {
    let n = dot(v, v).sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
    n
}

/// `rows` (each of the same length) projected on their first two principal components. Each
/// axis's sign is fixed so that its largest loading is positive (the same data always gives the
/// same picture). Fewer than 2 rows or no variance give zeros.
fn project_2d(rows: &[Vec<f32>]) -> Projection {
    let n = rows.len();
    let d = rows.first().map_or(0, Vec::len);
    let zero = Projection {
        points: vec![[0.0; 2]; n],
        explained: [0.0; 2],
    };
    if n < 2 || d == 0 || rows.iter().any(|r| r.len() != d) {
        return zero;
    }
    let mut mean = vec![0.0f32; d];
    for r in rows {
        mean.iter_mut().zip(r).for_each(|(m, x)| *m += x / n as f32);
    }
    let centred: Vec<Vec<f32>> = rows
        .iter()
        .map(|r| r.iter().zip(&mean).map(|(x, m)| x - m).collect())
        .collect();
    let total: f32 = centred.iter().map(|r| dot(r, r)).sum();
    if total <= 0.0 {
        return zero;
    }
    let mut axes: Vec<Vec<f32>> = Vec::new();
    let mut explained = [0.0f32; 2];
    for (k, share) in explained.iter_mut().enumerate() {
        // A fixed start that is not orthogonal to typical data.
        let mut v: Vec<f32> = (0..d)
            .map(|i| 1.0 + ((i * 7 + k * 3) % 11) as f32 / 11.0)
            .collect();
        let mut variance = 0.0;
        for _ in 0..ITERATIONS {
            // v <- X^T X v, with the axes found so far removed.
            let scores: Vec<f32> = centred.iter().map(|r| dot(r, &v)).collect();
            let mut next = vec![0.0f32; d];
            for (r, s) in centred.iter().zip(&scores) {
                next.iter_mut().zip(r).for_each(|(a, x)| *a += s * x);
            }
            for axis in &axes {
                let p = dot(&next, axis);
                next.iter_mut().zip(axis).for_each(|(a, x)| *a -= p * x);
            }
            variance = normalise(&mut next);
            v = next;
            if variance == 0.0 {
                break;
            }
        }
        let largest = v
            .iter()
            .copied()
            .max_by(|a, b| a.abs().total_cmp(&b.abs()))
            .unwrap_or(0.0);
        if largest < 0.0 {
            v.iter_mut().for_each(|x| *x = -*x);
        }
        *share = variance / total;
        axes.push(v);
    }
    let points = centred
        .iter()
        .map(|r| [dot(r, &axes[0]), dot(r, &axes[1])])
        .collect();
    Projection { points, explained }
}

/// Most photos placed on the map (the first ones of the run's order): each costs a forward pass.
const MAX_MAP_PHOTOS: usize = 400;

/// One photo on the map.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MapPhoto {
    pub file: String,
    pub label: usize,
    /// A validation photo (the others were learned from).
    pub val: bool,
    /// The trained model's class for a validation photo.
    pub predicted: Option<usize>,
}

/// The user's photos in the pretrained network's feature space and, when training changed the
/// backbone, in the trained one's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureSpace {
    pub photos: Vec<MapPhoto>,
    pub before: Projection,
    /// `None` when the run trained the head alone: the features did not change.
    pub after: Option<Projection>,
}

/// Pooled features (`[n][1280]`) of working-size samples, in eval mode, a batch at a time.
pub async fn pooled_features(
    backbone: &Backbone,
    samples: &[Sample],
    spec: &BackboneSpec,
    device: &Device,
) -> Result<Vec<Vec<f32>>, EngineError> {
    let mut out = Vec::with_capacity(samples.len());
    for chunk in samples.chunks(16) {
        let x = preprocess::batch_tensor(&eval_images(chunk, spec), spec, device);
        let features = backbone.forward(x);
        let [n, d] = features.dims();
        let values = read_f32(features).await?;
        out.extend((0..n).map(|i| values[i * d..(i + 1) * d].to_vec()));
    }
    Ok(out)
}

/// The feature space of a finished run: `data`'s photos (train then val, at most
/// [`MAX_MAP_PHOTOS`]) under `pretrained` and, when `backbone_trained`, under `trained`.
pub async fn feature_space(
    pretrained: &Backbone,
    trained: &Backbone,
    backbone_trained: bool,
    data: &Dataset,
    val_predicted: &[usize],
    spec: &BackboneSpec,
    device: &Device,
) -> Result<FeatureSpace, EngineError> {
    let samples: Vec<Sample> = data
        .train
        .iter()
        .chain(&data.val)
        .take(MAX_MAP_PHOTOS)
        .cloned()
        .collect();
    let photos = samples
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let val = i >= data.train.len();
            MapPhoto {
                file: s.file.clone(),
                label: s.label,
                val,
                predicted: val
                    .then(|| val_predicted.get(i - data.train.len()).copied())
                    .flatten(),
            }
        })
        .collect();
    let before = project_2d(&pooled_features(pretrained, &samples, spec, device).await?);
    let after = if backbone_trained {
        Some(project_2d(
            &pooled_features(trained, &samples, spec, device).await?,
        ))
    } else {
        None
    };
    Ok(FeatureSpace {
        photos,
        before,
        after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_axes_of_data_with_known_variances() {
        // Points spread 10 along (3, 4, 0)/5, 1 along (0, 0, 1), around (5, 5, 5): the first
        // axis is (0.6, 0.8, 0), the second (0, 0, 1); variance shares 100/101 and 1/101.
        let mut rows = Vec::new();
        for i in -5i32..=5 {
            for j in [-1.0f32, 1.0] {
                let a = i as f32 * 2.0;
                rows.push(vec![5.0 + 0.6 * a, 5.0 + 0.8 * a, 5.0 + j]);
            }
        }
        let p = project_2d(&rows);
        let sum_sq = |k: usize| p.points.iter().map(|q| q[k] * q[k]).sum::<f32>();
        let total: f32 = rows
            .iter()
            .map(|r| (r[0] - 5.0).powi(2) + (r[1] - 5.0).powi(2) + (r[2] - 5.0).powi(2))
            .sum();
        assert!((sum_sq(0) / total - p.explained[0]).abs() < 1e-4);
        // Along the first axis each point sits at its `a`, along the second at its `j`.
        for (q, r) in p.points.iter().zip(&rows) {
            let a = (r[0] - 5.0) / 0.6;
            assert!((q[0] - a).abs() < 1e-3, "{q:?} vs {a}");
            assert!((q[1] - (r[2] - 5.0)).abs() < 1e-3, "{q:?}");
        }
        let (var_a, var_j) = (880.0, 22.0); // sums of a^2 and j^2 over the 22 points
        assert!((p.explained[0] - var_a / (var_a + var_j)).abs() < 1e-4);
        assert!((p.explained[1] - var_j / (var_a + var_j)).abs() < 1e-4);
    }

    #[test]
    fn degenerate_inputs_give_zeros() {
        assert_eq!(project_2d(&[]).points.len(), 0);
        let same = vec![vec![1.0, 2.0]; 3];
        assert_eq!(project_2d(&same).points, vec![[0.0; 2]; 3]);
    }
}
