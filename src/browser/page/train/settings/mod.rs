//! The train panel's settings: the engine's one [`TrainConfig`] (plus whether the user picked
//! the strategy, [`PanelSettings`]), shown with the everyday settings in view and the rest in
//! "Advanced settings", each with a short why for students; and the engine's warnings about the
//! settings and the data, live.

mod advanced;
mod fields;

use leptos::prelude::*;
use web_sys::HtmlSelectElement;

use crate::browser::page::insight::layer_views::LayerViews;
use crate::browser::page::state::workspace::ClassCard;
use crate::browser::page::train::augment_grid::AugmentGrid;
use crate::browser::page::train::diagram::LayerDiagram;
use crate::browser::page::train::pytorch::{LitSettings, PytorchPanel};
use crate::engine::train;
use crate::engine::train::advisor::{self, Advice, ClassCount, Warning};
use crate::engine::train::config::{AugmentChange, PanelSettings, Strategy, TrainConfig};
use advanced::AdvancedSettings;
use fields::{augment_box, check_box};

fn strategy_label(strategy: Strategy) -> &'static str {
    match strategy {
        Strategy::Head => "Feature extraction (head only)",
        Strategy::LastBlock => "Fine-tune the last block",
        Strategy::Gradual => "Gradual unfreezing",
        Strategy::Full => "Full fine-tuning",
    }
}

/// The config a run uses: the panel's, with the strategy in use (the chosen or the advisor's).
pub fn run_config(settings: &PanelSettings, strategy: Strategy) -> TrainConfig {
    settings.train.clone().with_strategy(strategy)
}

/// The train settings, the advisor's line, the layer diagram, augmentation preview and
/// warnings. `strategy` is the one in use (the chosen one or the advisor's).
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
    let stages =
        Signal::derive(move || train::plan::stages(&run_config(&settings.get(), strategy.get())));
    let lr_mult = Signal::derive(move || settings.with(|s| s.train.lr_mult));
    let spec = Signal::derive(move || settings.with(|s| s.train.backbone.spec()));
    let lit = LitSettings::provide();
    view! {
        <div
            class="settings-area"
            on:mouseover=move |ev| lit.track(&ev)
            on:focusin=move |ev| lit.track(&ev)
            on:mouseleave=move |_| lit.clear()
        >
        <div class="train-settings">
            <StrategySelect settings strategy running />
            {fields::epochs().view(settings, running)}
            {fields::seed().view(settings, running)}
            {check_box(
                settings,
                running,
                "augment-toggle",
                "Augment images (random crops, flips, colour)",
                "augment",
                |s| s.train.augment,
                |s, v| s.train.augment = v,
            )}
        </div>
        <StrategyWhy settings advice />
        <LayerDiagram spec stages lr_mult />
        <LayerViews stages />
        <AugmentOptions settings classes running />
        <SettingsWarnings settings strategy classes />
        <AdvancedSettings settings running />
        </div>
        <PytorchPanel
            config=Signal::derive(move || run_config(&settings.get(), strategy.get()))
            classes
        />
    }
}

#[component]
fn StrategySelect(
    settings: RwSignal<PanelSettings>,
    strategy: Signal<Strategy>,
    running: Signal<bool>,
) -> impl IntoView {
    let on_strategy = move |ev: leptos::ev::Event| {
        let select: HtmlSelectElement = event_target(&ev);
        let value = select.value();
        settings.update(|s| s.chosen_strategy = Strategy::from_name(&value));
    };
    let options = Strategy::ALL
        .into_iter()
        .map(|s| {
            view! {
                <option value=s.name() prop:selected=move || strategy.get() == s>
                    {strategy_label(s)}
                </option>
            }
        })
        .collect_view();
    view! {
        <label class="wide" data-setting="strategy gradual_unfreeze gradual_epochs">
            "Strategy"
            <select data-testid="strategy-select" on:change=on_strategy disabled=running>
                {options}
            </select>
        </label>
    }
}

/// The advisor's line and what each way of training means.
#[component]
fn StrategyWhy(settings: RwSignal<PanelSettings>, advice: Memo<Advice>) -> impl IntoView {
    let line = move || {
        let a = advice.get();
        if settings
            .with(|s| s.chosen_strategy)
            .is_some_and(|c| c != a.strategy)
        {
            let pick = strategy_label(a.strategy).to_lowercase();
            format!("The advisor would pick {pick}: {}", a.why)
        } else {
            format!("Advisor: {}", a.why)
        }
    };
    view! {
        <p class="muted small" data-testid="strategy-why">{line}</p>
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
    }
}

/// Which augmentations run, and a live grid of what they do to one of the user's photos.
#[component]
fn AugmentOptions(
    settings: RwSignal<PanelSettings>,
    classes: RwSignal<Vec<ClassCard>>,
    running: Signal<bool>,
) -> impl IntoView {
    let augmentation = Memo::new(move |_| settings.with(|s| s.train.augmentation.clone()));
    let augment_on = move || settings.with(|s| s.train.augment);
    let off = Signal::derive(move || running.get() || !augment_on());
    let toggle = move |id, label, change| augment_box(settings, off, id, label, change);
    view! {
        <Show when=augment_on>
            <fieldset class="augment-options">
                <legend>"Augmentation"</legend>
                <div class="check-row">
                    {toggle("aug-crop", "Random crop", AugmentChange::Crop)}
                    {toggle("aug-flip", "Mirror", AugmentChange::Flip)}
                    {toggle("aug-rotate", "Rotate", AugmentChange::Rotate)}
                    {toggle("aug-translate", "Shift", AugmentChange::Translate)}
                    {toggle("aug-color", "Colour", AugmentChange::Color)}
                </div>
                <AugmentGrid classes augmentation=augmentation.into() />
            </fieldset>
        </Show>
    }
}

/// The engine's warnings about the settings and the photos, live.
#[component]
fn SettingsWarnings(
    settings: RwSignal<PanelSettings>,
    strategy: Signal<Strategy>,
    classes: RwSignal<Vec<ClassCard>>,
) -> impl IntoView {
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
    let warnings = Memo::new(move |_| {
        settings.with(|s| counts.with(|c| advisor::warnings(&run_config(s, strategy.get()), c)))
    });
    view! {
        <ul class="settings-warnings" aria-live="polite">
            <For each=move || warnings.get() key=|w| w.clone() let:w>
                {
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
            </For>
        </ul>
    }
}
