//! The worker: owns the device and every model on it (the ImageNet classifier, the trained
//! model) and decodes photos, so the page never runs the GPU or a long decode. Each
//! [`Request`] gets exactly one [`FromWorker::Answer`] (see `crate::app::protocol`). It runs this same
//! wasm module: `start` sees no `window` and calls [`run_worker`].

pub(crate) mod helpers;
pub(crate) mod port;

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use burn::tensor::Device;
use image::RgbImage;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::MessageEvent;

use crate::app::device::DeviceKind;
use crate::app::protocol::{
    Answer, Decoded, Explained, FromWorker, ImageMeta, InitError, Request, RunError, RunOutcome,
    ToWorker, Which,
};
use crate::browser::notify::Notify;
use crate::browser::wire::{pack, unpack};
use crate::browser::worker::helpers::HelperPool;
use crate::browser::worker::port::{scope, send};
use crate::engine::EngineError;
use crate::engine::data::preprocess;
use crate::engine::data::{self, Dataset, Sample};
use crate::engine::insight::gradcam;
use crate::engine::insight::inference::{ClassScore, Predictor, top_k};
use crate::engine::insight::layer_views::{self, LayerView};
use crate::engine::insight::pca;
use crate::engine::io::export;
use crate::engine::measure::bench::{self, DeviceSpeed};
use crate::engine::model::{BackboneKind, Classifier};
use crate::engine::train::config::TrainConfig;
use crate::engine::train::plan::Unfreeze;
use crate::engine::train::report::{EpochReport, Progress, Stop, TrainReport};
use crate::engine::train::run::Trainer;
use crate::engine::train::share::Helpers;

type Buffers = Vec<js_sys::Uint8Array>;

/// Images per timed batch of the device check: small enough that a software GPU (SwiftShader:
/// about 6 s an image, first pass with its shader compiles) finishes the check in under a
/// minute.
const BENCH_BATCH: usize = 2;
/// Seconds the device check may spend timing steps: a kind of step predicted to end past it is
/// estimated instead (see `bench::step_fits`).
const BENCH_BUDGET_S: f64 = 20.0;

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
            // Helpers of an earlier device stop here.
            *state.helpers.borrow_mut() = None;
            let result = init(bytes.as_deref(), device).await;
            match result {
                Ok(predictor) => {
                    if let (DeviceKind::Cpu, Some(b)) = (device, &bytes)
                        && helpers > 0
                    {
                        *state.helpers.borrow_mut() = Some(Rc::new(HelperPool::start(helpers, b)));
                    }
                    *state.weights.borrow_mut() = bytes.map(|b| (b, device));
                    *state.imagenet.borrow_mut() = Some(Rc::new(predictor));
                    *state.init_failed.borrow_mut() = None;
                    state.init_done.notify_all();
                    (Answer::Initialized(Ok(())), Vec::new())
                }
                Err(e) => {
                    *state.init_failed.borrow_mut() = Some(e.to_string());
                    state.init_done.notify_all();
                    (Answer::Initialized(Err(e)), Vec::new())
                }
            }
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
        ToWorker::Bench { device } => (Answer::Benched(bench(state, device).await), Vec::new()),
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

async fn make_device(kind: DeviceKind) -> Result<Device, String> {
    match kind {
        DeviceKind::WebGpu => Device::wgpu_options()
            .init_async()
            .await
            .map_err(|e| format!("WebGPU did not start: {e}")),
        DeviceKind::Cpu => Ok(Device::flex()),
    }
}

async fn init(bytes: Option<&Vec<u8>>, kind: DeviceKind) -> Result<Predictor, InitError> {
    let bytes = bytes.ok_or_else(|| InitError::Weights("no weights were sent".into()))?;
    let device = make_device(kind).await.map_err(InitError::Device)?;
    Predictor::from_safetensors(bytes, &device).map_err(|e| InitError::Weights(e.to_string()))
}

