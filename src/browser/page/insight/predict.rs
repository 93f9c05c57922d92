//! Picking or dropping photos and showing each one's top-5 ImageNet classes. The worker decodes
//! and classifies them (the page never decodes a big photo); files go one at a time in arrival
//! order, so the device never runs two forward passes at once; a file that fails gets its own
//! message and the rest carry on.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;

use leptos::ev;
use leptos::prelude::*;
use wasm_bindgen::JsValue;
use web_sys::{DragEvent, File, FileList, HtmlInputElement};

use crate::app::protocol::Which;
use crate::browser::js;
use crate::browser::object_url::ObjectUrl;
use crate::browser::page::insight::explain::WhereItLooks;
use crate::browser::page::state::client::{Photo, WorkerClient, WorkerStatus, use_worker};

/// Classes shown per photo.
const TOP_K: usize = 5;

/// A photo's state on the page.
#[derive(Clone, Debug, PartialEq)]
enum Outcome {
    Pending,
    Done {
        top: Vec<Bar>,
        ms: f64,
        /// The photo file, for "Where did it look?".
        bytes: Arc<Vec<u8>>,
    },
    Failed(String),
}

#[derive(Clone, Debug, PartialEq)]
struct Bar {
    index: usize,
    label: String,
    prob: f32,
}

/// One result card. `ArcRwSignal` so a card's state is freed with the card.
#[derive(Clone)]
struct Entry {
    id: u64,
    file: String,
    url: Option<ObjectUrl>,
    outcome: ArcRwSignal<Outcome>,
}

struct Job {
    file: File,
    entry: Entry,
}

/// The photos waiting for the worker, shared by the file input and drag-and-drop.
struct PhotoQueue {
    worker: Rc<WorkerClient>,
    entries: RwSignal<Vec<Entry>>,
    first_ms: RwSignal<Option<f64>>,
    jobs: RefCell<VecDeque<Job>>,
    busy: Cell<bool>,
    next_id: Cell<u64>,
}

impl PhotoQueue {
    /// Adds the files as pending cards (newest batch on top) and starts the worker if idle.
    fn add(self: &Rc<Self>, files: &FileList) {
        if self
            .worker
            .status
            .with_untracked(|s| *s != WorkerStatus::Ready)
        {
            return;
        }
        let mut batch = Vec::new();
        for file in (0..files.length()).filter_map(|i| files.get(i)) {
            let id = self.next_id.get();
            self.next_id.set(id + 1);
            let entry = Entry {
                id,
                file: file.name(),
                url: ObjectUrl::of_blob(&file).ok(),
                outcome: ArcRwSignal::new(Outcome::Pending),
            };
            batch.push(entry.clone());
            self.jobs.borrow_mut().push_back(Job { file, entry });
        }
        if batch.is_empty() {
            return;
        }
        self.entries.update(|entries| {
            batch.append(entries);
            *entries = batch;
        });
        if !self.busy.replace(true) {
            leptos::task::spawn_local(Rc::clone(self).drain());
        }
    }

    async fn drain(self: Rc<Self>) {
        loop {
            let next = self.jobs.borrow_mut().pop_front();
            let Some(Job { file, entry }) = next else {
                break;
            };
            let started = js::now_ms();
            match classify(&self.worker, &file).await {
                Ok((top, bytes)) => {
                    entry.outcome.set(Outcome::Done {
                        top,
                        ms: js::now_ms() - started,
                        bytes,
                    });
                    if self.first_ms.get_untracked().is_none() {
                        // Wait for the card to render so the figure is "page open to result shown".
                        crate::browser::js::next_task().await;
                        let ms = js::now_ms();
                        self.first_ms.set(Some(ms));
                        js_sys::Reflect::set(
                            &window(),
                            &"__firstPredictionMs".into(),
                            &JsValue::from_f64(ms),
                        )
                        .ok();
                    }
                }
                Err(message) => {
                    entry.outcome.set(Outcome::Failed(message));
                }
            }
        }
        self.busy.set(false);
    }
}

/// Reads the file and runs the model; `Err` is the message for the user (it names the file).
async fn classify(
    worker: &Rc<WorkerClient>,
    file: &File,
) -> Result<(Vec<Bar>, Arc<Vec<u8>>), String> {
    let name = file.name();
    let bytes = js::read_file(file, &name, crate::engine::limits::MAX_PHOTO_BYTES).await?;
    let top = worker.classify(&name, &bytes, TOP_K).await?;
    let bars = top
        .into_iter()
        .map(|c| Bar {
            index: c.index,
            label: c.label,
            prob: c.prob,
        })
        .collect();
    Ok((bars, Arc::new(bytes)))
}

