//! Teaching the network new classes: class cards that gather images, the train panel (strategy,
//! epochs, augmentation, seed; progress, per-epoch table, confusion matrix), and the trained
//! model's own predictor with export and import. Training runs in a Web Worker ([`Trainer`]), so
//! the page stays responsive; this panel only sends the images and shows the worker's messages.

use std::rc::Rc;

use leptos::prelude::*;
use web_sys::HtmlInputElement;

use super::charts::{RunShape, TrainCharts};
use super::gather::{ClassCard, FileError, Gather};
use super::js;
use super::mistakes::Mistakes;
use super::project::{ProjectBar, ProjectSignals};
use super::settings::{SettingsPanel, TrainSettings};
use super::storage;
use super::trainer::{self, FromWorker, Trainer};
use super::webcam::WebcamPredict;
use crate::engine::advisor::{self, Domain};
use crate::engine::data::{self, Sample};
use crate::engine::inference::Predictor;
use crate::engine::training::{EpochReport, Progress, TrainReport};

/// The name under which a restored project's model is loaded (and told apart from imports).
const PROJECT_MODEL: &str = "your project";
/// Classes shown per prediction of the trained model.
const TOP_K: usize = 3;

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

/// The training worker's readiness, shown while it starts.
#[derive(Clone, Debug, PartialEq)]
enum WorkerState {
    Waiting,
    Starting,
    Ready,
    Failed(String),
}

/// Train and validation sets: images from a `val/` folder are the validation set when there are
/// any; otherwise a seeded stratified split holds out `fraction` of each class.
fn split_samples(
    samples: Vec<(Sample, bool)>,
    classes: usize,
    fraction: f64,
    seed: u64,
) -> (Vec<Sample>, Vec<Sample>) {
    if samples.iter().any(|(_, val)| *val) {
        let (val, train): (Vec<_>, Vec<_>) = samples.into_iter().partition(|(_, val)| *val);
        (
            train.into_iter().map(|(s, _)| s).collect(),
            val.into_iter().map(|(s, _)| s).collect(),
        )
    } else {
        let all = samples.into_iter().map(|(s, _)| s).collect();
        data::stratified_split(all, classes, fraction, seed)
    }
}

