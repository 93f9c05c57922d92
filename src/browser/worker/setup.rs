//! Setting up: the device, the pretrained network from the weights, and the device check.

use std::rc::Rc;

use burn::tensor::Device;

use crate::app::device::{self, DeviceKind};
use crate::app::protocol::{Answer, InitError};
use crate::browser::worker::helpers::HelperPool;
use crate::engine::insight::inference::Predictor;
use crate::engine::measure::bench::{self, DeviceSpeed, SharedPass};
use crate::engine::train::share::Helpers;

use super::{HELPER_WAIT_MS, Held};

/// Seconds the device check may spend timing steps: a kind of step predicted to end past it is
/// estimated instead (see `bench::step_fits`).
const BENCH_BUDGET_S: f64 = 20.0;

pub(super) async fn make_device(kind: DeviceKind) -> Result<Device, String> {
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

/// The device check: times the network on `kind` at `batch` images a batch (a second copy
/// when it is not the device in use, dropped afterwards); on the CPU also the head's frozen
/// pass, alone and with the helper workers.
pub(super) async fn bench(
    state: &Held,
    kind: DeviceKind,
    batch: usize,
) -> Result<DeviceSpeed, String> {
    let batch = device::bench_batch(batch);
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
        batch,
        &predictor.device,
        BENCH_BUDGET_S,
    )
    .await
    .map_err(|e| e.to_string())?;
    if kind == DeviceKind::Cpu {
        speed.shared = Some(frozen_pass_speed(state, &predictor, batch).await?);
    }
    Ok(speed)
}

/// The head's frozen pass on the CPU over two batches of `batch` images per worker (so each
/// worker's share is whole batches): by this worker alone, and shared with its helper workers
/// where any are ready.
async fn frozen_pass_speed(
    state: &Held,
    predictor: &Predictor,
    batch: usize,
) -> Result<SharedPass, String> {
    let pool = state.helpers.borrow().clone();
    if let Some(pool) = &pool {
        pool.settle(HELPER_WAIT_MS).await;
    }
    let helpers = pool
        .as_deref()
        .filter(|p| p.ready() > 0)
        .map(|p| p as &dyn Helpers);
    let workers = helpers.map_or(0, |h| h.ready()) + 1;
    bench::shared_pass_speed(
        &predictor.model,
        &predictor.spec,
        2 * batch * workers,
        batch,
        &predictor.device,
        helpers,
    )
    .await
    .map_err(|e| e.to_string())
}

/// `Init`: the device of `device` and the pretrained network from `bytes`, with `helpers`
/// helper workers on the CPU backend. Tasks waiting for the network are told either way.
pub(super) async fn start(
    state: &Held,
    bytes: Option<Rc<Vec<u8>>>,
    device: DeviceKind,
    helpers: usize,
) -> Answer {
    // Helpers of an earlier device stop here.
    *state.helpers.borrow_mut() = None;
    let result = init(bytes.as_deref(), device).await;
    let answer = match result {
        Ok(predictor) => {
            if let (DeviceKind::Cpu, Some(b)) = (device, &bytes)
                && helpers > 0
            {
                *state.helpers.borrow_mut() = Some(Rc::new(HelperPool::start(helpers, b)));
            }
            *state.weights.borrow_mut() = bytes.map(|b| (b, device));
            *state.imagenet.borrow_mut() = Some(Rc::new(predictor));
            *state.init_failed.borrow_mut() = None;
            Answer::Initialized(Ok(()))
        }
        Err(e) => {
            *state.init_failed.borrow_mut() = Some(e.to_string());
            Answer::Initialized(Err(e))
        }
    };
    state.init_done.notify_all();
    answer
}
