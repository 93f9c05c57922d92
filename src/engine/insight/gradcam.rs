//! Where the model looks: Grad-CAM (Selvaraju et al., 2017) on the last convolution
//! (`_conv_head` after its BatchNorm and ReLU6, 1280 maps of input/32). The class score's
//! gradient with respect to those maps, averaged over each map, weighs the maps; their weighted
//! sum, without its negative part, is the heatmap. The gradient comes from burn's autodiff on
//! the model's own device; the frozen network runs in eval mode without autodiff.

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use image::{Rgb, RgbImage};
use serde::{Deserialize, Serialize};

use crate::engine::EngineError;
use crate::engine::data::preprocess;
use crate::engine::kernels::linear;
use crate::engine::model::{BackboneSpec, Classifier};
use crate::engine::read_f32;

/// One class's heatmap over the network's input, on the last convolution's grid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heatmap {
    /// The class it explains.
    pub class: usize,
    /// Grid size (input / 32, rounded up).
    pub width: usize,
    pub height: usize,
    /// Row-major, scaled so the largest value is 1 (all 0 when nothing speaks for the class).
    pub values: Vec<f32>,
    /// The largest value before scaling (how strongly the evidence speaks).
    pub peak: f32,
}

impl Heatmap {
    /// Share of the heat in each quadrant of the grid, `[top-left, top-right, bottom-left,
    /// bottom-right]`; a cell on a middle line counts half to each side.
    pub fn quadrant_shares(&self) -> [f32; 4] {
        let mut q = [0.0f32; 4];
        let side = |i: usize, n: usize| -> [f32; 2] {
            let mid = (n as f32 - 1.0) / 2.0;
            let i = i as f32;
            if i < mid {
                [1.0, 0.0]
            } else if i > mid {
                [0.0, 1.0]
            } else {
                [0.5, 0.5]
            }
        };
        for y in 0..self.height {
            for x in 0..self.width {
                let v = self.values[y * self.width + x];
                let (sx, sy) = (side(x, self.width), side(y, self.height));
                q[0] += v * sx[0] * sy[0];
                q[1] += v * sx[1] * sy[0];
                q[2] += v * sx[0] * sy[1];
                q[3] += v * sx[1] * sy[1];
            }
        }
        let total: f32 = q.iter().sum();
        if total > 0.0 {
            q.iter_mut().for_each(|v| *v /= total);
        }
        q
    }
}

/// Grad-CAM of one image: the logits of the same pass, and one heatmap per class asked for.
#[derive(Debug, Clone)]
pub struct GradCam {
    pub logits: Vec<f32>,
    pub heats: Vec<Heatmap>,
}

/// Grad-CAM heatmaps of `classes` (none: the predicted class) for one image (already through
/// the evaluation transform, `spec.input_size` square). One forward pass gives both the
/// logits and the maps; one backward pass per class; one read of each small map.
pub async fn grad_cam(
    model: &Classifier,
    image: &RgbImage,
    spec: &BackboneSpec,
    classes: &[usize],
    device: &Device,
) -> Result<GradCam, EngineError> {
    let outputs = model.head.classes();
    if let Some(&bad) = classes.iter().find(|&&c| c >= outputs) {
        return Err(EngineError::Unsupported(format!(
            "class {bad} does not exist: the model has {outputs} classes"
        )));
    }
    let x = preprocess::batch_tensor(std::slice::from_ref(image), spec, device);
    // Eval mode, no autodiff: the maps are the activations predictions see.
    let maps = model.backbone.feature_maps(x);
    let [_, channels, height, width] = maps.dims();
    // The logits follow from the maps: pooled, then the linear layer (dropout is identity).
    let pooled = maps.clone().mean_dim(3).mean_dim(2).reshape([1, channels]);
    let logits = read_f32(linear(&model.head.fc, pooled)).await?;
    let predicted = [(0..logits.len())
        .max_by(|&a, &b| logits[a].total_cmp(&logits[b]))
        .unwrap_or(0)];
    let classes = if classes.is_empty() {
        &predicted[..]
    } else {
        classes
    };
    let ad = device.clone().autodiff();
    // The linear layer alone: dropout is identity at evaluation.
    let fc = model.head.fc.clone().fork(&ad);
    let mut out = Vec::with_capacity(classes.len());
    for &class in classes {
        let a = maps.clone().autodiff().require_grad();
        let pooled = a.clone().mean_dim(3).mean_dim(2).reshape([1, channels]);
        let score = linear(&fc, pooled).slice([0..1, class..class + 1]).sum();
        let grads = score.backward();
        let grad = a
            .grad(&grads)
            .ok_or_else(|| EngineError::Device("no gradient for the feature maps".into()))?;
        // Each map's weight: its gradient averaged over the grid.
        let weights = grad.clone().mean_dim(3).mean_dim(2);
        let cam = (maps.clone() * weights)
            .sum_dim(1)
            .clamp_min(0.0)
            .reshape([height * width]);
        let raw = read_f32(cam).await?;
        let peak = raw.iter().copied().fold(0.0f32, f32::max);
        let values = if peak > 0.0 {
            raw.iter().map(|v| v / peak).collect()
        } else {
            raw
        };
        out.push(Heatmap {
            class,
            width,
            height,
            values,
            peak,
        });
    }
    Ok(GradCam { logits, heats: out })
}

