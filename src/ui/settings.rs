//! Every training setting in one serde struct ([`TrainSettings`], saved with a project), its
//! panel (the everyday settings in view, the rest in "Advanced settings", each with a short
//! why for students) and the live, non-blocking warnings about the settings and the data.

use std::str::FromStr;

use leptos::prelude::*;
use serde::{Deserialize, Serialize};
use web_sys::HtmlSelectElement;

use super::augment_grid::AugmentGrid;
use super::diagram::LayerDiagram;
use super::gather::ClassCard;
use crate::engine::advisor::Advice;
use crate::engine::augment::{AugmentConfig, Jitter};
use crate::engine::schedule::Schedule;
use crate::engine::training::{self, Strategy, TrainConfig};

/// Upper bound of the epochs input (a classroom run, not a week-long job).
pub const MAX_EPOCHS: usize = 200;
/// Fewer images than this in a class is flagged.
const FEW_PER_CLASS: usize = 10;
/// Fine-tuning pretrained layers above this head rate tends to wreck them.
const HIGH_FINETUNE_LR: f64 = 1e-3;

/// What the user set for training. `Default` is the engine's defaults (with 5 epochs and seed
/// 42); `#[serde(default)]` lets projects saved by older versions load with new fields filled.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainSettings {
    /// A [`Strategy::name`]; `None` follows the advisor.
    pub strategy: Option<String>,
    pub epochs: usize,
    pub batch_size: usize,
    /// Peak learning rate of the head.
    pub lr: f64,
    /// Discriminative rates: each layer group's rate is the next deeper one's times this.
    pub lr_mult: f64,
    /// `onecycle`, `cosine` or `constant`.
    pub schedule: String,
    pub augment: bool,
    /// RandomResizedCrop (off: centre crop).
    pub crop: bool,
    pub flip: bool,
    pub rotate: bool,
    /// Colour jitter.
    pub color: bool,
    pub translate: bool,
    pub label_smoothing: f64,
    /// Mixup alpha (0 = off).
    pub mixup: f64,
    /// CutMix alpha (0 = off).
    pub cutmix: f64,
    /// Patience in epochs; `None` = train every epoch.
    pub early_stop: Option<usize>,
    pub seed: u64,
    /// Share of each class held out for validation (without a `val/` folder).
    pub val_fraction: f64,
}

impl Default for TrainSettings {
    fn default() -> Self {
        let c = TrainConfig::new();
        Self {
            strategy: None,
            epochs: 5,
            batch_size: c.batch_size,
            lr: c.lr,
            lr_mult: c.lr_mult,
            schedule: schedule_name(c.schedule).to_string(),
            augment: c.augment,
            crop: true,
            flip: true,
            rotate: true,
            color: true,
            translate: true,
            label_smoothing: c.label_smoothing,
            mixup: c.mixup,
            cutmix: c.cutmix,
            early_stop: c.early_stop,
            seed: 42,
            val_fraction: 0.2,
        }
    }
}

const STRATEGIES: [Strategy; 4] = [
    Strategy::Head,
    Strategy::LastBlock,
    Strategy::Gradual,
    Strategy::Full,
];

const SCHEDULES: [(Schedule, &str, &str); 3] = [
    (
        Schedule::OneCycle,
        "onecycle",
        "OneCycle (warm up, then cool down)",
    ),
    (Schedule::Cosine, "cosine", "Cosine (cool down)"),
    (Schedule::Constant, "constant", "Constant"),
];

pub fn parse_strategy(value: &str) -> Option<Strategy> {
    STRATEGIES.into_iter().find(|s| s.name() == value)
}

pub fn strategy_label(strategy: Strategy) -> &'static str {
    match strategy {
        Strategy::Head => "Feature extraction (head only)",
        Strategy::LastBlock => "Fine-tune the last block",
        Strategy::Gradual => "Gradual unfreezing",
        Strategy::Full => "Full fine-tuning",
    }
}

fn schedule_name(schedule: Schedule) -> &'static str {
    SCHEDULES
        .iter()
        .find(|(s, ..)| *s == schedule)
        .map_or("onecycle", |(_, name, _)| name)
}

