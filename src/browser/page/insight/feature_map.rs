//! The feature space: every photo of the run as a point on the first two principal axes of the
//! pooled 1280-d features (PCA in the engine), coloured by class, before training and after it
//! (when the backbone learned), validation mistakes ringed. Hovering or tapping a point shows
//! its photo. Computed in the worker when asked for (a forward pass over every photo).

use leptos::prelude::*;

use crate::browser::object_url::ObjectUrl;
use crate::browser::page::state::client::use_worker;
use crate::engine::data::Sample;
use crate::engine::data::preprocess::{center_crop, resize_shorter};
use crate::engine::insight::pca::{FeatureSpace, Projection};

/// Side of one map, in SVG units.
const SIDE: f32 = 260.0;
const MARGIN: f32 = 12.0;
/// Class colours (cycled), distinguishable for the common colour-vision deficiencies.
const PALETTE: [&str; 8] = [
    "#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442", "#000000",
];

fn colour(label: usize) -> &'static str {
    PALETTE[label % PALETTE.len()]
}

/// Points scaled into the square, keeping the axes' proportions (so distances mean the same
/// in both directions).
fn scaled(p: &Projection) -> Vec<(f32, f32)> {
    let span = |k: usize| {
        let lo = p.points.iter().map(|q| q[k]).fold(f32::INFINITY, f32::min);
        let hi = p
            .points
            .iter()
            .map(|q| q[k])
            .fold(f32::NEG_INFINITY, f32::max);
        (lo, hi)
    };
    let ((x0, x1), (y0, y1)) = (span(0), span(1));
    let range = (x1 - x0).max(y1 - y0).max(1e-6);
    let inner = SIDE - 2.0 * MARGIN;
    let (cx, cy) = ((x0 + x1) / 2.0, (y0 + y1) / 2.0);
    p.points
        .iter()
        .map(|q| {
            (
                SIDE / 2.0 + (q[0] - cx) / range * inner,
                // SVG's y grows downwards.
                SIDE / 2.0 - (q[1] - cy) / range * inner,
            )
        })
        .collect()
}

#[component]
fn Panel(
    title: &'static str,
    when: &'static str,
    projection: Projection,
    space: StoredValue<FeatureSpace>,
    hovered: RwSignal<Option<usize>>,
) -> impl IntoView {
    let points = scaled(&projection)
        .into_iter()
        .enumerate()
        .map(|(i, (x, y))| {
            let photo = space.with_value(|s| s.photos[i].clone());
            let mistake = photo.predicted.is_some_and(|p| p != photo.label);
            let fill = colour(photo.label);
            let shape = if photo.val {
                let d = 4.0;
                view! {
                    <rect
                        x=x - d y=y - d width=2.0 * d height=2.0 * d fill=fill
                        stroke=if mistake { "#d00000" } else { "white" }
                        stroke-width=if mistake { "2.5" } else { "1" }
                    />
                }
                .into_any()
            } else {
                view! { <circle cx=x cy=y r="4" fill=fill stroke="white" stroke-width="1" /> }
                    .into_any()
            };
            view! {
                <g
                    class="feature-point"
                    data-testid="feature-point"
                    data-class=photo.label
                    data-val=photo.val.to_string()
                    data-mistake=mistake.to_string()
                    tabindex="0"
                    on:mouseenter=move |_| hovered.set(Some(i))
                    on:focus=move |_| hovered.set(Some(i))
                    on:click=move |_| hovered.set(Some(i))
                >
                    <title>{photo.file.clone()}</title>
                    {shape}
                </g>
            }
        })
        .collect_view();
    view! {
        <figure class="feature-panel" data-testid="feature-panel" data-when=when>
            <svg viewBox=format!("0 0 {SIDE} {SIDE}") role="img" aria-label=title>
                <rect x="0" y="0" width=SIDE height=SIDE class="feature-frame" />
                {points}
            </svg>
            <figcaption>
                <strong>{title}</strong>
                {format!(
                    " (the two axes hold {:.0}% of the features' variance)",
                    (projection.explained[0] + projection.explained[1]) * 100.0
                )}
            </figcaption>
        </figure>
    }
}

