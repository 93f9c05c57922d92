//! The page: set-up status (device, weights) on top, the photo panel below. The device is
//! chosen first (WebGPU, or the CPU backend where there is no usable GPU), then the weights go
//! to the worker, which owns the device and every model. The worker starts at once: it decodes
//! photos before the weights arrive.

use gloo_storage::{LocalStorage, Storage};
use leptos::prelude::*;

use crate::app::device::Choice;
use crate::browser::page::insight::predict::PredictPanel;
use crate::browser::page::setup::backend::{self, BackendState, BackendStatus};
use crate::browser::page::setup::bench::DeviceCheck;
use crate::browser::page::setup::pretrained::{BackbonePicker, Pretrained};
use crate::browser::page::setup::profile::DeviceProfile;
use crate::browser::page::setup::weights::{self, WeightsState, WeightsStatus};
use crate::browser::page::state::client::{WorkerClient, WorkerContext};
use crate::browser::page::train::teach::TeachPanel;
use crate::engine::model::BackboneKind;

#[component]
pub fn App() -> impl IntoView {
    let backend_state = RwSignal::new(BackendState::Checking);
    let weights_state = RwSignal::new(WeightsState::Waiting);
    let worker = WorkerClient::start();
    WorkerContext::provide(worker.clone());
    let pretrained = Pretrained::provide();

    // The device first (once), then the chosen backbone's weights: again whenever the user
    // picks another backbone, on the device in use. One load at a time (the picker waits).
    let device = RwSignal::new_local(None::<Choice>);
    leptos::task::spawn_local(async move {
        let choice = backend::choose().await;
        backend_state.set(BackendState::Ready(choice.clone()));
        device.set(Some(choice));
    });
    let load = Action::new_unsync(move |&kind: &BackboneKind| {
        let worker = worker.clone();
        async move {
            let Some(choice) = device.get_untracked() else {
                return;
            };
            pretrained.loaded.set(None);
            pretrained.loading.set(true);
            worker.backbone.set(kind);
            let choice = weights::load(&worker, weights_state, choice, kind).await;
            backend_state.set(BackendState::Ready(choice.clone()));
            device.set(Some(choice));
            let ok = matches!(weights_state.get_untracked(), WeightsState::Ready { .. });
            pretrained.loaded.set(ok.then_some(kind));
            pretrained.loading.set(false);
        }
    });
    let device_known = Memo::new(move |_| device.with(Option::is_some));
    // The backbone last sent for: a choice made during a load is loaded once that one ends.
    let asked = StoredValue::new(None::<BackboneKind>);
    Effect::new(move |_| {
        let kind = pretrained.chosen.get();
        let idle = !load.pending().get();
        if device_known.get() && idle && asked.get_value() != Some(kind) {
            asked.set_value(Some(kind));
            load.dispatch(kind);
        }
    });
    let name = move || {
        pretrained
            .loaded
            .get()
            .unwrap_or(pretrained.chosen.get())
            .spec()
            .name
    };

    view! {
        <header class="masthead">
            <div class="masthead-row">
                <h1>"Finetune Studio"</h1>
                <LargeTextToggle />
            </div>
            <p class="lede">
                "Recognise what is in a photo with " {name} ", a network trained on the 1000 "
                "ImageNet classes. It runs on your own GPU (or CPU), in this page: your photos never leave "
                "your computer."
            </p>
        </header>
        <main>
            <section class="card status" aria-label="Set-up">
                <BackendStatus state=backend_state />
                <WeightsStatus state=weights_state />
                <BackbonePicker />
            </section>
            <PredictPanel />
            <TeachPanel />
            <DeviceCheck backend=backend_state />
            <DeviceProfile />
        </main>
    }
}

/// Where the text-size choice is remembered.
const LARGE_TEXT_KEY: &str = "finetune-large-text";

/// Larger text for the back of a classroom or a projector: every size is in `rem`, so one class
/// on `<html>` scales the whole page. The choice is remembered in `localStorage` (where the
/// browser allows it: without storage it is simply not remembered).
#[component]
fn LargeTextToggle() -> impl IntoView {
    // `true`, or `1` as earlier versions wrote it.
    let saved = LocalStorage::get::<serde_json::Value>(LARGE_TEXT_KEY)
        .is_ok_and(|v| v == serde_json::json!(true) || v == serde_json::json!(1));
    let large = RwSignal::new(saved);
    Effect::new(move |_| {
        let on = large.get();
        if let Some(root) = document().document_element() {
            root.set_class_name(if on { "large-text" } else { "" });
        }
        LocalStorage::set(LARGE_TEXT_KEY, on).ok();
    });
    view! {
        <button
            type="button"
            class="link-button text-size"
            data-testid="large-text"
            aria-pressed=move || large.get().to_string()
            on:click=move |_| large.update(|l| *l = !*l)
        >
            {move || if large.get() { "Normal text" } else { "Larger text" }}
        </button>
    }
}
