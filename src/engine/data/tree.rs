//! Folder trees on disk (the command line's `--data`): walked without following links to
//! folders, every file read with a size cap, every file passed over listed with its reason.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{
    Dataset, IMAGE_EXTENSIONS, Sample, Skipped, class_key, is_clutter, is_image_name, load_sample,
    place, split_samples,
};
use crate::engine::EngineError;
use crate::engine::limits::{
    MAX_CLASSES, MAX_PHOTO_BYTES, MAX_TREE_DEPTH, MAX_TREE_FILES, MIN_CLASSES, mb,
};
use crate::engine::model::BackboneSpec;

/// What a walk of a folder tree found: its files (as path parts relative to the root) and
/// what it passed over, with the reason.
#[derive(Default)]
struct Walk {
    files: Vec<(Vec<String>, PathBuf)>,
    skipped: Vec<Skipped>,
    full: bool,
}

impl Walk {
    fn skip(&mut self, path: &Path, error: impl Into<String>) {
        self.skipped.push(Skipped {
            file: path.display().to_string(),
            error: error.into(),
        });
    }

    /// Every file under `dir` (sorted, clutter left out). Links to folders are not followed (a
    /// link back up would never end); anything that is neither a file nor a folder, a broken
    /// link, a folder too deep and the files past [`MAX_TREE_FILES`] are listed as skipped.
    fn dir(&mut self, dir: &Path, parts: &mut Vec<String>) {
        let read = match std::fs::read_dir(dir) {
            Ok(r) => r,
            Err(e) => return self.skip(dir, format!("cannot read the folder ({e})")),
        };
        let mut entries = Vec::new();
        for entry in read {
            match entry {
                Ok(entry) => entries.push(entry),
                Err(e) => self.skip(dir, format!("an entry of the folder cannot be read ({e})")),
            }
        }
        entries.sort_by_key(std::fs::DirEntry::path);
        for entry in entries {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if is_clutter(&name) {
                continue;
            }
            // The entry's own type: a link is not followed to find it.
            let kind = match entry.file_type() {
                Ok(kind) => kind,
                Err(e) => {
                    self.skip(&path, format!("cannot read ({e})"));
                    continue;
                }
            };
            parts.push(name);
            if kind.is_dir() {
                if parts.len() > MAX_TREE_DEPTH {
                    self.skip(
                        &path,
                        format!("not read: deeper than {MAX_TREE_DEPTH} folders"),
                    );
                } else {
                    self.dir(&path, parts);
                }
            } else if kind.is_file() {
                self.file(path, parts);
            } else if kind.is_symlink() {
                match std::fs::metadata(&path) {
                    Ok(m) if m.is_file() => self.file(path, parts),
                    Ok(m) if m.is_dir() => self.skip(
                        &path,
                        "not read: a link to a folder (links to folders are not followed)",
                    ),
                    Ok(_) => self.skip(&path, "not read: a link to something that is not a file"),
                    Err(e) => self.skip(&path, format!("not read: a broken link ({e})")),
                }
            } else {
                self.skip(&path, "not read: not a file (a pipe, socket or device)");
            }
            parts.pop();
            if self.full {
                return;
            }
        }
    }

    fn file(&mut self, path: PathBuf, parts: &[String]) {
        if self.files.len() >= MAX_TREE_FILES {
            self.full = true;
            self.skip(
                &path,
                format!("not read, nor anything after it: more than {MAX_TREE_FILES} files"),
            );
            return;
        }
        self.files.push((parts.to_vec(), path));
    }
}