/// The map of a run. `samples` are the run's photos in the order the worker got them (train,
/// then val), or empty for a report from a saved project (then only names are shown).
#[component]
fn FeatureMap(space: FeatureSpace, classes: Vec<String>, samples: Vec<Sample>) -> impl IntoView {
    let hovered = RwSignal::new(None::<usize>);
    let count = space.photos.len();
    let (before, after) = (space.before.clone(), space.after.clone());
    let space = StoredValue::new(space);
    // The hovered photo's URL, held until the next one replaces it.
    let shown_url = StoredValue::new(None::<ObjectUrl>);
    let legend = classes
        .iter()
        .enumerate()
        .map(|(i, c)| {
            view! {
                <li><span class="swatch" style:background=colour(i)></span>{c.clone()}</li>
            }
        })
        .collect_view();
    let class_name = move |label: usize| classes.get(label).cloned().unwrap_or_default();
    let photo = move || {
        let i = hovered.get()?;
        let p = space.with_value(|s| s.photos.get(i).cloned())?;
        let url = samples
            .get(i)
            .filter(|s| s.file == p.file)
            .and_then(|s| ObjectUrl::png(&center_crop(&resize_shorter(&s.image, 160), 160)));
        shown_url.set_value(url.clone());
        let said = p
            .predicted
            .map(|q| format!("; the model said {}", class_name(q)))
            .unwrap_or_default();
        let kind = if p.val { "checking" } else { "learning" };
        Some(view! {
            <figure class="feature-photo" data-testid="feature-photo" data-file=p.file.clone()>
                {url.map(|u| view! { <img src=u.to_string() alt=p.file.clone() /> })}
                <figcaption>
                    {format!("{}: {} ({kind} photo){said}", p.file, class_name(p.label))}
                </figcaption>
            </figure>
        })
    };
    view! {
        <section class="feature-map" data-testid="feature-map" data-points=count>
            <h4>"Your photos in the network's feature space"</h4>
            <p class="muted small">
                "Each dot is one photo, placed by its 1280 pooled features squeezed onto the two "
                "directions where they differ most (PCA). Photos of one class that sit together "
                "are easy to tell apart. Squares are checking photos; a red edge marks a mistake."
            </p>
            <ul class="feature-legend">{legend}</ul>
            <div class="feature-panels">
                <Panel title="Before training" when="before" projection=before space hovered />
                {match after {
                    Some(after) => view! {
                        <Panel title="After training" when="after" projection=after space hovered />
                    }
                    .into_any(),
                    None => view! {
                        <p class="muted small feature-same">
                            "Only the head learned, so the features did not change: the head "
                            "draws its boundary in this same space."
                        </p>
                    }
                    .into_any(),
                }}
            </div>
            {photo}
        </section>
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Asked {
    No,
    Working,
    Done(FeatureSpace),
    Failed(String),
}

/// The button that asks the worker for the last run's feature map, then the map.
#[component]
pub fn FeatureSpaceView(classes: Vec<String>, samples: Vec<Sample>) -> impl IntoView {
    let worker = use_worker();
    let asked = RwSignal::new(Asked::No);
    let ask = move |_| {
        if matches!(asked.get_untracked(), Asked::Working | Asked::Done(_)) {
            return;
        }
        asked.set(Asked::Working);
        let worker = worker.clone();
        leptos::task::spawn_local(async move {
            let result = worker.feature_space().await;
            asked.try_set(match result {
                Ok(space) => Asked::Done(space),
                Err(e) => Asked::Failed(e),
            });
        });
    };
    let body = move || match asked.get() {
        Asked::No => ().into_any(),
        Asked::Working => view! {
            <p class="muted small">"Running every photo through the network, before and after…"</p>
        }
        .into_any(),
        Asked::Failed(e) => view! { <p class="file-error" role="alert">{e}</p> }.into_any(),
        Asked::Done(space) => view! {
            <FeatureMap space classes=classes.clone() samples=samples.clone() />
        }
        .into_any(),
    };
    view! {
        <div class="feature-space">
            <button
                type="button"
                class="button secondary"
                data-testid="feature-map-button"
                prop:disabled=move || matches!(asked.get(), Asked::Working | Asked::Done(_))
                on:click=ask
            >
                "Show the photos in the feature space"
            </button>
            {body}
        </div>
    }
}
