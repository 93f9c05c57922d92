//! The page: set-up status (GPU, weights) on top, the photo panel below. Start-up is
//! sequential on purpose: the weights are only downloaded once WebGPU is known to work.

use std::rc::Rc;

use leptos::prelude::*;

use super::backend::{self, BackendState, BackendStatus};
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
            <h1>"Finetune Studio"</h1>
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
