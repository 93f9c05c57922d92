//! The page: set-up status (GPU, weights) on top, the photo panel below. Start-up is
//! sequential on purpose: the weights are only downloaded once WebGPU is known to work.

use std::rc::Rc;

use leptos::prelude::*;
use wasm_bindgen::JsCast;

use super::backend::{self, BackendState, BackendStatus};
use super::js;
use super::predict::PredictPanel;
use super::teach::TeachPanel;
use super::weights::{self, WeightsState, WeightsStatus};
use crate::engine::inference::Predictor;

#[component]
pub fn App() -> impl IntoView {
    let backend_state = RwSignal::new(BackendState::Checking);
    let weights_state = RwSignal::new(WeightsState::Waiting);
    let predictor = RwSignal::new_local(None::<Rc<Predictor>>);
    let weights_bytes = StoredValue::new_local(None::<Vec<u8>>);

    leptos::task::spawn_local(async move {
        let backend = match backend::init().await {
            Ok(backend) => backend,
            Err(reason) => {
                backend_state.set(BackendState::Unavailable(reason));
                weights_state.set(WeightsState::Blocked);
                return;
            }
        };
        backend_state.set(BackendState::Ready {
            adapter: backend.adapter,
        });
        if let Some((loaded, bytes)) = weights::load_predictor(&backend.device, weights_state).await
        {
            weights_bytes.set_value(Some(bytes));
            predictor.set(Some(Rc::new(loaded)));
        }
    });

    view! {
        <header class="masthead">
            <div class="masthead-row">
                <h1>"Finetune Studio"</h1>
                <LargeTextToggle />
            </div>
            <p class="lede">
                "Recognise what is in a photo with EfficientNet-Lite0, a network trained on the 1000 "
                "ImageNet classes. It runs on your own GPU, in this page: your photos never leave "
                "your computer."
            </p>
        </header>
        <main>
            <section class="card status" aria-label="Set-up">
                <BackendStatus state=backend_state />
                <WeightsStatus state=weights_state />
            </section>
            <PredictPanel predictor />
            <TeachPanel imagenet=predictor weights_bytes />
        </main>
    }
}

/// Where the text-size choice is remembered.
const LARGE_TEXT_KEY: &str = "finetune-large-text";

/// Larger text for the back of a classroom or a projector: every size is in `rem`, so one class
/// on `<html>` scales the whole page. The choice is remembered in `localStorage`.
#[component]
fn LargeTextToggle() -> impl IntoView {
    let storage = js::get(&window(), "localStorage");
    let call = move |method: &str, args: &[&str]| -> Option<wasm_bindgen::JsValue> {
        let storage = storage.clone()?;
        let f: js_sys::Function = js::get(&storage, method)?.dyn_into().ok()?;
        let args: js_sys::Array = args
            .iter()
            .map(|a| wasm_bindgen::JsValue::from_str(a))
            .collect();
        f.apply(&storage, &args).ok()
    };
    let saved = call("getItem", &[LARGE_TEXT_KEY]).and_then(|v| v.as_string());
    let large = RwSignal::new(saved.as_deref() == Some("1"));
    Effect::new(move |_| {
        let on = large.get();
        if let Some(root) = document().document_element() {
            root.set_class_name(if on { "large-text" } else { "" });
        }
        call("setItem", &[LARGE_TEXT_KEY, if on { "1" } else { "0" }]);
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