/// The device check: times the network on `kind` (a second copy when it is not the device in
/// use, dropped afterwards).
async fn bench(state: &Held, kind: DeviceKind) -> Result<DeviceSpeed, String> {
    let imagenet = state.imagenet().await?;
    let (weights, current) = state.weights.borrow().clone().ok_or("no weights yet")?;
    let predictor = if kind == current {
        imagenet
    } else {
        let device = make_device(kind).await?;
        Rc::new(Predictor::from_safetensors(&weights, &device).map_err(|e| e.to_string())?)
    };
    let mut speed = bench::device_speed(
        &predictor.model,
        &predictor.spec,
        BENCH_BATCH,
        &predictor.device,
        BENCH_BUDGET_S,
    )
    .await
    .map_err(|e| e.to_string())?;
    let pool = state.helpers.borrow().clone();
    if let Some(pool) = pool.filter(|_| kind == DeviceKind::Cpu) {
        pool.settle(HELPER_WAIT_MS).await;
        if pool.ready() == 0 {
            return Ok(speed);
        }
        // Eight images per worker: the head's frozen pass of a small class set.
        let images = 8 * (pool.ready() + 1);
        let shared = bench::shared_pass_speed(
            &predictor.model,
            &predictor.spec,
            images,
            BENCH_BATCH,
            &predictor.device,
            pool.as_ref(),
        )
        .await
        .map_err(|e| e.to_string())?;
        speed.shared = Some(shared);
    }
    Ok(speed)
}

/// A photo file at `backbone`'s working size (decoded here, off the page).
fn decode(file: &str, bytes: Option<Vec<u8>>, backbone: BackboneKind) -> Result<RgbImage, String> {
    let bytes = bytes.ok_or("no photo was sent")?;
    data::load_sample(file, &bytes, 0, backbone.spec())
        .map(|s| s.image)
        .map_err(|e| e.to_string())
}

async fn classify(
    predictor: &Predictor,
    file: &str,
    bytes: Option<Vec<u8>>,
    top_k: usize,
) -> Result<Vec<ClassScore>, String> {
    let bytes = bytes.ok_or("no photo was sent")?;
    predictor
        .predict_image(file, &bytes, top_k)
        .await
        .map(|p| p.top)
        .map_err(|e| e.to_string())
}

/// Grad-CAM of `which` model on a photo (a file, or working-size pixels), for `classes` (none:
/// the predicted class); each heatmap with its PNG over the network's input.
async fn explain(
    state: &Held,
    file: &str,
    which: Which,
    pixels: Option<(u32, u32)>,
    bytes: Option<Vec<u8>>,
    classes: Vec<usize>,
) -> Result<(Vec<Explained>, Vec<Vec<u8>>), String> {
    let predictor = match which {
        Which::ImageNet => state.imagenet().await?,
        Which::Trained => state
            .trained
            .borrow()
            .clone()
            .ok_or("there is no trained model yet")?,
    };
    let bytes = bytes.ok_or("no photo was sent")?;
    let spec = &predictor.spec;
    let input = match pixels {
        Some((w, h)) => {
            let image = RgbImage::from_raw(w, h, bytes)
                .ok_or_else(|| format!("{file}: pixel buffer does not match its size"))?;
            preprocess::eval_transform(&image, spec)
        }
        None => preprocess::eval_transform(
            &preprocess::decode(file, &bytes).map_err(|e| e.to_string())?,
            spec,
        ),
    };
    let cam = gradcam::grad_cam(&predictor.model, &input, spec, &classes, &predictor.device)
        .await
        .map_err(|e| e.to_string())?;
    let scores = top_k(&cam.logits, cam.logits.len(), &predictor.labels);
    let heats = cam.heats;
    let mut pngs = Vec::with_capacity(heats.len());
    let mut out = Vec::with_capacity(heats.len());
    for heat in heats {
        pngs.push(preprocess::png(&gradcam::overlay(&input, &heat)).map_err(|e| e.to_string())?);
        let score = scores.iter().find(|s| s.index == heat.class);
        out.push(Explained {
            label: score.map_or_else(|| format!("class {}", heat.class), |s| s.label.clone()),
            prob: score.map_or(0.0, |s| s.prob),
            quadrants: heat.quadrant_shares(),
            heat,
        });
    }
    Ok((out, pngs))
}

