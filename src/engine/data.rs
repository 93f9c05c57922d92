//! Datasets: classes with images, from a class-per-folder tree (ImageFolder layout, with or
//! without `train/` and `val/`) or from in-memory uploads. Each image is decoded once and kept
//! at working size (shorter side = the backbone's resize), never at its original megapixels.
//! A file that cannot be used is reported with its reason and never stops the others.

use std::path::{Path, PathBuf};

use image::RgbImage;
use rand::seq::SliceRandom;
use rand::{SeedableRng, rngs::StdRng};
use serde::Serialize;

use super::model::BackboneSpec;
use super::{EngineError, preprocess};

/// File types used for training, as torchvision's ImageFolder (GIFs are mostly animations or
/// placeholders, so they are reported, not learned from).
pub const IMAGE_EXTENSIONS: [&str; 7] = ["jpg", "jpeg", "png", "bmp", "webp", "tif", "tiff"];

/// One labelled image at working size.
#[derive(Debug, Clone)]
pub struct Sample {
    pub file: String,
    pub label: usize,
    pub image: RgbImage,
}

/// A file that was left out, and why.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Skipped {
    pub file: String,
    pub error: String,
}

/// Classes with their train and validation images.
#[derive(Debug, Clone, Default)]
pub struct Dataset {
    pub classes: Vec<String>,
    pub train: Vec<Sample>,
    pub val: Vec<Sample>,
    pub skipped: Vec<Skipped>,
}