/// The file picker, the drop target (the whole window) and the result cards.
#[component]
pub fn PredictPanel() -> impl IntoView {
    let entries = RwSignal::new(Vec::<Entry>::new());
    let first_ms = RwSignal::new(None::<f64>);
    let dragging = RwSignal::new(false);
    let worker = use_worker();
    let status = worker.status;
    let ready = move || status.with(|s| *s == WorkerStatus::Ready);
    let queue = Rc::new(PhotoQueue {
        worker,
        entries,
        first_ms,
        jobs: RefCell::default(),
        busy: Cell::new(false),
        next_id: Cell::new(0),
    });

    // Dropping anywhere on the page works; without this the browser would open the file instead.
    window_event_listener(ev::dragover, move |ev: DragEvent| {
        ev.prevent_default();
        if let Some(transfer) = ev.data_transfer() {
            transfer.set_drop_effect(if ready() { "copy" } else { "none" });
        }
        dragging.set(true);
    });
    window_event_listener(ev::dragleave, move |ev: DragEvent| {
        if ev.related_target().is_none() {
            dragging.set(false);
        }
    });
    let on_drop = Rc::clone(&queue);
    window_event_listener(ev::drop, move |ev: DragEvent| {
        ev.prevent_default();
        dragging.set(false);
        if let Some(files) = ev.data_transfer().and_then(|t| t.files()) {
            on_drop.add(&files);
        }
    });

    let on_change = move |ev: ev::Event| {
        let input: HtmlInputElement = event_target(&ev);
        if let Some(files) = input.files() {
            queue.add(&files);
        }
        // Lets the same file be picked again.
        input.set_value("");
    };

    let clear = move |_| entries.set(Vec::new());

    view! {
        <section class="card" aria-labelledby="predict-title">
            <h2 id="predict-title">"Classify photos"</h2>
            <label
                class="drop-zone"
                class:dragging=move || dragging.get() && ready()
                class:disabled=move || !ready()
            >
                <input
                    class="visually-hidden"
                    type="file"
                    multiple
                    accept="image/*"
                    data-testid="predict-input"
                    disabled=move || !ready()
                    on:change=on_change
                />
                <span class="button">"Choose photos"</span>
                <span class="drop-hint">
                    {move || {
                        if ready() {
                            "or drop them anywhere on the page"
                        } else {
                            "this needs the weights above"
                        }
                    }}
                </span>
            </label>
            <Show when=move || first_ms.get().is_some()>
                <p
                    class="muted small"
                    data-testid="first-prediction-ms"
                    // `round`, as the page's `__firstPredictionMs` is read (JS `Math.round`):
                    // `{:.0}` rounds half to even, so x.5 ms came out one lower.
                    data-ms=move || first_ms.get().map(|ms| format!("{}", ms.round()))
                >
                    {move || {
                        first_ms
                            .get()
                            .map(|ms| format!("First result {:.1} s after the page opened.", ms / 1000.0))
                    }}
                </p>
            </Show>
            <Show when=move || entries.with(|e| !e.is_empty())>
                <div class="results-head">
                    <h2>"Results"</h2>
                    <button type="button" class="link-button" on:click=clear>
                        "Clear"
                    </button>
                </div>
            </Show>
            <ul class="results">
                <For
                    each=move || entries.get()
                    key=|entry| entry.id
                    children=move |entry| view! { <ResultCard entry /> }
                />
            </ul>
        </section>
    }
}

/// One photo: the picture, then its top-5 bars, or the reason it was rejected.
#[component]
fn ResultCard(entry: Entry) -> impl IntoView {
    let Entry {
        file, url, outcome, ..
    } = entry;
    let phase = {
        let outcome = outcome.clone();
        move || match outcome.get() {
            Outcome::Pending => "busy",
            Outcome::Done { .. } => "ready",
            Outcome::Failed(_) => "error",
        }
    };
    let picture = {
        let (outcome, file) = (outcome.clone(), file.clone());
        move || {
            let failed = matches!(outcome.get(), Outcome::Failed(_));
            url.clone().filter(|_| !failed).map(
                |src| view! { <img class="result-image" src=src.to_string() alt=file.clone() /> },
            )
        }
    };
    let body = {
        let file = file.clone();
        move || match outcome.get() {
            Outcome::Pending => view! { <p class="muted">"Classifying…"</p> }.into_any(),
            Outcome::Done { top, ms, bytes } => {
                let bars = top
                    .into_iter()
                    .enumerate()
                    .map(|(rank, bar)| view! { <BarRow bar rank file=file.clone() /> })
                    .collect_view();
                let photo = Rc::new(Photo::File(bytes));
                view! {
                    <ol class="bars">{bars}</ol>
                    <p class="muted small">{format!("Classified in {}", format_ms(ms))}</p>
                    <WhereItLooks
                        file=file.clone()
                        model=Which::ImageNet
                        photo
                        captions=vec!["Evidence for".to_string()]
                    />
                }
                .into_any()
            }
            Outcome::Failed(message) => view! {
                <p class="file-error" data-testid="file-error" data-file=file.clone() role="alert">
                    {message}
                </p>
            }
            .into_any(),
        }
    };
    view! {
        <li class="result" data-phase=phase>
            {picture}
            <div class="result-body">
                <h3 class="result-file">{file}</h3>
                {body}
            </div>
        </li>
    }
}

/// "412 ms" below a second, "5.9 s" above.
fn format_ms(ms: f64) -> String {
    if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{:.1} s", ms / 1000.0)
    }
}

/// A class as a labelled horizontal bar; the top-1 carries the test id and its probability.
#[component]
fn BarRow(bar: Bar, rank: usize, file: String) -> impl IntoView {
    let percent = f64::from(bar.prob) * 100.0;
    let shown = if percent < 0.1 {
        "<0.1%".to_string()
    } else {
        format!("{percent:.1}%")
    };
    let top1 = rank == 0;
    view! {
        <li class="bar" class:top=top1>
            <span
                class="bar-label"
                data-testid=top1.then_some("prediction-top1")
                data-prob=top1.then(|| bar.prob.to_string())
                data-index=bar.index
                data-file=top1.then_some(file)
            >
                {bar.label}
            </span>
            <span class="bar-value">{shown}</span>
            <span class="bar-track" aria-hidden="true">
                <span class="bar-fill" style:width=format!("{percent:.2}%")></span>
            </span>
        </li>
    }
}
