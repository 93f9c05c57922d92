//! Training in a Web Worker, both ends. The page keeps painting and answering clicks while the
//! worker's own WebGPU device trains; they talk in typed messages (JSON) with the bulk bytes
//! (weights, pixels, the trained model) moved, not copied, as transferable buffers. The trained
//! (or imported) model stays in the worker and classifies photos there too, so the page never
//! uploads or runs it.
//!
//! The worker runs this same wasm module: `main` sees no `window` and calls [`run_worker`].

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use burn::tensor::Device;
use image::RgbImage;
use serde::{Deserialize, Serialize};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{DedicatedWorkerGlobalScope, MessageEvent, Worker, WorkerOptions, WorkerType};

use super::js;
use crate::engine::data::{Dataset, Sample};
use crate::engine::inference::Predictor;
use crate::engine::model::{Backbone, LITE0};
use crate::engine::training::{self, Progress, TrainConfig, TrainReport};
use crate::engine::weights;

/// One image sent for training; its RGB pixels travel as a buffer in the same order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageMeta {
    pub file: String,
    pub label: usize,
    pub width: u32,
    pub height: u32,
}

/// Page -> worker.
#[derive(Debug, Serialize, Deserialize)]
pub enum ToWorker {
    /// The pretrained weights (safetensors) are the first buffer.
    Init,
    /// Buffers: the train images' pixels, then the val images'.
    Train {
        classes: Vec<String>,
        config: Box<TrainConfig>,
        train: Vec<ImageMeta>,
        val: Vec<ImageMeta>,
    },
    /// Stop after the current step; the best epoch so far is still sent back.
    Cancel,
    /// Use this exported model (the first buffer) for `Predict`; `file` names it in errors.
    LoadModel { file: String },
    /// Classify the photo file in the first buffer with the current model.
    Predict { file: String, top_k: usize },
}

/// Worker -> page.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum FromWorker {
    /// The wasm module runs and listens.
    Started,
    /// Weights are on the worker's GPU; training can start.
    Ready,
    Progress(Progress),
    /// The run ended; the first buffer is the exported model (safetensors with metadata).
    Done {
        report: TrainReport,
        cancelled: bool,
    },
    /// Cancelled before any epoch finished: there is no model.
    Cancelled,
    /// Answer to `LoadModel`: the model's class names, or why it was refused.
    ModelLoaded {
        file: String,
        result: Result<Vec<String>, String>,
    },
    /// Answer to `Predict`: the top classes with their probabilities.
    Prediction {
        file: String,
        result: Result<Vec<(String, f32)>, String>,
    },
    Failed(String),
}

fn encode<T: Serialize>(message: &T, buffers: Vec<js_sys::Uint8Array>) -> (JsValue, js_sys::Array) {
    let object = js_sys::Object::new();
    let text = serde_json::to_string(message).unwrap_or_default();
    js_sys::Reflect::set(&object, &"json".into(), &text.into()).ok();
    let list = js_sys::Array::new();
    let transfer = js_sys::Array::new();
    for b in buffers {
        transfer.push(&b.buffer());
        list.push(&b);
    }
    js_sys::Reflect::set(&object, &"buffers".into(), &list).ok();
    (object.into(), transfer)
}

fn decode<T: for<'de> Deserialize<'de>>(
    data: &JsValue,
) -> Result<(T, Vec<js_sys::Uint8Array>), String> {
    let text = js::get_string(data, "json").ok_or("a message without a body")?;
    let message = serde_json::from_str(&text).map_err(|e| format!("unreadable message: {e}"))?;
    let buffers = js::get(data, "buffers")
        .map(|list| {
            js_sys::Array::from(&list)
                .iter()
                .map(|b| b.unchecked_into::<js_sys::Uint8Array>())
                .collect()
        })
        .unwrap_or_default();
    Ok((message, buffers))
}

// ---------------------------------------------------------------- the worker's side

fn scope() -> DedicatedWorkerGlobalScope {
    js_sys::global().unchecked_into()
}

fn post(message: &FromWorker, buffers: Vec<js_sys::Uint8Array>) {
    let (data, transfer) = encode(message, buffers);
    if let Err(e) = scope().post_message_with_transfer(&data, &transfer) {
        web_sys::console::error_1(&e);
    }
}

#[derive(Default)]
struct WorkerState {
    model: RefCell<Option<(Backbone, Device)>>,
    /// Set when `Init` failed, so waiting requests give up.
    init_failed: Cell<bool>,
    /// The model that `Predict` uses: the last trained or loaded one.
    trained: RefCell<Option<Rc<Predictor>>>,
    cancel: Cell<bool>,
    busy: Cell<bool>,
}

