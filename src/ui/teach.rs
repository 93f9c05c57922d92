//! Teaching the network new classes: class cards that gather images, the train panel (strategy,
//! epochs, augmentation, seed; progress, per-epoch table, confusion matrix), and the trained
//! model's own predictor with export and import. Training runs on the main thread and yields at
//! every GPU read, so the page keeps painting between steps.

use std::cell::Cell;
use std::collections::HashMap;
use std::rc::Rc;

use leptos::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{File, HtmlInputElement, HtmlSelectElement, Url};

use super::js;
use crate::engine::advisor::{self, Domain};
use crate::engine::data::{self, Dataset, Sample};
use crate::engine::inference::Predictor;
use crate::engine::model::LITE0;
use crate::engine::training::{self, EpochReport, Progress, Strategy, TrainConfig, TrainReport};
use crate::engine::weights::{self, META_CLASSES};

/// Share of each class held out for validation.
const VAL_FRACTION: f64 = 0.2;
/// Thumbnails shown per class card.
const MAX_THUMBS: usize = 12;
/// Classes shown per prediction of the trained model.
const TOP_K: usize = 3;

/// One class: its name, its decoded images and their thumbnails (object URLs).
#[derive(Clone, Copy)]
struct ClassCard {
    id: u64,
    name: RwSignal<String>,
    samples: StoredValue<Vec<Sample>, LocalStorage>,
    count: RwSignal<usize>,
    thumbs: RwSignal<Vec<String>>,
}

impl ClassCard {
    fn new(id: u64, name: String) -> Self {
        Self {
            id,
            name: RwSignal::new(name),
            samples: StoredValue::new_local(Vec::new()),
            count: RwSignal::new(0),
            thumbs: RwSignal::new(Vec::new()),
        }
    }
}

/// A rejected file and why.
#[derive(Clone, Debug, PartialEq)]
struct FileError {
    file: String,
    message: String,
}

#[derive(Clone, Debug, PartialEq)]
enum TrainState {
    Idle,
    Running,
    Done,
    Cancelled,
    Failed(String),
}

impl TrainState {
    fn name(&self) -> &'static str {
        match self {
            TrainState::Idle => "idle",
            TrainState::Running => "running",
            TrainState::Done => "done",
            TrainState::Cancelled => "cancelled",
            TrainState::Failed(_) => "failed",
        }
    }
}

fn parse_strategy(value: &str) -> Option<Strategy> {
    [
        Strategy::Head,
        Strategy::LastBlock,
        Strategy::Gradual,
        Strategy::Full,
    ]
    .into_iter()
    .find(|s| s.name() == value)
}

fn strategy_label(strategy: Strategy) -> &'static str {
    match strategy {
        Strategy::Head => "Feature extraction (head only)",
        Strategy::LastBlock => "Fine-tune the last block",
        Strategy::Gradual => "Gradual unfreezing",
        Strategy::Full => "Full fine-tuning",
    }
}

/// Reads a file into bytes; `Err` is a message naming the file.
async fn read_file(file: &File) -> Result<Vec<u8>, String> {
    let name = file.name();
    let buffer = js::await_promise(file.array_buffer())
        .await
        .map_err(|e| format!("{name}: could not read the file: {e}"))?;
    Ok(js_sys::Uint8Array::new(&buffer).to_vec())
}

fn files_of(input: &HtmlInputElement) -> Vec<File> {
    input
        .files()
        .map(|list| (0..list.length()).filter_map(|i| list.get(i)).collect())
        .unwrap_or_default()
}

