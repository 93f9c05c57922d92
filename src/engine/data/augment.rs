//! Training augmentation on working-size images, seeded and reproducible: RandomResizedCrop,
//! horizontal flip, rotation, affine translation and colour jitter (torchvision's definitions;
//! areas moved in from outside the image are black, as torchvision fills them). Output is always
//! the backbone's input size.

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
    /// Rotation range in degrees, uniform in [-deg, deg] (0 = off).
    pub rotation: f32,
    /// Translation range as a fraction of width/height (0 = off).
    pub translate: f32,
    /// Colour jitter: brightness, contrast, saturation factors in [1-x, 1+x], hue shift in
    /// [-h, h] turns (all 0 = off).
    pub jitter: Jitter,
}

/// Colour jitter strengths (torchvision's `ColorJitter` arguments).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Jitter {
    pub brightness: f32,
    pub contrast: f32,
    pub saturation: f32,
    pub hue: f32,
}

impl Jitter {
    pub const OFF: Jitter = Jitter {
        brightness: 0.0,
        contrast: 0.0,
        saturation: 0.0,
        hue: 0.0,
    };
}

impl Default for AugmentConfig {
    /// The lesson's defaults: RandomResizedCrop(224, scale 0.08-1), flip, rotation 15 degrees,
    /// colour jitter (0.2, 0.2, 0.2, hue 0.1), translate 0.1.
    fn default() -> Self {
        Self {
            crop_scale: Some((0.08, 1.0)),
            hflip: true,
            rotation: 15.0,
            translate: 0.1,
            jitter: Jitter {
                brightness: 0.2,
                contrast: 0.2,
                saturation: 0.2,
                hue: 0.1,
            },
        }
    }
}

impl AugmentConfig {
    /// Crop and flip only (the reference's RandomResizedCrop + flip recipe).
    pub fn crop_flip() -> Self {
        Self {
            rotation: 0.0,
            translate: 0.0,
            jitter: Jitter::OFF,
            ..Self::default()
        }
    }
}

/// Rotates by `degrees` about the centre and shifts by (`dx`, `dy`) pixels, bilinear, black
/// outside (torchvision's `RandomAffine` with fill 0).
pub fn affine(img: &RgbImage, degrees: f32, dx: f32, dy: f32) -> RgbImage {
    let (w, h) = img.dimensions();
    let (cx, cy) = ((w as f32 - 1.0) / 2.0, (h as f32 - 1.0) / 2.0);
    let (sin, cos) = degrees.to_radians().sin_cos();
    RgbImage::from_fn(w, h, |x, y| {
        // Inverse map: output pixel -> source position.
        let (ox, oy) = (x as f32 - cx - dx, y as f32 - cy - dy);
        let sx = cos * ox + sin * oy + cx;
        let sy = -sin * ox + cos * oy + cy;
        if sx < 0.0 || sy < 0.0 || sx > (w - 1) as f32 || sy > (h - 1) as f32 {
            return image::Rgb([0, 0, 0]);
        }
        let (x0, y0) = (sx.floor() as u32, sy.floor() as u32);
        let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
        let (fx, fy) = (sx - x0 as f32, sy - y0 as f32);
        let p = |xx, yy| img.get_pixel(xx, yy).0.map(f32::from);
        let (a, b, c, d) = (p(x0, y0), p(x1, y0), p(x0, y1), p(x1, y1));
        let mut out = [0u8; 3];
        for k in 0..3 {
            let top = a[k] + (b[k] - a[k]) * fx;
            let bottom = c[k] + (d[k] - c[k]) * fx;
            out[k] = (top + (bottom - top) * fy).round().clamp(0.0, 255.0) as u8;
        }
        image::Rgb(out)
    })
}

fn gray(p: [f32; 3]) -> f32 {
    // ITU-R 601-2 luma, as torchvision's rgb_to_grayscale.
    0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2]
}

/// Colour jitter with the given factors (brightness, contrast, saturation) and hue shift in turns.
fn color_jitter(img: &mut RgbImage, brightness: f32, contrast: f32, saturation: f32, hue: f32) {
    let n = (img.width() * img.height()).max(1) as f32;
    let mean = img.pixels().map(|p| gray(p.0.map(f32::from))).sum::<f32>() / n * brightness;
    for px in img.pixels_mut() {
        let mut p = px.0.map(|v| (f32::from(v) * brightness).clamp(0.0, 255.0));
        p = p.map(|v| ((v - mean) * contrast + mean).clamp(0.0, 255.0));
        let g = gray(p);
        p = p.map(|v| ((v - g) * saturation + g).clamp(0.0, 255.0));
        if hue != 0.0 {
            p = shift_hue(p, hue);
        }
        px.0 = p.map(|v| v.round().clamp(0.0, 255.0) as u8);
    }
}

