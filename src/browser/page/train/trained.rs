//! "Use your model": the model in the worker (trained here, kept from a failed run, imported,
//! or from a project), classifying a photo or the live webcam with it, export and import.

use std::rc::Rc;

use leptos::prelude::*;

use crate::browser::js;
use crate::browser::page::gather::webcam::predict::WebcamPredict;
use crate::browser::page::insight::explain::WhereItLooks;
use crate::browser::page::persistence::storage;
use crate::browser::page::state::client::{Photo, WorkerClient, WorkerStatus, use_worker};
use crate::browser::page::state::file_button::FileButton;
use crate::browser::page::state::model_file::ModelFile;

use crate::app::protocol::Which;

/// The name under which a restored project's model is loaded (and told apart from imports).
pub const PROJECT_MODEL: &str = "your project";
/// Classes shown per prediction of the trained model.
const TOP_K: usize = 3;

/// The trained model's top classes on a photo.
#[derive(Clone, Debug, PartialEq)]
enum TrainedResult {
    None,
    Pending(String),
    Done {
        file: String,
        top: Vec<(String, f32)>,
        /// The photo (or webcam frame), for "Where did it look?".
        bytes: std::sync::Arc<Vec<u8>>,
        /// A live webcam frame (the next frame replaces it unless it is held).
        live: bool,
    },
    Failed {
        file: String,
        message: String,
    },
}

/// The model the page uses besides ImageNet's; shared through context.
#[derive(Clone, Copy)]
pub struct TrainedModel {
    /// Its class names once the worker holds it.
    pub classes: RwSignal<Option<Vec<String>>>,
    /// The exported file (what export downloads and projects keep).
    pub bytes: RwSignal<Option<ModelFile>, LocalStorage>,
    /// Where it came from, for the user.
    pub note: RwSignal<String>,
    result: RwSignal<TrainedResult>,
    /// The live frame on show is being explained: later frames wait until the user resumes.
    held: RwSignal<bool>,
    pub error: RwSignal<Option<String>>,
    worker: StoredValue<Rc<WorkerClient>, LocalStorage>,
}

impl TrainedModel {
    pub fn new(worker: Rc<WorkerClient>) -> Self {
        Self {
            worker: StoredValue::new_local(worker),
            classes: RwSignal::new(None),
            bytes: RwSignal::new_local(None),
            note: RwSignal::new(String::new()),
            result: RwSignal::new(TrainedResult::None),
            held: RwSignal::new(false),
            error: RwSignal::new(None),
        }
    }

    /// Makes `bytes` the model: the worker loads it, then the classes and `note` show.
    /// `note` gets the class names appended.
    pub fn load(self, bytes: ModelFile, file: String, note: String) {
        let Some(worker) = self.worker.try_get_value() else {
            return;
        };
        leptos::task::spawn_local(async move {
            match worker.load_model(&file, &bytes).await {
                Ok(classes) => {
                    self.note.set(format!("{note}: {}", classes.join(", ")));
                    self.show(TrainedResult::None);
                    self.classes.set(Some(classes));
                    self.bytes.set(Some(bytes));
                }
                Err(e) => self.error.set(Some(e)),
            }
        });
    }

    /// A model the worker already holds (the run that made it just ended).
    pub fn adopt(self, bytes: ModelFile, classes: Vec<String>, note: String) {
        self.note.set(note);
        self.show(TrainedResult::None);
        self.classes.set(Some(classes));
        self.bytes.set(Some(bytes));
    }

    /// No model (a project without one was opened).
    pub fn clear(self) {
        self.classes.set(None);
        self.bytes.set(None);
        self.note.set(String::new());
        self.show(TrainedResult::None);
    }

    /// Shows `result` in place of the last one; a held live frame is released.
    fn show(self, result: TrainedResult) {
        self.held.set(false);
        self.result.set(result);
    }
}

/// What the "Use your model" panel does with the model.
impl TrainedModel {
    /// Classifies `bytes` with the model and shows the answer; a `live` frame (the webcam)
    /// clears `live_busy` and is dropped when the user holds the one on show.
    fn classify(self, file: String, bytes: Vec<u8>, live: bool, live_busy: RwSignal<bool>) {
        let worker = self.worker.get_value();
        leptos::task::spawn_local(async move {
            let result = worker.predict(&file, &bytes, TOP_K).await;
            let bytes = std::sync::Arc::new(bytes);
            if live {
                live_busy.set(false);
                // A frame asked for before the user held the one on show.
                if self.held.try_get_untracked() == Some(true) {
                    return;
                }
            }
            self.show(match result {
                Ok(top) => TrainedResult::Done {
                    file,
                    top: top.into_iter().map(|c| (c.label, c.prob)).collect(),
                    bytes,
                    live,
                },
                Err(message) => TrainedResult::Failed { file, message },
            });
        });
    }

    /// Reads a photo the user picked, then classifies it.
    fn classify_file(self, file: web_sys::File, live_busy: RwSignal<bool>) {
        let name = file.name();
        self.show(TrainedResult::Pending(name.clone()));
        leptos::task::spawn_local(async move {
            match js::read_file(&file, &name, crate::engine::limits::MAX_PHOTO_BYTES).await {
                Ok(bytes) => self.classify(name, bytes, false, live_busy),
                Err(message) => self.show(TrainedResult::Failed {
                    file: name,
                    message,
                }),
            }
        });
    }

    /// Offers the model file as a download.
    fn export(self) {
        self.error.set(None);
        if let Some(bytes) = self.bytes.get_untracked()
            && let Err(e) = storage::download(bytes.js(), "model.safetensors")
        {
            self.error.set(Some(format!("Export failed: {e}")));
        }
    }

