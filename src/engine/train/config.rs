//! Every training setting, once: [`TrainConfig`] with the one set of defaults and the one
//! [`TrainConfig::validate`]. The CLI, the browser's train panel, the worker and project files
//! all use this type; nothing else declares a setting, a default or a range.

use burn::config::Config;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::engine::data::augment::{AugmentConfig, Jitter};
use crate::engine::model::BackboneKind;
use crate::engine::train::schedule::Schedule;

/// What to train.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Feature extraction: only the new head learns.
    #[serde(alias = "Head")]
    Head,
    /// The head, the last MBConv block and `_conv_head`/`_bn1`.
    #[serde(alias = "LastBlock")]
    LastBlock,
    /// Head first, then more blocks stage by stage.
    #[serde(alias = "Gradual")]
    Gradual,
    /// Every layer, at a low rate.
    #[serde(alias = "Full")]
    Full,
}

impl Strategy {
    pub const ALL: [Strategy; 4] = [
        Strategy::Head,
        Strategy::LastBlock,
        Strategy::Gradual,
        Strategy::Full,
    ];

    /// The name used on the command line, in files and in the page.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Head => "head",
            Strategy::LastBlock => "last-block",
            Strategy::Gradual => "gradual",
            Strategy::Full => "full",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// Which validation figure early stopping watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Monitor {
    #[serde(alias = "ValLoss")]
    ValLoss,
    #[serde(alias = "ValAcc")]
    ValAcc,
}

/// Most epochs a run may have (a classroom run, not a week-long job).
pub const MAX_EPOCHS: usize = 200;
/// Largest batch (GPU memory of a student's laptop).
pub const MAX_BATCH: usize = 256;
/// Validation share range (without a `val/` folder): below it the check is noise, above it
/// too little is left to learn from.
pub const VAL_FRACTION_RANGE: (f64, f64) = (0.05, 0.5);
/// Largest mixup/CutMix alpha offered.
pub const MAX_MIX_ALPHA: f64 = 10.0;
/// Highest learning rate a run accepts.
pub const MAX_LR: f64 = 1.0;

