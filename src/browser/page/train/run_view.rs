//! The run's controls and status: Train and Cancel, the worker's state, the progress bar and
//! the status line, all drawn from the run's state machine ([`RunState`]).

use leptos::prelude::*;

use crate::app::device::DeviceKind;
use crate::app::run::{Phase, RunState};
use crate::browser::page::state::client::{WorkerStatus, use_worker};
use crate::browser::page::state::model_file::ModelFile;

#[component]
pub fn RunControls(
    run: RwSignal<RunState<ModelFile>, LocalStorage>,
    start: Callback<()>,
    cancel: Callback<()>,
) -> impl IntoView {
    let worker = use_worker();
    let (status, device) = (worker.status, worker.device);
    // A run that failed on the GPU (a lost device, out of memory) can go on on the CPU: the
    // page reloads on it, and the autosave brings the work and the kept model back.
    let offer_cpu = move || {
        run.with(|r| matches!(r.phase, Phase::Failed(_)))
            && device.get() == Some(DeviceKind::WebGpu)
    };
    let running = move || run.with(RunState::running);
    let ready = move || status.with(|s| *s == WorkerStatus::Ready);
    let progress = move || run.with(|r| r.progress);
    view! {
        <div class="train-actions">
            <button
                type="button"
                class="button"
                data-testid="train-button"
                disabled=move || !ready() || running()
                on:click=move |_| start.run(())
            >
                "Train"
            </button>
            <button
                type="button"
                class="button secondary"
                data-testid="cancel-button"
                disabled=move || !running()
                on:click=move |_| cancel.run(())
            >
                "Cancel"
            </button>
        </div>
        <WorkerLine status />
        <progress
            class="train-progress"
            data-testid="train-progress"
            max="1"
            prop:value=progress
            data-value=move || format!("{:.4}", progress())
        ></progress>
        <p
            class="train-status"
            data-testid="train-status"
            data-state=move || run.with(|r| r.phase.name())
            data-kept-epoch=move || run.with(RunState::kept_epoch)
            role="status"
            class:error=move || run.with(|r| matches!(r.phase, Phase::Failed(_)))
        >
            {move || run.with(RunState::status)}
        </p>
        <Show when=offer_cpu>
            <p class="small">
                <a class="link-button" data-testid="continue-on-cpu" href="?device=cpu">
                    "Continue on the CPU"
                </a>
                " (slower, but it does not depend on the GPU)"
            </p>
        </Show>
        <Show when=move || run.with(|r| r.running() && r.kept.is_some())>
            <p class="muted small" data-testid="kept-model">
                {move || {
                    run.with(|r| r.kept_epoch())
                        .map(|e| format!("The best model so far (epoch {e}) is safe in this page, whatever happens to the run."))
                }}
            </p>
        </Show>
    }
}

/// What the worker is doing, for the user.
#[component]
fn WorkerLine(status: RwSignal<WorkerStatus>) -> impl IntoView {
    view! {
        <p
            class="muted small"
            data-testid="worker-status"
            data-state=move || status.with(WorkerStatus::name)
            class:error=move || status.with(|s| matches!(s, WorkerStatus::Failed(_)))
        >
            {move || match status.get() {
                WorkerStatus::Waiting => "Training starts once the network is loaded.".to_string(),
                WorkerStatus::Starting => {
                    "Starting the network in a background worker with its own GPU device…".to_string()
                }
                WorkerStatus::Ready => {
                    "The network runs in a background worker, so this page stays responsive.".to_string()
                }
                WorkerStatus::Failed(e) => format!("The network is not available: {e}"),
            }}
        </p>
    }
}
