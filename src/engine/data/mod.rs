//! Datasets: classes with images, from a class-per-folder tree (ImageFolder layout, with or
//! without `train/` and `val/`) or from in-memory uploads. Each image is decoded once and kept
//! at working size (shorter side = the backbone's resize), never at its original megapixels.
//! A file that cannot be used is reported with its reason and never stops the others.

pub mod augment;
pub mod preprocess;

use image::RgbImage;
use rand::seq::SliceRandom;
use rand::{SeedableRng, rngs::StdRng};
use serde::Serialize;

use crate::engine::EngineError;
use crate::engine::model::BackboneSpec;

#[cfg(not(target_arch = "wasm32"))]
mod tree;
#[cfg(not(target_arch = "wasm32"))]
pub use tree::{load_image_folder, read_capped};

/// File types used for training: those the decoder reads (GIFs are mostly animations or
/// placeholders, so they are reported, not learned from; TIFF is not decoded, so not offered).
pub const IMAGE_EXTENSIONS: [&str; 5] = ["jpg", "jpeg", "png", "bmp", "webp"];
/// The file pickers' `accept` for training photos: exactly the types above (`image/*` would
/// offer TIFF and HEIC, which are not decoded).
pub const ACCEPT_IMAGES: &str =
    ".jpg,.jpeg,.png,.bmp,.webp,image/jpeg,image/png,image/bmp,image/webp";

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

/// Files and folders the operating system adds to trees (never a class or a photo).
pub fn is_clutter(part: &str) -> bool {
    part.starts_with('.')
        || part == "__MACOSX"
        || part.eq_ignore_ascii_case("Thumbs.db")
        || part.eq_ignore_ascii_case("desktop.ini")
}

/// The folder-tree rule, shared by the CLI and the page: the class (and whether it is held out
/// for checking) of each file of a tree, from its path split in parts ("pets/cat/1.jpg"). The
/// folders every file shares are skipped; below them either one folder per class, or `train/`
/// and `val/` each holding one folder per class (images under `val/` are for checking). Deeper
/// folders belong to their class. A single folder of images is one class. `None`: the file is
/// outside any class folder.
pub fn place<S: AsRef<str>>(paths: &[Vec<S>]) -> Vec<Option<(String, bool)>> {
    let dirs = |p: &[S]| p.len().saturating_sub(1);
    let shared = paths.first().map_or(0, |first| {
        paths.iter().fold(dirs(first), |n, p| {
            n.min(dirs(p)).min(
                first
                    .iter()
                    .zip(p.iter())
                    .take_while(|(a, b)| a.as_ref() == b.as_ref())
                    .count(),
            )
        })
    });
    let below = |p: &[S]| -> Vec<String> {
        p[shared..dirs(p)]
            .iter()
            .map(|s| s.as_ref().to_string())
            .collect()
    };
    if shared > 0 && paths.iter().all(|p| dirs(p) == shared) {
        let name = paths[0][shared - 1].as_ref().to_string();
        return paths.iter().map(|_| Some((name.clone(), false))).collect();
    }
    // `train/` and `val/` split the tree only when they hold class folders: a `train` folder
    // of photos is a class like any other.
    let in_split = |p: &[S]| matches!(below(p).first().map(String::as_str), Some("train" | "val"));
    let split = paths.iter().any(|p| in_split(p))
        && paths
            .iter()
            .filter(|p| in_split(p))
            .all(|p| below(p).len() >= 2);
    paths
        .iter()
        .map(|p| {
            let rest = below(p);
            match (split, rest.as_slice()) {
                (true, [split, class, ..]) if split == "train" || split == "val" => {
                    Some((class.clone(), split == "val"))
                }
                (true, _) => None,
                (false, [class, ..]) => Some((class.clone(), false)),
                (false, []) => None,
            }
        })
        .collect()
}

/// The one rule by which two class names are the same class, on the page and in the command
/// line: Unicode NFC (a name typed on one system and a folder from another), case and
/// surrounding spaces aside (`Cat`, `cat` and `cat ` are one class).
pub fn class_key(name: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    name.trim().nfc().flat_map(char::to_lowercase).collect()
}

/// Whether a file name has a training image type.
pub fn is_image_name(name: &str) -> bool {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_lowercase())
        .unwrap_or_default();
    IMAGE_EXTENSIONS.contains(&ext.as_str())
}

/// Train and validation sets: images from a `val/` folder are the validation set when there are
/// any; otherwise a seeded stratified split holds out `fraction` of each class.
pub fn split_samples(
    samples: Vec<(Sample, bool)>,
    classes: usize,
    fraction: f64,
    seed: u64,
) -> (Vec<Sample>, Vec<Sample>) {
    split_by(samples, |s| s.label, classes, fraction, seed)
}

/// [`split_samples`] of anything with a label (a photo's name, say): the same draw for the same
/// labels in the same order, whatever the items are.
pub fn split_by<T>(
    items: Vec<(T, bool)>,
    label: impl Fn(&T) -> usize,
    classes: usize,
    fraction: f64,
    seed: u64,
) -> (Vec<T>, Vec<T>) {
    if items.iter().any(|(_, val)| *val) {
        let (val, train): (Vec<_>, Vec<_>) = items.into_iter().partition(|(_, val)| *val);
        (
            train.into_iter().map(|(s, _)| s).collect(),
            val.into_iter().map(|(s, _)| s).collect(),
        )
    } else {
        let all = items.into_iter().map(|(s, _)| s).collect();
        stratified_split(all, label, classes, fraction, seed)
    }
}