/// A number that is finite and at least 0, else `fallback` (settings may come from a file).
fn non_negative(x: f64, fallback: f64) -> f64 {
    if x.is_finite() && x >= 0.0 {
        x
    } else {
        fallback
    }
}

impl TrainSettings {
    /// The strategy the user picked, if any (an unknown name from a file counts as none).
    pub fn chosen(&self) -> Option<Strategy> {
        self.strategy.as_deref().and_then(parse_strategy)
    }

    pub fn schedule(&self) -> Schedule {
        SCHEDULES
            .iter()
            .find(|(_, name, _)| *name == self.schedule)
            .map_or(Schedule::OneCycle, |(s, ..)| *s)
    }

    /// The engine's augmentation for the toggles (each on = the lesson's default strength).
    pub fn augmentation(&self) -> AugmentConfig {
        let full = AugmentConfig::default();
        AugmentConfig {
            crop_scale: if self.crop { full.crop_scale } else { None },
            hflip: self.flip,
            rotation: if self.rotate { full.rotation } else { 0.0 },
            translate: if self.translate { full.translate } else { 0.0 },
            jitter: if self.color { full.jitter } else { Jitter::OFF },
        }
    }

    /// Share held out for validation, kept in a range where both sets stay useful.
    pub fn val_fraction(&self) -> f64 {
        non_negative(self.val_fraction, 0.2).clamp(0.05, 0.5)
    }

    /// The engine's config for `strategy` (the chosen one, or the advisor's), with values out of
    /// range (from a hand-edited project file) brought back into range.
    pub fn to_config(&self, strategy: Strategy) -> TrainConfig {
        let d = TrainConfig::new();
        let lr = if self.lr.is_finite() && self.lr > 0.0 {
            self.lr
        } else {
            d.lr
        };
        TrainConfig::new()
            .with_strategy(strategy)
            .with_epochs(self.epochs.clamp(1, MAX_EPOCHS))
            .with_batch_size(self.batch_size.clamp(1, 256))
            .with_lr(lr)
            .with_lr_mult(non_negative(self.lr_mult, d.lr_mult).min(1.0))
            .with_schedule(self.schedule())
            .with_augment(self.augment)
            .with_augmentation(self.augmentation())
            .with_label_smoothing(non_negative(self.label_smoothing, 0.0).min(0.5))
            .with_mixup(non_negative(self.mixup, 0.0))
            .with_cutmix(non_negative(self.cutmix, 0.0))
            .with_early_stop(self.early_stop.filter(|&p| p > 0))
            .with_seed(self.seed)
    }
}

/// One class as the warnings see it.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassCount {
    pub name: String,
    pub images: usize,
    /// Images from a `val/` folder.
    pub val_images: usize,
}

/// Validation images per class that training will hold out: the `val/` folder images when
/// there are any, otherwise what `data::stratified_split` keeps for `fraction`.
pub fn val_per_class(classes: &[ClassCount], fraction: f64) -> Vec<usize> {
    if classes.iter().any(|c| c.val_images > 0) {
        return classes.iter().map(|c| c.val_images).collect();
    }
    classes
        .iter()
        .map(|c| {
            let n = c.images;
            let v = (n as f64 * fraction).round() as usize;
            if n >= 2 { v.clamp(1, n - 1) } else { 0 }
        })
        .collect()
}

fn quoted_list(items: &[String]) -> String {
    items.join(", ")
}

