//! A run in the worker: the page's pixels as samples, the run with its helpers, and each new
//! best model sent to the page as soon as it is scored.

use std::cell::RefCell;
use std::rc::Rc;

use image::RgbImage;

use crate::app::protocol::{FromWorker, ImageMeta, RunError, RunOutcome};
use crate::engine::EngineError;
use crate::engine::data::{Dataset, Sample};
use crate::engine::insight::inference::Predictor;
use crate::engine::io::export;
use crate::engine::model::Classifier;
use crate::engine::train::config::TrainConfig;
use crate::engine::train::plan::Unfreeze;
use crate::engine::train::report::{EpochReport, Progress, Stop, TrainReport};
use crate::engine::train::run::Trainer;
use crate::engine::train::share::Helpers;

use super::{HELPER_WAIT_MS, Held, LastRun, post};

pub(super) fn samples(
    metas: &[ImageMeta],
    buffers: &[js_sys::Uint8Array],
) -> Result<Vec<Sample>, String> {
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
pub(super) fn snapshot_report(
    config: &TrainConfig,
    epochs: &[EpochReport],
    best: usize,
) -> TrainReport {
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
pub(super) fn send_best(
    classes: Vec<String>,
    config: TrainConfig,
    report: TrainReport,
    model: Classifier,
) {
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

pub(super) async fn run(
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
