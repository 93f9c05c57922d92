//! "Advanced settings": the rate, its schedule and its multiplier per layer group, the batch,
//! label smoothing, mixup and CutMix, early stopping and the validation share, each with its
//! why.

use leptos::prelude::*;
use web_sys::HtmlSelectElement;

use super::fields;
use crate::engine::train::config::PanelSettings;
use crate::engine::train::schedule::Schedule;

fn schedule_label(schedule: Schedule) -> &'static str {
    match schedule {
        Schedule::OneCycle => "OneCycle (warm up, then cool down)",
        Schedule::Cosine => "Cosine (cool down)",
        Schedule::Constant => "Constant",
    }
}

/// One setting and its why.
#[component]
fn Setting(
    /// The settings it sets, as the engine names them (space-separated).
    setting: &'static str,
    why: &'static str,
    children: Children,
) -> impl IntoView {
    view! {
        <div class="setting" data-setting=setting>
            {children()}
            <p class="why small">{why}</p>
        </div>
    }
}

#[component]
fn ScheduleSelect(settings: RwSignal<PanelSettings>, running: Signal<bool>) -> impl IntoView {
    let on_schedule = move |ev: leptos::ev::Event| {
        let select: HtmlSelectElement = event_target(&ev);
        if let Some(schedule) = Schedule::from_name(&select.value()) {
            settings.update(|s| s.train.schedule = schedule);
        }
    };
    let options = Schedule::ALL
        .into_iter()
        .map(|schedule| {
            let selected = move || settings.with(|s| s.train.schedule) == schedule;
            view! { <option value=schedule.name() prop:selected=selected>{schedule_label(schedule)}</option> }
        })
        .collect_view();
    view! {
        <label data-setting="schedule warmup">
            "Learning-rate schedule"
            <select data-testid="schedule-select" on:change=on_schedule disabled=running>
                {options}
            </select>
        </label>
    }
}

#[component]
fn EarlyStop(settings: RwSignal<PanelSettings>, running: Signal<bool>) -> impl IntoView {
    let early_on = move || settings.with(|s| s.train.early_stop.is_some());
    let off = Signal::derive(move || running.get() || !early_on());
    let toggle = move |ev| {
        let on = event_target_checked(&ev);
        settings.update(|s| s.train.early_stop = on.then(|| s.train.early_stop.unwrap_or(3)));
    };
    view! {
        <label class="check">
            <input
                type="checkbox"
                data-testid="early-stop-toggle"
                prop:checked=early_on
                on:change=toggle
                disabled=running
            />
            "Stop early"
        </label>
        {fields::patience().view(settings, off)}
    }
}

#[component]
pub fn AdvancedSettings(settings: RwSignal<PanelSettings>, running: Signal<bool>) -> impl IntoView {
    view! {
        <details class="advanced" data-testid="advanced-settings">
            <summary>"Advanced settings"</summary>
            <div class="advanced-grid">
                <Setting setting="lr" why="How big a step the weights take after each batch. Too big wrecks what the \
                    network already knows; too small and nothing changes.">
                    {fields::lr().view(settings, running)}
                </Setting>
                <Setting setting="schedule warmup" why="OneCycle warms the rate up over the first tenth of the steps, then lowers it \
                    smoothly to almost zero: quick progress first, careful settling at the end. \
                    Cosine only lowers it; constant never changes it.">
                    <ScheduleSelect settings running />
                </Setting>
                <Setting setting="lr_mult" why="Discriminative learning rates: early layers found general things (edges, \
                    textures) and should move less. Each group nearer the input learns at this \
                    fraction of the next one's rate (see the diagram).">
                    {fields::lr_mult().view(settings, running)}
                </Setting>
                <Setting setting="batch_size" why="Images per step. Bigger batches give steadier steps but need more GPU memory.">
                    {fields::batch().view(settings, running)}
                </Setting>
                <Setting setting="label_smoothing" why="Aim for \"90% sure\" instead of \"100% sure\": the model stays a little \
                    humble, which often helps on new photos. 0.1 is common; 0 is off.">
                    {fields::smoothing().view(settings, running)}
                </Setting>
                <Setting setting="mixup cutmix mix_prob" why="Mixup blends two training photos; CutMix pastes a patch of one onto another. \
                    The labels are mixed in the same proportion, so the model cannot rely on a \
                    single detail. 0.2 to 1 is typical; 0 is off. Training gets slower.">
                    {fields::mixup().view(settings, running)}
                    {fields::cutmix().view(settings, running)}
                </Setting>
                <Setting setting="early_stop monitor min_delta" why="Stop when the validation loss has not improved for this many epochs, and keep \
                    the best epoch: saves time and stops the model from memorising.">
                    <EarlyStop settings running />
                </Setting>
                <Setting setting="val_fraction" why="Part of each class is kept aside and never learned from, to check the model \
                    honestly. Not used when you added a val/ folder.">
                    {fields::val_share().view(settings, running)}
                </Setting>
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