/// Decodes the files into the class; the ones that fail go to `errors`.
async fn add_files(card: ClassCard, files: Vec<File>, errors: RwSignal<Vec<FileError>>) {
    for file in files {
        let name = file.name();
        let result = match read_file(&file).await {
            Ok(bytes) => data::load_sample(&name, &bytes, 0, &LITE0).map_err(|e| e.to_string()),
            Err(message) => Err(message),
        };
        match result {
            Ok(sample) => {
                if card.samples.try_update_value(|s| s.push(sample)).is_none() {
                    return; // the class was deleted meanwhile
                }
                card.count.update(|c| *c += 1);
                if card.thumbs.with_untracked(Vec::len) < MAX_THUMBS
                    && let Ok(url) = Url::create_object_url_with_blob(&file)
                {
                    card.thumbs.update(|t| t.push(url));
                }
            }
            Err(message) => {
                let message = if message.contains(&name) {
                    message
                } else {
                    format!("{name}: {message}")
                };
                errors.update(|e| {
                    e.push(FileError {
                        file: name,
                        message,
                    })
                });
            }
        }
        // Let the count and thumbnail paint between files.
        leptos::task::tick().await;
    }
}

/// Offers `bytes` as a download named `name`.
fn download(bytes: &[u8], name: &str) -> Result<(), String> {
    let array = js_sys::Uint8Array::from(bytes);
    let parts = js_sys::Array::of1(&array);
    let blob = web_sys::Blob::new_with_u8_array_sequence(&parts).map_err(|e| js::error_text(&e))?;
    let url = Url::create_object_url_with_blob(&blob).map_err(|e| js::error_text(&e))?;
    let doc = document();
    let anchor: web_sys::HtmlAnchorElement = doc
        .create_element("a")
        .map_err(|e| js::error_text(&e))?
        .unchecked_into();
    anchor.set_href(&url);
    anchor.set_download(name);
    anchor.click();
    // Revoke later: the download has to start first.
    let revoke = wasm_bindgen::closure::Closure::once_into_js(move || {
        Url::revoke_object_url(&url).ok();
    });
    window()
        .set_timeout_with_callback_and_timeout_and_arguments_0(revoke.unchecked_ref(), 60_000)
        .ok();
    Ok(())
}

/// The trained model's top-1 on a photo.
#[derive(Clone, Debug, PartialEq)]
enum TrainedResult {
    None,
    Pending(String),
    Done {
        file: String,
        top: Vec<(String, f32)>,
    },
    Failed {
        file: String,
        message: String,
    },
}

