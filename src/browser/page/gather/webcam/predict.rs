//! Live predictions on the webcam's picture.

use leptos::prelude::*;

use super::{Camera, PREDICT_EVERY_MS};
use crate::browser::js;

/// "Live webcam": predicts on the camera picture, one frame at a time: the next frame is taken
/// once the previous prediction is back (`busy` false), and at least 300 ms after the last.
#[component]
pub fn WebcamPredict(
    /// Runs a prediction on ("webcam", JPEG bytes).
    predict: Callback<(String, Vec<u8>)>,
    /// A prediction is running.
    #[prop(into)]
    busy: Signal<bool>,
    /// A model is ready to predict.
    #[prop(into)]
    enabled: Signal<bool>,
    /// Told when the live webcam is turned on or off.
    #[prop(optional)]
    on_toggle: Option<Callback<bool>>,
) -> impl IntoView {
    let on = RwSignal::new(false);
    let cam = Camera::new();
    // Each start has its own number; a loop ends when the webcam is turned off or on again.
    let run_id = StoredValue::new(0u64);

    let run = move |id: u64| {
        leptos::task::spawn_local(async move {
            let mut last = f64::NEG_INFINITY;
            loop {
                if on.try_get_untracked() != Some(true) || run_id.try_get_value() != Some(id) {
                    break;
                }
                let ready = cam.live.try_get_untracked() == Some(true)
                    && enabled.try_get_untracked() == Some(true)
                    && busy.try_get_untracked() == Some(false);
                let wait = last + PREDICT_EVERY_MS - js::now_ms();
                if !ready || wait > 0.0 {
                    js::sleep_ms(if ready { wait } else { 100.0 }).await;
                    continue;
                }
                last = js::now_ms();
                match cam.capture().await {
                    Ok(bytes) => {
                        if on.try_get_untracked() == Some(true)
                            && run_id.try_get_value() == Some(id)
                        {
                            predict.run(("webcam".into(), bytes));
                        }
                    }
                    // No picture yet right after starting: try again shortly.
                    Err(_) => js::sleep_ms(PREDICT_EVERY_MS).await,
                }
            }
        });
    };
    let stop = move || {
        on.try_set(false);
        run_id.try_update_value(|id| *id += 1);
        cam.stop();
    };
    let toggle = move |_| {
        if on.get_untracked() {
            stop();
        } else {
            let id = run_id.get_value() + 1;
            run_id.set_value(id);
            on.set(true);
            cam.start();
            run(id);
        }
        if let Some(on_toggle) = on_toggle {
            on_toggle.run(on.get_untracked());
        }
    };
    on_cleanup(stop);

    view! {
        <div class="webcam">
            <button
                type="button"
                class="button secondary"
                data-testid="webcam-predict-toggle"
                aria-pressed=move || on.get().to_string()
                aria-controls="webcam-predict-panel"
                on:click=toggle
            >
                {move || if on.get() { "Stop the live webcam" } else { "Live webcam" }}
            </button>
            <div id="webcam-predict-panel" class="webcam-panel card" hidden=move || !on.get()>
                {cam.preview("webcam-predict-preview")}
                <div class="webcam-controls">{cam.picker("webcam-predict-select")}</div>
                {move || (!enabled.get()).then(|| view! {
                    <p class="muted small">"Live predictions start once a model is ready."</p>
                })}
            </div>
        </div>
    }
}
