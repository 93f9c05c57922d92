//! "Use your model": the model in the worker (trained here, kept from a failed run, imported,
//! or from a project), classifying a photo or the live webcam with it, export and import.

use std::rc::Rc;

use leptos::prelude::*;
use web_sys::HtmlInputElement;

use crate::browser::js;
use crate::browser::page::gather::webcam::WebcamPredict;
use crate::browser::page::insight::explain::WhereItLooks;
use crate::browser::page::persistence::storage;
use crate::browser::page::state::client::{
    Photo, WorkerClient, WorkerContext, WorkerStatus, use_worker,
};
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

/// Classify a photo, export, import, live webcam; and the latest result.
#[component]
pub fn TrainedModelPanel() -> impl IntoView {
    let model = expect_context::<TrainedModel>();
    let worker = use_worker();
    let status = worker.status;
    let ready = move || status.with(|s| *s == WorkerStatus::Ready);
    let has_model = move || model.classes.with(Option::is_some);
    // A live webcam frame is with the worker: the next one waits for its answer.
    let webcam_busy = RwSignal::new(false);

    let handle = WorkerContext::handle();
    let predict = {
        move |file: String, bytes: Vec<u8>, webcam: bool| {
            let worker = handle.client();
            leptos::task::spawn_local(async move {
                let result = worker.predict(&file, &bytes, TOP_K).await;
                let bytes = std::sync::Arc::new(bytes);
                if webcam {
                    webcam_busy.set(false);
                    // A frame asked for before the user held the one on show.
                    if model.held.try_get_untracked() == Some(true) {
                        return;
                    }
                }
                model.show(match result {
                    Ok(top) => TrainedResult::Done {
                        file,
                        top: top.into_iter().map(|c| (c.label, c.prob)).collect(),
                        bytes,
                        live: webcam,
                    },
                    Err(message) => TrainedResult::Failed { file, message },
                });
            });
        }
    };

    let predict_photo = {
        move |ev: leptos::ev::Event| {
            let input: HtmlInputElement = event_target(&ev);
            let file = js::files_of(&input).into_iter().next();
            input.set_value("");
            let Some(file) = file else {
                return;
            };
            let name = file.name();
            model.show(TrainedResult::Pending(name.clone()));
            leptos::task::spawn_local(async move {
                match js::read_file(&file, &name, crate::engine::limits::MAX_PHOTO_BYTES).await {
                    Ok(bytes) => predict(name, bytes, false),
                    Err(message) => model.show(TrainedResult::Failed {
                        file: name,
                        message,
                    }),
                }
            });
        }
    };

    let export = move |_| {
        model.error.set(None);
        if let Some(bytes) = model.bytes.get_untracked()
            && let Err(e) = storage::download(bytes.js(), "model.safetensors")
        {
            model.error.set(Some(format!("Export failed: {e}")));
        }
    };

    // The model an import replaced, until the user undoes or keeps it.
    let replaced = RwSignal::new_local(None::<ModelFile>);
    let undo_import = move |_| {
        if let Some(bytes) = replaced.get_untracked() {
            replaced.set(None);
            let note = "Your model from before the import".to_string();
            model.load(bytes, PROJECT_MODEL.to_string(), note);
        }
    };
    let import = move |ev: leptos::ev::Event| {
        let input: HtmlInputElement = event_target(&ev);
        let file = js::files_of(&input).into_iter().next();
        input.set_value("");
        let Some(file) = file else {
            return;
        };
        model.error.set(None);
        let name = file.name();
        // The model in use is replaced only when the user says so, and can come back once.
        let current = model.bytes.get_untracked();
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
                    model.load(
                        ModelFile::from_bytes(&bytes),
                        name.clone(),
                        format!("Imported {name}"),
                    );
                }
                Err(e) => model.error.set(Some(e)),
            }
        });
    };

    view! {
        <h3>"Use your model"</h3>
        <p class="muted small" data-testid="trained-model">
            {move || {
                let note = model.note.get();
                if note.is_empty() { "Train a model, or import one you exported before.".to_string() } else { note }
            }}
        </p>
        <div class="train-actions">
            <label class="button" class:disabled=move || !has_model()>
                <input
                    class="visually-hidden"
                    type="file"
                    accept=crate::engine::data::ACCEPT_IMAGES
                    data-testid="trained-predict-input"
                    disabled=move || !has_model()
                    on:change=predict_photo
                />
                "Classify a photo"
            </label>
            <button
                type="button"
                class="button secondary"
                data-testid="export-model"
                disabled=move || !has_model()
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
                webcam_busy.set(true);
                predict(file, jpeg, true);
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