/// A colour for heat `t` in 0..1: dark blue through green and yellow to red.
fn colour(t: f32) -> [f32; 3] {
    const STOPS: [[f32; 3]; 5] = [
        [0.0, 0.0, 0.5],
        [0.0, 0.4, 1.0],
        [0.1, 0.85, 0.3],
        [1.0, 0.9, 0.0],
        [0.9, 0.0, 0.0],
    ];
    let t = t.clamp(0.0, 1.0) * (STOPS.len() - 1) as f32;
    let i = (t.floor() as usize).min(STOPS.len() - 2);
    let f = t - i as f32;
    std::array::from_fn(|c| STOPS[i][c] * (1.0 - f) + STOPS[i + 1][c] * f)
}

/// The heatmap laid over `image` (the network's input): the grid is spread bilinearly over
/// the photo, cells centred, and blended half and half with it.
pub fn overlay(image: &RgbImage, heat: &Heatmap) -> RgbImage {
    let (w, h) = image.dimensions();
    let sample = |x: u32, y: u32| -> f32 {
        // Position on the grid, cell centres at integer coordinates.
        let gx = ((x as f32 + 0.5) * heat.width as f32 / w as f32 - 0.5)
            .clamp(0.0, (heat.width - 1) as f32);
        let gy = ((y as f32 + 0.5) * heat.height as f32 / h as f32 - 0.5)
            .clamp(0.0, (heat.height - 1) as f32);
        let (x0, y0) = (gx.floor() as usize, gy.floor() as usize);
        let (x1, y1) = ((x0 + 1).min(heat.width - 1), (y0 + 1).min(heat.height - 1));
        let (fx, fy) = (gx - x0 as f32, gy - y0 as f32);
        let v = |x: usize, y: usize| heat.values[y * heat.width + x];
        let top = v(x0, y0) * (1.0 - fx) + v(x1, y0) * fx;
        let bottom = v(x0, y1) * (1.0 - fx) + v(x1, y1) * fx;
        top * (1.0 - fy) + bottom * fy
    };
    if heat.width == 0 || heat.height == 0 {
        return image.clone();
    }
    RgbImage::from_fn(w, h, |x, y| {
        let c = colour(sample(x, y));
        let p = image.get_pixel(x, y).0;
        Rgb(std::array::from_fn(|i| {
            (f32::from(p[i]) * 0.5 + c[i] * 255.0 * 0.5).round() as u8
        }))
    })
}

/// Grad-CAM's closed form for this architecture, computed on the host: with global average
/// pooling and one linear layer, the score's gradient on map `k` is `w[class][k] / (h*w)`
/// everywhere, so the heatmap is `relu(sum_k w[class][k] * A_k) / (h*w)`. For tests.
pub async fn cam_closed_form(
    model: &Classifier,
    image: &RgbImage,
    spec: &BackboneSpec,
    class: usize,
    device: &Device,
) -> Result<Vec<f32>, EngineError> {
    let x = preprocess::batch_tensor(std::slice::from_ref(image), spec, device);
    let maps = model.backbone.feature_maps(x);
    let [_, channels, height, width] = maps.dims();
    let a = read_f32(maps).await?;
    // burn's Linear stores `[in, out]`.
    let w: Tensor<2> = model.head.fc.weight.val();
    let w = read_f32(w.slice([0..channels, class..class + 1])).await?;
    let cells = height * width;
    Ok((0..cells)
        .map(|i| {
            let s: f32 = (0..channels).map(|k| w[k] * a[k * cells + i]).sum();
            s.max(0.0) / cells as f32
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(width: usize, height: usize, values: Vec<f32>) -> Heatmap {
        Heatmap {
            class: 0,
            width,
            height,
            values,
            peak: 1.0,
        }
    }

    #[test]
    fn quadrant_shares_split_middle_cells_evenly() {
        // 3x3 with everything in the top-left cell, then in the centre cell.
        let mut v = vec![0.0; 9];
        v[0] = 1.0;
        assert_eq!(map(3, 3, v).quadrant_shares(), [1.0, 0.0, 0.0, 0.0]);
        let mut v = vec![0.0; 9];
        v[4] = 1.0;
        assert_eq!(map(3, 3, v).quadrant_shares(), [0.25; 4]);
        assert_eq!(map(2, 2, vec![0.0; 4]).quadrant_shares(), [0.0; 4]);
    }

    #[test]
    fn overlay_puts_the_heat_where_the_grid_has_it() {
        let photo = RgbImage::from_pixel(64, 64, Rgb([128, 128, 128]));
        // Hot in the right column of a 2x2 grid.
        let out = overlay(&photo, &map(2, 2, vec![0.0, 1.0, 0.0, 1.0]));
        let left = out.get_pixel(2, 32).0;
        let right = out.get_pixel(61, 32).0;
        // Cold is blue, hot is red.
        assert!(left[2] > left[0], "{left:?}");
        assert!(right[0] > right[2], "{right:?}");
        let png = preprocess::png(&out).unwrap();
        assert_eq!(&png[1..4], b"PNG");
    }
}
