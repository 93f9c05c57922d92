//! A live grid of augmented versions of one of the user's images, made with the engine's own
//! augmentation and the current toggles, so students see what the network will be shown.
//! Images are PNG object URLs (no canvas needed), freed when the next batch replaces them.

use leptos::prelude::*;

use crate::browser::object_url::ObjectUrl;
use crate::browser::page::state::workspace::ClassCard;
use crate::engine::data::augment::{self, AugmentConfig};
use crate::engine::model::LITE0;

/// Views in the grid.
const VIEWS: usize = 8;

/// The `pick`-th image over all classes, in class order, as (card index, image id).
fn nth_image(cards: &[ClassCard], pick: usize) -> Option<(usize, u64)> {
    let counts: Vec<usize> = cards.iter().map(|c| c.thumbs.with(Vec::len)).collect();
    let total: usize = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let mut rest = pick % total;
    for (i, (card, n)) in cards.iter().zip(counts).enumerate() {
        if rest < n {
            return card.thumbs.with(|t| t.get(rest).map(|t| (i, t.id)));
        }
        rest -= n;
    }
    None
}

#[derive(Clone, Debug, PartialEq)]
struct Shown {
    file: String,
    class: String,
    urls: Vec<ObjectUrl>,
}

#[component]
pub fn AugmentGrid(
    classes: RwSignal<Vec<ClassCard>>,
    augmentation: Signal<AugmentConfig>,
) -> impl IntoView {
    let pick = RwSignal::new(0usize);
    let seed = RwSignal::new(1u64);
    // Only the chosen image's identity is tracked, so adding other images does no pixel work.
    let chosen = Memo::new(move |_| classes.with(|cards| nth_image(cards, pick.get())));
    let shown = RwSignal::new(None::<Shown>);

    Effect::new(move |_| {
        let cfg = augmentation.get();
        let seed = seed.get();
        let next = chosen.get().and_then(|(card, id)| {
            let card = classes.with_untracked(|cards| cards.get(card).cloned())?;
            let (file, image) = card.images.try_with_value(|images| {
                images
                    .iter()
                    .find(|i| i.id == id)
                    .map(|i| (i.file.clone(), i.sample.image.clone()))
            })??;
            let urls = augment::samples(&image, LITE0.input_size, &cfg, VIEWS, seed)
                .iter()
                .filter_map(ObjectUrl::png)
                .collect();
            Some(Shown {
                file,
                class: card.name.get_untracked(),
                urls,
            })
        });
        shown.try_set(next);
    });

    view! {
        <div class="augment" data-testid="augment-grid">
            {move || match shown.get() {
                None => view! {
                    <p class="muted small">"Add an image to a class to see what augmentation does to it."</p>
                }
                .into_any(),
                Some(s) => {
                    let file = s.file.clone();
                    let items = s
                        .urls
                        .iter()
                        .enumerate()
                        .map(|(i, url)| {
                            let alt = format!("Augmented version {} of {}", i + 1, file);
                            view! {
                                <li>
                                    <img class="augment-view" src=url.to_string() alt=alt data-testid="augment-view" />
                                </li>
                            }
                        })
                        .collect_view();
                    view! {
                        <p class="small">
                            {format!(
                                "{VIEWS} random versions of {} ({}), as the network sees them in {VIEWS} different epochs:",
                                s.file, s.class
                            )}
                        </p>
                        <ul class="augment-grid">{items}</ul>
                    }
                    .into_any()
                }
            }}
            <div class="train-actions">
                <button
                    type="button"
                    class="button secondary small-button"
                    data-testid="augment-next-image"
                    disabled=move || chosen.with(Option::is_none)
                    on:click=move |_| pick.update(|p| *p += 1)
                >
                    "Another image"
                </button>
                <button
                    type="button"
                    class="button secondary small-button"
                    data-testid="augment-reshuffle"
                    disabled=move || chosen.with(Option::is_none)
                    on:click=move |_| seed.update(|s| *s += 1)
                >
                    "Shuffle again"
                </button>
            </div>
        </div>
    }
}
