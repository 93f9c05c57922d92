//! "Test this device": a short benchmark in the worker on the device in use and on the other one
//! (where there is one): images per second for inference, a head step, a last-block step and a
//! full step, and the estimated time to train 2 classes x 20 photos with each strategy. The
//! figures also go, as JSON, into `data-json` of `data-testid="bench-result"` for tests and
//! teachers. `?bench` in the address runs it once the network is ready; `?bench=N` at N images
//! a batch (the button and a bare `?bench`: `BENCH_BATCH`).

use leptos::prelude::*;
use serde::Serialize;

use crate::app::device::{BENCH_BATCH, DeviceKind, Measured, asked_bench_batch};
use crate::browser::page::setup::backend::BackendState;
use crate::browser::page::setup::pretrained::Pretrained;
use crate::browser::page::state::client::{WorkerContext, WorkerStatus, use_worker};
use crate::engine::measure::bench::{DeviceSpeed, estimate_seconds};
use crate::engine::train::config::{Strategy, TrainConfig};

/// The estimate's classroom case: 2 classes x 20 photos, 4 of each kept for checking, the
/// default 10 epochs.
const TRAIN_IMAGES: usize = 32;
const VAL_IMAGES: usize = 8;
const EPOCHS: usize = 10;

#[derive(Clone, Debug, PartialEq, Serialize)]
struct DeviceResult {
    device: &'static str,
    /// The adapter's name (WebGPU) or the CPU's cores.
    name: String,
    in_use: bool,
    speed: Option<DeviceSpeed>,
    /// The adapter's limits (WebGPU), or the CPU's cores and workers.
    limits: Vec<(String, f64)>,
    /// Seconds per strategy, by name.
    estimates: Vec<(&'static str, f64)>,
    error: Option<String>,
    seconds: f64,
}

#[derive(Clone, Debug, PartialEq)]
enum Check {
    Idle,
    Running(String),
    /// The figures, and the finding kept for the next visit.
    Done(Vec<DeviceResult>, Option<Measured>),
}

/// The batch `?bench` asks the check to run at, if it is in the address.
fn wants_bench() -> Option<usize> {
    crate::browser::js::url_param("bench").map(|n| asked_bench_batch(Some(&n)))
}

fn cpu_name(helpers: usize) -> String {
    let cores = window().navigator().hardware_concurrency();
    format!(
        "this browser's CPU backend (wasm SIMD, one thread per worker, {} worker{}; the machine has {cores} cores)",
        helpers + 1,
        if helpers == 0 { "" } else { "s" }
    )
}

/// The device check's finding for the next visit, when both devices were timed: the estimated
/// time of the default strategy's run on each.
fn finding(results: &[DeviceResult], adapter: Option<String>) -> Option<Measured> {
    let default = TrainConfig::new().strategy.name();
    let secs = |device: DeviceKind| {
        results
            .iter()
            .find(|r| r.device == device.name())?
            .estimates
            .iter()
            .find(|(name, _)| *name == default)
            .map(|(_, s)| *s)
    };
    Some(Measured {
        adapter: adapter?,
        run: format!("{default} training of 2 classes x 20 photos"),
        webgpu_s: secs(DeviceKind::WebGpu)?,
        cpu_s: secs(DeviceKind::Cpu)?,
    })
}

#[component]
pub fn DeviceCheck(backend: RwSignal<BackendState>) -> impl IntoView {
    let worker = use_worker();
    let (status, in_use) = (worker.status, worker.device);
    let handle = WorkerContext::handle();
    let check = RwSignal::new(Check::Idle);
    let pretrained = Pretrained::get();
    let ready = move || status.with(|s| *s == WorkerStatus::Ready) && in_use.get().is_some();

    let run = move |batch: usize| {
        if matches!(check.get_untracked(), Check::Running(_)) {
            return;
        }
        let Some(current) = in_use.get_untracked() else {
            return;
        };
        let adapter = match backend.get_untracked() {
            BackendState::Ready(choice) => choice.adapter,
            BackendState::Checking => None,
        };
        let mut devices = vec![current];
        if adapter.is_some() {
            devices.push(current.other());
        }
        let worker = handle.client();
        let helpers = worker.helpers.get_untracked();
        leptos::task::spawn_local(async move {
            let mut results = Vec::new();
            for device in devices {
                check.set(Check::Running(format!(
                    "Timing the network on {}…",
                    label(device)
                )));
                let started = crate::browser::js::now_ms();
                let result = worker.bench(device, batch).await;
                let (name, limits) = match device {
                    DeviceKind::WebGpu => (
                        adapter.clone().unwrap_or_default(),
                        crate::browser::page::setup::backend::adapter_limits().await,
                    ),
                    DeviceKind::Cpu => {
                        let cores = window().navigator().hardware_concurrency();
                        let workers = if device == current { helpers + 1 } else { 1 };
                        (
                            cpu_name(workers - 1),
                            vec![("cores".into(), cores), ("workers".into(), workers as f64)],
                        )
                    }
                };
                let (speed, error) = match result {
                    Ok(speed) => (Some(speed), None),
                    Err(e) => (None, Some(e)),
                };
                let estimates = speed
                    .as_ref()
                    .map(|s| {
                        let secs = estimate_seconds(s, TRAIN_IMAGES, VAL_IMAGES, EPOCHS);
                        Strategy::ALL.iter().map(|s| s.name()).zip(secs).collect()
                    })
                    .unwrap_or_default();
                results.push(DeviceResult {
                    device: device.name(),
                    name,
                    in_use: device == current,
                    speed,
                    limits,
                    estimates,
                    error,
                    seconds: (crate::browser::js::now_ms() - started) / 1000.0,
                });
            }
            let timed = results
                .iter()
                .find(|r| r.in_use)
                .and_then(|r| r.speed.as_ref());
            if let (Some(speed), Some(kind)) = (timed, pretrained.loaded.get_untracked()) {
                pretrained.measured.set(Some((kind, speed.inference_ips)));
            }
            let found = finding(&results, adapter);
            if let Some(m) = &found {
                crate::browser::page::setup::backend::remember(m);
            }
            check.set(Check::Done(results, found));
        });
    };

    // `?bench`: once, when the network is ready.
    if let Some(batch) = wants_bench() {
        crate::browser::page::state::client::run_once_when(ready, move || run(batch));
    }

    view! {
        <section class="card" aria-labelledby="bench-title">
            <h2 id="bench-title">"Test this device"</h2>
            <p class="muted small">
                "A short benchmark of this computer: how fast the network runs on the device in use "
                "and on the other one, and how long teaching 2 classes of 20 photos would take."
            </p>
            <button
                type="button"
                class="button secondary"
                data-testid="bench-button"
                disabled=move || !ready() || matches!(check.get(), Check::Running(_))
                on:click=move |_| run(BENCH_BATCH)
            >
                "Test this device"
            </button>
            {move || match check.get() {
                Check::Idle => ().into_any(),
                Check::Running(text) => view! { <p class="muted" role="status">{text}</p> }.into_any(),
                Check::Done(results, found) => {
                    view! {
                        <BenchTable results />
                        <Finding found in_use=in_use.get_untracked() />
                    }
                        .into_any()
                }
            }}
        </section>
    }
}

fn label(device: DeviceKind) -> &'static str {
    match device {
        DeviceKind::WebGpu => "WebGPU",
        DeviceKind::Cpu => "the CPU",
    }
}

