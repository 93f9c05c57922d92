//! The worker: owns the device and every model on it (the ImageNet classifier, the trained
//! model) and decodes photos, so the page never runs the GPU or a long decode. Each
//! [`Request`] gets exactly one [`FromWorker::Answer`] (see `crate::app::protocol`). It runs this same
//! wasm module: `start` sees no `window` and calls [`run_worker`].

pub(crate) mod helpers;
mod insight;
pub(crate) mod port;
mod setup;
mod training;

use insight::{classify, decode, explain, feature_space, layer_views, load_model, profile};
use setup::bench;
use training::run;

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::MessageEvent;

use crate::app::device::DeviceKind;
use crate::app::protocol::{Answer, Decoded, FromWorker, Request, RunError, ToWorker};
use crate::browser::notify::Notify;
use crate::browser::wire::{pack, unpack};
use crate::browser::worker::helpers::HelperPool;
use crate::browser::worker::port::{scope, send};
use crate::engine::data::Dataset;
use crate::engine::insight::inference::Predictor;

type Buffers = Vec<js_sys::Uint8Array>;

/// Longest wait for helper workers still starting before a device check or a run (they then
/// go without the ones not ready).
const HELPER_WAIT_MS: f64 = 10_000.0;

/// Sends a message; one that cannot be encoded becomes a `Crashed` with the reason (the page
/// then knows the answer is lost and starts a new worker).
fn post(message: &FromWorker, buffers: Buffers) {
    match pack(message, buffers) {
        Ok((data, transfer)) => send(&data, &transfer),
        Err(e) => {
            if let Ok((data, transfer)) = pack(&FromWorker::Crashed(e), Vec::new()) {
                send(&data, &transfer);
            }
        }
    }
}

/// Answers request `id`. An answer JSON cannot carry (a NaN) goes back as the same kind of
/// answer failed with the reason, so the request is still answered once. (The answer is
/// encoded once: a run's report is large.)
fn answer(id: u64, body: Answer, buffers: Buffers) {
    let message = FromWorker::Answer { id, body };
    match pack(&message, buffers) {
        Ok((data, transfer)) => send(&data, &transfer),
        Err(e) => {
            if let FromWorker::Answer { body, .. } = message {
                let body = body.failed(e);
                post(&FromWorker::Answer { id, body }, Vec::new());
            }
        }
    }
}

/// What the worker holds: the models on its device, and the run going.
#[derive(Default)]
struct Held {
    /// The ImageNet classifier (its backbone is every run's start) and the device.
    imagenet: RefCell<Option<Rc<Predictor>>>,
    /// The weights and the device `Init` used (the device check builds the network on the
    /// other device from them).
    weights: RefCell<Option<(Rc<Vec<u8>>, DeviceKind)>>,
    /// Set when `Init` failed, so waiting requests give up.
    init_failed: RefCell<Option<String>>,
    /// Told when an `Init` has ended, either way.
    init_done: Notify,
    /// Helper workers sharing the frozen layers' pass (CPU only).
    helpers: RefCell<Option<Rc<HelperPool>>>,
    /// The model that `Predict` uses: the last trained or loaded one.
    trained: RefCell<Option<Rc<Predictor>>>,
    cancel: Cell<bool>,
    busy: Cell<bool>,
    /// The last finished run's photos and models, for its feature map.
    last_run: RefCell<Option<Rc<LastRun>>>,
}

/// What the feature map of a finished run needs.
struct LastRun {
    dataset: Dataset,
    val_predicted: Vec<usize>,
    pretrained: crate::engine::model::Backbone,
    trained: Rc<Predictor>,
    /// The run trained part of the backbone (not the head alone).
    backbone_trained: bool,
}