/// Training settings, with the lesson's defaults: the only place they are declared.
#[derive(Config, Debug, PartialEq)]
pub struct TrainConfig {
    /// The pretrained backbone the run starts from.
    #[config(default = "BackboneKind::Lite0")]
    pub backbone: BackboneKind,
    #[config(default = "Strategy::Head")]
    pub strategy: Strategy,
    #[config(default = 10)]
    pub epochs: usize,
    /// Images per step; on a tiny dataset the run plan uses smaller batches (see `plan`).
    #[config(default = 16)]
    pub batch_size: usize,
    /// Peak learning rate of the head.
    #[config(default = 1e-3)]
    pub lr: f64,
    /// AdamW's decoupled weight decay.
    #[config(default = 0.01)]
    pub weight_decay: f64,
    #[config(default = "Schedule::OneCycle")]
    pub schedule: Schedule,
    /// OneCycle warmup fraction of all steps.
    #[config(default = 0.1)]
    pub warmup: f64,
    /// Label smoothing of the cross-entropy (0 = none).
    #[config(default = 0.0)]
    pub label_smoothing: f64,
    /// Dropout before the head's Linear (EfficientNet-Lite0 uses 0.2).
    #[config(default = 0.2)]
    pub dropout: f64,
    /// Augment training images; off = the frozen part's output is cached.
    #[config(default = false)]
    pub augment: bool,
    /// Which augmentations run when `augment` is on (default: the lesson's full set).
    #[config(default = "AugmentConfig::default()")]
    pub augmentation: AugmentConfig,
    /// Stop after this many epochs without improvement, restoring the best weights.
    pub early_stop: Option<usize>,
    #[config(default = "Monitor::ValLoss")]
    pub monitor: Monitor,
    /// Smallest change that counts as an improvement.
    #[config(default = 0.0)]
    pub min_delta: f64,
    #[config(default = 0)]
    pub seed: u64,
    /// Each deeper layer group's rate is the next one's times this (discriminative rates).
    #[config(default = 0.1)]
    pub lr_mult: f64,
    /// Keep BatchNorm of trainable blocks in eval mode (running statistics).
    #[config(default = false)]
    pub freeze_bn: bool,
    /// Mixup alpha (0 = off).
    #[config(default = 0.0)]
    pub mixup: f64,
    /// CutMix alpha (0 = off).
    #[config(default = 0.0)]
    pub cutmix: f64,
    /// Probability that a batch is mixed when mixup or CutMix is on.
    #[config(default = 1.0)]
    pub mix_prob: f64,
    /// Blocks unfrozen in each stage of `gradual` (0 = head only, the backbone's block count or
    /// more = all).
    #[config(default = "vec![0, 1, 5]")]
    pub gradual_unfreeze: Vec<usize>,
    /// Epochs of each `gradual` stage; default splits `epochs` evenly.
    pub gradual_epochs: Option<Vec<usize>>,
    /// Share of each class held out for validation when the data has no `val/` folder.
    #[config(default = 0.2)]
    pub val_fraction: f64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// A setting that cannot be used, with the reason a student can act on.
#[derive(Debug, Clone, PartialEq, Error)]
#[error("{setting}: {reason}")]
pub struct ConfigError {
    /// The setting's name as in files and on the command line (`label_smoothing`).
    pub setting: &'static str,
    pub reason: String,
}

fn err(setting: &'static str, reason: impl Into<String>) -> Result<(), ConfigError> {
    Err(ConfigError {
        setting,
        reason: reason.into(),
    })
}

/// `x` within `[lo, hi]` (finite).
fn in_range(setting: &'static str, x: f64, lo: f64, hi: f64) -> Result<(), ConfigError> {
    if x.is_finite() && x >= lo && x <= hi {
        Ok(())
    } else {
        err(setting, format!("{x} is outside {lo} to {hi}"))
    }
}

impl TrainConfig {
    /// Checks every setting; the first problem is returned. Every entry point (CLI, page,
    /// worker, `train::run`) calls this, so a bad value never reaches burn.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=MAX_EPOCHS).contains(&self.epochs) {
            return err(
                "epochs",
                format!("{} is outside 1 to {MAX_EPOCHS}", self.epochs),
            );
        }
        if !(1..=MAX_BATCH).contains(&self.batch_size) {
            return err(
                "batch_size",
                format!("{} is outside 1 to {MAX_BATCH}", self.batch_size),
            );
        }
        if !(self.lr.is_finite() && self.lr > 0.0 && self.lr <= MAX_LR) {
            return err(
                "lr",
                format!(
                    "{} must be above 0 and at most 1 (a rate of 0 learns nothing)",
                    self.lr
                ),
            );
        }
        in_range("weight_decay", self.weight_decay, 0.0, 1.0)?;
        if !(self.warmup.is_finite() && (0.0..1.0).contains(&self.warmup)) {
            return err(
                "warmup",
                format!("{} must be at least 0 and below 1", self.warmup),
            );
        }
        if !(self.label_smoothing.is_finite() && (0.0..1.0).contains(&self.label_smoothing)) {
            return err(
                "label_smoothing",
                format!(
                    "{} must be at least 0 and below 1 (0.1 is common)",
                    self.label_smoothing
                ),
            );
        }
        if !(self.dropout.is_finite() && (0.0..1.0).contains(&self.dropout)) {
            return err(
                "dropout",
                format!("{} must be at least 0 and below 1", self.dropout),
            );
        }
        in_range("mixup", self.mixup, 0.0, MAX_MIX_ALPHA)?;
        in_range("cutmix", self.cutmix, 0.0, MAX_MIX_ALPHA)?;
        in_range("mix_prob", self.mix_prob, 0.0, 1.0)?;
        in_range("lr_mult", self.lr_mult, 0.0, 1.0)?;
        if !(self.min_delta.is_finite() && self.min_delta >= 0.0) {
            return err(
                "min_delta",
                format!("{} must be at least 0", self.min_delta),
            );
        }
        if self.early_stop == Some(0) {
            return err("early_stop", "patience must be at least 1 epoch");
        }
        let (lo, hi) = VAL_FRACTION_RANGE;
        in_range("val_fraction", self.val_fraction, lo, hi)?;
        let a = &self.augmentation;
        if let Some((s0, s1)) = a.crop_scale
            && !(s0.is_finite() && s1.is_finite() && 0.0 < s0 && s0 <= s1 && s1 <= 1.0)
        {
            return err(
                "augmentation.crop_scale",
                format!("({s0}, {s1}) must satisfy 0 < min <= max <= 1"),
            );
        }
        in_range("augmentation.rotation", f64::from(a.rotation), 0.0, 180.0)?;
        in_range("augmentation.translate", f64::from(a.translate), 0.0, 0.5)?;
        let j = a.jitter;
        for (name, x, hi) in [
            ("augmentation.jitter.brightness", j.brightness, 1.0),
            ("augmentation.jitter.contrast", j.contrast, 1.0),
            ("augmentation.jitter.saturation", j.saturation, 1.0),
            ("augmentation.jitter.hue", j.hue, 0.5),
        ] {
            in_range(name, f64::from(x), 0.0, hi)?;
        }
        if self.strategy == Strategy::Gradual {
            if self.gradual_unfreeze.is_empty() {
                return err("gradual_unfreeze", "needs at least one stage");
            }
            if let Some(e) = &self.gradual_epochs
                && e.len() != self.gradual_unfreeze.len()
            {
                return err(
                    "gradual_epochs",
                    format!(
                        "{} stages of epochs for {} stages of unfreezing",
                        e.len(),
                        self.gradual_unfreeze.len()
                    ),
                );
            }
        }
        Ok(())
    }

    /// Reads settings written by any version: fields missing or unreadable take their default,
    /// unknown fields are ignored (burn's `Config` deserialiser wants every field).
    pub fn from_json_lenient(value: &serde_json::Value) -> Self {
        let defaults = Self::default();
        let (Ok(serde_json::Value::Object(mut merged)), Some(given)) =
            (serde_json::to_value(&defaults), value.as_object())
        else {
            return defaults;
        };
        for (key, v) in given {
            if !merged.contains_key(key) {
                continue;
            }
            let before = merged.insert(key.clone(), v.clone());
            let ok = serde_json::from_value::<Self>(serde_json::Value::Object(merged.clone()));
            if ok.is_err()
                && let Some(before) = before
            {
                merged.insert(key.clone(), before);
            }
        }
        serde_json::from_value(serde_json::Value::Object(merged)).unwrap_or(defaults)
    }
}