fn seconds(s: f64) -> String {
    if s < 90.0 {
        format!("{s:.0} s")
    } else {
        format!("{:.1} min", s / 60.0)
    }
}

/// What the check decided for the next visit, with a link to switch now.
#[component]
fn Finding(found: Option<Measured>, in_use: Option<DeviceKind>) -> impl IntoView {
    let m = found?;
    let faster = m.faster();
    let now = (Some(faster) != in_use).then(|| {
        let href = format!("?device={}", faster.name());
        view! {
            " "
            <a class="link-button" data-testid="bench-switch" href=href>
                {format!("Use {} now", label(faster))}
            </a>
        }
    });
    Some(view! {
        <p data-testid="bench-finding" data-faster=faster.name()>
            {format!(
                "{} is faster here for {} (about {:.0} s against {:.0} s): the app will use it from now on.",
                if faster == DeviceKind::Cpu { "The CPU" } else { "WebGPU" },
                m.run,
                m.webgpu_s.min(m.cpu_s),
                m.webgpu_s.max(m.cpu_s),
            )}
            {now}
        </p>
    })
}

#[component]
fn BenchTable(results: Vec<DeviceResult>) -> impl IntoView {
    let json = serde_json::to_string(&results).unwrap_or_default();
    let rows = results
        .into_iter()
        .map(|r| {
            let head = format!(
                "{}{}",
                if r.device == "webgpu" { "WebGPU" } else { "CPU" },
                if r.in_use { " (in use)" } else { "" }
            );
            let body = match (&r.speed, &r.error) {
                (Some(s), _) => {
                    let estimates = r
                        .estimates
                        .iter()
                        .map(|(name, secs)| format!("{name} {}", seconds(*secs)))
                        .collect::<Vec<_>>()
                        .join(", ");
                    let guessed = if s.estimated.is_empty() {
                        String::new()
                    } else {
                        format!(" (estimated, no time to time them: {})", s.estimated.join(", "))
                    };
                    let shared = s
                        .shared
                        .as_ref()
                        .map(|p| {
                            let helped = if p.workers > 1 {
                                format!(", {:.1} in {} workers", p.shared_ips, p.workers)
                            } else {
                                String::new()
                            };
                            format!(
                                " Frozen layers' pass (head training), {} images: {:.1} images/s in one worker{helped}.",
                                p.images, p.alone_ips
                            )
                        })
                        .unwrap_or_default();
                    let limits = if r.limits.is_empty() {
                        String::new()
                    } else {
                        format!(
                            " Limits: {}.",
                            r.limits
                                .iter()
                                .map(|(k, v)| format!("{k} {v}"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    };
                    format!(
                        "{:.1} images/s inference, {:.1} head step, {:.1} last-block step, {:.1} full step{guessed}.{shared} \
                         2 classes x 20 photos, {EPOCHS} epochs: {estimates}.{limits}",
                        s.inference_ips, s.head_step_ips, s.last_block_step_ips, s.full_step_ips
                    )
                }
                (None, Some(e)) => format!("Not measured: {e}"),
                (None, None) => String::new(),
            };
            view! {
                <li>
                    <strong>{head}</strong>
                    " on "
                    {r.name.clone()}
                    ": "
                    {body}
                    <span class="muted small">{format!(" (checked in {:.0} s)", r.seconds)}</span>
                </li>
            }
        })
        .collect_view();
    view! {
        <ul class="bench-results" data-testid="bench-result" data-json=json>
            {rows}
        </ul>
    }
}