/// Rotates the hue of one RGB pixel (0..255) by `turns` (fractions of the colour wheel).
fn shift_hue(p: [f32; 3], turns: f32) -> [f32; 3] {
    let [r, g, b] = p.map(|v| v / 255.0);
    let max = r.max(g).max(b);
    let min = r.min(g).min(b);
    let d = max - min;
    if d <= f32::EPSILON {
        return p;
    }
    let mut h = if max == r {
        ((g - b) / d).rem_euclid(6.0)
    } else if max == g {
        (b - r) / d + 2.0
    } else {
        (r - g) / d + 4.0
    } / 6.0;
    h = (h + turns).rem_euclid(1.0);
    let (s, v) = (d / max, max);
    let i = (h * 6.0).floor();
    let f = h * 6.0 - i;
    let (pp, q, t) = (v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f)));
    let rgb = match i as i32 % 6 {
        0 => [v, t, pp],
        1 => [q, v, pp],
        2 => [pp, v, t],
        3 => [pp, q, v],
        4 => [t, pp, v],
        _ => [v, pp, q],
    };
    rgb.map(|c| c * 255.0)
}

/// torchvision's RandomResizedCrop box: area fraction in `scale`, aspect ratio in [3/4, 4/3]
/// (log-uniform), 10 tries, then the largest centred box of in-range aspect.
fn rrc_box(w: u32, h: u32, scale: (f64, f64), rng: &mut impl Rng) -> (u32, u32, u32, u32) {
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
        None => crate::engine::data::preprocess::center_crop(img, size),
    };
    if cfg.hflip && rng.random_bool(0.5) {
        image::imageops::flip_horizontal_in_place(&mut out);
    }
    if cfg.rotation > 0.0 || cfg.translate > 0.0 {
        let deg = if cfg.rotation > 0.0 {
            rng.random_range(-cfg.rotation..=cfg.rotation)
        } else {
            0.0
        };
        let (tx, ty) = if cfg.translate > 0.0 {
            let m = cfg.translate * size as f32;
            (
                rng.random_range(-m..=m).round(),
                rng.random_range(-m..=m).round(),
            )
        } else {
            (0.0, 0.0)
        };
        out = affine(&out, deg, tx, ty);
    }
    let j = cfg.jitter;
    if j != Jitter::OFF {
        let mut factor = |x: f32| {
            if x > 0.0 {
                rng.random_range((1.0 - x).max(0.0)..=1.0 + x)
            } else {
                1.0
            }
        };
        let (b, c, s) = (
            factor(j.brightness),
            factor(j.contrast),
            factor(j.saturation),
        );
        let h = if j.hue > 0.0 {
            rng.random_range(-j.hue..=j.hue)
        } else {
            0.0
        };
        color_jitter(&mut out, b, c, s, h);
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
        for (i, out) in samples(&img, 224, &AugmentConfig::crop_flip(), 8, 3)
            .iter()
            .enumerate()
        {
            assert_eq!(out.dimensions(), (224, 224), "sample {i}");
            let bad: Vec<u8> = out
                .pixels()
                .map(|p| p[2])
                .filter(|&v| v != 7)
                .take(5)
                .collect();
            assert!(
                bad.is_empty(),
                "channel values stay in the source range: {bad:?}"
            );
        }
        for out in samples(&img, 224, &AugmentConfig::default(), 8, 3) {
            assert_eq!(out.dimensions(), (224, 224));
        }
    }

    #[test]
    fn flip_mirrors_and_crop_box_stays_inside() {
        let img = gradient(224, 224);
        let cfg = AugmentConfig {
            crop_scale: None,
            ..AugmentConfig::crop_flip()
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
    fn affine_rotates_and_shifts_the_right_pixels() {
        let mut img = RgbImage::new(9, 9);
        img.put_pixel(8, 4, image::Rgb([200, 0, 0])); // right edge, middle row
        // 90 degrees (counter-clockwise in image coordinates with y down: right -> top... check both).
        let r = affine(&img, 90.0, 0.0, 0.0);
        let lit: Vec<(u32, u32)> = r
            .enumerate_pixels()
            .filter(|p| p.2[0] > 100)
            .map(|p| (p.0, p.1))
            .collect();
        assert_eq!(lit.len(), 1);
        assert!(lit[0] == (4, 0) || lit[0] == (4, 8), "{lit:?}");
        let t = affine(&img, 0.0, -2.0, 1.0);
        assert_eq!(t.get_pixel(6, 5)[0], 200);
        assert_eq!(
            t.get_pixel(8, 0),
            &image::Rgb([0, 0, 0]),
            "moved-in area is black"
        );
    }

    #[test]
    fn jitter_identity_and_brightness() {
        let img = RgbImage::from_fn(4, 4, |x, y| {
            image::Rgb([(x * 40) as u8, (y * 50) as u8, 90])
        });
        let mut same = img.clone();
        color_jitter(&mut same, 1.0, 1.0, 1.0, 0.0);
        assert_eq!(same, img);
        let mut dark = img.clone();
        color_jitter(&mut dark, 0.5, 1.0, 1.0, 0.0);
        assert_eq!(dark.get_pixel(3, 0)[0], 60);
        let hue = shift_hue([255.0, 0.0, 0.0], 1.0 / 3.0);
        assert!(
            hue[1] > 254.0 && hue[0] < 1.0,
            "red + 1/3 turn = green: {hue:?}"
        );
    }

    #[test]
    fn same_seed_same_views() {
        let img = gradient(320, 256);
        let a = samples(&img, 64, &AugmentConfig::default(), 4, 9);
        let b = samples(&img, 64, &AugmentConfig::default(), 4, 9);
        assert_eq!(a, b);
    }
}