impl Held {
    /// The ImageNet model, once `Init` has built it (requests may arrive while it starts).
    async fn imagenet(&self) -> Result<Rc<Predictor>, String> {
        loop {
            if let Some(p) = self.imagenet.borrow().as_ref() {
                return Ok(Rc::clone(p));
            }
            if let Some(e) = self.init_failed.borrow().as_ref() {
                return Err(e.clone());
            }
            self.init_done.notified().await;
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

/// The worker's entry point: listens for [`Request`]s.
pub fn run_worker() {
    std::panic::set_hook(Box::new(|info| {
        console_error_panic_hook::hook(info);
        post(
            &FromWorker::Crashed(format!("the worker stopped: {info}")),
            Vec::new(),
        );
    }));
    let state = Rc::new(Held::default());
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |ev: MessageEvent| {
        let (Request { id, body }, buffers) = match unpack::<Request>(&ev.data()) {
            Ok(decoded) => decoded,
            Err(e) => return post(&FromWorker::Crashed(e), Vec::new()),
        };
        let state = Rc::clone(&state);
        wasm_bindgen_futures::spawn_local(async move {
            let (body, buffers) = handle(&state, body, buffers).await;
            answer(id, body, buffers);
        });
    });
    scope().set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    on_message.forget();
    post(&FromWorker::Started, Vec::new());
}

async fn handle(state: &Held, request: ToWorker, buffers: Buffers) -> (Answer, Buffers) {
    let first = || buffers.first().map(js_sys::Uint8Array::to_vec);
    match request {
        ToWorker::Init { device, helpers } => {
            let bytes = first().map(Rc::new);
            (
                setup::start(state, bytes, device, helpers).await,
                Vec::new(),
            )
        }
        ToWorker::Decode { file, backbone } => match decode(&file, first(), backbone) {
            Ok(image) => {
                let size = Decoded {
                    width: image.width(),
                    height: image.height(),
                };
                let pixels = js_sys::Uint8Array::from(image.as_raw().as_slice());
                (Answer::Decoded(Ok(size)), vec![pixels])
            }
            Err(e) => (Answer::Decoded(Err(e)), Vec::new()),
        },
        ToWorker::Classify { file, top_k } => {
            let result = match state.imagenet().await {
                Ok(predictor) => classify(&predictor, &file, first(), top_k).await,
                Err(e) => Err(e),
            };
            (Answer::Classified(result), Vec::new())
        }
        ToWorker::Predict { file, top_k } => {
            let trained = state.trained.borrow().clone();
            let result = match trained {
                Some(predictor) => classify(&predictor, &file, first(), top_k).await,
                None => Err("there is no trained model yet".into()),
            };
            (Answer::Classified(result), Vec::new())
        }
        ToWorker::LoadModel { file } => {
            let result = load_model(state, &file, first()).await;
            (Answer::ModelLoaded(result), Vec::new())
        }
        ToWorker::Bench { device, batch } => (
            Answer::Benched(bench(state, device, batch).await),
            Vec::new(),
        ),
        ToWorker::Explain {
            file,
            model,
            pixels,
            classes,
        } => match explain(state, &file, model, pixels, first(), classes).await {
            Ok((heats, pngs)) => (
                Answer::Explained(Ok(heats)),
                pngs.iter()
                    .map(|p| js_sys::Uint8Array::from(p.as_slice()))
                    .collect(),
            ),
            Err(e) => (Answer::Explained(Err(e)), Vec::new()),
        },
        ToWorker::FeatureSpace => (Answer::FeatureSpace(feature_space(state).await), Vec::new()),
        ToWorker::Profile { batch, passes } => (
            Answer::Profiled(profile(state, batch, &passes).await),
            Vec::new(),
        ),
        ToWorker::Layers { file } => match layer_views(state, &file, first()).await {
            Ok((views, pngs)) => (
                Answer::Layers(Ok(views)),
                pngs.iter()
                    .map(|p| js_sys::Uint8Array::from(p.as_slice()))
                    .collect(),
            ),
            Err(e) => (Answer::Layers(Err(e)), Vec::new()),
        },
        ToWorker::Cancel => {
            state.cancel.set(true);
            (Answer::Done, Vec::new())
        }
        ToWorker::Train {
            classes,
            config,
            train,
            val,
        } => {
            if state.busy.replace(true) {
                let e = RunError::Failed("a training run is already going".into());
                return (Answer::RunEnded(Err(e)), Vec::new());
            }
            let _busy = Busy(&state.busy);
            state.cancel.set(false);
            match run(state, classes, &config, &train, &val, &buffers).await {
                Ok((outcome, model)) => (Answer::RunEnded(Ok(outcome)), vec![model]),
                Err(e) => (Answer::RunEnded(Err(e)), Vec::new()),
            }
        }
    }
}
