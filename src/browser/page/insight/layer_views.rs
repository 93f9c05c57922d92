//! "What each layer sees": for a photo the user picks, the pretrained network's feature maps at
//! four depths (stem, an early, a middle and the last block), a few of the most active channels
//! each, computed in the worker; with a line on what each depth answers to and whether the
//! chosen strategy trains it.

use leptos::prelude::*;

use crate::browser::js;
use crate::browser::object_url::ObjectUrl;
use crate::browser::page::setup::pretrained::Pretrained;
use crate::browser::page::state::client::use_worker;
use crate::browser::page::state::file_button::FileButton;
use crate::engine::insight::layer_views::LayerView;
use crate::engine::train::plan::{Stage, Unfreeze};

#[derive(Clone, Debug, PartialEq)]
enum State {
    Idle,
    Working(String),
    Shown(String, Vec<(LayerView, Option<ObjectUrl>)>),
    Failed(String),
}

/// The most the run unfreezes over its stages (gradual ends with the most).
fn widest(stages: &[Stage]) -> Unfreeze {
    stages
        .iter()
        .map(|s| s.unfreeze)
        .max_by_key(|u| match u {
            Unfreeze::Blocks(n) => *n,
            Unfreeze::All => usize::MAX,
        })
        .unwrap_or(Unfreeze::Blocks(0))
}

#[component]
pub fn LayerViews(stages: Signal<Vec<Stage>>) -> impl IntoView {
    let worker = use_worker();
    let pretrained = Pretrained::get();
    let state = RwSignal::new_local(State::Idle);
    let pick = move |files: Vec<web_sys::File>| {
        let Some(file) = files.into_iter().next() else {
            return;
        };
        let worker = worker.clone();
        let name = file.name();
        state.set(State::Working(name.clone()));
        leptos::task::spawn_local(async move {
            let max = crate::engine::limits::MAX_PHOTO_BYTES;
            let result = match js::read_file(&file, &name, max).await {
                Ok(bytes) => worker.layers(&name, &bytes).await,
                Err(e) => Err(e),
            };
            state.try_set(match result {
                Ok(views) => State::Shown(
                    name,
                    views
                        .into_iter()
                        .map(|(v, png)| (v, ObjectUrl::of_bytes(&png).ok()))
                        .collect(),
                ),
                Err(e) => State::Failed(e),
            });
        });
    };
    let body = move || match state.get() {
        State::Idle => ().into_any(),
        State::Working(file) => {
            view! { <p class="muted small">{format!("Running {file} through the network…")}</p> }
                .into_any()
        }
        State::Failed(e) => view! { <p class="file-error" role="alert">{e}</p> }.into_any(),
        State::Shown(file, views) => {
            let spec = pretrained
                .loaded
                .get()
                .unwrap_or(pretrained.chosen.get())
                .spec();
            let unfreeze = widest(&stages.get());
            let rows = views
                .into_iter()
                .map(|(v, url)| {
                    let trains = v.depth.trains(spec, unfreeze);
                    let place = match v.block {
                        None => "the first convolution".to_string(),
                        Some(b) => format!("block {b}"),
                    };
                    let size = format!("{}×{}", v.width, v.height);
                    view! {
                        <li
                            class="layer-view"
                            data-testid="layer-view"
                            data-depth=v.depth.name()
                            data-channels=v.channels
                            data-size=size.clone()
                            data-trains=trains.to_string()
                        >
                            <img src=url.as_ref().map(ObjectUrl::to_string) alt=format!("{} channels of {}", v.shown.len(), v.depth.name()) />
                            <div>
                                <strong>{v.depth.name()}</strong>
                                <span class="muted small">
                                    {format!(
                                        " ({place}: {} maps of {size}; the {} most active shown)",
                                        v.channels,
                                        v.shown.len(),
                                    )}
                                </span>
                                <p class="small">{v.depth.lesson()}</p>
                                <p class="small layer-view-state">
                                    {if trains {
                                        "✱ Your strategy trains this layer."
                                    } else {
                                        "❄ Frozen in your strategy: it keeps its ImageNet weights."
                                    }}
                                </p>
                            </div>
                        </li>
                    }
                })
                .collect_view();
            view! {
                <p class="muted small">{format!("{file}, through {}:", spec.name)}</p>
                <ol class="layer-views">{rows}</ol>
            }
            .into_any()
        }
    };
    view! {
        <section class="layer-views-panel" data-testid="layer-views">
            <h4>"What each layer sees"</h4>
            <p class="muted small">
                "Pick one of your photos to see it as the network does: the first layers answer to "
                "edges and colours, the last ones to whole things."
            </p>
            <FileButton
                label="Pick a photo"
                testid="layers-input"
                accept=crate::engine::data::ACCEPT_IMAGES
                on_pick=pick
            />
            {body}
        </section>
    }
}