/// Where the time goes on the device in use (the pretrained network, pattern images).
async fn profile(
    state: &Held,
    batch: usize,
    passes: &[crate::engine::measure::profile::Pass],
) -> Result<Vec<crate::engine::measure::profile::Profiles>, String> {
    let p = state.imagenet().await?;
    crate::engine::measure::profile::run(&p.model, &p.spec, batch, 1, passes, &p.device)
        .await
        .map_err(|e| e.to_string())
}

/// The last run's photos in the feature space, before and (when the backbone learned) after.
async fn feature_space(state: &Held) -> Result<pca::FeatureSpace, String> {
    // A clone of the `Rc`: no borrow is held while the device works (a run may start meanwhile).
    let run = state.last_run.borrow().clone();
    let run = run.ok_or("no run has finished in this session yet")?;
    let p = &run.trained;
    pca::feature_space(
        &run.pretrained,
        &p.model.backbone,
        run.backbone_trained,
        &run.dataset,
        &run.val_predicted,
        &p.spec,
        &p.device,
    )
    .await
    .map_err(|e| e.to_string())
}

/// The pretrained network's layer views of a photo file, each grid as a PNG.
async fn layer_views(
    state: &Held,
    file: &str,
    bytes: Option<Vec<u8>>,
) -> Result<(Vec<LayerView>, Vec<Vec<u8>>), String> {
    let predictor = state.imagenet().await?;
    let bytes = bytes.ok_or("no photo was sent")?;
    let input = preprocess::eval_transform(
        &preprocess::decode(file, &bytes).map_err(|e| e.to_string())?,
        &predictor.spec,
    );
    let views =
        layer_views::layer_views(&predictor.model, &input, &predictor.spec, &predictor.device)
            .await
            .map_err(|e| e.to_string())?;
    let mut pngs = Vec::with_capacity(views.len());
    let mut out = Vec::with_capacity(views.len());
    for (view, grid) in views {
        pngs.push(preprocess::png(&grid).map_err(|e| e.to_string())?);
        out.push(view);
    }
    Ok((out, pngs))
}

