//! The settings' inputs: a number field bound to one setting (typed, brought into range as
//! the user types), checkboxes, and the fields of the panel with their ranges from the
//! engine's limits.

use std::str::FromStr;

use leptos::prelude::*;

use crate::engine::train::config::{
    AugmentChange, MAX_BATCH, MAX_EPOCHS, MAX_LR, MAX_MIX_ALPHA, PanelSettings, VAL_FRACTION_RANGE,
};

/// Largest label smoothing the panel offers: above it the targets say little about the class.
const MAX_SMOOTHING: f64 = 0.5;

/// A number input bound to one field of the settings.
pub(super) struct NumberField<T: 'static> {
    pub(super) label: &'static str,
    pub(super) testid: &'static str,
    /// The setting's name in the engine's config (lights its lines in the PyTorch code).
    pub(super) setting: &'static str,
    pub(super) min: f64,
    /// `None`: no upper bound.
    pub(super) max: Option<f64>,
    pub(super) step: &'static str,
    pub(super) get: fn(&PanelSettings) -> T,
    pub(super) set: fn(&mut PanelSettings, T),
    /// Brings a typed value into range, or rejects it (`None`: the settings keep their value).
    pub(super) check: fn(T) -> Option<T>,
}

impl<T> NumberField<T>
where
    T: FromStr + ToString + PartialEq + Clone + Send + Sync + 'static,
{
    /// The field shows the setting and changes it while the user types; a value is written back
    /// only when the setting really changes, so half-typed numbers like `0.00` are not rewritten.
    pub(super) fn view(
        self,
        settings: RwSignal<PanelSettings>,
        disabled: Signal<bool>,
    ) -> impl IntoView {
        let Self {
            label,
            testid,
            setting,
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
            <label data-setting=setting>
                {label}
                <input
                    type="number"
                    inputmode="decimal"
                    min=min.to_string()
                    max=max.map(|m| m.to_string())
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

pub(super) fn positive(x: f64) -> Option<f64> {
    (x.is_finite() && x > 0.0).then_some(x)
}

pub(super) fn alpha(x: f64) -> Option<f64> {
    (x.is_finite() && x >= 0.0).then_some(x.min(MAX_MIX_ALPHA))
}

pub(super) fn val_percent(fraction: f64) -> u32 {
    (fraction * 100.0).round() as u32
}

/// A checkbox that turns one augmentation on (at its default strength) or off.
pub(super) fn augment_box(
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
        <label class="check" data-setting="augmentation">
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
pub(super) fn check_box(
    settings: RwSignal<PanelSettings>,
    disabled: Signal<bool>,
    testid: &'static str,
    label: &'static str,
    setting: &'static str,
    get: fn(&PanelSettings) -> bool,
    set: fn(&mut PanelSettings, bool),
) -> impl IntoView {
    view! {
        <label class="check" data-setting=setting>
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

pub(super) fn epochs() -> NumberField<usize> {
    NumberField {
        label: "Epochs",
        testid: "epochs-input",
        setting: "epochs",
        min: 1.0,
        max: Some(MAX_EPOCHS as f64),
        step: "1",
        get: |s| s.train.epochs,
        set: |s, v| s.train.epochs = v,
        check: |v| Some(v.clamp(1, MAX_EPOCHS)),
    }
}

pub(super) fn seed() -> NumberField<u64> {
    NumberField {
        label: "Seed",
        testid: "seed-input",
        setting: "seed",
        min: 0.0,
        max: None,
        step: "1",
        get: |s| s.train.seed,
        set: |s, v| s.train.seed = v,
        check: Some,
    }
}

pub(super) fn batch() -> NumberField<usize> {
    NumberField {
        label: "Batch size",
        testid: "batch-input",
        setting: "batch_size",
        min: 1.0,
        max: Some(MAX_BATCH as f64),
        step: "1",
        get: |s| s.train.batch_size,
        set: |s, v| s.train.batch_size = v,
        check: |v| Some(v.clamp(1, MAX_BATCH)),
    }
}

pub(super) fn lr() -> NumberField<f64> {
    NumberField {
        label: "Learning rate",
        testid: "lr-input",
        setting: "lr",
        min: 0.0,
        max: Some(MAX_LR),
        step: "any",
        get: |s| s.train.lr,
        set: |s, v| s.train.lr = v,
        check: |v| positive(v).map(|v| v.min(MAX_LR)),
    }
}

pub(super) fn lr_mult() -> NumberField<f64> {
    NumberField {
        label: "Rate multiplier per layer group",
        testid: "lr-mult-input",
        setting: "lr_mult",
        min: 0.0,
        max: Some(1.0),
        step: "any",
        get: |s| s.train.lr_mult,
        set: |s, v| s.train.lr_mult = v,
        check: |v| alpha(v).map(|v| v.min(1.0)),
    }
}

pub(super) fn smoothing() -> NumberField<f64> {
    NumberField {
        label: "Label smoothing",
        testid: "label-smoothing-input",
        setting: "label_smoothing",
        min: 0.0,
        max: Some(MAX_SMOOTHING),
        step: "0.05",
        get: |s| s.train.label_smoothing,
        set: |s, v| s.train.label_smoothing = v,
        check: |v| alpha(v).map(|v| v.min(MAX_SMOOTHING)),
    }
}

pub(super) fn mixup() -> NumberField<f64> {
    NumberField {
        label: "Mixup",
        testid: "mixup-input",
        setting: "mixup",
        min: 0.0,
        max: Some(MAX_MIX_ALPHA),
        step: "0.1",
        get: |s| s.train.mixup,
        set: |s, v| s.train.mixup = v,
        check: alpha,
    }
}

pub(super) fn cutmix() -> NumberField<f64> {
    NumberField {
        label: "CutMix",
        testid: "cutmix-input",
        setting: "cutmix",
        min: 0.0,
        max: Some(MAX_MIX_ALPHA),
        step: "0.1",
        get: |s| s.train.cutmix,
        set: |s, v| s.train.cutmix = v,
        check: alpha,
    }
}

pub(super) fn patience() -> NumberField<usize> {
    NumberField {
        label: "Patience (epochs)",
        testid: "patience-input",
        setting: "early_stop",
        min: 1.0,
        max: Some(MAX_EPOCHS as f64),
        step: "1",
        get: |s| s.train.early_stop.unwrap_or(3),
        set: |s, v| s.train.early_stop = Some(v),
        check: |v| Some(v.clamp(1, MAX_EPOCHS)),
    }
}

pub(super) fn val_share() -> NumberField<u32> {
    let (low, high) = VAL_FRACTION_RANGE;
    NumberField {
        label: "Validation share (%)",
        testid: "val-fraction-input",
        setting: "val_fraction",
        min: f64::from(val_percent(low)),
        max: Some(f64::from(val_percent(high))),
        step: "5",
        get: |s| val_percent(s.train.val_fraction),
        set: |s, v| s.train.val_fraction = f64::from(v) / 100.0,
        check: |v| {
            let (low, high) = VAL_FRACTION_RANGE;
            Some(v.clamp(val_percent(low), val_percent(high)))
        },
    }
}