/// Images a class of `n` keeps aside for validation at `fraction`: rounded, at least one when
/// the class has two or more, never all of them.
fn val_count(n: usize, fraction: f64) -> usize {
    if n < 2 {
        return 0;
    }
    ((n as f64 * fraction).round() as usize).clamp(1, n - 1)
}

/// Validation images per class that training will hold out, from each class's image count and
/// its `val/`-folder images: the `val/` images when any class has some, else [`val_count`].
pub fn val_per_class(counts: &[(usize, usize)], fraction: f64) -> Vec<usize> {
    if counts.iter().any(|&(_, val)| val > 0) {
        return counts.iter().map(|&(_, val)| val).collect();
    }
    counts
        .iter()
        .map(|&(n, _)| val_count(n, fraction))
        .collect()
}

/// Seeded stratified split: `fraction` of each class goes to validation, at least one image
/// for every class that has two or more.
fn stratified_split<T>(
    items: Vec<T>,
    label: impl Fn(&T) -> usize,
    classes: usize,
    fraction: f64,
    seed: u64,
) -> (Vec<T>, Vec<T>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut by_class: Vec<Vec<T>> = (0..classes).map(|_| Vec::new()).collect();
    for s in items {
        let l = label(&s);
        if l < classes {
            by_class[l].push(s);
        }
    }
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for mut group in by_class {
        group.shuffle(&mut rng);
        let n_val = val_count(group.len(), fraction);
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

    fn parts(paths: &[&str]) -> Vec<Vec<String>> {
        paths
            .iter()
            .map(|p| p.split('/').map(String::from).collect())
            .collect()
    }

    #[test]
    fn folder_tree_rule() {
        // Class folders under a shared parent; deeper folders belong to their class.
        let got = place(&parts(&[
            "pets/cat/1.jpg",
            "pets/dog/a/2.jpg",
            "pets/x.jpg",
        ]));
        assert_eq!(
            got,
            vec![
                Some(("cat".into(), false)),
                Some(("dog".into(), false)),
                None
            ]
        );
        // train/ and val/: val images are held out; files beside them belong to no class.
        let got = place(&parts(&[
            "h/train/ants/1.jpg",
            "h/val/bees/2.jpg",
            "h/notes.txt",
        ]));
        assert_eq!(
            got,
            vec![
                Some(("ants".into(), false)),
                Some(("bees".into(), true)),
                None
            ]
        );
        // One folder of images is one class.
        let got = place(&parts(&["cats/1.jpg", "cats/2.jpg"]));
        assert_eq!(got, vec![Some(("cats".into(), false)); 2]);
    }

    #[test]
    fn val_counts_are_what_the_split_keeps() {
        assert_eq!(val_count(1, 0.2), 0);
        assert_eq!(val_count(2, 0.2), 1);
        assert_eq!(val_count(6, 0.2), 1);
        assert_eq!(val_count(13, 0.2), 3);
        assert_eq!(val_count(4, 0.5), 2);
        assert_eq!(val_per_class(&[(6, 0), (8, 0)], 0.25), vec![2, 2]);
        assert_eq!(val_per_class(&[(6, 2), (8, 0)], 0.25), vec![2, 0]);
    }

    #[test]
    fn a_split_of_names_is_the_split_of_the_photos() {
        let make = || -> Vec<(Sample, bool)> {
            (0..7)
                .map(|i| sample(0, i))
                .chain((0..5).map(|i| sample(1, i)))
                .map(|s| (s, false))
                .collect()
        };
        let (_, val) = split_samples(make(), 2, 0.3, 11);
        let names: Vec<((usize, String), bool)> = make()
            .into_iter()
            .map(|(s, v)| ((s.label, s.file), v))
            .collect();
        let (_, val_names) = split_by(names, |(label, _)| *label, 2, 0.3, 11);
        let files: Vec<String> = val.into_iter().map(|s| s.file).collect();
        let names: Vec<String> = val_names.into_iter().map(|(_, f)| f).collect();
        assert_eq!(files, names);
        assert_eq!(files.len(), 4, "30% of 7 is 2, of 5 is 2 (rounded)");
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
        let (train, val) = stratified_split(make(), |s| s.label, 3, 0.2, 7);
        assert_eq!(train.len() + val.len(), 13);
        assert_eq!(val.iter().filter(|s| s.label == 0).count(), 2);
        assert_eq!(val.iter().filter(|s| s.label == 1).count(), 1);
        assert_eq!(val.iter().filter(|s| s.label == 2).count(), 0);
        let (_, val2) = stratified_split(make(), |s| s.label, 3, 0.2, 7);
        let names = |v: &[Sample]| v.iter().map(|s| s.file.clone()).collect::<Vec<_>>();
        assert_eq!(names(&val), names(&val2));
        let (_, val3) = stratified_split(make(), |s| s.label, 3, 0.2, 8);
        assert_ne!(
            names(&val),
            names(&val3),
            "another seed, another split (10 choose 2)"
        );
    }
}