impl WorkerState {
    /// The device, once `Init` has made it (requests may arrive while it is still starting).
    async fn device(&self) -> Result<Device, String> {
        loop {
            if let Some((_, device)) = self.model.borrow().as_ref() {
                return Ok(device.clone());
            }
            if self.init_failed.get() {
                return Err("the training worker has no GPU device".into());
            }
            js::sleep_ms(50.0).await;
        }
    }
}

/// The worker's entry point: listens for [`ToWorker`] messages.
pub fn run_worker() {
    std::panic::set_hook(Box::new(|info| {
        console_error_panic_hook::hook(info);
        post(
            &FromWorker::Failed(format!("the training worker stopped: {info}")),
            Vec::new(),
        );
    }));
    let state = Rc::new(WorkerState::default());
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |ev: MessageEvent| {
        let (message, buffers) = match decode::<ToWorker>(&ev.data()) {
            Ok(decoded) => decoded,
            Err(e) => return post(&FromWorker::Failed(e), Vec::new()),
        };
        let state = Rc::clone(&state);
        match message {
            ToWorker::Cancel => state.cancel.set(true),
            ToWorker::Init => wasm_bindgen_futures::spawn_local(async move {
                match init(&buffers).await {
                    Ok(loaded) => {
                        *state.model.borrow_mut() = Some(loaded);
                        post(&FromWorker::Ready, Vec::new());
                    }
                    Err(e) => {
                        state.init_failed.set(true);
                        post(&FromWorker::Failed(e), Vec::new())
                    }
                }
            }),
            ToWorker::LoadModel { file } => wasm_bindgen_futures::spawn_local(async move {
                let result = load_model(&state, &file, &buffers).await;
                post(&FromWorker::ModelLoaded { file, result }, Vec::new());
            }),
            ToWorker::Predict { file, top_k } => wasm_bindgen_futures::spawn_local(async move {
                let result = predict(&state, &file, &buffers, top_k).await;
                post(&FromWorker::Prediction { file, result }, Vec::new());
            }),
            ToWorker::Train {
                classes,
                config,
                train,
                val,
            } => {
                if state.busy.replace(true) {
                    return post(
                        &FromWorker::Failed("a training run is already going".into()),
                        Vec::new(),
                    );
                }
                state.cancel.set(false);
                wasm_bindgen_futures::spawn_local(async move {
                    let (message, model) =
                        match run(&state, classes, &config, &train, &val, &buffers).await {
                            Ok(done) => done,
                            Err(e) => (FromWorker::Failed(e), None),
                        };
                    state.busy.set(false);
                    post(&message, model.into_iter().collect());
                });
            }
        }
    });
    scope().set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    on_message.forget();
    post(&FromWorker::Started, Vec::new());
}

async fn init(buffers: &[js_sys::Uint8Array]) -> Result<(Backbone, Device), String> {
    let bytes = buffers.first().ok_or("no weights were sent")?.to_vec();
    let device = Device::wgpu_options()
        .init_async()
        .await
        .map_err(|e| format!("the training worker could not start WebGPU: {e}"))?;
    let predictor = Predictor::from_safetensors(&bytes, &device).map_err(|e| e.to_string())?;
    Ok((predictor.model.backbone, device))
}

async fn load_model(
    state: &WorkerState,
    file: &str,
    buffers: &[js_sys::Uint8Array],
) -> Result<Vec<String>, String> {
    let bytes = buffers.first().ok_or("no model was sent")?.to_vec();
    let device = state.device().await?;
    let predictor = Predictor::from_model_file(file, &bytes, &device).map_err(|e| e.to_string())?;
    let labels = predictor.labels.clone();
    *state.trained.borrow_mut() = Some(Rc::new(predictor));
    Ok(labels)
}

async fn predict(
    state: &WorkerState,
    file: &str,
    buffers: &[js_sys::Uint8Array],
    top_k: usize,
) -> Result<Vec<(String, f32)>, String> {
    let bytes = buffers.first().ok_or("no photo was sent")?.to_vec();
    let predictor = state
        .trained
        .borrow()
        .clone()
        .ok_or("there is no trained model yet")?;
    let prediction = predictor
        .predict_image(file, &bytes, top_k)
        .await
        .map_err(|e| e.to_string())?;
    Ok(prediction
        .top
        .into_iter()
        .map(|c| (c.label, c.prob))
        .collect())
}

