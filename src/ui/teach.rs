//! Teaching the network new classes: class cards that gather images, the train panel (strategy,
//! epochs, augmentation, seed; progress, per-epoch table, confusion matrix), and the trained
//! model's own predictor with export and import. Training runs in a Web Worker ([`Trainer`]), so
//! the page stays responsive; this panel only sends the images and shows the worker's messages.

use std::rc::Rc;

use leptos::prelude::*;
use web_sys::HtmlInputElement;

use super::charts::TrainCharts;
use super::gather::{ClassCard, FileError, Gather};
use super::js;
use super::mistakes::Mistakes;
use super::project::{ProjectBar, ProjectSignals};
use super::results::{EpochTable, ReportView};
use super::settings::{SettingsPanel, run_config};
use super::storage;
use super::trainer::{self, Trainer};
use super::webcam::WebcamPredict;
use crate::engine::advisor::{self, Domain};
use crate::engine::config::PanelSettings;
use crate::engine::data::{self, Sample};
use crate::engine::inference::Predictor;
use crate::engine::plan::RunPlan;
use crate::engine::training::{EpochReport, Progress, TrainReport};
use crate::engine::{preprocess, weights};
use crate::protocol::{FromWorker, RunError, RunOutcome};

/// The name under which a restored project's model is loaded (and told apart from imports).
const PROJECT_MODEL: &str = "your project";
/// Classes shown per prediction of the trained model.
const TOP_K: usize = 3;
/// Worker crashes after which the page stops starting new ones (a device that fails at once).
const MAX_RESTARTS: u32 = 3;

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
    // Everything the user sets for training: the engine's config (saved with the project).
    let settings = RwSignal::new(PanelSettings::default());
    let strategy = move || {
        settings
            .with(|s| s.chosen_strategy)
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
    let run_shape = RwSignal::new(None::<RunPlan>);
    // Steps done in the whole run, for the LR chart.
    let step_now = RwSignal::new(0usize);
    let trainer = StoredValue::new_local(None::<Rc<Trainer>>);
    // Bumped to start a new worker after a crash; `restarts` counts them.
    let restart = RwSignal::new(0u32);
    let restarts = StoredValue::new(0u32);
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
        let cfg = run_config(&settings.get_untracked(), strategy());
        if let Err(e) = cfg.validate() {
            return fail(format!("{e}."));
        }
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
            let (train, val) =
                data::split_samples(samples, names.len(), cfg.val_fraction, cfg.seed);
            if val.is_empty() {
                return fail("No images are left to check the model: add more images.".into());
            }
            let run = RunPlan::new(&cfg, train.len());
            run_epochs.set_value(run.epochs().max(1));
            run_classes.set_value(names.clone());
            run_shape.set(Some(run));
            let train = trainer::pixels(&train).await;
            let val_pixels = trainer::pixels(&val).await;
            handle.train(names, cfg, train, val_pixels);
            run_val.set_value(val);
        });
    };

    // The worker's messages: progress while running, then the trained model.
    let on_worker = move |message: FromWorker, buffer: Option<Vec<u8>>| match message {
        FromWorker::Started => {}
        FromWorker::Initialized(Ok(())) => worker.set(WorkerState::Ready),
        FromWorker::Initialized(Err(message)) => worker.set(WorkerState::Failed(message)),
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
            let done = run_shape.with_untracked(|p| p.as_ref().map(|p| p.steps_done(epoch, step)));
            step_now.set(done.unwrap_or(step));
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
        FromWorker::RunEnded(Ok(RunOutcome {
            report: r,
            cancelled,
        })) => {
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
        FromWorker::RunEnded(Err(RunError::Cancelled)) => {
            step_text.set("Stopped before the first epoch finished; nothing was trained.".into());
            state.set(TrainState::Cancelled);
        }
        FromWorker::RunEnded(Err(RunError::Failed(message))) => {
            state.set(TrainState::Failed(message));
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
        FromWorker::Crashed(message) => {
            // The worker is gone: whatever it was doing ends here, and a new one starts (the
            // images, the settings and the last model stay on the page).
            if running() {
                state.set(TrainState::Failed(format!(
                    "{message}. Your images and your last model are kept; a new trainer is starting."
                )));
            }
            webcam_busy.set(false);
            if matches!(trained_result.get_untracked(), TrainedResult::Pending(_)) {
                trained_result.set(TrainedResult::None);
            }
            if restarts.get_value() >= MAX_RESTARTS {
                worker.set(WorkerState::Failed(message));
                return;
            }
            restarts.update_value(|n| *n += 1);
            worker.set(WorkerState::Starting);
            // Not from inside the dying worker's own message handler.
            leptos::task::spawn_local(async move {
                js::next_task().await;
                trainer.set_value(None);
                restart.update(|n| *n += 1);
            });
        }
    };

    // Start the worker once the weights are in (and again after a crash): it builds its own
    // copy of the network, and gets the current model back.
    Effect::new(move |_| {
        restart.track();
        if imagenet.with(Option::is_none) || trainer.with_value(Option::is_some) {
            return;
        }
        let Some(bytes) = weights_bytes.with_value(Clone::clone) else {
            return;
        };
        worker.set(WorkerState::Starting);
        match Trainer::spawn(bytes, on_worker) {
            Ok(t) => {
                let model = pending_model
                    .try_update_value(Option::take)
                    .flatten()
                    .or_else(|| model_bytes.get_untracked());
                if let Some(model) = model {
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
            match js::read_file(&file, &file.name(), preprocess::MAX_PHOTO_BYTES).await {
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
            match js::read_file(&file, &file.name(), weights::MAX_MODEL_BYTES).await {
                Ok(bytes) => {
                    handle.load_model(name, &bytes);
                    pending_import.set_value(Some(Rc::new(bytes)));
                }
                Err(e) => model_error.set(Some(e)),
            }
        });
    };

    // A model from a restored project goes to the worker, which may not exist yet; a project
    // without one leaves no model in use.
    let load_model = move |bytes: Option<Rc<Vec<u8>>>| match bytes {
        Some(bytes) => match trainer.get_value() {
            Some(handle) => handle.load_model(PROJECT_MODEL.to_string(), &bytes),
            None => pending_model.set_value(Some(bytes)),
        },
        None => {
            pending_model.set_value(None);
            trained.set(None);
            trained_note.set(String::new());
            trained_result.set(TrainedResult::None);
        }
    };
    let project = ProjectSignals {
        classes,
        errors,
        next_id,
        settings,
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
            <EpochTable rows=rows.into() />
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
                        accept=crate::engine::data::ACCEPT_IMAGES
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