async fn load_model(
    state: &Held,
    file: &str,
    bytes: Option<Vec<u8>>,
) -> Result<Vec<String>, String> {
    let bytes = bytes.ok_or("no model was sent")?;
    let device = state.imagenet().await?.device.clone();
    let predictor = Predictor::from_model_file(file, &bytes, &device).map_err(|e| e.to_string())?;
    let labels = predictor.labels.clone();
    *state.trained.borrow_mut() = Some(Rc::new(predictor));
    Ok(labels)
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

/// The report of a run's best epoch so far, for its `BestSoFar` snapshot.
fn snapshot_report(config: &TrainConfig, epochs: &[EpochReport], best: usize) -> TrainReport {
    let seconds = epochs.iter().map(|e| e.seconds).sum();
    let unfinished = Stop::Unfinished {
        epochs: epochs.len(),
    };
    TrainReport::new(
        config.strategy,
        epochs.to_vec(),
        best,
        seconds,
        Some(unfinished),
    )
}

/// Exports a new best model and sends it to the page, in the background while training goes
/// on (reading the weights back from the GPU takes a while).
fn send_best(classes: Vec<String>, config: TrainConfig, report: TrainReport, model: Classifier) {
    wasm_bindgen_futures::spawn_local(async move {
        let meta = export::export_metadata(&classes, &config, &report);
        match export::export_safetensors(&model, meta).await {
            Ok(bytes) => post(
                &FromWorker::BestSoFar { report },
                vec![js_sys::Uint8Array::from(bytes.as_slice())],
            ),
            Err(e) => leptos::logging::warn!("the best model so far was not kept: {e}"),
        }
    });
}

async fn run(
    state: &Held,
    classes: Vec<String>,
    config: &TrainConfig,
    train: &[ImageMeta],
    val: &[ImageMeta],
    buffers: &[js_sys::Uint8Array],
) -> Result<(RunOutcome, js_sys::Uint8Array), RunError> {
    let failed = |e: String| RunError::Failed(e);
    // A run that ends without a model leaves no feature map (not the previous run's).
    *state.last_run.borrow_mut() = None;
    let imagenet = state.imagenet().await.map_err(failed)?;
    let (backbone, device) = (imagenet.model.backbone.clone(), imagenet.device.clone());
    let spec = imagenet.spec.clone();
    if buffers.len() != train.len() + val.len() {
        return Err(failed("image buffers do not match the image list".into()));
    }
    let dataset = Dataset {
        classes,
        train: samples(train, &buffers[..train.len()]).map_err(failed)?,
        val: samples(val, &buffers[train.len()..]).map_err(failed)?,
        skipped: Vec::new(),
    };
    let epochs = RefCell::new(Vec::<EpochReport>::new());
    let pool = state.helpers.borrow().clone();
    if let Some(pool) = &pool {
        // Worth waiting for about as long as the worker alone takes for the pass (0.2 s a
        // photo on a slow CPU).
        let alone_ms = 200.0 * (train.len() + val.len()) as f64;
        pool.settle(alone_ms.min(HELPER_WAIT_MS)).await;
    }
    let trainer = Trainer {
        pretrained: &backbone,
        data: &dataset,
        spec: &spec,
        cfg: config,
        device: &device,
        helpers: pool.as_deref().map(|p| p as &dyn Helpers),
    };
    let result = trainer
        .run(
            |p| {
                if let Progress::Epoch(r) = p {
                    epochs.borrow_mut().push(r.clone());
                }
                post(&FromWorker::Progress(p.clone()), Vec::new());
                !state.cancel.get()
            },
            |epoch, model| {
                let report = snapshot_report(config, &epochs.borrow(), epoch);
                send_best(
                    dataset.classes.clone(),
                    config.clone(),
                    report,
                    model.clone(),
                );
            },
        )
        .await;
    let (model, report) = match result {
        Ok(done) => done,
        Err(EngineError::Cancelled) => return Err(RunError::Cancelled),
        // A failure that a cancel caused (a helper's share abandoned mid-way).
        Err(_) if state.cancel.get() => return Err(RunError::Cancelled),
        Err(e) => return Err(failed(e.to_string())),
    };
    let meta = export::export_metadata(&dataset.classes, config, &report);
    let trained = Rc::new(Predictor::new(
        model.clone(),
        dataset.classes.clone(),
        spec,
        device.clone(),
    ));
    *state.trained.borrow_mut() = Some(Rc::clone(&trained));
    // Kept for the feature map, which is drawn only when asked for.
    *state.last_run.borrow_mut() = Some(Rc::new(LastRun {
        backbone_trained: crate::engine::train::plan::stages(config)
            .iter()
            .any(|s| s.epochs > 0 && s.unfreeze != Unfreeze::Blocks(0)),
        val_predicted: report.val_predicted.clone(),
        pretrained: backbone,
        trained,
        // Moved: the run is over and needs its photos no more.
        dataset,
    }));
    let bytes = export::export_safetensors(&model, meta)
        .await
        .map_err(|e| failed(format!("the model could not be exported: {e}")))?;
    let outcome = RunOutcome {
        report,
        cancelled: state.cancel.get(),
    };
    Ok((outcome, js_sys::Uint8Array::from(bytes.as_slice())))
}
