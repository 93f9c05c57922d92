//! The train panel's settings: the engine's one [`TrainConfig`] (plus whether the user picked
//! the strategy, [`PanelSettings`]), shown with the everyday settings in view and the rest in
//! "Advanced settings", each with a short why for students; and the engine's warnings about the
//! settings and the data, live.

use std::str::FromStr;

use leptos::prelude::*;
use web_sys::HtmlSelectElement;

use crate::browser::page::insight::layer_views::LayerViews;
use crate::browser::page::state::workspace::ClassCard;
use crate::browser::page::train::augment_grid::AugmentGrid;
use crate::browser::page::train::diagram::LayerDiagram;
use crate::engine::train;
use crate::engine::train::advisor::{self, Advice, ClassCount, Warning};
use crate::engine::train::config::{
    AugmentChange, MAX_BATCH, MAX_EPOCHS, MAX_MIX_ALPHA, PanelSettings, Strategy, TrainConfig,
    VAL_FRACTION_RANGE,
};
use crate::engine::train::schedule::Schedule;

pub fn strategy_label(strategy: Strategy) -> &'static str {
    match strategy {
        Strategy::Head => "Feature extraction (head only)",
        Strategy::LastBlock => "Fine-tune the last block",
        Strategy::Gradual => "Gradual unfreezing",
        Strategy::Full => "Full fine-tuning",
    }
}

fn schedule_label(schedule: Schedule) -> &'static str {
    match schedule {
        Schedule::OneCycle => "OneCycle (warm up, then cool down)",
        Schedule::Cosine => "Cosine (cool down)",
        Schedule::Constant => "Constant",
    }
}

/// The config a run uses: the panel's, with the strategy in use (the chosen or the advisor's).
pub fn run_config(settings: &PanelSettings, strategy: Strategy) -> TrainConfig {
    settings.train.clone().with_strategy(strategy)
}

/// A number input bound to one field of the settings.
struct NumberField<T: 'static> {
    label: &'static str,
    testid: &'static str,
    min: &'static str,
    max: &'static str,
    step: &'static str,
    get: fn(&PanelSettings) -> T,
    set: fn(&mut PanelSettings, T),
    /// Brings a typed value into range, or rejects it (`None`: the settings keep their value).
    check: fn(T) -> Option<T>,
}

