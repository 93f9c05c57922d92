//! The training worker: owns the device, the pretrained backbone and the trained model, and
//! answers each [`ToWorker`] request with exactly one [`FromWorker`] (see `crate::protocol`).
//! It runs this same wasm module: `start` sees no `window` and calls [`run_worker`].

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use burn::tensor::Device;
use image::RgbImage;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{DedicatedWorkerGlobalScope, MessageEvent};

use super::js;
use super::trainer::{pack, unpack};
use crate::engine::data::{Dataset, Sample};
use crate::engine::inference::Predictor;
use crate::engine::model::{Backbone, LITE0};
use crate::engine::training::{self, TrainConfig};
use crate::engine::weights;
use crate::protocol::{FromWorker, ImageMeta, RunError, RunOutcome, ToWorker};

fn scope() -> DedicatedWorkerGlobalScope {
    js_sys::global().unchecked_into()
}

/// Sends a message; one that cannot be encoded becomes a `Crashed` with the reason (the page
/// then knows the answer is lost and starts a new worker).
fn post(message: &FromWorker, buffers: Vec<js_sys::Uint8Array>) {
    let (data, transfer) = match pack(message, buffers) {
        Ok(packed) => packed,
        Err(e) => match pack(&FromWorker::Crashed(e), Vec::new()) {
            Ok(packed) => packed,
            Err(_) => return,
        },
    };
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

/// Clears `busy` however the run ends (an error return included), so "a training run is
/// already going" never sticks.
struct Busy<'a>(&'a Cell<bool>);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

/// The worker's entry point: listens for [`ToWorker`] messages.
pub fn run_worker() {
    std::panic::set_hook(Box::new(|info| {
        console_error_panic_hook::hook(info);
        post(
            &FromWorker::Crashed(format!("the training worker stopped: {info}")),
            Vec::new(),
        );
    }));
    let state = Rc::new(WorkerState::default());
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |ev: MessageEvent| {
        let (message, buffers) = match unpack::<ToWorker>(&ev.data()) {
            Ok(decoded) => decoded,
            Err(e) => return post(&FromWorker::Crashed(e), Vec::new()),
        };
        let state = Rc::clone(&state);
        match message {
            ToWorker::Cancel => state.cancel.set(true),
            ToWorker::Init => wasm_bindgen_futures::spawn_local(async move {
                let result = match init(&buffers).await {
                    Ok(loaded) => {
                        *state.model.borrow_mut() = Some(loaded);
                        Ok(())
                    }
                    Err(e) => {
                        state.init_failed.set(true);
                        Err(e)
                    }
                };
                post(&FromWorker::Initialized(result), Vec::new());
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
                        &FromWorker::RunEnded(Err(RunError::Failed(
                            "a training run is already going".into(),
                        ))),
                        Vec::new(),
                    );
                }
                state.cancel.set(false);
                wasm_bindgen_futures::spawn_local(async move {
                    let _busy = Busy(&state.busy);
                    let (result, model) =
                        match run(&state, classes, &config, &train, &val, &buffers).await {
                            Ok((outcome, model)) => (Ok(outcome), Some(model)),
                            Err(e) => (Err(e), None),
                        };
                    post(&FromWorker::RunEnded(result), model.into_iter().collect());
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
) -> Result<(RunOutcome, js_sys::Uint8Array), RunError> {
    let failed = |e: String| RunError::Failed(e);
    let Some((backbone, device)) = state.model.borrow().clone() else {
        return Err(failed("the training worker has no weights yet".into()));
    };
    if buffers.len() != train.len() + val.len() {
        return Err(failed("image buffers do not match the image list".into()));
    }
    let dataset = Dataset {
        classes,
        train: samples(train, &buffers[..train.len()]).map_err(failed)?,
        val: samples(val, &buffers[train.len()..]).map_err(failed)?,
        skipped: Vec::new(),
    };
    let result = training::train(&backbone, &dataset, &LITE0, config, &device, |p| {
        post(&FromWorker::Progress(p.clone()), Vec::new());
        !state.cancel.get()
    })
    .await;
    let (model, report) = match result {
        Ok(done) => done,
        Err(_) if state.cancel.get() => return Err(RunError::Cancelled),
        Err(e) => return Err(failed(e.to_string())),
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
        .map_err(|e| failed(format!("the model could not be exported: {e}")))?;
    let outcome = RunOutcome {
        report,
        cancelled: state.cancel.get(),
    };
    Ok((outcome, js_sys::Uint8Array::from(bytes.as_slice())))
}
