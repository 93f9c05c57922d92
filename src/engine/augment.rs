//! Training augmentation on working-size images, seeded and reproducible: RandomResizedCrop
//! and horizontal flip (torchvision's definitions). Output is always the backbone's input size.

use image::RgbImage;
use image::imageops::FilterType;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// Which augmentations run, with the lesson's defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AugmentConfig {
    /// RandomResizedCrop area range (fraction of the image); `None` = centre crop.
    pub crop_scale: Option<(f64, f64)>,
    /// Flip left-right with probability 0.5.
    pub hflip: bool,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        Self {
            crop_scale: Some((0.08, 1.0)),
            hflip: true,
        }
    }
}

/// torchvision's RandomResizedCrop box: area fraction in `scale`, aspect ratio in [3/4, 4/3]
/// (log-uniform), 10 tries, then the largest centred box of in-range aspect.
pub fn rrc_box(w: u32, h: u32, scale: (f64, f64), rng: &mut impl Rng) -> (u32, u32, u32, u32) {
    let area = f64::from(w) * f64::from(h);
    let (lr0, lr1) = ((3.0f64 / 4.0).ln(), (4.0f64 / 3.0).ln());
    for _ in 0..10 {
        let target = area * rng.random_range(scale.0..=scale.1);
        let ratio = rng.random_range(lr0..=lr1).exp();
        let cw = (target * ratio).sqrt().round() as u32;
        let ch = (target / ratio).sqrt().round() as u32;
        if cw > 0 && ch > 0 && cw <= w && ch <= h {
            let x = rng.random_range(0..=w - cw);
            let y = rng.random_range(0..=h - ch);
            return (x, y, cw, ch);
        }
    }
    let in_ratio = f64::from(w) / f64::from(h);
    let (cw, ch) = if in_ratio < 3.0 / 4.0 {
        (w, (f64::from(w) / (3.0 / 4.0)).round() as u32)
    } else if in_ratio > 4.0 / 3.0 {
        ((f64::from(h) * (4.0 / 3.0)).round() as u32, h)
    } else {
        (w, h)
    };
    (
        (w - cw.min(w)) / 2,
        (h - ch.min(h)) / 2,
        cw.min(w),
        ch.min(h),
    )
}

/// One augmented view of `img`, `size` x `size`.
pub fn augment(img: &RgbImage, size: u32, cfg: &AugmentConfig, rng: &mut impl Rng) -> RgbImage {
    let (w, h) = img.dimensions();
    let mut out = match cfg.crop_scale {
        Some(scale) => {
            let (x, y, cw, ch) = rrc_box(w, h, scale, rng);
            let crop = image::imageops::crop_imm(img, x, y, cw, ch).to_image();
            image::imageops::resize(&crop, size, size, FilterType::Triangle)
        }
        None => super::preprocess::center_crop(img, size),
    };
    if cfg.hflip && rng.random_bool(0.5) {
        image::imageops::flip_horizontal_in_place(&mut out);
    }
    out
}

/// `n` augmented versions of one image, for the "what augmentation does" grid.
pub fn samples(
    img: &RgbImage,
    size: u32,
    cfg: &AugmentConfig,
    n: usize,
    seed: u64,
) -> Vec<RgbImage> {
    use rand::SeedableRng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n).map(|_| augment(img, size, cfg, &mut rng)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, 7])
        })
    }

    #[test]
    fn output_has_input_size_and_pixels_from_the_image() {
        let img = gradient(300, 256);
        for (i, out) in samples(&img, 224, &AugmentConfig::default(), 8, 3)
            .iter()
            .enumerate()
        {
            assert_eq!(out.dimensions(), (224, 224), "sample {i}");
            assert!(
                out.pixels().all(|p| p[2] == 7),
                "channel values stay in the source range"
            );
        }
    }

    #[test]
    fn flip_mirrors_and_crop_box_stays_inside() {
        let img = gradient(224, 224);
        let cfg = AugmentConfig {
            crop_scale: None,
            hflip: true,
        };
        let outs = samples(&img, 224, &cfg, 16, 1);
        let flipped = outs.iter().filter(|o| o.get_pixel(0, 0)[0] == 223).count();
        let kept = outs.iter().filter(|o| o.get_pixel(0, 0)[0] == 0).count();
        assert_eq!(flipped + kept, 16);
        assert!(flipped > 0 && kept > 0);
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        for _ in 0..200 {
            let (x, y, w, h) = rrc_box(500, 333, (0.08, 1.0), &mut rng);
            assert!(x + w <= 500 && y + h <= 333 && w > 0 && h > 0);
            let frac = f64::from(w * h) / (500.0 * 333.0);
            assert!(frac <= 1.0);
        }
    }

    #[test]
    fn same_seed_same_views() {
        let img = gradient(320, 256);
        let a = samples(&img, 64, &AugmentConfig::default(), 4, 9);
        let b = samples(&img, 64, &AugmentConfig::default(), 4, 9);
        assert_eq!(a, b);
    }
}