    /// Imports a model file. The model in use is replaced only when the user says so, and is
    /// kept in `replaced` so it can come back once.
    fn import(self, file: web_sys::File, replaced: RwSignal<Option<ModelFile>, LocalStorage>) {
        self.error.set(None);
        let name = file.name();
        let current = self.bytes.get_untracked();
        if current.is_some()
            && !js::confirm(&format!(
                "Import {name}? It replaces the model you have now. You can undo it right after."
            ))
        {
            return;
        }
        leptos::task::spawn_local(async move {
            match js::read_file(&file, &name, crate::engine::limits::MAX_MODEL_BYTES).await {
                Ok(bytes) => {
                    if let Some(previous) = current {
                        replaced.set(Some(previous));
                    }
                    let note = format!("Imported {name}");
                    self.load(ModelFile::from_bytes(&bytes), name, note);
                }
                Err(e) => self.error.set(Some(e)),
            }
        });
    }

    /// Brings back the model an import replaced.
    fn undo_import(self, replaced: RwSignal<Option<ModelFile>, LocalStorage>) {
        if let Some(bytes) = replaced.get_untracked() {
            replaced.set(None);
            let note = "Your model from before the import".to_string();
            self.load(bytes, PROJECT_MODEL.to_string(), note);
        }
    }
}

/// Classify a photo, export, import, live webcam; and the latest result.
#[component]
pub fn TrainedModelPanel() -> impl IntoView {
    let model = expect_context::<TrainedModel>();
    let status = use_worker().status;
    let ready = move || status.with(|s| *s == WorkerStatus::Ready);
    let has_model = move || model.classes.with(Option::is_some);
    // A live webcam frame is with the worker: the next one waits for its answer.
    let webcam_busy = RwSignal::new(false);
    // The model an import replaced, until the user undoes or keeps it.
    let replaced = RwSignal::new_local(None::<ModelFile>);
    let predict_photo = move |files: Vec<web_sys::File>| {
        if let Some(file) = files.into_iter().next() {
            model.classify_file(file, webcam_busy);
        }
    };
    let import = move |files: Vec<web_sys::File>| {
        if let Some(file) = files.into_iter().next() {
            model.import(file, replaced);
        }
    };
    let export = move |_| model.export();
    let undo_import = move |_| model.undo_import(replaced);

    view! {
        <h3>"Use your model"</h3>
        <p class="muted small" data-testid="trained-model">
            {move || {
                let note = model.note.get();
                if note.is_empty() { "Train a model, or import one you exported before.".to_string() } else { note }
            }}
        </p>
        <div class="train-actions">
            <FileButton
                label="Classify a photo"
                testid="trained-predict-input"
                accept=crate::engine::data::ACCEPT_IMAGES
                class="button"
                disabled=Signal::derive(move || !has_model())
                on_pick=predict_photo
            />
            <button
                type="button"
                class="button secondary"
                data-testid="export-model"
                disabled=move || !has_model()
                on:click=export
            >
                "Export model"
            </button>
            <FileButton
                label="Import model"
                testid="import-model"
                accept=".safetensors"
                disabled=Signal::derive(move || !ready())
                on_pick=import
            />
        </div>
        <WebcamPredict
            predict=Callback::new(move |(file, jpeg): (String, Vec<u8>)| {
                webcam_busy.set(true);
                model.classify(file, jpeg, true, webcam_busy);
            })
            busy=Signal::derive(move || webcam_busy.get() || model.held.get())
            enabled=Signal::derive(has_model)
            on_toggle=Callback::new(move |_| model.held.set(false))
        />
        {move || replaced.with(Option::is_some).then(|| view! {
            <p class="undo-bar" role="status" data-testid="undo-import-bar">
                "The imported model replaced yours. "
                <button type="button" class="link-button" data-testid="undo-import" on:click=undo_import>"Undo import"</button>
                " "
                <button type="button" class="link-button" data-testid="keep-import" on:click=move |_| replaced.set(None)>"Keep"</button>
            </p>
        })}
        {move || model.error.get().map(|e| view! { <p class="file-error" role="alert">{e}</p> })}
        <div data-testid="trained-result">
            <ResultView result=model.result held=model.held />
        </div>
    }
}

/// The latest prediction of the trained model as bars, or why it failed.
#[component]
fn ResultView(result: RwSignal<TrainedResult>, held: RwSignal<bool>) -> impl IntoView {
    move || match result.get() {
        TrainedResult::None => ().into_any(),
        TrainedResult::Pending(file) => {
            view! { <p class="muted">{format!("Classifying {file}…")}</p> }.into_any()
        }
        TrainedResult::Failed { file, message } => view! {
            <p class="file-error" data-testid="file-error" data-file=file role="alert">{message}</p>
        }
        .into_any(),
        TrainedResult::Done {
            file,
            top,
            bytes,
            live,
        } => {
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
            let photo = Rc::new(Photo::File(bytes));
            view! {
                <p class="result-file">{file.clone()}</p>
                <ol class="bars">{items}</ol>
                <WhereItLooks
                    file=file.clone()
                    model=Which::Trained
                    photo
                    captions=vec!["Evidence for".to_string()]
                    // A live frame would be replaced by the next one, heatmap and all.
                    on_ask=Callback::new(move |()| {
                        if live {
                            held.set(true);
                        }
                    })
                />
                <Show when=move || live && held.get()>
                    <p class="muted small" data-testid="live-held">
                        "Live predictions wait while you look at this frame. "
                        <button
                            type="button"
                            class="link-button"
                            data-testid="live-resume"
                            on:click=move |_| held.set(false)
                        >
                            "Resume"
                        </button>
                    </p>
                </Show>
            }
            .into_any()
        }
    }
}