/// Reads a file of at most `max` bytes: the size is checked before anything is read, and
/// only regular files are opened (reading a pipe or a device could wait or run forever).
pub fn read_capped(path: &Path, max: u64) -> Result<Vec<u8>, EngineError> {
    use std::io::Read;
    let name = path.display().to_string();
    let io = |source| EngineError::Io {
        file: name.clone(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_file() {
        let what = if meta.is_dir() {
            "a folder"
        } else {
            "not a regular file (a pipe, socket or device)"
        };
        return Err(EngineError::image(&name, format!("cannot read: {what}")));
    }
    let too_large = |size: u64| {
        EngineError::image(
            &name,
            format!("too large ({} MB; the limit is {} MB)", mb(size), mb(max)),
        )
    };
    if meta.len() > max {
        return Err(too_large(meta.len()));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    std::fs::File::open(path)
        .and_then(|f| f.take(max + 1).read_to_end(&mut bytes))
        .map_err(io)?;
    // The file grew after its size was read.
    if bytes.len() as u64 > max {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// Loads an ImageFolder tree by the folder-tree rule ([`place`]). With `train/` and `val/`
/// their split is kept; otherwise a stratified split of `val_fraction` is made. Names that
/// are one class by [`class_key`] are merged (under the first as written); a class folder
/// without a usable image is no class, and is listed as skipped.
pub fn load_image_folder(
    root: &Path,
    spec: &BackboneSpec,
    val_fraction: f64,
    seed: u64,
) -> Result<Dataset, EngineError> {
    if !root.is_dir() {
        return Err(EngineError::image(
            &root.display().to_string(),
            "not a folder",
        ));
    }
    let mut walk = Walk::default();
    walk.dir(root, &mut Vec::new());
    let Walk {
        files, mut skipped, ..
    } = walk;
    let parts: Vec<Vec<String>> = files.iter().map(|(p, _)| p.clone()).collect();
    let places = place(&parts);
    // Class key -> its photos (label unset yet) with whether they came from `val/`, and class
    // key -> the name as first written; both sorted as ImageFolder sorts its folders.
    let mut groups: BTreeMap<String, Vec<(Sample, bool)>> = BTreeMap::new();
    let mut folders: BTreeMap<String, String> = BTreeMap::new();
    for ((_, path), place) in files.iter().zip(places) {
        let Some((class, val)) = place else {
            continue;
        };
        let key = class_key(&class);
        folders
            .entry(key.clone())
            .or_insert_with(|| class.trim().to_string());
        let name = path.display().to_string();
        if !is_image_name(&name) {
            skipped.push(Skipped {
                error: format!(
                    "not used: not a training image type ({})",
                    IMAGE_EXTENSIONS.join(", ")
                ),
                file: name,
            });
            continue;
        }
        match read_capped(path, MAX_PHOTO_BYTES).and_then(|b| load_sample(&name, &b, 0, spec)) {
            Ok(sample) => groups.entry(key).or_default().push((sample, val)),
            Err(e) => skipped.push(Skipped {
                file: name,
                error: e.to_string(),
            }),
        }
    }
    for (key, folder) in &folders {
        if !groups.contains_key(key) {
            skipped.push(Skipped {
                file: root.join(folder).display().to_string(),
                error: format!("not a class: `{folder}` has no usable image"),
            });
        }
    }
    if groups.len() < MIN_CLASSES || groups.len() > MAX_CLASSES {
        return Err(EngineError::image(
            &root.display().to_string(),
            format!(
                "needs {MIN_CLASSES} to {MAX_CLASSES} class folders with usable images, found {}",
                groups.len()
            ),
        ));
    }
    let mut classes = Vec::new();
    let mut samples = Vec::new();
    for (label, (key, images)) in groups.into_iter().enumerate() {
        classes.push(folders[&key].clone());
        samples.extend(
            images
                .into_iter()
                .map(|(s, val)| (Sample { label, ..s }, val)),
        );
    }
    let (train, val) = split_samples(samples, classes.len(), val_fraction, seed);
    Ok(Dataset {
        classes,
        train,
        val,
        skipped,
    })
}

#[cfg(test)]
mod tests {
    use image::RgbImage;

    use super::*;
    use crate::engine::model::LITE0;

    /// A small real PNG.
    fn png() -> Vec<u8> {
        let img = RgbImage::from_fn(8, 6, |x, y| image::Rgb([x as u8 * 30, y as u8 * 40, 90]));
        let mut out = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
            .unwrap();
        out
    }

    /// Writes `files` (relative paths) under a new folder, each a real PNG unless its name
    /// says `.txt` or `broken`.
    fn tree(files: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for f in files {
            let path = dir.path().join(f);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let bytes = if f.ends_with(".txt") || f.contains("broken") {
                b"not an image".to_vec()
            } else {
                png()
            };
            std::fs::write(path, bytes).unwrap();
        }
        dir
    }

    fn load(dir: &Path) -> Result<Dataset, EngineError> {
        load_image_folder(dir, &LITE0, 0.5, 1)
    }

    fn skipped_reason<'a>(ds: &'a Dataset, file_ends: &str) -> &'a str {
        ds.skipped
            .iter()
            .find(|s| s.file.ends_with(file_ends))
            .map(|s| s.error.as_str())
            .unwrap_or_else(|| panic!("{file_ends} not listed as skipped: {:?}", ds.skipped))
    }

    #[cfg(unix)]
    #[test]
    fn links_to_folders_are_not_followed_and_odd_files_are_listed() {
        let dir = tree(&["ants/1.png", "ants/2.png", "bees/1.png", "bees/2.png"]);
        let root = dir.path();
        // A cycle: walking it by following links never ends.
        std::os::unix::fs::symlink(".", root.join("ants/l1")).unwrap();
        std::os::unix::fs::symlink("gone.png", root.join("bees/dangling.png")).unwrap();
        std::os::unix::fs::symlink("1.png", root.join("bees/alias.png")).unwrap();
        let fifo = root.join("bees/pipe.png");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        let ds = load(root).unwrap();
        assert_eq!(ds.classes, ["ants", "bees"]);
        // The link to a file is a photo like the others.
        assert_eq!(ds.train.len() + ds.val.len(), 5);
        assert!(skipped_reason(&ds, "ants/l1").contains("link to a folder"));
        assert!(skipped_reason(&ds, "bees/dangling.png").contains("broken link"));
        assert!(skipped_reason(&ds, "bees/pipe.png").contains("not a file"));
    }

    #[test]
    fn a_folder_without_usable_images_is_no_class() {
        let dir = tree(&[
            "ants/1.png",
            "ants/2.png",
            "bees/1.png",
            "bees/2.png",
            "docs/readme.txt",
            "wasps/broken1.png",
            "wasps/broken2.jpg",
        ]);
        let ds = load(dir.path()).unwrap();
        assert_eq!(ds.classes, ["ants", "bees"]);
        assert!(skipped_reason(&ds, "docs").contains("`docs` has no usable image"));
        assert!(skipped_reason(&ds, "wasps").contains("`wasps` has no usable image"));
        assert!(skipped_reason(&ds, "wasps/broken1.png").contains("broken1.png"));
        assert!(skipped_reason(&ds, "docs/readme.txt").contains("not a training image type"));
        // Two folders of which one is unusable: no run.
        let dir = tree(&["ants/1.png", "docs/readme.txt"]);
        let err = load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("found 1"), "{err}");
    }

    #[test]
    fn a_class_named_train_or_val_is_a_class() {
        let dir = tree(&[
            "cat/1.png",
            "cat/2.png",
            "train/1.png",
            "train/2.png",
            "val/1.png",
            "val/2.png",
        ]);
        let ds = load(dir.path()).unwrap();
        assert_eq!(ds.classes, ["cat", "train", "val"]);
        // With class folders inside, train/ and val/ still split the tree.
        let dir = tree(&[
            "train/cat/1.png",
            "train/dog/1.png",
            "val/cat/2.png",
            "val/dog/2.png",
        ]);
        let ds = load(dir.path()).unwrap();
        assert_eq!(ds.classes, ["cat", "dog"]);
        assert_eq!((ds.train.len(), ds.val.len()), (2, 2));
    }

    #[test]
    fn names_that_are_one_class_by_the_shared_rule_are_merged() {
        let nfc = "caf\u{e9}";
        let nfd = "cafe\u{301}";
        let files = [
            "Cat/1.png".to_string(),
            "cat/2.png".into(),
            "cat /3.png".into(),
            format!("{nfc}/1.png"),
            format!("{nfd}/2.png"),
        ];
        let files: Vec<&str> = files.iter().map(String::as_str).collect();
        let dir = tree(&files);
        let ds = load(dir.path()).unwrap();
        // Named as first met (paths in byte order: the NFD spelling, then `Cat`).
        assert_eq!(ds.classes, [nfd, "Cat"]);
        assert_eq!(ds.train.len() + ds.val.len(), 5);
        assert_eq!(class_key(nfd), class_key(nfc));
        assert_eq!(class_key(" Cat "), "cat");
    }

    #[cfg(unix)]
    #[test]
    fn reads_are_capped_before_anything_is_read() {
        let dir = tempfile::tempdir().unwrap();
        // 8 GiB, sparse: nothing of it is on disk, and nothing may be read.
        let big = dir.path().join("huge.jpg");
        std::fs::File::create(&big)
            .unwrap()
            .set_len(8 << 30)
            .unwrap();
        let err = read_capped(&big, MAX_PHOTO_BYTES).unwrap_err().to_string();
        assert!(
            err.contains("huge.jpg") && err.contains("too large (8192 MB"),
            "{err}"
        );
        let fifo = dir.path().join("pipe.jpg");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        let err = read_capped(&fifo, MAX_PHOTO_BYTES).unwrap_err().to_string();
        assert!(
            err.contains("pipe.jpg") && err.contains("not a regular file"),
            "{err}"
        );
        std::fs::write(dir.path().join("ok.png"), png()).unwrap();
        assert_eq!(
            read_capped(&dir.path().join("ok.png"), 1 << 20).unwrap(),
            png()
        );
    }

    #[test]
    fn a_tree_of_more_classes_than_a_project_may_have_is_refused() {
        let files: Vec<String> = (0..=MAX_CLASSES)
            .map(|i| format!("c{i:03}/1.png"))
            .collect();
        let files: Vec<&str> = files.iter().map(String::as_str).collect();
        let dir = tree(&files);
        let err = load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("found 201"), "{err}");
    }
}