fn samples(metas: &[ImageMeta], buffers: &[js_sys::Uint8Array]) -> Result<Vec<Sample>, String> {
    metas
        .iter()
        .zip(buffers)
        .map(|(m, b)| {
            RgbImage::from_raw(m.width, m.height, b.to_vec())
                .map(|image| Sample {
                    file: m.file.clone(),
                    label: m.label,
                    image,
                })
                .ok_or_else(|| format!("{}: pixel buffer does not match its size", m.file))
        })
        .collect()
}

async fn run(
    state: &WorkerState,
    classes: Vec<String>,
    config: &TrainConfig,
    train: &[ImageMeta],
    val: &[ImageMeta],
    buffers: &[js_sys::Uint8Array],
) -> Result<(FromWorker, Option<js_sys::Uint8Array>), String> {
    let Some((backbone, device)) = state.model.borrow().clone() else {
        return Err("the training worker has no weights yet".into());
    };
    if buffers.len() != train.len() + val.len() {
        return Err("image buffers do not match the image list".into());
    }
    let dataset = Dataset {
        classes,
        train: samples(train, &buffers[..train.len()])?,
        val: samples(val, &buffers[train.len()..])?,
        skipped: Vec::new(),
    };
    let result = training::train(&backbone, &dataset, &LITE0, config, &device, |p| {
        post(&FromWorker::Progress(p.clone()), Vec::new());
        !state.cancel.get()
    })
    .await;
    let (model, report) = match result {
        Ok(done) => done,
        Err(_) if state.cancel.get() => return Ok((FromWorker::Cancelled, None)),
        Err(e) => return Err(e.to_string()),
    };
    let meta = training::export_metadata(&dataset.classes, config, &report);
    *state.trained.borrow_mut() = Some(Rc::new(Predictor {
        model: model.clone(),
        labels: dataset.classes.clone(),
        spec: LITE0,
        device: device.clone(),
    }));
    let bytes = weights::export_safetensors(&model, meta)
        .await
        .map_err(|e| format!("the model could not be exported: {e}"))?;
    let cancelled = state.cancel.get();
    Ok((
        FromWorker::Done { report, cancelled },
        Some(js_sys::Uint8Array::from(bytes.as_slice())),
    ))
}

// ---------------------------------------------------------------- the page's side

/// The page's handle on the training worker. Dropping it does not stop the worker; the page
/// keeps one for its lifetime.
pub struct Trainer {
    worker: Worker,
    /// Messages sent before the worker listens; `None` once it does.
    queue: Queue,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_error: Closure<dyn FnMut(web_sys::ErrorEvent)>,
}

impl Trainer {
    /// Starts the worker on this page's own wasm module and hands it `weights` once it runs.
    /// Every message (and `Failed` for a worker that cannot start) goes to `on_message`.
    pub fn spawn(
        weights: Vec<u8>,
        on_message: impl Fn(FromWorker, Option<Vec<u8>>) + 'static,
    ) -> Result<Rc<Self>, String> {
        let script = asset_url(".js")?;
        let wasm = asset_url(".wasm")?;
        // The glue's own default wasm name lacks Trunk's hash: pass the real one. A failed
        // start is reported as a `Failed` message, which the page shows.
        let source = format!(
            "import init from {script:?};\n\
             try {{ await init({{ module_or_path: {wasm:?} }}); }}\n\
             catch (e) {{ postMessage({{ json: JSON.stringify({{ Failed: `the training worker could not start: ${{e}}` }}) }}); }}\n"
        );
        let parts = js_sys::Array::of1(&source.into());
        let options = web_sys::BlobPropertyBag::new();
        options.set_type("text/javascript");
        let blob = web_sys::Blob::new_with_str_sequence_and_options(&parts, &options)
            .map_err(|e| js::error_text(&e))?;
        let url =
            web_sys::Url::create_object_url_with_blob(&blob).map_err(|e| js::error_text(&e))?;
        let worker_options = WorkerOptions::new();
        worker_options.set_type(WorkerType::Module);
        worker_options.set_name("finetune-trainer");
        let worker = Worker::new_with_options(&url, &worker_options).map_err(|e| {
            format!(
                "the training worker could not start: {}",
                js::error_text(&e)
            )
        })?;
        web_sys::Url::revoke_object_url(&url).ok();

        let on_message = Rc::new(on_message);
        let weights = RefCell::new(Some(weights));
        let queue: Queue = Rc::new(RefCell::new(Some(Vec::new())));
        let handler = {
            let on_message = Rc::clone(&on_message);
            let worker = worker.clone();
            let queue = Rc::clone(&queue);
            Closure::<dyn FnMut(MessageEvent)>::new(move |ev: MessageEvent| {
                match decode::<FromWorker>(&ev.data()) {
                    Ok((FromWorker::Started, _)) => {
                        if let Some(bytes) = weights.borrow_mut().take() {
                            send(
                                &worker,
                                &ToWorker::Init,
                                vec![js_sys::Uint8Array::from(bytes.as_slice())],
                            );
                        }
                        for (message, buffers) in queue.borrow_mut().take().unwrap_or_default() {
                            send(&worker, &message, buffers);
                        }
                    }
                    Ok((message, buffers)) => {
                        on_message(message, buffers.first().map(js_sys::Uint8Array::to_vec))
                    }
                    Err(e) => on_message(FromWorker::Failed(e), None),
                }
            })
        };
        let on_error =
            Closure::<dyn FnMut(web_sys::ErrorEvent)>::new(move |ev: web_sys::ErrorEvent| {
                ev.prevent_default();
                on_message(
                    FromWorker::Failed(format!("the training worker failed: {}", ev.message())),
                    None,
                );
            });
        worker.set_onmessage(Some(handler.as_ref().unchecked_ref()));
        worker.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        Ok(Rc::new(Self {
            worker,
            queue,
            _on_message: handler,
            _on_error: on_error,
        }))
    }

