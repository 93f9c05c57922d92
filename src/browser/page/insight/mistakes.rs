//! The validation images the trained model got wrong, with what it said: the quickest way for
//! students to spot a pattern (a background, the lighting, a mislabelled photo).

use leptos::prelude::*;

use std::rc::Rc;

use crate::app::protocol::Which;
use crate::browser::object_url::ObjectUrl;
use crate::browser::page::insight::explain::WhereItLooks;
use crate::browser::page::state::client::Photo;
use crate::engine::data::Sample;
use crate::engine::data::preprocess::{center_crop, resize_shorter};

/// Side of a thumbnail, in pixels (about twice its CSS size, for sharp high-DPI screens).
const THUMB: u32 = 160;
/// Mistakes shown at most; encoding is per image, so a huge validation set stays quick.
const MAX_SHOWN: usize = 60;

#[derive(Clone, Debug, PartialEq)]
struct Mistake {
    file: String,
    truth: String,
    said: String,
    url: Option<ObjectUrl>,
    /// The photo at working size, and the true and predicted classes, for "Where did it look?".
    image: image::RgbImage,
    classes: (usize, usize),
}

/// `predicted[i]` is the model's class for `val[i]` (the order the run's validation images were
/// sent in); `classes` names the labels.
#[component]
pub fn Mistakes(
    predicted: Vec<usize>,
    val: StoredValue<Vec<Sample>>,
    classes: Vec<String>,
) -> impl IntoView {
    let name = |label: usize| {
        classes
            .get(label)
            .cloned()
            .unwrap_or_else(|| format!("class {}", label + 1))
    };
    let (total, checked, shown) = val.with_value(|val| {
        let wrong = || val.iter().zip(&predicted).filter(|(s, p)| s.label != **p);
        let shown: Vec<Mistake> = wrong()
            .take(MAX_SHOWN)
            .map(|(s, &p)| Mistake {
                file: s.file.clone(),
                truth: name(s.label),
                said: name(p),
                url: ObjectUrl::png(&center_crop(&resize_shorter(&s.image, THUMB), THUMB)),
                image: s.image.clone(),
                classes: (p, s.label),
            })
            .collect();
        (wrong().count(), val.len().min(predicted.len()), shown)
    });

    let summary = if checked == 0 {
        "No validation images to show.".to_string()
    } else if total == 0 {
        format!("No mistakes: all {checked} validation images were classified right.")
    } else if total > shown.len() {
        format!(
            "{total} of {checked} validation images were classified wrong; the first {} are shown.",
            shown.len()
        )
    } else {
        format!("{total} of {checked} validation images were classified wrong.")
    };
    let items = shown
        .into_iter()
        .map(|m| {
            let alt = format!("{}: really {}, the model said {}", m.file, m.truth, m.said);
            let (file, truth, said) = (m.file.clone(), m.truth.clone(), m.said.clone());
            let photo = Rc::new(Photo::Pixels(m.image));
            let explained = m.file.clone();
            let captions = vec![
                "Evidence for its answer,".to_string(),
                "Evidence for the truth,".to_string(),
            ];
            view! {
                <li class="mistake" data-testid="mistake" data-file=file data-true=truth data-predicted=said>
                    {m.url.map(|url| view! { <img class="mistake-image" src=url.to_string() alt=alt /> })}
                    <span class="mistake-file">{m.file}</span>
                    <span class="mistake-labels">
                        <span>"Really: "<strong>{m.truth}</strong></span>
                        <span>"Model: "<strong class="said">{m.said}</strong></span>
                    </span>
                    <WhereItLooks
                        file=explained
                        model=Which::Trained
                        photo
                        classes=vec![m.classes.0, m.classes.1]
                        captions
                    />
                </li>
            }
        })
        .collect_view();
    view! {
        <section class="mistakes" data-testid="mistakes" data-count=total aria-labelledby="mistakes-title">
            <h3 id="mistakes-title">"Mistakes"</h3>
            <p class="why small">
                "Validation photos the model got wrong. Look for a pattern: a background, the "
                "lighting, a photo in the wrong class. More photos like these usually help."
            </p>
            <p class="small">{summary}</p>
            <ul class="mistake-list">{items}</ul>
        </section>
    }
}