/// The augmentation toggles of the page: each on = the lesson's default strength.
impl AugmentConfig {
    pub fn crop_on(&self) -> bool {
        self.crop_scale.is_some()
    }
    pub fn rotate_on(&self) -> bool {
        self.rotation > 0.0
    }
    pub fn translate_on(&self) -> bool {
        self.translate > 0.0
    }
    pub fn color_on(&self) -> bool {
        self.jitter != Jitter::OFF
    }
    pub fn any_on(&self) -> bool {
        self.crop_on() || self.hflip || self.rotate_on() || self.translate_on() || self.color_on()
    }
    /// The set with one change turned on (at its default strength) or off.
    pub fn toggled(mut self, change: AugmentChange, on: bool) -> Self {
        let full = AugmentConfig::default();
        match change {
            AugmentChange::Crop => self.crop_scale = on.then_some(full.crop_scale).flatten(),
            AugmentChange::Flip => self.hflip = on,
            AugmentChange::Rotate => self.rotation = if on { full.rotation } else { 0.0 },
            AugmentChange::Translate => self.translate = if on { full.translate } else { 0.0 },
            AugmentChange::Color => self.jitter = if on { full.jitter } else { Jitter::OFF },
        }
        self
    }
}

/// One augmentation as the page switches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AugmentChange {
    Crop,
    Flip,
    Rotate,
    Translate,
    Color,
}

/// What the train panel holds: the config, and whether the user picked the strategy (else the
/// advisor's is used). Projects store it typed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PanelSettings {
    /// The strategy the user picked; `None` follows the advisor.
    pub chosen_strategy: Option<Strategy>,
    pub train: TrainConfig,
}

/// Settings layout version written by this build (1: the old loose `TrainSettings`).
const SETTINGS_VERSION: u64 = 2;