#[component]
pub fn TeachPanel(imagenet: RwSignal<Option<Rc<Predictor>>, LocalStorage>) -> impl IntoView {
    let next_id = StoredValue::new(3u64);
    let classes = RwSignal::new(vec![
        ClassCard::new(1, "Class 1".into()),
        ClassCard::new(2, "Class 2".into()),
    ]);
    let errors = RwSignal::new(Vec::<FileError>::new());

    let total = move || classes.get().iter().map(|c| c.count.get()).sum::<usize>();
    let advice = Memo::new(move |_| {
        let n = classes.with(Vec::len);
        advisor::advise(total(), n.max(1), Domain::SimilarToImageNet)
    });
    let chosen = RwSignal::new(None::<Strategy>);
    let strategy = move || chosen.get().unwrap_or_else(|| advice.get().strategy);

    let epochs = RwSignal::new("5".to_string());
    let seed = RwSignal::new("42".to_string());
    let augment = RwSignal::new(false);

    let state = RwSignal::new(TrainState::Idle);
    let progress = RwSignal::new(0.0f64);
    let step_text = RwSignal::new(String::new());
    let rows = RwSignal::new(Vec::<EpochReport>::new());
    let report = RwSignal::new(None::<TrainReport>);
    let report_classes = RwSignal::new(Vec::<String>::new());
    let cancel = StoredValue::new_local(Rc::new(Cell::new(false)));

    let trained = RwSignal::new_local(None::<Rc<Predictor>>);
    let trained_note = RwSignal::new(String::new());
    let trained_result = RwSignal::new(TrainedResult::None);
    let model_error = RwSignal::new(None::<String>);

    let ready = move || imagenet.with(Option::is_some);
    let running = move || state.with(|s| *s == TrainState::Running);

    let add_class = move |_| {
        let id = next_id.get_value();
        next_id.set_value(id + 1);
        let n = classes.with_untracked(Vec::len) + 1;
        classes.update(|c| c.push(ClassCard::new(id, format!("Class {n}"))));
    };

    let start = move |_| {
        if running() {
            return;
        }
        let Some(base) = imagenet.get_untracked() else {
            return;
        };
        let cards = classes.get_untracked();
        let names: Vec<String> = cards.iter().map(|c| c.name.get_untracked()).collect();
        let fail = |message: String| state.set(TrainState::Failed(message));
        if cards.len() < 2 {
            return fail("Add at least two classes.".into());
        }
        if let Some(c) = cards.iter().find(|c| c.count.get_untracked() < 2) {
            return fail(format!(
                "\"{}\" needs at least 2 images (one is kept aside to check the model).",
                c.name.get_untracked()
            ));
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = names.iter().find(|n| !seen.insert(n.trim().to_lowercase())) {
            return fail(format!(
                "Two classes are called \"{dup}\"; give each its own name."
            ));
        }
        let seed_value: u64 = seed.get_untracked().trim().parse().unwrap_or(42);
        let epochs_value: usize = epochs
            .get_untracked()
            .trim()
            .parse()
            .unwrap_or(5)
            .clamp(1, 200);
        let samples: Vec<Sample> = cards
            .iter()
            .enumerate()
            .flat_map(|(label, c)| {
                c.samples.with_value(|s| {
                    s.iter()
                        .map(|s| Sample { label, ..s.clone() })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let (train, val) = data::stratified_split(samples, names.len(), VAL_FRACTION, seed_value);
        let dataset = Dataset {
            classes: names.clone(),
            train,
            val,
            skipped: Vec::new(),
        };
        let cfg = TrainConfig::new()
            .with_strategy(strategy())
            .with_epochs(epochs_value)
            .with_augment(augment.get_untracked())
            .with_seed(seed_value);
        let flag = cancel.get_value();
        flag.set(false);
        state.set(TrainState::Running);
        progress.set(0.0);
        step_text.set("Reading the images through the pretrained network…".into());
        rows.set(Vec::new());
        report.set(None);
        leptos::task::spawn_local(async move {
            // Paint "running" before the first GPU work.
            leptos::task::tick().await;
            let backbone = base.model.backbone.clone();
            let device = base.device.clone();
            let on_progress = {
                let flag = Rc::clone(&flag);
                move |p: &Progress| {
                    match p {
                        Progress::Step {
                            epoch,
                            step,
                            steps,
                            loss,
                            images_per_sec,
                            eta_seconds,
                            ..
                        } => {
                            let done = (*epoch as f64 - 1.0).max(0.0)
                                + *step as f64 / (*steps).max(1) as f64;
                            progress.set((done / epochs_value as f64).clamp(0.0, 1.0));
                            step_text.set(format!(
                                "Epoch {epoch}/{epochs_value}, step {step}/{steps}: loss {loss:.3}, {images_per_sec:.1} images/s, about {eta_seconds:.0} s left"
                            ));
                        }
                        Progress::Epoch(r) => {
                            progress.set((r.epoch as f64 / epochs_value as f64).clamp(0.0, 1.0));
                            rows.update(|rows| rows.push(r.clone()));
                        }
                    }
                    !flag.get()
                }
            };
            let result =
                training::train(&backbone, &dataset, &LITE0, &cfg, &device, on_progress).await;
            match result {
                Ok((model, r)) => {
                    let cancelled = flag.get();
                    if !r.epochs.is_empty() {
                        trained.set(Some(Rc::new(Predictor {
                            model,
                            labels: names.clone(),
                            spec: LITE0,
                            device,
                        })));
                        trained_note.set(format!("Trained here on {}", names.join(", ")));
                        trained_result.set(TrainedResult::None);
                        report_classes.set(names);
                        report.set(Some(r));
                    }
                    if cancelled {
                        step_text.set("Stopped; the best epoch so far is kept.".into());
                        state.set(TrainState::Cancelled);
                    } else {
                        progress.set(1.0);
                        step_text.set(String::new());
                        state.set(TrainState::Done);
                    }
                }
                Err(e) => state.set(TrainState::Failed(e.to_string())),
            }
        });
    };

    let on_cancel = move |_| {
        cancel.get_value().set(true);
    };

    let predict_trained = move |ev: leptos::ev::Event| {
        let input: HtmlInputElement = event_target(&ev);
        let file = files_of(&input).into_iter().next();
        input.set_value("");
        let (Some(file), Some(predictor)) = (file, trained.get_untracked()) else {
            return;
        };
        let name = file.name();
        trained_result.set(TrainedResult::Pending(name.clone()));
        leptos::task::spawn_local(async move {
            let result = match read_file(&file).await {
                Ok(bytes) => predictor
                    .predict_image(&name, &bytes, TOP_K)
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e),
            };
            trained_result.set(match result {
                Ok(p) => TrainedResult::Done {
                    file: name,
                    top: p.top.into_iter().map(|c| (c.label, c.prob)).collect(),
                },
                Err(message) => TrainedResult::Failed {
                    file: name,
                    message,
                },
            });
        });
    };

    let export = move |_| {
        let Some(predictor) = trained.get_untracked() else {
            return;
        };
        model_error.set(None);
        leptos::task::spawn_local(async move {
            let mut meta = HashMap::new();
            meta.insert(
                META_CLASSES.to_string(),
                serde_json::to_string(&predictor.labels).unwrap_or_default(),
            );
            let result = weights::export_safetensors(&predictor.model, meta)
                .await
                .map_err(|e| e.to_string())
                .and_then(|bytes| download(&bytes, "model.safetensors"));
            if let Err(e) = result {
                model_error.set(Some(format!("Export failed: {e}")));
            }
        });
    };

    let import = move |ev: leptos::ev::Event| {
        let input: HtmlInputElement = event_target(&ev);
        let file = files_of(&input).into_iter().next();
        input.set_value("");
        let (Some(file), Some(base)) = (file, imagenet.get_untracked()) else {
            return;
        };
        model_error.set(None);
        leptos::task::spawn_local(async move {
            let name = file.name();
            let result = match read_file(&file).await {
                Ok(bytes) => Predictor::from_model_file(&name, &bytes, &base.device)
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e),
            };
            match result {
                Ok(p) => {
                    trained_note.set(format!("Imported {name}: {}", p.labels.join(", ")));
                    trained_result.set(TrainedResult::None);
                    trained.set(Some(Rc::new(p)));
                }
                Err(e) => model_error.set(Some(format!("{name}: {e}"))),
            }
        });
    };

    let on_strategy = move |ev: leptos::ev::Event| {
        let select: HtmlSelectElement = event_target(&ev);
        chosen.set(parse_strategy(&select.value()));
    };

    let strategy_options = [
        Strategy::Head,
        Strategy::LastBlock,
        Strategy::Gradual,
        Strategy::Full,
    ]
    .into_iter()
    .map(|s| {
        view! {
            <option value=s.name() prop:selected=move || strategy() == s>
                {strategy_label(s)}
            </option>
        }
    })
    .collect_view();

    view! {
        <section class="card teach" aria-labelledby="teach-title" data-testid="teach-section">
            <h2 id="teach-title">"Teach new classes"</h2>
            <p class="why">
                <strong>"Transfer learning. "</strong>
                "The network already knows shapes, textures and parts of objects from a million "
                "ImageNet photos. We keep that knowledge and teach it your classes with a few "
                "examples each."
            </p>
            <div class="classes">
                <For
                    each=move || classes.get()
                    key=|c| c.id
                    children=move |card| {
                        view! { <ClassCardView card classes errors disabled=Signal::derive(move || !ready() || running()) /> }
                    }
                />
            </div>
            <button
                type="button"
                class="button secondary"
                data-testid="add-class"
                disabled=running
                on:click=add_class
            >
                "+ Add a class"
            </button>
            <Show when=move || errors.with(|e| !e.is_empty())>
                <div class="file-errors">
                    <div class="results-head">
                        <h3>"Files not added"</h3>
                        <button type="button" class="link-button" on:click=move |_| errors.set(Vec::new())>
                            "Clear"
                        </button>
                    </div>
                    <ul>
                        <For
                            each=move || errors.get()
                            key=|e| (e.file.clone(), e.message.clone())
                            children=|e| view! {
                                <li class="file-error" data-testid="file-error" data-file=e.file.clone() role="alert">
                                    {e.message}
                                </li>
                            }
                        />
                    </ul>
                </div>
            </Show>
            <p class="advice" data-testid="data-advice">
                {move || format!("{} images in {} classes. ", total(), classes.with(Vec::len))}
                {move || advice.get().why}
            </p>

            <h3>"Train"</h3>
            <div class="train-settings">
                <label class="wide">
                    "Strategy"
                    <select data-testid="strategy-select" on:change=on_strategy disabled=running>
                        {strategy_options}
                    </select>
                </label>
                <label>
                    "Epochs"
                    <input
                        type="number"
                        min="1"
                        max="200"
                        data-testid="epochs-input"
                        prop:value=move || epochs.get()
                        on:input=move |ev| epochs.set(event_target_value(&ev))
                        disabled=running
                    />
                </label>
                <label>
                    "Seed"
                    <input
                        type="number"
                        min="0"
                        data-testid="seed-input"
                        prop:value=move || seed.get()
                        on:input=move |ev| seed.set(event_target_value(&ev))
                        disabled=running
                    />
                </label>
                <label class="check">
                    <input
                        type="checkbox"
                        data-testid="augment-toggle"
                        prop:checked=move || augment.get()
                        on:change=move |ev| augment.set(event_target_checked(&ev))
                        disabled=running
                    />
                    "Augment images (random crops, flips, colour)"
                </label>
            </div>
            <p class="muted small" data-testid="strategy-why">
                {move || {
                    let a = advice.get();
                    if chosen.get().is_some_and(|c| c != a.strategy) {
                        format!("The advisor would pick {}: {}", strategy_label(a.strategy).to_lowercase(), a.why)
                    } else {
                        format!("Advisor: {}", a.why)
                    }
                }}
            </p>
            <ul class="whys">
                <li class="why">
                    <strong>"Feature extraction: "</strong>
                    "the pretrained layers stay frozen and only a new last layer learns. Few images "
                    "are enough, and it is fast because each photo goes through the big network once."
                </li>
                <li class="why">
                    <strong>"Fine-tuning: "</strong>
                    "some pretrained layers learn too, slowly, so they adapt to your photos. It needs "
                    "more images, or the network just memorises them."
                </li>
                <li class="why">
                    <strong>"Augmentation: "</strong>
                    "each epoch sees slightly changed copies (cropped, flipped, recoloured), so the "
                    "network learns the object rather than the exact pixels. Slower: nothing can be cached."
                </li>
            </ul>
            <div class="train-actions">
                <button
                    type="button"
                    class="button"
                    data-testid="train-button"
                    disabled=move || !ready() || running()
                    on:click=start
                >
                    "Train"
                </button>
                <button
                    type="button"
                    class="button secondary"
                    data-testid="cancel-button"
                    disabled=move || !running()
                    on:click=on_cancel
                >
                    "Cancel"
                </button>
            </div>
            <progress
                class="train-progress"
                data-testid="train-progress"
                max="1"
                prop:value=move || progress.get()
                data-value=move || format!("{:.4}", progress.get())
            ></progress>
            <p
                class="train-status"
                data-testid="train-status"
                data-state=move || state.with(TrainState::name)
                role="status"
                class:error=move || matches!(state.get(), TrainState::Failed(_))
            >
                {move || match state.get() {
                    TrainState::Idle => "Not trained yet.".to_string(),
                    TrainState::Running => format!("Training… {}", step_text.get()),
                    TrainState::Done => "Done.".to_string(),
                    TrainState::Cancelled => step_text.get(),
                    TrainState::Failed(message) => format!("Training stopped: {message}"),
                }}
            </p>
            <Show when=move || rows.with(|r| !r.is_empty())>
                <div class="table-scroll">
                    <table class="epochs" data-testid="epoch-table">
                        <thead>
                            <tr>
                                <th>"Epoch"</th>
                                <th>"Train loss"</th>
                                <th>"Train acc."</th>
                                <th>"Val loss"</th>
                                <th>"Val acc."</th>
                                <th>"Time"</th>
                            </tr>
                        </thead>
                        <tbody>
                            <For
                                each=move || rows.get()
                                key=|r| r.epoch
                                children=|r| view! {
                                    <tr data-testid="epoch-row" data-epoch=r.epoch data-seconds=format!("{:.3}", r.seconds)>
                                        <td>{r.epoch}</td>
                                        <td data-train-loss=r.train_loss.to_string()>{format!("{:.3}", r.train_loss)}</td>
                                        <td>{format!("{:.0}%", r.train_acc * 100.0)}</td>
                                        <td data-val-loss=r.val_loss.to_string()>{format!("{:.3}", r.val_loss)}</td>
                                        <td>{format!("{:.0}%", r.val_acc * 100.0)}</td>
                                        <td>{format!("{:.1} s", r.seconds)}</td>
                                    </tr>
                                }
                            />
                        </tbody>
                    </table>
                </div>
            </Show>
            {move || report.get().map(|r| view! { <ReportView report=r classes=report_classes.get() /> })}

            <h3>"Use your model"</h3>
            <p class="muted small" data-testid="trained-model">
                {move || {
                    let note = trained_note.get();
                    if note.is_empty() { "Train a model, or import one you exported before.".to_string() } else { note }
                }}
            </p>
            <div class="train-actions">
                <label class="button" class:disabled=move || trained.with(Option::is_none)>
                    <input
                        class="visually-hidden"
                        type="file"
                        accept="image/*"
                        data-testid="trained-predict-input"
                        disabled=move || trained.with(Option::is_none)
                        on:change=predict_trained
                    />
                    "Classify a photo"
                </label>
                <button
                    type="button"
                    class="button secondary"
                    data-testid="export-model"
                    disabled=move || trained.with(Option::is_none)
                    on:click=export
                >
                    "Export model"
                </button>
                <label class="button secondary" class:disabled=move || !ready()>
                    <input
                        class="visually-hidden"
                        type="file"
                        accept=".safetensors"
                        data-testid="import-model"
                        disabled=move || !ready()
                        on:change=import
                    />
                    "Import model"
                </label>
            </div>
            {move || model_error.get().map(|e| view! { <p class="file-error" role="alert">{e}</p> })}
            {move || match trained_result.get() {
                TrainedResult::None => ().into_any(),
                TrainedResult::Pending(file) => view! { <p class="muted">{format!("Classifying {file}…")}</p> }.into_any(),
                TrainedResult::Failed { file, message } => view! {
                    <p class="file-error" data-testid="file-error" data-file=file role="alert">{message}</p>
                }.into_any(),
                TrainedResult::Done { file, top } => {
                    let items = top
                        .into_iter()
                        .enumerate()
                        .map(|(rank, (label, prob))| {
                            let first = rank == 0;
                            let percent = f64::from(prob) * 100.0;
                            view! {
                                <li class="bar" class:top=first>
                                    <span
                                        class="bar-label"
                                        data-testid=first.then_some("trained-top1")
                                        data-prob=first.then(|| prob.to_string())
                                        data-file=first.then(|| file.clone())
                                    >
                                        {label}
                                    </span>
                                    <span class="bar-value">{format!("{percent:.1}%")}</span>
                                    <span class="bar-track" aria-hidden="true">
                                        <span class="bar-fill" style:width=format!("{percent:.2}%")></span>
                                    </span>
                                </li>
                            }
                        })
                        .collect_view();
                    view! { <p class="result-file">{file.clone()}</p><ol class="bars">{items}</ol> }.into_any()
                }
            }}
        </section>
    }
}

/// Validation accuracy, per-class accuracy and the confusion matrix of the best epoch.
#[component]
fn ReportView(report: TrainReport, classes: Vec<String>) -> impl IntoView {
    let head = classes
        .iter()
        .map(|c| view! { <th scope="col">{c.clone()}</th> })
        .collect_view();
    let body = report
        .confusion
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let cells = row
                .iter()
                .enumerate()
                .map(|(j, n)| view! { <td class:diag=i == j>{*n}</td> })
                .collect_view();
            let acc = report.per_class_acc.get(i).copied().unwrap_or(0.0);
            view! {
                <tr>
                    <th scope="row">{classes.get(i).cloned().unwrap_or_default()}</th>
                    {cells}
                    <td data-testid="class-accuracy" data-value=acc.to_string()>{format!("{:.0}%", acc * 100.0)}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <p class="val-accuracy" data-testid="val-accuracy" data-value=report.val_acc.to_string()>
            {format!(
                "Validation accuracy: {:.0}% (best epoch {}, {:.1} s in all)",
                report.val_acc * 100.0,
                report.best_epoch,
                report.seconds_total
            )}
        </p>
        <div class="table-scroll">
            <table class="confusion" data-testid="confusion-matrix">
                <caption>"Rows: the true class. Columns: what the model said."</caption>
                <thead>
                    <tr><th></th>{head}<th scope="col">"Accuracy"</th></tr>
                </thead>
                <tbody>{body}</tbody>
            </table>
        </div>
    }
}

/// One class card: name, file picker, count, thumbnails, delete.
#[component]
fn ClassCardView(
    card: ClassCard,
    classes: RwSignal<Vec<ClassCard>>,
    errors: RwSignal<Vec<FileError>>,
    disabled: Signal<bool>,
) -> impl IntoView {
    let on_files = move |ev: leptos::ev::Event| {
        let input: HtmlInputElement = event_target(&ev);
        let files = files_of(&input);
        input.set_value("");
        leptos::task::spawn_local(add_files(card, files, errors));
    };
    let delete = move |_| {
        for url in card.thumbs.get_untracked() {
            Url::revoke_object_url(&url).ok();
        }
        classes.update(|c| c.retain(|c| c.id != card.id));
    };
    let can_delete = move || classes.with(|c| c.len() > 2);
    view! {
        <div class="class-card" data-testid="class-card" data-class-name=move || card.name.get()>
            <div class="class-head">
                <input
                    class="class-name"
                    type="text"
                    aria-label="Class name"
                    data-testid="class-name-input"
                    prop:value=move || card.name.get()
                    on:input=move |ev| card.name.set(event_target_value(&ev))
                    disabled=disabled
                />
                <button
                    type="button"
                    class="link-button"
                    aria-label=move || format!("Delete class {}", card.name.get())
                    disabled=move || disabled.get() || !can_delete()
                    on:click=delete
                >
                    "Delete"
                </button>
            </div>
            <p class="muted small">
                <span data-testid="class-count">{move || card.count.get()}</span>
                " images"
            </p>
            <div class="thumbs">
                <For
                    each=move || card.thumbs.get()
                    key=|u| u.clone()
                    children=|u| view! { <img class="thumb" src=u alt="" /> }
                />
            </div>
            <label class="button secondary small-button" class:disabled=disabled>
                <input
                    class="visually-hidden"
                    type="file"
                    multiple
                    accept="image/*"
                    data-testid="class-file-input"
                    disabled=disabled
                    on:change=on_files
                />
                "Add images"
            </label>
        </div>
    }
}