#[component]
pub fn TeachPanel(
    imagenet: RwSignal<Option<Rc<Predictor>>, LocalStorage>,
    weights_bytes: StoredValue<Option<Vec<u8>>, LocalStorage>,
) -> impl IntoView {
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
    // Everything the user sets for training, in one serde struct (saved with the project).
    let settings = RwSignal::new(TrainSettings::default());
    let strategy = move || {
        settings
            .with(TrainSettings::chosen)
            .unwrap_or_else(|| advice.get().strategy)
    };

    let state = RwSignal::new(TrainState::Idle);
    let progress = RwSignal::new(0.0f64);
    let step_text = RwSignal::new(String::new());
    let rows = RwSignal::new(Vec::<EpochReport>::new());
    let report = RwSignal::new(None::<TrainReport>);
    let report_classes = RwSignal::new(Vec::<String>::new());
    let run_epochs = StoredValue::new(1usize);
    let run_classes = StoredValue::new(Vec::<String>::new());
    // The run's validation images in the order sent to the worker (`val_predicted`'s order).
    let run_val = StoredValue::new(Vec::<Sample>::new());
    let run_shape = RwSignal::new(None::<RunShape>);
    // Steps done in the whole run, for the LR chart.
    let step_now = RwSignal::new(0usize);
    let trainer = StoredValue::new_local(None::<Rc<Trainer>>);
    // A restored project's model, until the worker exists.
    let pending_model = StoredValue::new_local(None::<Rc<Vec<u8>>>);
    let worker = RwSignal::new(WorkerState::Waiting);
    let model_bytes = RwSignal::new_local(None::<Rc<Vec<u8>>>);

    // Class names of the model in the worker (trained, imported or restored), if there is one.
    let trained = RwSignal::new(None::<Vec<String>>);
    // An imported file's bytes until the worker has accepted it.
    let pending_import = StoredValue::new_local(None::<Rc<Vec<u8>>>);
    // A live webcam frame is with the worker: the next one waits for its answer.
    let webcam_busy = RwSignal::new(false);
    let trained_note = RwSignal::new(String::new());
    let trained_result = RwSignal::new(TrainedResult::None);
    let model_error = RwSignal::new(None::<String>);

    let ready = move || imagenet.with(Option::is_some);
    let worker_ready = move || worker.with(|w| *w == WorkerState::Ready);
    let running = move || state.with(|s| *s == TrainState::Running);

    let start = move |_| {
        if running() {
            return;
        }
        if !ready() {
            return;
        }
        let cards = classes.get_untracked();
        let names: Vec<String> = cards.iter().map(|c| c.name.get_untracked()).collect();
        let fail = move |message: String| state.set(TrainState::Failed(message));
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
        let chosen = settings.get_untracked();
        let cfg = chosen.to_config(strategy());
        let Some(handle) = trainer.get_value() else {
            return fail("The training worker is not ready yet.".into());
        };
        state.set(TrainState::Running);
        progress.set(0.0);
        step_text.set("Reading the images through the pretrained network…".into());
        rows.set(Vec::new());
        report.set(None);
        step_now.set(0);
        // Gather and send the pixels in a later task: this one only repaints the panel.
        leptos::task::spawn_local(async move {
            js::next_task().await;
            let mut samples: Vec<(Sample, bool)> = Vec::new();
            for (label, c) in cards.iter().enumerate() {
                let class = c.samples().into_iter();
                samples.extend(class.map(|(s, val)| (Sample { label, ..s }, val)));
                js::next_task().await;
            }
            let (train, val) = split_samples(samples, names.len(), chosen.val_fraction(), cfg.seed);
            if val.is_empty() {
                return fail("No images are left to check the model: add more images.".into());
            }
            run_epochs.set_value(cfg.epochs);
            run_classes.set_value(names.clone());
            run_shape.set(Some(RunShape::new(&cfg, train.len())));
            let train = trainer::pixels(&train).await;
            let val_pixels = trainer::pixels(&val).await;
            handle.train(names, cfg, train, val_pixels);
            run_val.set_value(val);
        });
    };

    // The worker's messages: progress while running, then the trained model.
    let on_worker = move |message: FromWorker, buffer: Option<Vec<u8>>| match message {
        FromWorker::Started => {}
        FromWorker::Ready => worker.set(WorkerState::Ready),
        FromWorker::Progress(Progress::Features { done, total }) => {
            step_text.set(format!(
                "Reading the images through the pretrained network: {done} of {total}"
            ));
        }
        FromWorker::Progress(Progress::Step {
            epoch,
            step,
            steps,
            loss,
            images_per_sec,
            eta_seconds,
            ..
        }) => {
            let epochs = run_epochs.get_value();
            step_now.set(epoch.saturating_sub(1) * steps + step);
            let done = (epoch as f64 - 1.0).max(0.0) + step as f64 / steps.max(1) as f64;
            progress.set((done / epochs as f64).clamp(0.0, 1.0));
            step_text.set(format!(
                "Epoch {epoch}/{epochs}, step {step}/{steps}: loss {loss:.3}, {images_per_sec:.1} images/s, about {eta_seconds:.0} s left"
            ));
        }
        FromWorker::Progress(Progress::Epoch(r)) => {
            progress.set((r.epoch as f64 / run_epochs.get_value() as f64).clamp(0.0, 1.0));
            rows.update(|rows| rows.push(r));
        }
        FromWorker::Done {
            report: r,
            cancelled,
        } => {
            let names = run_classes.get_value();
            let Some(bytes) = buffer else {
                state.set(TrainState::Failed("the worker sent no model".into()));
                return;
            };
            if cancelled {
                step_text.set("Stopped; the best epoch so far is kept.".into());
                state.set(TrainState::Cancelled);
            } else {
                progress.set(1.0);
                step_text.set(String::new());
                state.set(TrainState::Done);
            }
            // The results render in later tasks, so no single one keeps the page busy.
            leptos::task::spawn_local(async move {
                js::next_task().await;
                report_classes.set(names.clone());
                report.set(Some(r));
                js::next_task().await;
                trained_note.set(format!("Trained here on {}", names.join(", ")));
                trained_result.set(TrainedResult::None);
                trained.set(Some(names));
                model_bytes.set(Some(Rc::new(bytes)));
            });
        }
        FromWorker::ModelLoaded { file, result } => match result {
            Ok(labels) => {
                if let Some(bytes) = pending_import.try_update_value(Option::take).flatten() {
                    model_bytes.set(Some(bytes));
                }
                trained_note.set(if file == PROJECT_MODEL {
                    format!("From your project: {}", labels.join(", "))
                } else {
                    format!("Imported {file}: {}", labels.join(", "))
                });
                trained_result.set(TrainedResult::None);
                trained.set(Some(labels));
            }
            Err(e) => {
                pending_import.set_value(None);
                model_error.set(Some(e));
            }
        },
        FromWorker::Prediction { file, result } => {
            webcam_busy.set(false);
            trained_result.set(match result {
                Ok(top) => TrainedResult::Done { file, top },
                Err(message) => TrainedResult::Failed { file, message },
            });
        }
        FromWorker::Cancelled => {
            step_text.set("Stopped before the first epoch finished; nothing was trained.".into());
            state.set(TrainState::Cancelled);
        }
        FromWorker::Failed(message) => {
            if running() {
                state.set(TrainState::Failed(message));
            } else if !worker_ready() {
                worker.set(WorkerState::Failed(message));
            } else {
                leptos::logging::error!("training worker: {message}");
            }
        }
    };

    // Start the worker once the weights are in: it builds its own copy of the network.
    Effect::new(move |_| {
        if imagenet.with(Option::is_none) || trainer.with_value(Option::is_some) {
            return;
        }
        let Some(bytes) = weights_bytes.try_update_value(Option::take).flatten() else {
            return;
        };
        worker.set(WorkerState::Starting);
        match Trainer::spawn(bytes, on_worker) {
            Ok(t) => {
                if let Some(model) = pending_model.try_update_value(Option::take).flatten() {
                    t.load_model(PROJECT_MODEL.to_string(), &model);
                }
                trainer.set_value(Some(t));
            }
            Err(e) => worker.set(WorkerState::Failed(e)),
        }
    });

    let on_cancel = move |_| {
        if let Some(t) = trainer.get_value() {
            t.cancel();
        }
    };

    let predict_trained = move |ev: leptos::ev::Event| {
        let input: HtmlInputElement = event_target(&ev);
        let file = js::files_of(&input).into_iter().next();
        input.set_value("");
        let (Some(file), Some(handle)) = (file, trainer.get_value()) else {
            return;
        };
        let name = file.name();
        trained_result.set(TrainedResult::Pending(name.clone()));
        leptos::task::spawn_local(async move {
            match js::read_file(&file, &file.name()).await {
                Ok(bytes) => handle.predict(name, &bytes, TOP_K),
                Err(message) => trained_result.set(TrainedResult::Failed {
                    file: name,
                    message,
                }),
            }
        });
    };

    let export = move |_| {
        model_error.set(None);
        if let Some(bytes) = model_bytes.get_untracked()
            && let Err(e) = storage::download(&bytes, "model.safetensors")
        {
            model_error.set(Some(format!("Export failed: {e}")));
        }
    };

    let import = move |ev: leptos::ev::Event| {
        let input: HtmlInputElement = event_target(&ev);
        let file = js::files_of(&input).into_iter().next();
        input.set_value("");
        let (Some(file), Some(handle)) = (file, trainer.get_value()) else {
            return;
        };
        model_error.set(None);
        leptos::task::spawn_local(async move {
            let name = file.name();
            match js::read_file(&file, &file.name()).await {
                Ok(bytes) => {
                    handle.load_model(name, &bytes);
                    pending_import.set_value(Some(Rc::new(bytes)));
                }
                Err(e) => model_error.set(Some(e)),
            }
        });
    };

    // A model from a restored project goes to the worker, which may not exist yet.
    let load_model = move |bytes: Rc<Vec<u8>>| match trainer.get_value() {
        Some(handle) => handle.load_model(PROJECT_MODEL.to_string(), &bytes),
        None => pending_model.set_value(Some(bytes)),
    };
    let project = ProjectSignals {
        classes,
        errors,
        next_id,
        settings: Signal::derive(move || serde_json::to_value(settings.get()).unwrap_or_default()),
        apply_settings: Callback::new(move |value: serde_json::Value| {
            // Missing fields take their defaults; unreadable settings leave the current ones.
            if let Ok(restored) = serde_json::from_value::<TrainSettings>(value) {
                settings.set(restored);
            }
        }),
        report,
        report_classes,
        model: model_bytes,
        apply_model: Callback::new(load_model),
    };

    view! {
        <section class="card teach" aria-labelledby="teach-title" data-testid="teach-section">
            <h2 id="teach-title">"Teach new classes"</h2>
            <p class="why">
                <strong>"Transfer learning. "</strong>
                "The network already knows shapes, textures and parts of objects from a million "
                "ImageNet photos. We keep that knowledge and teach it your classes with a few "
                "examples each."
            </p>
            <ProjectBar project disabled=Signal::derive(running) />
            <Gather
                classes
                errors
                next_id
                disabled=Signal::derive(move || !ready() || running())
                running=Signal::derive(running)
            />
            <p class="advice" data-testid="data-advice">
                {move || format!("{} images in {} classes. ", total(), classes.with(Vec::len))}
                {move || advice.get().why}
            </p>

            <h3>"Train"</h3>
            <SettingsPanel
                settings
                strategy=Signal::derive(strategy)
                advice
                classes
                running=Signal::derive(running)
            />
            <div class="train-actions">
                <button
                    type="button"
                    class="button"
                    data-testid="train-button"
                    disabled=move || !worker_ready() || running()
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
            <p class="muted small" data-testid="worker-status" data-state=move || match worker.get() {
                WorkerState::Waiting => "waiting",
                WorkerState::Starting => "starting",
                WorkerState::Ready => "ready",
                WorkerState::Failed(_) => "failed",
            } class:error=move || matches!(worker.get(), WorkerState::Failed(_))>
                {move || match worker.get() {
                    WorkerState::Waiting => "Training starts once the network is loaded.".to_string(),
                    WorkerState::Starting => "Starting the trainer (a background worker with its own GPU device)…".to_string(),
                    WorkerState::Ready => "Training runs in a background worker, so this page stays responsive.".to_string(),
                    WorkerState::Failed(e) => format!("Training is not available: {e}"),
                }}
            </p>
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
            <TrainCharts
                rows=rows.into()
                shape=run_shape.into()
                step=step_now.into()
            />
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
            {move || {
                // Only for this session's run: a report from a saved project has no images.
                let predicted = report.with(|r| r.as_ref().map(|r| r.val_predicted.clone()))?;
                (run_val.with_value(Vec::len) == predicted.len() && !predicted.is_empty()).then(|| {
                    view! { <Mistakes predicted val=run_val classes=report_classes.get() /> }
                })
            }}

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
            <WebcamPredict
                predict=Callback::new(move |(file, jpeg): (String, Vec<u8>)| {
                    if let Some(handle) = trainer.get_value() {
                        webcam_busy.set(true);
                        handle.predict(file, &jpeg, TOP_K);
                    }
                })
                busy=webcam_busy
                enabled=Signal::derive(move || trained.with(Option::is_some))
            />
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
