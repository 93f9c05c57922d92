//! Hostile input through the `finetune` binary, as a user (or a classmate's file) would give
//! it: every case is generated here (models with broken heads or values, sparse files of
//! gigabytes, pipes, link cycles), and each must end in a clear message naming the file, never
//! in a panic, a hang or an exhausted machine.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::*;
use finetune::engine::io::export::META_CLASSES;
use finetune::engine::io::weights::META_BACKBONE;
use safetensors::tensor::TensorView;

fn finetune(args: &[&str], paths: &[&Path]) -> (Output, Duration) {
    let start = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_finetune"))
        .current_dir(repo())
        .args(args)
        .args(paths)
        .output()
        .unwrap();
    (out, start.elapsed())
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The converted Lite0 checkpoint with its head cut to `classes` outputs (named c0, c1, ..),
/// and `poison` (a tensor and a value) written into its first element.
fn model(classes: usize, poison: Option<(&str, f32)>) -> Vec<u8> {
    let bytes = weights_bytes();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, view) in st.tensors() {
        let (mut shape, mut data) = (view.shape().to_vec(), view.data().to_vec());
        if name.starts_with("_fc.") {
            shape[0] = classes;
            data.truncate(4 * shape.iter().product::<usize>());
        }
        if let Some((_, value)) = poison.filter(|(key, _)| *key == name) {
            data[..4].copy_from_slice(&value.to_le_bytes());
        }
        tensors.push((name, view.dtype(), shape, data));
    }
    let names: Vec<String> = (0..classes).map(|i| format!("c{i}")).collect();
    let metadata = HashMap::from([
        (META_BACKBONE.to_string(), "efficientnet-lite0".to_string()),
        (
            META_CLASSES.to_string(),
            serde_json::to_string(&names).unwrap(),
        ),
    ]);
    let views = tensors
        .iter()
        .map(|(k, d, s, b)| (k.clone(), TensorView::new(*d, s.clone(), b).unwrap()));
    safetensors::serialize(views, Some(metadata)).unwrap()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn coffee() -> PathBuf {
    golden_dir().join("coffee_orig.png")
}

#[test]
fn models_of_fewer_than_two_classes_or_with_non_finite_values_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("zero.safetensors", model(0, None), "at least 2"),
        ("one.safetensors", model(1, None), "at least 2"),
        (
            "nan-head.safetensors",
            model(2, Some(("_fc.weight", f32::NAN))),
            "`_fc.weight`",
        ),
        (
            "inf-var.safetensors",
            model(2, Some(("_bn1.running_var", f32::INFINITY))),
            "`_bn1.running_var`",
        ),
    ];
    for (name, bytes, why) in cases {
        let path = write(dir.path(), name, &bytes);
        for command in ["predict", "explain"] {
            let (out, _) = finetune(
                &[command, "--backend", "cpu", "--json", "--model"],
                &[&path, &coffee()],
            );
            let err = stderr(&out);
            // 101 is a panic; 0 would be a result from a broken model.
            assert_eq!(out.status.code(), Some(1), "{command} {name}: {err}");
            assert!(
                err.contains(name) && err.contains(why),
                "{command} {name}: {err}"
            );
        }
    }
    // The same file with a sound head is a model.
    let path = write(dir.path(), "two.safetensors", &model(2, None));
    let (out, _) = finetune(
        &["predict", "--backend", "cpu", "--json", "--model"],
        &[&path, &coffee()],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[cfg(unix)]
#[test]
fn oversized_files_are_refused_unread_and_pipes_never_read() {
    let dir = tempfile::tempdir().unwrap();
    // Sparse: gigabytes that take no disk and must take no memory or time.
    let huge_model = dir.path().join("huge.safetensors");
    std::fs::File::create(&huge_model)
        .unwrap()
        .set_len(5 << 29)
        .unwrap();
    let (out, took) = finetune(
        &["predict", "--backend", "cpu", "--json", "--model"],
        &[&huge_model, &coffee()],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("huge.safetensors") && err.contains("too large"),
        "{err}"
    );
    assert!(took < Duration::from_secs(30), "{took:?}");

    let huge_photo = dir.path().join("huge.jpg");
    std::fs::File::create(&huge_photo)
        .unwrap()
        .set_len(8 << 30)
        .unwrap();
    let pipe = dir.path().join("pipe.jpg");
    assert!(
        Command::new("mkfifo")
            .arg(&pipe)
            .status()
            .unwrap()
            .success()
    );
    let (out, took) = finetune(
        &["predict", "--backend", "cpu", "--json"],
        &[&huge_photo, &pipe, &coffee()],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(took < Duration::from_secs(60), "{took:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let results = v["results"].as_array().unwrap();
    let e0 = results[0]["error"].as_str().unwrap();
    assert!(e0.contains("huge.jpg") && e0.contains("too large"), "{e0}");
    let e1 = results[1]["error"].as_str().unwrap();
    assert!(
        e1.contains("pipe.jpg") && e1.contains("not a regular file"),
        "{e1}"
    );
    assert_eq!(results[2]["top"][0]["label"], "espresso");
}

#[cfg(unix)]
#[test]
fn eval_on_a_tree_with_a_link_cycle_ends_and_lists_what_it_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let model_path = write(dir.path(), "two.safetensors", &model(2, None));
    let data = dir.path().join("data");
    let photos = shared().join("datasets/hymenoptera/val");
    for (class, from) in [("c0", "ants"), ("c1", "bees")] {
        std::fs::create_dir_all(data.join(class)).unwrap();
        let mut files: Vec<_> = std::fs::read_dir(photos.join(from))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for f in files.iter().take(2) {
            std::fs::copy(f, data.join(class).join(f.file_name().unwrap())).unwrap();
        }
    }
    std::os::unix::fs::symlink(".", data.join("c0/l1")).unwrap();
    let (out, took) = finetune(
        &["eval", "--backend", "cpu", "--data"],
        &[&data, Path::new("--model"), &model_path],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(took < Duration::from_secs(120), "{took:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let skipped = v["skipped"].as_array().unwrap();
    assert!(
        skipped
            .iter()
            .any(|s| s["file"].as_str().unwrap().ends_with("c0/l1")
                && s["error"].as_str().unwrap().contains("link to a folder")),
        "{skipped:?}"
    );
}
