//! The `finetune` binary as a user runs it: JSON out, one entry per file, exit status 2 when
//! any file failed while the others still get results.

mod common;

use std::process::Command;

use common::*;

fn finetune() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_finetune"));
    cmd.current_dir(repo());
    cmd
}

#[test]
fn predict_reports_bad_files_and_classifies_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("notes.jpg");
    std::fs::write(&bad, "this is text, not a JPEG").unwrap();
    let coffee = golden_dir().join("coffee_orig.png");
    let out = finetune()
        .args(["predict", "--backend", "cpu", "--top", "3", "--json"])
        .arg(&coffee)
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["backend"], "cpu");
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    let golden = golden_json();
    let top = &results[0]["top"];
    assert_eq!(top.as_array().unwrap().len(), 3);
    assert_eq!(
        top[0]["index"],
        golden["images"]["coffee"]["top5"][0]["index"]
    );
    assert_eq!(top[0]["label"], "espresso");
    let want = golden["images"]["coffee"]["top5"][0]["prob"]
        .as_f64()
        .unwrap();
    assert!((top[0]["prob"].as_f64().unwrap() - want).abs() < 0.02);
    assert_eq!(results[0]["logits"].as_array().unwrap().len(), 1000);
    let err = results[1]["error"].as_str().unwrap();
    assert!(err.contains("notes.jpg"), "{err}");
    assert_eq!(results[1]["file"], bad.display().to_string());
}

#[test]
fn predict_without_weights_says_how_to_make_them() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_finetune"))
        .current_dir(dir.path())
        .args(["predict", "--json"])
        .arg(golden_dir().join("coffee_orig.png"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("finetune weights"), "{err}");
}

#[test]
fn train_refuses_out_of_range_settings_by_name() {
    // Each of these used to panic inside burn or run silently with a meaningless value.
    let data = common::shared().join("datasets/hymenoptera");
    for (flag, value, setting) in [
        ("--label-smoothing", "1.5", "label_smoothing"),
        ("--batch", "0", "batch_size"),
        ("--val-fraction", "1.5", "val_fraction"),
        ("--lr", "0", "lr"),
    ] {
        let out = finetune()
            .args(["train", "--backend", "cpu", "--json", "--data"])
            .arg(&data)
            .args([flag, value])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{flag} {value}: {err}");
        assert!(
            err.contains(setting) && err.contains(value),
            "{flag} {value}: {err}"
        );
        assert!(!err.contains("panicked"), "{flag} {value}: {err}");
        assert!(out.stdout.is_empty(), "no result for refused settings");
    }
}

/// `--backbone` picks the ImageNet model and its input size: Lite1 and Lite2 classify the
/// original golden photo as PyTorch does from its own resize and crop.
#[test]
fn predict_with_each_backbone_matches_its_golden_top1() {
    for backbone in ["lite1", "lite2"] {
        let out = finetune()
            .args(["predict", "--backend", "cpu", "--top", "1", "--json"])
            .args(["--backbone", backbone])
            .arg(golden_dir().join("coffee_orig.png"))
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["backbone"], format!("efficientnet-{backbone}"));
        let want = &golden_json_in(&golden_dir().join(backbone))["images"]["coffee"]["top5"][0];
        let top = &v["results"][0]["top"][0];
        assert_eq!(top["index"], want["index"], "{backbone}");
        let (got, want) = (
            top["prob"].as_f64().unwrap(),
            want["prob"].as_f64().unwrap(),
        );
        assert!((got - want).abs() < 0.02, "{backbone}: {got} vs {want}");
    }
    let out = finetune()
        .args(["predict", "--backbone", "lite9"])
        .arg(golden_dir().join("coffee_orig.png"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("lite0, lite1, lite2"), "{err}");
}

/// `finetune explain` writes the Grad-CAM heatmap over the photo as a PNG of the network's
/// input size and prints the grid; a class the model lacks is refused by name.
#[test]
fn explain_writes_the_heatmap_png_and_its_grid() {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("coffee.png");
    let out = finetune()
        .args(["explain", "--backend", "cpu", "--json", "--out"])
        .arg(&png)
        .arg(golden_dir().join("coffee_orig.png"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["label"], "espresso");
    assert_eq!(v["class"], v["predicted"]["index"]);
    assert_eq!(
        (
            v["heatmap"]["width"].as_u64(),
            v["heatmap"]["height"].as_u64()
        ),
        (Some(7), Some(7))
    );
    let values = v["heatmap"]["values"].as_array().unwrap();
    assert_eq!(values.len(), 49);
    let max = values
        .iter()
        .map(|x| x.as_f64().unwrap())
        .fold(0.0, f64::max);
    assert!((max - 1.0).abs() < 1e-6, "scaled to a peak of 1: {max}");
    let shares: f64 = v["quadrants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .sum();
    assert!((shares - 1.0).abs() < 1e-4);
    let img = image::open(&png).unwrap();
    assert_eq!((img.width(), img.height()), (224, 224));
    let out = finetune()
        .args(["explain", "--class", "giraffe-ish"])
        .arg(golden_dir().join("coffee_orig.png"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("giraffe-ish") && err.contains("1000 classes"),
        "{err}"
    );
}

#[test]
fn profile_runs_only_the_passes_asked_for() {
    let run = |passes: &[&str]| -> Vec<String> {
        let mut cmd = finetune();
        cmd.args([
            "profile",
            "--backend",
            "cpu",
            "--batch",
            "1",
            "--iters",
            "1",
            "--json",
        ]);
        for p in passes {
            cmd.args(["--pass", p]);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        json["passes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["ops"]["pass"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(run(&["features"]), ["feature pass"]);
    assert_eq!(
        run(&["last-block", "features"]),
        ["last-block step", "feature pass"]
    );
}
