//! What a step trains on: the batches of an epoch (from the boundary cache, from images, or
//! augmented afresh), each image's own augmentation stream, and mixup/CutMix.

use burn::tensor::{Device, Int, Tensor, TensorData};
use image::RgbImage;
use rand::Rng;
use rand::seq::SliceRandom;
use rand::{SeedableRng, rngs::StdRng};
use rand_distr::{Beta, Distribution};

use crate::engine::train::config::TrainConfig;

/// How a batch was mixed with a shuffled copy of itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Mix {
    /// The partner of each sample (an index into the batch).
    pub partner: Vec<usize>,
    /// The weight of each sample's own label; its partner's label has the rest.
    pub own_weight: f64,
}

/// Mixes a batch with a shuffled copy of itself (mixup or CutMix), returning the mixed images
/// and how they were mixed (`None`: left as they were).
pub fn mix_batch(x: Tensor<4>, cfg: &TrainConfig, rng: &mut StdRng) -> (Tensor<4>, Option<Mix>) {
    let [n, _, h, w] = x.dims();
    let use_mixup = cfg.mixup > 0.0;
    let use_cutmix = cfg.cutmix > 0.0;
    if n < 2 || !(use_mixup || use_cutmix) || !rng.random_bool(cfg.mix_prob.clamp(0.0, 1.0)) {
        return (x, None);
    }
    let cutmix = use_cutmix && (!use_mixup || rng.random_bool(0.5));
    let alpha = if cutmix { cfg.cutmix } else { cfg.mixup };
    let lambda = Beta::new(alpha, alpha)
        .map(|b| b.sample(rng))
        .unwrap_or(1.0);
    let mut perm: Vec<usize> = (0..n).collect();
    perm.shuffle(rng);
    let device = x.device();
    let other = x.clone().select(0, index_tensor(&perm, &device));
    if !cutmix {
        let mix = Mix {
            partner: perm,
            own_weight: lambda,
        };
        return (x * lambda + other * (1.0 - lambda), Some(mix));
    }
    let (bw, bh) = cutmix_box(w, h, lambda);
    let cx = rng.random_range(0..w);
    let cy = rng.random_range(0..h);
    let (x0, x1) = (cx.saturating_sub(bw / 2), (cx + bw / 2).min(w));
    let (y0, y1) = (cy.saturating_sub(bh / 2), (cy + bh / 2).min(h));
    let mut mask = vec![0.0f32; h * w];
    for y in y0..y1 {
        for xx in x0..x1 {
            mask[y * w + xx] = 1.0;
        }
    }
    let area = ((x1 - x0) * (y1 - y0)) as f64 / (w * h) as f64;
    let mask = Tensor::<4>::from_data(TensorData::new(mask, [1, 1, h, w]), &device);
    let mixed = x * (mask.clone().neg() + 1.0) + other * mask;
    let mix = Mix {
        partner: perm,
        own_weight: 1.0 - area,
    };
    (mixed, Some(mix))
}

/// CutMix box side lengths for mixing weight `lambda` (area fraction `1 - lambda`).
fn cutmix_box(w: usize, h: usize, lambda: f64) -> (usize, usize) {
    let r = (1.0 - lambda).max(0.0).sqrt();
    ((w as f64 * r) as usize, (h as f64 * r) as usize)
}

/// Class labels (or other indices) as a tensor on `device`.
pub fn index_tensor(indices: &[usize], device: &Device) -> Tensor<1, Int> {
    let values: Vec<i64> = indices.iter().map(|&i| i as i64).collect();
    Tensor::from_data(TensorData::new(values, [indices.len()]), device)
}

/// Inputs of the training set for one epoch: transformed images, or the cache.
pub(crate) enum EpochInput<'a> {
    /// Boundary tensors of every training image, on the device; batches are `select`ed from it.
    Cached(&'a Tensor<4>),
    /// Images to run through the frozen part this epoch.
    Images(&'a [RgbImage]),
    /// Augmented images, made a batch at a time while the device runs the step before.
    Augmented,
}

/// The random generator of image `image`'s augmentation in pass `pass` of a run: its own, so a
/// batch can be made ahead of the device, in any order, with the same result.
pub(crate) fn augment_rng(seed: u64, pass: u64, image: usize) -> StdRng {
    let mut z = seed
        ^ pass.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (image as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
    // splitmix64's finaliser: nearby inputs give unrelated seeds.
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    StdRng::seed_from_u64(z ^ (z >> 31))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_image_and_pass_has_its_own_augmentation_stream() {
        use rand::RngCore;
        let draw = |seed, pass, image| augment_rng(seed, pass, image).next_u64();
        assert_eq!(draw(7, 1, 3), draw(7, 1, 3), "made again, the same");
        let all = [
            draw(7, 1, 3),
            draw(7, 1, 4),
            draw(7, 2, 3),
            draw(8, 1, 3),
            draw(0, 0, 0),
            draw(0, 0, 1),
        ];
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }
}