impl PanelSettings {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "version": SETTINGS_VERSION,
            "chosen_strategy": self.chosen_strategy,
            "train": self.train,
        })
    }

    /// Reads the settings of any project file; what cannot be read takes its default.
    pub fn from_json(value: &serde_json::Value) -> Self {
        if let Some(train) = value.get("train") {
            return Self {
                chosen_strategy: value
                    .get("chosen_strategy")
                    .and_then(|v| serde_json::from_value(v.clone()).ok()),
                train: TrainConfig::from_json_lenient(train),
            };
        }
        // Version 1: `{"settings": {strategy, epochs, schedule: "onecycle", crop, flip, ...}}`.
        let old = value.get("settings").cloned().unwrap_or_default();
        let mut train = TrainConfig::from_json_lenient(&old);
        let flag = |key: &str| old.get(key).and_then(serde_json::Value::as_bool);
        for (key, change) in [
            ("crop", AugmentChange::Crop),
            ("flip", AugmentChange::Flip),
            ("rotate", AugmentChange::Rotate),
            ("translate", AugmentChange::Translate),
            ("color", AugmentChange::Color),
        ] {
            if let Some(on) = flag(key) {
                train.augmentation = train.augmentation.toggled(change, on);
            }
        }
        let chosen_strategy = old
            .get("strategy")
            .and_then(serde_json::Value::as_str)
            .and_then(Strategy::from_name);
        if let Some(s) = chosen_strategy {
            train.strategy = s;
        }
        Self {
            chosen_strategy,
            train,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_name_the_setting() {
        assert_eq!(TrainConfig::new().validate(), Ok(()));
        let cases = [
            (
                TrainConfig::new().with_label_smoothing(1.5),
                "label_smoothing",
            ),
            (TrainConfig::new().with_batch_size(0), "batch_size"),
            (TrainConfig::new().with_val_fraction(1.5), "val_fraction"),
            (TrainConfig::new().with_epochs(0), "epochs"),
            (TrainConfig::new().with_lr(0.0), "lr"),
            (TrainConfig::new().with_lr(f64::NAN), "lr"),
            (TrainConfig::new().with_mixup(-1.0), "mixup"),
            (TrainConfig::new().with_early_stop(Some(0)), "early_stop"),
            (
                TrainConfig::new()
                    .with_strategy(Strategy::Gradual)
                    .with_gradual_epochs(Some(vec![1])),
                "gradual_epochs",
            ),
        ];
        for (cfg, setting) in cases {
            let e = cfg.validate().expect_err(setting);
            assert_eq!(e.setting, setting, "{e}");
            assert!(e.to_string().starts_with(setting), "{e}");
        }
    }

    #[test]
    fn names_are_one_spelling_and_old_spellings_still_read() {
        let cfg = TrainConfig::new().with_strategy(Strategy::LastBlock);
        let json = serde_json::to_value(&cfg).unwrap();
        assert_eq!(json["strategy"], "last-block");
        assert_eq!(json["schedule"], "one-cycle");
        assert_eq!(json["monitor"], "val-loss");
        for old in ["OneCycle", "onecycle", "one-cycle"] {
            let s: Schedule = serde_json::from_value(serde_json::json!(old)).unwrap();
            assert_eq!(s, Schedule::OneCycle, "{old}");
        }
        let back: TrainConfig = serde_json::from_value(json).unwrap();
        assert_eq!(back, cfg);
    }

    #[test]
    fn lenient_reading_fills_missing_and_bad_fields_with_defaults() {
        let cfg =
            TrainConfig::from_json_lenient(&serde_json::json!({"epochs": 3, "lr": "fast", "x": 1}));
        assert_eq!(cfg.epochs, 3);
        assert_eq!(cfg.lr, TrainConfig::new().lr);
        assert_eq!(cfg.seed, TrainConfig::new().seed);
    }

    #[test]
    fn augmentation_toggles_switch_one_change_at_its_default_strength() {
        let full = AugmentConfig::default();
        let none = [
            AugmentChange::Crop,
            AugmentChange::Flip,
            AugmentChange::Rotate,
            AugmentChange::Translate,
            AugmentChange::Color,
        ]
        .into_iter()
        .fold(full.clone(), |a, c| a.toggled(c, false));
        assert!(!none.any_on());
        assert_eq!(none.crop_scale, None);
        assert_eq!((none.rotation, none.translate), (0.0, 0.0));
        assert_eq!(none.jitter, Jitter::OFF);
        let rotate_only = none.toggled(AugmentChange::Rotate, true);
        assert_eq!(rotate_only.rotation, full.rotation);
        assert!(rotate_only.rotate_on() && !rotate_only.hflip && !rotate_only.crop_on());
        assert_eq!(
            rotate_only.clone().toggled(AugmentChange::Rotate, false),
            AugmentConfig {
                rotation: 0.0,
                ..rotate_only
            }
        );
    }

    #[test]
    fn version_1_panel_settings_open() {
        // As the page wrote them before the config lived in the engine.
        let v1 = serde_json::json!({
            "settings": {"strategy": "last-block", "epochs": 5, "batch_size": 8, "lr": 0.0005,
                "lr_mult": 0.1, "schedule": "cosine", "augment": true, "crop": true, "flip": false,
                "rotate": false, "color": true, "translate": false, "label_smoothing": 0.1,
                "mixup": 0.0, "cutmix": 0.0, "early_stop": 3, "seed": 42, "val_fraction": 0.25},
            "report_classes": ["ants", "bees"]
        });
        let s = PanelSettings::from_json(&v1);
        assert_eq!(s.chosen_strategy, Some(Strategy::LastBlock));
        let t = &s.train;
        assert_eq!(
            (t.strategy, t.epochs, t.batch_size, t.seed, t.early_stop),
            (Strategy::LastBlock, 5, 8, 42, Some(3))
        );
        assert_eq!(
            (t.lr, t.val_fraction, t.label_smoothing),
            (0.0005, 0.25, 0.1)
        );
        assert_eq!(t.schedule, Schedule::Cosine);
        let a = &t.augmentation;
        assert!(t.augment && a.crop_on() && a.color_on());
        assert!(!a.hflip && !a.rotate_on() && !a.translate_on());
        // And the new layout round-trips.
        assert_eq!(PanelSettings::from_json(&s.to_json()), s);
        // A strategy left to the advisor stays so.
        let auto = serde_json::json!({"settings": {"strategy": null, "epochs": 4}});
        assert_eq!(PanelSettings::from_json(&auto).chosen_strategy, None);
    }
}