    /// Starts a run; images are `(meta, rgb pixels)` (see [`pixels`]).
    pub fn train(
        &self,
        classes: Vec<String>,
        config: TrainConfig,
        train: Vec<(ImageMeta, js_sys::Uint8Array)>,
        val: Vec<(ImageMeta, js_sys::Uint8Array)>,
    ) {
        let (train, mut buffers): (Vec<_>, Vec<_>) = train.into_iter().unzip();
        let (val, val_buffers): (Vec<_>, Vec<_>) = val.into_iter().unzip();
        buffers.extend(val_buffers);
        let message = ToWorker::Train {
            classes,
            config: Box::new(config),
            train,
            val,
        };
        self.send(message, buffers);
    }

    pub fn cancel(&self) {
        self.send(ToWorker::Cancel, Vec::new());
    }

    /// Makes `bytes` (an exported model) the worker's model; answered by `ModelLoaded`.
    pub fn load_model(&self, file: String, bytes: &[u8]) {
        self.send(
            ToWorker::LoadModel { file },
            vec![js_sys::Uint8Array::from(bytes)],
        );
    }

    /// Classifies a photo file with the worker's model; answered by `Prediction`.
    pub fn predict(&self, file: String, bytes: &[u8], top_k: usize) {
        self.send(
            ToWorker::Predict { file, top_k },
            vec![js_sys::Uint8Array::from(bytes)],
        );
    }

    fn send(&self, message: ToWorker, buffers: Vec<js_sys::Uint8Array>) {
        match self.queue.borrow_mut().as_mut() {
            Some(waiting) => waiting.push((message, buffers)),
            None => send(&self.worker, &message, buffers),
        }
    }
}

/// The images' pixels as JS buffers for [`Trainer::train`], a few per browser task so that
/// copying a big dataset out of wasm memory never blocks the page.
pub async fn pixels(
    samples: &[crate::engine::data::Sample],
) -> Vec<(ImageMeta, js_sys::Uint8Array)> {
    let mut out = Vec::with_capacity(samples.len());
    for chunk in samples.chunks(8) {
        for s in chunk {
            let meta = ImageMeta {
                file: s.file.clone(),
                label: s.label,
                width: s.image.width(),
                height: s.image.height(),
            };
            out.push((meta, js_sys::Uint8Array::from(s.image.as_raw().as_slice())));
        }
        super::js::next_task().await;
    }
    out
}

type Queue = Rc<RefCell<Option<Vec<(ToWorker, Vec<js_sys::Uint8Array>)>>>>;

fn send(worker: &Worker, message: &ToWorker, buffers: Vec<js_sys::Uint8Array>) {
    let (data, transfer) = encode(message, buffers);
    if let Err(e) = worker.post_message_with_transfer(&data, &transfer) {
        web_sys::console::error_1(&e);
    }
}

/// The absolute URL of this app's JS glue (`.js`) or wasm (`.wasm`), which Trunk names with a
/// content hash and preloads from the page's head.
fn asset_url(ext: &str) -> Result<String, String> {
    let document = web_sys::window()
        .and_then(|w| w.document())
        .ok_or("no document")?;
    let link = document
        .query_selector(&format!(r#"link[rel$="preload"][href$="{ext}"]"#))
        .ok()
        .flatten()
        .ok_or_else(|| format!("the page does not name its {ext} file (link rel=preload)"))?;
    js::get_string(&link, "href").ok_or_else(|| "the script link has no address".to_string())
}
