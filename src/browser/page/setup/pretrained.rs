//! Choosing the pretrained model: which backbone the user picked (remembered for the next
//! visit), which one the worker holds, and the picker that compares them: input size, depth,
//! weights, download and work per photo, with the speed on this device once the device check
//! has timed one of them.

use gloo_storage::{LocalStorage, Storage};
use leptos::prelude::*;

use crate::browser::js;
use crate::engine::io::weights::{download_bytes, parameter_count};
use crate::engine::model::BackboneKind;

/// Where the choice is remembered.
const BACKBONE_KEY: &str = "finetune-backbone";

/// Photos a second from which a device counts as fast enough for the biggest backbone.
const FAST_IPS: f64 = 8.0;

/// The backbone, shared through context.
#[derive(Clone, Copy)]
pub struct Pretrained {
    /// What the user picked.
    pub chosen: RwSignal<BackboneKind>,
    /// What the worker holds now (`None` while none is loaded, or when loading failed).
    pub loaded: RwSignal<Option<BackboneKind>>,
    /// Weights are being downloaded or built: the picker waits.
    pub loading: RwSignal<bool>,
    /// A run is going: the worker's network must not change under it.
    pub locked: RwSignal<bool>,
    /// Inference photos/s measured by the device check, with the backbone it timed.
    pub measured: RwSignal<Option<(BackboneKind, f64)>>,
}

impl Pretrained {
    /// The remembered choice (`?backbone=lite1` in the address overrides it), in context.
    pub fn provide() -> Self {
        let asked = js::url_param("backbone").and_then(|b| BackboneKind::from_name(&b));
        let saved = LocalStorage::get::<String>(BACKBONE_KEY)
            .ok()
            .and_then(|b| BackboneKind::from_name(&b));
        let this = Self {
            chosen: RwSignal::new(asked.or(saved).unwrap_or_default()),
            loaded: RwSignal::new(None),
            loading: RwSignal::new(true),
            locked: RwSignal::new(false),
            measured: RwSignal::new(None),
        };
        provide_context(this);
        this
    }

    pub fn get() -> Self {
        expect_context::<Self>()
    }

    /// Records the user's pick (and remembers it where the browser allows).
    fn choose(&self, kind: BackboneKind) {
        LocalStorage::set(BACKBONE_KEY, kind.name()).ok();
        self.chosen.set(kind);
    }

    /// Estimated inference photos/s of `kind`: the measured backbone's speed scaled by the work
    /// per photo (multiply-accumulates).
    fn estimated_ips(&self, kind: BackboneKind) -> Option<f64> {
        let (timed, ips) = self.measured.get()?;
        Some(ips * timed.spec().macs() as f64 / kind.spec().macs() as f64)
    }
}

/// One option's facts, as the picker shows them.
fn facts(kind: BackboneKind) -> String {
    let spec = kind.spec();
    let work = spec.macs() as f64 / BackboneKind::Lite0.spec().macs() as f64;
    let work = if kind == BackboneKind::Lite0 {
        "the least work per photo".to_string()
    } else {
        format!("{work:.1}× Lite0's work per photo")
    };
    format!(
        "{} px photos, {} blocks, {:.1} million weights, {} download, {work}",
        spec.input_size,
        spec.block_count(),
        parameter_count(spec) as f64 / 1e6,
        js::format_bytes(download_bytes(kind) as f64),
    )
}

/// The picker: one option per backbone. Changing it loads that backbone's weights (downloaded
/// once, then cached) into the worker; photos already added are prepared again for it.
#[component]
pub fn BackbonePicker() -> impl IntoView {
    let pretrained = Pretrained::get();
    // Not while a run goes or weights load; after a failed load another pick is allowed.
    let busy = move || pretrained.locked.get() || pretrained.loading.get();
    let options = BackboneKind::ALL
        .into_iter()
        .map(|kind| {
            let speed = move || {
                pretrained
                    .estimated_ips(kind)
                    .map(|ips| format!("about {ips:.1} photos/s on this device"))
            };
            view! {
                <label class="backbone-option" data-testid="backbone-option" data-backbone=kind.name()>
                    <input
                        type="radio"
                        name="backbone"
                        value=kind.name()
                        prop:checked=move || pretrained.chosen.get() == kind
                        prop:disabled=busy
                        on:change=move |_| pretrained.choose(kind)
                    />
                    <span class="backbone-name">{kind.spec().name}</span>
                    <span class="backbone-facts">{facts(kind)}</span>
                    <span class="backbone-speed" data-testid="backbone-speed">{speed}</span>
                </label>
            }
        })
        .collect_view();
    let hint = move || {
        let fast = pretrained
            .estimated_ips(BackboneKind::Lite2)
            .is_some_and(|ips| ips >= FAST_IPS);
        (fast && pretrained.chosen.get() != BackboneKind::Lite2).then_some(
            "This device is fast enough for Lite2: try it when your photos look unlike \
             ImageNet's (drawings, X-rays, microscope slides), where a bigger network's extra \
             detail helps most.",
        )
    };
    view! {
        <fieldset class="backbone-picker" data-testid="backbone-picker" data-loaded=move || pretrained.loaded.get().map(|k| k.name())>
            <legend>"Pretrained model"</legend>
            <p class="muted small">
                "Bigger EfficientNet-Lite models look at larger photos with more layers and "
                "usually recognise more, but every photo costs more work: slower predictions and "
                "training, and a bigger download."
            </p>
            {options}
            {move || hint().map(|h| view! { <p class="muted small" data-testid="backbone-advice">{h}</p> })}
        </fieldset>
    }
}