/// Decodes one file into a working-size sample.
pub fn load_sample(
    file: &str,
    bytes: &[u8],
    label: usize,
    spec: &BackboneSpec,
) -> Result<Sample, EngineError> {
    let image = preprocess::decode(file, bytes)?;
    Ok(Sample {
        file: file.to_string(),
        label,
        image: preprocess::resize_shorter(&image, spec.resize),
    })
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, EngineError> {
    let read = std::fs::read_dir(dir).map_err(|source| EngineError::Io {
        file: dir.display().to_string(),
        source,
    })?;
    let mut paths: Vec<PathBuf> = read.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    Ok(paths)
}

fn class_dirs(dir: &Path) -> Result<Vec<PathBuf>, EngineError> {
    Ok(sorted_entries(dir)?
        .into_iter()
        .filter(|p| p.is_dir())
        .collect())
}

fn dir_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Loads the images of `class_dirs` (one folder per class, labels by `classes`).
fn load_split(
    dirs: &[PathBuf],
    classes: &[String],
    spec: &BackboneSpec,
    skipped: &mut Vec<Skipped>,
) -> Vec<Sample> {
    let mut samples = Vec::new();
    for dir in dirs {
        let Some(label) = classes.iter().position(|c| *c == dir_name(dir)) else {
            continue;
        };
        let files = match sorted_entries(dir) {
            Ok(f) => f,
            Err(e) => {
                skipped.push(Skipped {
                    file: dir.display().to_string(),
                    error: e.to_string(),
                });
                continue;
            }
        };
        for path in files.into_iter().filter(|p| p.is_file()) {
            let name = path.display().to_string();
            let ext = path
                .extension()
                .map(|e| e.to_string_lossy().to_lowercase())
                .unwrap_or_default();
            if !IMAGE_EXTENSIONS.contains(&ext.as_str()) {
                skipped.push(Skipped {
                    file: name,
                    error: format!(
                        "not used: .{ext} is not a training image type ({})",
                        IMAGE_EXTENSIONS.join(", ")
                    ),
                });
                continue;
            }
            let loaded = std::fs::read(&path)
                .map_err(|e| EngineError::image(&name, format!("cannot read ({e})")))
                .and_then(|bytes| load_sample(&name, &bytes, label, spec));
            match loaded {
                Ok(s) => samples.push(s),
                Err(e) => skipped.push(Skipped {
                    file: name,
                    error: e.to_string(),
                }),
            }
        }
    }
    samples
}

/// Loads an ImageFolder tree. With `train/` and `val/` subfolders their split is kept;
/// otherwise the class folders are at the root and a stratified split of `val_fraction` is made.
pub fn load_image_folder(
    root: &Path,
    spec: &BackboneSpec,
    val_fraction: f64,
    seed: u64,
) -> Result<Dataset, EngineError> {
    let (train_root, val_root) = (root.join("train"), root.join("val"));
    let mut skipped = Vec::new();
    let mut ds = if train_root.is_dir() && val_root.is_dir() {
        let train_dirs = class_dirs(&train_root)?;
        let val_dirs = class_dirs(&val_root)?;
        let mut classes: Vec<String> = train_dirs.iter().map(|d| dir_name(d)).collect();
        for extra in val_dirs.iter().map(|d| dir_name(d)) {
            if !classes.contains(&extra) {
                classes.push(extra);
            }
        }
        classes.sort();
        let train = load_split(&train_dirs, &classes, spec, &mut skipped);
        let val = load_split(&val_dirs, &classes, spec, &mut skipped);
        Dataset {
            classes,
            train,
            val,
            skipped: Vec::new(),
        }
    } else {
        let dirs = class_dirs(root)?;
        let classes: Vec<String> = dirs.iter().map(|d| dir_name(d)).collect();
        let all = load_split(&dirs, &classes, spec, &mut skipped);
        let (train, val) = stratified_split(all, classes.len(), val_fraction, seed);
        Dataset {
            classes,
            train,
            val,
            skipped: Vec::new(),
        }
    };
    if ds.classes.len() < 2 {
        return Err(EngineError::image(
            &root.display().to_string(),
            format!("needs at least 2 class folders, found {}", ds.classes.len()),
        ));
    }
    ds.skipped = skipped;
    Ok(ds)
}

/// Seeded stratified split: `fraction` of each class goes to validation, at least one image
/// for every class that has two or more.
pub fn stratified_split(
    samples: Vec<Sample>,
    classes: usize,
    fraction: f64,
    seed: u64,
) -> (Vec<Sample>, Vec<Sample>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut by_class: Vec<Vec<Sample>> = vec![Vec::new(); classes];
    for s in samples {
        if s.label < classes {
            by_class[s.label].push(s);
        }
    }
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for mut group in by_class {
        group.shuffle(&mut rng);
        let n = group.len();
        let mut n_val = (n as f64 * fraction).round() as usize;
        if n >= 2 {
            n_val = n_val.clamp(1, n - 1);
        } else {
            n_val = 0;
        }
        let rest = group.split_off(n_val);
        val.extend(group);
        train.extend(rest);
    }
    (train, val)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(label: usize, i: usize) -> Sample {
        Sample {
            file: format!("{label}-{i}"),
            label,
            image: RgbImage::new(1, 1),
        }
    }

    #[test]
    fn split_is_stratified_seeded_and_keeps_one_val_per_class() {
        let make = || -> Vec<Sample> {
            (0..10)
                .map(|i| sample(0, i))
                .chain((0..2).map(|i| sample(1, i)))
                .chain([sample(2, 0)])
                .collect()
        };
        let (train, val) = stratified_split(make(), 3, 0.2, 7);
        assert_eq!(train.len() + val.len(), 13);
        assert_eq!(val.iter().filter(|s| s.label == 0).count(), 2);
        assert_eq!(val.iter().filter(|s| s.label == 1).count(), 1);
        assert_eq!(val.iter().filter(|s| s.label == 2).count(), 0);
        let (_, val2) = stratified_split(make(), 3, 0.2, 7);
        let names = |v: &[Sample]| v.iter().map(|s| s.file.clone()).collect::<Vec<_>>();
        assert_eq!(names(&val), names(&val2));
        let (_, val3) = stratified_split(make(), 3, 0.2, 8);
        assert_ne!(
            names(&val),
            names(&val3),
            "another seed, another split (10 choose 2)"
        );
    }
}