impl<T> NumberField<T>
where
    T: FromStr + ToString + PartialEq + Clone + Send + Sync + 'static,
{
    /// The field shows the setting and changes it while the user types; a value is written back
    /// only when the setting really changes, so half-typed numbers like `0.00` are not rewritten.
    fn view(self, settings: RwSignal<PanelSettings>, disabled: Signal<bool>) -> impl IntoView {
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
    (x.is_finite() && x >= 0.0).then_some(x.min(MAX_MIX_ALPHA))
}

fn val_percent(fraction: f64) -> u32 {
    (fraction * 100.0).round() as u32
}

/// A checkbox that turns one augmentation on (at its default strength) or off.
fn augment_box(
    settings: RwSignal<PanelSettings>,
    disabled: Signal<bool>,
    testid: &'static str,
    label: &'static str,
    change: AugmentChange,
) -> impl IntoView {
    let on = move || {
        settings.with(|s| {
            let a = &s.train.augmentation;
            match change {
                AugmentChange::Crop => a.crop_on(),
                AugmentChange::Flip => a.hflip,
                AugmentChange::Rotate => a.rotate_on(),
                AugmentChange::Translate => a.translate_on(),
                AugmentChange::Color => a.color_on(),
            }
        })
    };
    view! {
        <label class="check">
            <input
                type="checkbox"
                data-testid=testid
                prop:checked=on
                on:change=move |ev| {
                    let checked = event_target_checked(&ev);
                    settings.update(|s| {
                        s.train.augmentation = s.train.augmentation.clone().toggled(change, checked);
                    });
                }
                disabled=disabled
            />
            {label}
        </label>
    }
}

/// A checkbox bound to one boolean of the settings.
fn check_box(
    settings: RwSignal<PanelSettings>,
    disabled: Signal<bool>,
    testid: &'static str,
    label: &'static str,
    get: fn(&PanelSettings) -> bool,
    set: fn(&mut PanelSettings, bool),
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
    settings: RwSignal<PanelSettings>,
    strategy: Signal<Strategy>,
    advice: Memo<Advice>,
    classes: RwSignal<Vec<ClassCard>>,
    running: Signal<bool>,
) -> impl IntoView {
    let on_strategy = move |ev: leptos::ev::Event| {
        let select: HtmlSelectElement = event_target(&ev);
        let value = select.value();
        settings.update(|s| s.chosen_strategy = Strategy::from_name(&value));
    };
    let strategy_options = Strategy::ALL
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
        if let Some(schedule) = Schedule::from_name(&value) {
            settings.update(|s| s.train.schedule = schedule);
        }
    };
    let schedule_options = Schedule::ALL
        .into_iter()
        .map(|schedule| {
            view! {
                <option value=schedule.name() prop:selected=move || settings.with(|s| s.train.schedule) == schedule>
                    {schedule_label(schedule)}
                </option>
            }
        })
        .collect_view();

    let stages =
        Signal::derive(move || train::plan::stages(&run_config(&settings.get(), strategy.get())));
    let lr_mult = Signal::derive(move || settings.with(|s| s.train.lr_mult));
    let spec = Signal::derive(move || settings.with(|s| s.train.backbone.spec()));
    let augmentation = Memo::new(move |_| settings.with(|s| s.train.augmentation.clone()));
    let augment_on = move || settings.with(|s| s.train.augment);
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
    let warning_list = Memo::new(move |_| {
        settings.with(|s| counts.with(|c| advisor::warnings(&run_config(s, strategy.get()), c)))
    });
    let early_on = move || settings.with(|s| s.train.early_stop.is_some());

    let epochs = NumberField::<usize> {
        label: "Epochs",
        testid: "epochs-input",
        min: "1",
        max: "200",
        step: "1",
        get: |s| s.train.epochs,
        set: |s, v| s.train.epochs = v,
        check: |v| Some(v.clamp(1, MAX_EPOCHS)),
    };
    let seed = NumberField::<u64> {
        label: "Seed",
        testid: "seed-input",
        min: "0",
        max: "",
        step: "1",
        get: |s| s.train.seed,
        set: |s, v| s.train.seed = v,
        check: Some,
    };
    let batch = NumberField::<usize> {
        label: "Batch size",
        testid: "batch-input",
        min: "1",
        max: "256",
        step: "1",
        get: |s| s.train.batch_size,
        set: |s, v| s.train.batch_size = v,
        check: |v| Some(v.clamp(1, MAX_BATCH)),
    };
    let lr = NumberField::<f64> {
        label: "Learning rate",
        testid: "lr-input",
        min: "0",
        max: "1",
        step: "any",
        get: |s| s.train.lr,
        set: |s, v| s.train.lr = v,
        check: |v| positive(v).map(|v| v.min(1.0)),
    };
    let lr_mult_field = NumberField::<f64> {
        label: "Rate multiplier per layer group",
        testid: "lr-mult-input",
        min: "0",
        max: "1",
        step: "any",
        get: |s| s.train.lr_mult,
        set: |s, v| s.train.lr_mult = v,
        check: |v| alpha(v).map(|v| v.min(1.0)),
    };
    let smoothing = NumberField::<f64> {
        label: "Label smoothing",
        testid: "label-smoothing-input",
        min: "0",
        max: "0.5",
        step: "0.05",
        get: |s| s.train.label_smoothing,
        set: |s, v| s.train.label_smoothing = v,
        check: |v| alpha(v).map(|v| v.min(0.5)),
    };
    let mixup = NumberField::<f64> {
        label: "Mixup",
        testid: "mixup-input",
        min: "0",
        max: "10",
        step: "0.1",
        get: |s| s.train.mixup,
        set: |s, v| s.train.mixup = v,
        check: alpha,
    };
    let cutmix = NumberField::<f64> {
        label: "CutMix",
        testid: "cutmix-input",
        min: "0",
        max: "10",
        step: "0.1",
        get: |s| s.train.cutmix,
        set: |s, v| s.train.cutmix = v,
        check: alpha,
    };
    let patience = NumberField::<usize> {
        label: "Patience (epochs)",
        testid: "patience-input",
        min: "1",
        max: "200",
        step: "1",
        get: |s| s.train.early_stop.unwrap_or(3),
        set: |s, v| s.train.early_stop = Some(v),
        check: |v| Some(v.clamp(1, MAX_EPOCHS)),
    };
    let val_share = NumberField::<u32> {
        label: "Validation share (%)",
        testid: "val-fraction-input",
        min: "5",
        max: "50",
        step: "5",
        get: |s| (s.train.val_fraction * 100.0).round() as u32,
        set: |s, v| s.train.val_fraction = f64::from(v) / 100.0,
        check: |v| {
            Some(v.clamp(
                val_percent(VAL_FRACTION_RANGE.0),
                val_percent(VAL_FRACTION_RANGE.1),
            ))
        },
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
                |s| s.train.augment,
                |s, v| s.train.augment = v,
            )}
        </div>
        <p class="muted small" data-testid="strategy-why">
            {move || {
                let a = advice.get();
                if settings.with(|s| s.chosen_strategy).is_some_and(|c| c != a.strategy) {
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
        <LayerDiagram spec stages lr_mult />
        <LayerViews stages />
        <Show when=augment_on>
            <fieldset class="augment-options">
                <legend>"Augmentation"</legend>
                <div class="check-row">
                    {augment_box(settings, augment_off, "aug-crop", "Random crop", AugmentChange::Crop)}
                    {augment_box(settings, augment_off, "aug-flip", "Mirror", AugmentChange::Flip)}
                    {augment_box(settings, augment_off, "aug-rotate", "Rotate", AugmentChange::Rotate)}
                    {augment_box(settings, augment_off, "aug-translate", "Shift", AugmentChange::Translate)}
                    {augment_box(settings, augment_off, "aug-color", "Colour", AugmentChange::Color)}
                </div>
                <AugmentGrid classes augmentation=augmentation.into() />
            </fieldset>
        </Show>
        <ul class="settings-warnings" aria-live="polite">
            <For
                each=move || warning_list.get()
                key=|w| w.clone()
                children=|w| {
                    let (kind, mark) = match &w {
                        Warning::Blocking(_) => ("blocking", "⛔ "),
                        Warning::Advice(_) => ("advice", "⚠ "),
                        Warning::Note(_) => ("note", "ℹ "),
                    };
                    view! {
                        <li class="settings-warning" class:note=kind == "note" data-testid="settings-warning" data-kind=kind>
                            <span aria-hidden="true">{mark}</span>
                            {w.text().to_string()}
                        </li>
                    }
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
                                settings.update(|s| s.train.early_stop = on.then(|| s.train.early_stop.unwrap_or(3)));
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
                on:click=move |_| settings.set(PanelSettings::default())
            >
                "Reset all settings"
            </button>
        </details>
    }
}