/// Advice about settings and data that may give a poor or misleading run; none blocks training.
pub fn warnings(s: &TrainSettings, strategy: Strategy, classes: &[ClassCount]) -> Vec<String> {
    let mut out = Vec::new();
    let cfg = s.to_config(strategy);
    if strategy != Strategy::Head && cfg.lr > HIGH_FINETUNE_LR {
        out.push(format!(
            "A learning rate of {} is high for fine-tuning: big steps can wreck what the pretrained layers know within a few batches. Try 0.001 or lower.",
            cfg.lr
        ));
    } else if cfg.lr > 0.1 {
        out.push(format!(
            "A learning rate of {} is very high: the loss may jump around or become NaN. Try 0.001 to 0.01.",
            cfg.lr
        ));
    }
    if strategy == Strategy::Gradual {
        let stages = training::plan(&cfg);
        let empty = stages.iter().filter(|st| st.epochs == 0).count();
        if empty > 0 {
            out.push(format!(
                "Gradual unfreezing runs {} stages, one after the other; with {} epochs, {empty} of them get no epoch. Use at least {} epochs.",
                stages.len(),
                cfg.epochs,
                stages.len()
            ));
        }
    }
    if s.augment && !(s.crop || s.flip || s.rotate || s.translate || s.color) {
        out.push(
            "Augmentation is on but every change is off: training is slower and sees the same images. Turn one on, or augmentation off."
                .to_string(),
        );
    }
    let total: usize = classes.iter().map(|c| c.images).sum();
    if total == 0 {
        return out;
    }
    let few: Vec<String> = classes
        .iter()
        .filter(|c| c.images < FEW_PER_CLASS)
        .map(|c| format!("\"{}\" ({})", c.name, c.images))
        .collect();
    if !few.is_empty() {
        out.push(format!(
            "Few images in {}: aim for at least {FEW_PER_CLASS} per class, or the model learns that class from too few examples.",
            quoted_list(&few)
        ));
    }
    let val = val_per_class(classes, s.val_fraction());
    let val_total: usize = val.iter().sum();
    let thin: Vec<String> = classes
        .iter()
        .zip(&val)
        .filter(|(_, v)| **v < 2)
        .map(|(c, v)| format!("\"{}\" ({v})", c.name))
        .collect();
    if val_total < 5 || !thin.is_empty() {
        let detail = if thin.is_empty() {
            String::new()
        } else {
            format!(", fewer than 2 for {}", quoted_list(&thin))
        };
        out.push(format!(
            "Only {val_total} images are kept aside to check the model{detail}: one photo more or less right moves the accuracy a lot. Add images, or raise the validation share in Advanced settings."
        ));
    }
    out
}

/// A number input bound to one field of the settings.
struct NumberField<T: 'static> {
    label: &'static str,
    testid: &'static str,
    min: &'static str,
    max: &'static str,
    step: &'static str,
    get: fn(&TrainSettings) -> T,
    set: fn(&mut TrainSettings, T),
    /// Brings a typed value into range, or rejects it (`None`: the settings keep their value).
    check: fn(T) -> Option<T>,
}

impl<T> NumberField<T>
where
    T: FromStr + ToString + PartialEq + Clone + Send + Sync + 'static,
{
    /// The field shows the setting and changes it while the user types; a value is written back
    /// only when the setting really changes, so half-typed numbers like `0.00` are not rewritten.
    fn view(self, settings: RwSignal<TrainSettings>, disabled: Signal<bool>) -> impl IntoView {
        let Self {
            label,
            testid,
            min,
            max,
            step,
            get,
            set,
            check,
        } = self;
        let current = Memo::new(move |_| settings.with(get));
        let on_input = move |ev: leptos::ev::Event| {
            let Some(value) = event_target_value(&ev)
                .trim()
                .parse::<T>()
                .ok()
                .and_then(check)
            else {
                return;
            };
            settings.maybe_update(|s| {
                let changed = get(s) != value;
                if changed {
                    set(s, value);
                }
                changed
            });
        };
        // On leaving the field, show the value in use (a rejected or clamped entry is corrected).
        let on_change = move |ev: leptos::ev::Event| {
            let input: web_sys::HtmlInputElement = event_target(&ev);
            input.set_value(&current.get_untracked().to_string());
        };
        view! {
            <label>
                {label}
                <input
                    type="number"
                    inputmode="decimal"
                    min=min
                    max=(!max.is_empty()).then_some(max)
                    step=step
                    data-testid=testid
                    prop:value=move || current.get().to_string()
                    on:input=on_input
                    on:change=on_change
                    disabled=disabled
                />
            </label>
        }
    }
}

fn positive(x: f64) -> Option<f64> {
    (x.is_finite() && x > 0.0).then_some(x)
}

fn alpha(x: f64) -> Option<f64> {
    (x.is_finite() && x >= 0.0).then_some(x.min(10.0))
}

