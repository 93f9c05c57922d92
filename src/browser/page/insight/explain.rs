//! "Where did it look?": a button under a photo that asks the worker for Grad-CAM heatmaps
//! (computed on the device, never on the page) and shows each one over the photo as the
//! network saw it, with the class it explains.

use std::rc::Rc;

use leptos::prelude::*;

use crate::app::protocol::{Explained, Which};
use crate::browser::object_url::ObjectUrl;
use crate::browser::page::state::client::{Photo, use_worker};

#[derive(Clone, Debug, PartialEq)]
enum State {
    Idle,
    Working,
    Shown(Vec<(Explained, Option<ObjectUrl>)>),
    Failed(String),
}

/// The button and, once asked, the heatmaps of `classes` (none: the predicted class) for
/// `photo` under `model`. `captions` names each heatmap (e.g. "the model's answer").
#[component]
pub fn WhereItLooks(
    file: String,
    model: Which,
    photo: Rc<Photo>,
    #[prop(default = Vec::new())] classes: Vec<usize>,
    #[prop(default = Vec::new())] captions: Vec<String>,
    /// Told when the user asks (a live frame's view holds the frame then).
    #[prop(optional)]
    on_ask: Option<Callback<()>>,
) -> impl IntoView {
    let worker = use_worker();
    let state = RwSignal::new_local(State::Idle);
    let ask = {
        let file = file.clone();
        move |_| {
            if matches!(state.get_untracked(), State::Working | State::Shown(_)) {
                return;
            }
            state.set(State::Working);
            if let Some(on_ask) = on_ask {
                on_ask.run(());
            }
            let (worker, file, photo, classes) = (
                worker.clone(),
                file.clone(),
                Rc::clone(&photo),
                classes.clone(),
            );
            leptos::task::spawn_local(async move {
                let result = worker.explain(&file, model, &photo, classes).await;
                state.try_set(match result {
                    Ok(heats) => State::Shown(
                        heats
                            .into_iter()
                            .map(|(h, png)| (h, ObjectUrl::of_bytes(&png).ok()))
                            .collect(),
                    ),
                    Err(e) => State::Failed(e),
                });
            });
        }
    };
    let body = move || {
        match state.get() {
        State::Idle => ().into_any(),
        State::Working => {
            view! { <p class="muted small">"Following the gradients back to the last convolution…"</p> }
                .into_any()
        }
        State::Failed(e) => view! { <p class="file-error" role="alert">{e}</p> }.into_any(),
        State::Shown(heats) => {
            let figures = heats
                .into_iter()
                .enumerate()
                .map(|(i, (h, url))| {
                    let caption = captions.get(i).cloned().unwrap_or_else(|| "looks for".into());
                    let quadrants = serde_json::to_string(&h.quadrants).unwrap_or_default();
                    view! {
                        <figure
                            class="gradcam"
                            data-testid="gradcam"
                            data-class=h.heat.class
                            data-label=h.label.clone()
                            data-peak=h.heat.peak
                            data-grid=format!("{}x{}", h.heat.width, h.heat.height)
                            data-quadrants=quadrants
                        >
                            <img src=url.as_ref().map(ObjectUrl::to_string) alt=format!("Where the model looks for {}", h.label) />
                            <figcaption>
                                {caption}" "<strong>{h.label.clone()}</strong>
                                {format!(" ({:.0}%)", f64::from(h.prob) * 100.0)}
                            </figcaption>
                        </figure>
                    }
                })
                .collect_view();
            view! {
                <div class="gradcam-row">{figures}</div>
                <p class="muted small">
                    "Red is where the evidence for the class is strongest in the last "
                    "convolution's maps (Grad-CAM): the part of the photo the answer rests on."
                </p>
            }
            .into_any()
        }
    }
    };
    view! {
        <div class="where-it-looks">
            <button
                type="button"
                class="link-button"
                data-testid="explain-button"
                on:click=ask
                prop:disabled=move || matches!(state.get(), State::Working)
            >
                "Where did it look?"
            </button>
            {body}
        </div>
    }
}
