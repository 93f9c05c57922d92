//! "This run in PyTorch": the run as set up now, as the lesson's code (the engine writes it,
//! [`crate::engine::train::pytorch`]), updated as the settings change. Pointing at or focusing
//! a setting lights the lines it writes; Copy, and downloads of `train.py` and of the photos'
//! split.

use leptos::html::Pre;
use leptos::prelude::*;
use wasm_bindgen::JsCast;

use crate::browser::js;
use crate::browser::page::persistence::storage;
use crate::browser::page::state::workspace::ClassCard;
use crate::engine::data;
use crate::engine::train::config::TrainConfig;
use crate::engine::train::pytorch::{self, Script};

/// The settings under the pointer or the keyboard's focus (space-separated names, as the
/// engine names them), whose lines the code lights.
#[derive(Clone, Copy)]
pub struct LitSettings(pub RwSignal<Option<String>>);

impl LitSettings {
    pub fn provide() -> Self {
        let lit = Self(RwSignal::new(None));
        provide_context(lit);
        lit
    }

    /// Follows the pointer and the focus over `data-setting` elements inside the element that
    /// takes these handlers (one listener for every setting).
    pub fn track(self, event: &web_sys::Event) {
        let setting = event
            .target()
            .and_then(|t| t.dyn_into::<web_sys::Element>().ok())
            .and_then(|el| el.closest("[data-setting]").ok().flatten())
            .and_then(|el| el.get_attribute("data-setting"));
        if self.0.with_untracked(|now| *now != setting) {
            self.0.set(setting);
        }
    }

    pub fn clear(self) {
        if self.0.with_untracked(Option::is_some) {
            self.0.set(None);
        }
    }
}

/// Whether a part written by `settings` is lit by `lit`.
fn is_lit(settings: &[&str], lit: Option<&str>) -> bool {
    lit.is_some_and(|lit| lit.split(' ').any(|name| settings.contains(&name)))
}

#[component]
pub fn PytorchPanel(
    /// The settings as a run would use them (the strategy in use filled in).
    config: Signal<TrainConfig>,
    classes: RwSignal<Vec<ClassCard>>,
) -> impl IntoView {
    let lit = expect_context::<LitSettings>().0;
    let script = Memo::new(move |_| config.with(pytorch::script).map_err(|e| e.to_string()));
    let status = RwSignal::new(String::new());
    let code: NodeRef<Pre> = NodeRef::new();
    // Bring the first lit line into the code's view (the box scrolls, not the page).
    Effect::new(move |_| {
        if lit.with(Option::is_none) {
            return;
        }
        let Some(pre) = code.get() else { return };
        if let Ok(Some(first)) = pre.query_selector(".part.lit")
            && let Ok(first) = first.dyn_into::<web_sys::HtmlElement>()
        {
            pre.set_scroll_top(first.offset_top() - 8);
        }
    });
    let text = move || script.with(|s| s.as_ref().ok().map(Script::text));
    let copy = move |_| {
        let Some(text) = text() else { return };
        let Some(clipboard) = js::get(&window().navigator(), "clipboard") else {
            status.set("This browser offers no clipboard here: use Download.".into());
            return;
        };
        leptos::task::spawn_local(async move {
            let done = match js::call_promise(&clipboard, "writeText", &text.into()) {
                Ok(p) => js::await_promise(p).await.map(|_| ()),
                Err(e) => Err(e),
            };
            status.set(match done {
                Ok(()) => "Copied.".into(),
                Err(e) => format!("Could not copy ({e}): use Download."),
            });
        });
    };
    let download = move |_| {
        if let Some(text) = text()
            && let Err(e) =
                storage::download(&js_sys::Uint8Array::from(text.as_bytes()), "train.py")
        {
            status.set(format!("Could not download ({e})."));
        }
    };
    let download_split = move |_| {
        let json = split_json(&classes.get_untracked(), &config.get_untracked());
        if let Err(e) = storage::download(&js_sys::Uint8Array::from(json.as_bytes()), "split.json")
        {
            status.set(format!("Could not download ({e})."));
        }
    };
    let parts = move || match script.get() {
        Err(e) => {
            view! { <span class="part">{format!("# No code for these settings: {e}")}</span> }
                .into_any()
        }
        Ok(script) => script
            .parts
            .into_iter()
            .map(|part| {
                let names = part.settings.join(" ");
                let settings = part.settings;
                view! {
                    <span
                        class="part"
                        class:lit=move || lit.with(|l| is_lit(&settings, l.as_deref()))
                        data-settings=names
                    >
                        {part.text}
                    </span>
                }
            })
            .collect_view()
            .into_any(),
    };
    view! {
        <details class="pytorch" data-testid="pytorch-panel">
            <summary>"This run in PyTorch"</summary>
            <p class="why small">
                "The run as you have set it up, written as PyTorch code: the same network, the same "
                "frozen and learning layers, rates, schedule, augmentation and loss. Point at a "
                "setting to light its lines. Save your project, then run "
                <code>"python train.py my-project.ftproj --split split.json"</code>
                " on any computer with PyTorch, or "
                <code>"torchrun --nproc_per_node 4 train.py ..."</code>
                " on four GPUs. It writes a model file this page can import."
            </p>
            <div class="buttons-row">
                <button type="button" class="button secondary" data-testid="pytorch-copy" on:click=copy>"Copy"</button>
                <button type="button" class="button secondary" data-testid="pytorch-download" on:click=download>
                    "Download train.py"
                </button>
                <button type="button" class="button secondary" data-testid="pytorch-split" on:click=download_split>
                    "Download split.json"
                </button>
                <span class="muted small" aria-live="polite">{move || status.get()}</span>
            </div>
            <pre class="code" node_ref=code data-testid="pytorch-code" tabindex="0">
                <code>{parts}</code>
            </pre>
        </details>
    }
}

/// The photos a run would check the model on, by class and name, as the script's `--split`
/// reads them (the engine's own draw: the same as the run's for the same photos and seed).
fn split_json(cards: &[ClassCard], cfg: &TrainConfig) -> String {
    let names: Vec<String> = cards.iter().map(|c| c.name.get_untracked()).collect();
    let mut items = Vec::new();
    for (label, card) in cards.iter().enumerate() {
        card.images.with_value(|images| {
            items.extend(images.iter().map(|i| ((label, i.file.clone()), i.val)));
        });
    }
    let (_, val) = data::split_by(
        items,
        |(label, _)| *label,
        names.len(),
        cfg.val_fraction,
        cfg.seed,
    );
    pytorch::split_json(&names, &val)
}