/// A checkbox bound to one boolean of the settings.
fn check_box(
    settings: RwSignal<TrainSettings>,
    disabled: Signal<bool>,
    testid: &'static str,
    label: &'static str,
    get: fn(&TrainSettings) -> bool,
    set: fn(&mut TrainSettings, bool),
) -> impl IntoView {
    view! {
        <label class="check">
            <input
                type="checkbox"
                data-testid=testid
                prop:checked=move || settings.with(get)
                on:change=move |ev| settings.update(|s| set(s, event_target_checked(&ev)))
                disabled=disabled
            />
            {label}
        </label>
    }
}

/// The train settings, the advisor's line, the layer diagram, augmentation preview and
/// warnings. `strategy` is the one in use (the chosen one or the advisor's).
#[component]
pub fn SettingsPanel(
    settings: RwSignal<TrainSettings>,
    strategy: Signal<Strategy>,
    advice: Memo<Advice>,
    classes: RwSignal<Vec<ClassCard>>,
    running: Signal<bool>,
) -> impl IntoView {
    let on_strategy = move |ev: leptos::ev::Event| {
        let select: HtmlSelectElement = event_target(&ev);
        let value = select.value();
        settings.update(|s| s.strategy = parse_strategy(&value).map(|s| s.name().to_string()));
    };
    let strategy_options = STRATEGIES
        .into_iter()
        .map(|s| {
            view! {
                <option value=s.name() prop:selected=move || strategy.get() == s>
                    {strategy_label(s)}
                </option>
            }
        })
        .collect_view();
    let on_schedule = move |ev: leptos::ev::Event| {
        let select: HtmlSelectElement = event_target(&ev);
        let value = select.value();
        settings.update(|s| s.schedule = value);
    };
    let schedule_options = SCHEDULES
        .iter()
        .map(|&(schedule, name, label)| {
            view! {
                <option value=name prop:selected=move || settings.with(TrainSettings::schedule) == schedule>
                    {label}
                </option>
            }
        })
        .collect_view();

    let stages = Signal::derive(move || training::plan(&settings.get().to_config(strategy.get())));
    let lr_mult = Signal::derive(move || settings.with(|s| s.to_config(Strategy::Head).lr_mult));
    let augmentation = Memo::new(move |_| settings.with(TrainSettings::augmentation));
    let augment_on = move || settings.with(|s| s.augment);
    let augment_off = Signal::derive(move || running.get() || !augment_on());
    let counts = Memo::new(move |_| {
        classes.with(|cards| {
            cards
                .iter()
                .map(|c| ClassCount {
                    name: c.name.get(),
                    images: c.count.get(),
                    val_images: c.thumbs.with(|t| t.iter().filter(|t| t.val).count()),
                })
                .collect::<Vec<_>>()
        })
    });
    let warning_list =
        Memo::new(move |_| settings.with(|s| counts.with(|c| warnings(s, strategy.get(), c))));
    let early_on = move || settings.with(|s| s.early_stop.is_some());

    let epochs = NumberField::<usize> {
        label: "Epochs",
        testid: "epochs-input",
        min: "1",
        max: "200",
        step: "1",
        get: |s| s.epochs,
        set: |s, v| s.epochs = v,
        check: |v| Some(v.clamp(1, MAX_EPOCHS)),
    };
    let seed = NumberField::<u64> {
        label: "Seed",
        testid: "seed-input",
        min: "0",
        max: "",
        step: "1",
        get: |s| s.seed,
        set: |s, v| s.seed = v,
        check: Some,
    };
    let batch = NumberField::<usize> {
        label: "Batch size",
        testid: "batch-input",
        min: "1",
        max: "256",
        step: "1",
        get: |s| s.batch_size,
        set: |s, v| s.batch_size = v,
        check: |v| Some(v.clamp(1, 256)),
    };
    let lr = NumberField::<f64> {
        label: "Learning rate",
        testid: "lr-input",
        min: "0",
        max: "1",
        step: "any",
        get: |s| s.lr,
        set: |s, v| s.lr = v,
        check: |v| positive(v).map(|v| v.min(1.0)),
    };
    let lr_mult_field = NumberField::<f64> {
        label: "Rate multiplier per layer group",
        testid: "lr-mult-input",
        min: "0",
        max: "1",
        step: "any",
        get: |s| s.lr_mult,
        set: |s, v| s.lr_mult = v,
        check: |v| alpha(v).map(|v| v.min(1.0)),
    };
    let smoothing = NumberField::<f64> {
        label: "Label smoothing",
        testid: "label-smoothing-input",
        min: "0",
        max: "0.5",
        step: "0.05",
        get: |s| s.label_smoothing,
        set: |s, v| s.label_smoothing = v,
        check: |v| alpha(v).map(|v| v.min(0.5)),
    };
    let mixup = NumberField::<f64> {
        label: "Mixup",
        testid: "mixup-input",
        min: "0",
        max: "10",
        step: "0.1",
        get: |s| s.mixup,
        set: |s, v| s.mixup = v,
        check: alpha,
    };
    let cutmix = NumberField::<f64> {
        label: "CutMix",
        testid: "cutmix-input",
        min: "0",
        max: "10",
        step: "0.1",
        get: |s| s.cutmix,
        set: |s, v| s.cutmix = v,
        check: alpha,
    };
    let patience = NumberField::<usize> {
        label: "Patience (epochs)",
        testid: "patience-input",
        min: "1",
        max: "200",
        step: "1",
        get: |s| s.early_stop.unwrap_or(3),
        set: |s, v| s.early_stop = Some(v),
        check: |v| Some(v.clamp(1, MAX_EPOCHS)),
    };
    let val_share = NumberField::<u32> {
        label: "Validation share (%)",
        testid: "val-fraction-input",
        min: "5",
        max: "50",
        step: "5",
        get: |s| (s.val_fraction() * 100.0).round() as u32,
        set: |s, v| s.val_fraction = f64::from(v) / 100.0,
        check: |v| Some(v.clamp(5, 50)),
    };
    let disabled = running;
    let early_disabled = Signal::derive(move || running.get() || !early_on());

    view! {
        <div class="train-settings">
            <label class="wide">
                "Strategy"
                <select data-testid="strategy-select" on:change=on_strategy disabled=running>
                    {strategy_options}
                </select>
            </label>
            {epochs.view(settings, disabled)}
            {seed.view(settings, disabled)}
            {check_box(
                settings,
                disabled,
                "augment-toggle",
                "Augment images (random crops, flips, colour)",
                |s| s.augment,
                |s, v| s.augment = v,
            )}
        </div>
        <p class="muted small" data-testid="strategy-why">
            {move || {
                let a = advice.get();
                if settings.with(TrainSettings::chosen).is_some_and(|c| c != a.strategy) {
                    format!("The advisor would pick {}: {}", strategy_label(a.strategy).to_lowercase(), a.why)
                } else {
                    format!("Advisor: {}", a.why)
                }
            }}
        </p>
        <ul class="whys">
            <li class="why">
                <strong>"Feature extraction: "</strong>
                "the pretrained layers stay frozen and only a new last layer learns. Few images "
                "are enough, and it is fast because each photo goes through the big network once."
            </li>
            <li class="why">
                <strong>"Fine-tuning: "</strong>
                "some pretrained layers learn too, slowly, so they adapt to your photos. It needs "
                "more images, or the network just memorises them."
            </li>
            <li class="why">
                <strong>"Gradual unfreezing: "</strong>
                "the new head learns alone first; then deeper blocks join, stage by stage. A "
                "freshly made head makes big, random mistakes, and this keeps them from "
                "scrambling the pretrained layers."
            </li>
            <li class="why">
                <strong>"Augmentation: "</strong>
                "each epoch sees slightly changed copies (cropped, flipped, recoloured), so the "
                "network learns the object rather than the exact pixels. Slower: the pretrained "
                "part's output cannot be reused between epochs."
            </li>
        </ul>
        <LayerDiagram stages lr_mult />
        <Show when=augment_on>
            <fieldset class="augment-options">
                <legend>"Augmentation"</legend>
                <div class="check-row">
                    {check_box(settings, augment_off, "aug-crop", "Random crop", |s| s.crop, |s, v| s.crop = v)}
                    {check_box(settings, augment_off, "aug-flip", "Mirror", |s| s.flip, |s, v| s.flip = v)}
                    {check_box(settings, augment_off, "aug-rotate", "Rotate", |s| s.rotate, |s, v| s.rotate = v)}
                    {check_box(settings, augment_off, "aug-translate", "Shift", |s| s.translate, |s, v| s.translate = v)}
                    {check_box(settings, augment_off, "aug-color", "Colour", |s| s.color, |s, v| s.color = v)}
                </div>
                <AugmentGrid classes augmentation=augmentation.into() />
            </fieldset>
        </Show>
        <ul class="settings-warnings" aria-live="polite">
            <For
                each=move || warning_list.get()
                key=|w| w.clone()
                children=|w| view! {
                    <li class="settings-warning" data-testid="settings-warning">
                        <span aria-hidden="true">"⚠ "</span>
                        {w}
                    </li>
                }
            />
        </ul>
        <details class="advanced" data-testid="advanced-settings">
            <summary>"Advanced settings"</summary>
            <div class="advanced-grid">
                <div class="setting">
                    {lr.view(settings, disabled)}
                    <p class="why small">
                        "How big a step the weights take after each batch. Too big wrecks what the "
                        "network already knows; too small and nothing changes."
                    </p>
                </div>
                <div class="setting">
                    <label>
                        "Learning-rate schedule"
                        <select data-testid="schedule-select" on:change=on_schedule disabled=running>
                            {schedule_options}
                        </select>
                    </label>
                    <p class="why small">
                        "OneCycle warms the rate up over the first tenth of the steps, then lowers it "
                        "smoothly to almost zero: quick progress first, careful settling at the end. "
                        "Cosine only lowers it; constant never changes it."
                    </p>
                </div>
                <div class="setting">
                    {lr_mult_field.view(settings, disabled)}
                    <p class="why small">
                        "Discriminative learning rates: early layers found general things (edges, "
                        "textures) and should move less. Each group nearer the input learns at this "
                        "fraction of the next one's rate (see the diagram)."
                    </p>
                </div>
                <div class="setting">
                    {batch.view(settings, disabled)}
                    <p class="why small">
                        "Images per step. Bigger batches give steadier steps but need more GPU memory."
                    </p>
                </div>
                <div class="setting">
                    {smoothing.view(settings, disabled)}
                    <p class="why small">
                        "Aim for \"90% sure\" instead of \"100% sure\": the model stays a little "
                        "humble, which often helps on new photos. 0.1 is common; 0 is off."
                    </p>
                </div>
                <div class="setting">
                    {mixup.view(settings, disabled)}
                    {cutmix.view(settings, disabled)}
                    <p class="why small">
                        "Mixup blends two training photos; CutMix pastes a patch of one onto another. "
                        "The labels are mixed in the same proportion, so the model cannot rely on a "
                        "single detail. 0.2 to 1 is typical; 0 is off. Training gets slower."
                    </p>
                </div>
                <div class="setting">
                    <label class="check">
                        <input
                            type="checkbox"
                            data-testid="early-stop-toggle"
                            prop:checked=early_on
                            on:change=move |ev| {
                                let on = event_target_checked(&ev);
                                settings.update(|s| s.early_stop = on.then(|| s.early_stop.unwrap_or(3)));
                            }
                            disabled=running
                        />
                        "Stop early"
                    </label>
                    {patience.view(settings, early_disabled)}
                    <p class="why small">
                        "Stop when the validation loss has not improved for this many epochs, and keep "
                        "the best epoch: saves time and stops the model from memorising."
                    </p>
                </div>
                <div class="setting">
                    {val_share.view(settings, disabled)}
                    <p class="why small">
                        "Part of each class is kept aside and never learned from, to check the model "
                        "honestly. Not used when you added a val/ folder."
                    </p>
                </div>
            </div>
            <button
                type="button"
                class="link-button"
                data-testid="reset-settings"
                disabled=running
                on:click=move |_| settings.set(TrainSettings::default())
            >
                "Reset all settings"
            </button>
        </details>
    }
}
