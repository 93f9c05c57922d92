//! "Where the time goes": the worker profiles the pretrained network on the device in use,
//! operation by operation (`engine::measure::profile`), and the page shows the slowest operations of a
//! prediction's pass and of a last-block training step (and of a full step when asked). On a
//! GPU the kernel counts come too. The figures also go, as JSON, into `data-json` of
//! `data-testid="profile-result"`. `?profile` in the address runs it once the network is
//! ready (`?profile=full` adds the full step, which is slow on an emulated GPU).

use leptos::prelude::*;

use crate::browser::page::state::client::{WorkerContext, WorkerStatus, use_worker};
use crate::engine::measure::profile::{Pass, PassProfile, Profiles};

/// Images per profiled batch: small, so an emulated GPU answers in minutes.
const BATCH: usize = 2;
/// Rows shown per table.
const ROWS: usize = 8;

#[derive(Clone, Debug, PartialEq)]
enum State {
    Idle,
    Running,
    Done(Vec<Profiles>),
    Failed(String),
}

#[component]
pub fn DeviceProfile() -> impl IntoView {
    let worker = use_worker();
    let (status, in_use) = (worker.status, worker.device);
    let handle = WorkerContext::handle();
    let state = RwSignal::new(State::Idle);
    let full = RwSignal::new(crate::browser::js::url_param("profile").as_deref() == Some("full"));
    let ready = move || status.with(|s| *s == WorkerStatus::Ready) && in_use.get().is_some();

    let run = move || {
        if state.get_untracked() == State::Running {
            return;
        }
        let mut passes = vec![Pass::Features, Pass::LastBlockStep];
        if full.get_untracked() {
            passes.push(Pass::FullStep);
        }
        let worker = handle.client();
        state.set(State::Running);
        leptos::task::spawn_local(async move {
            state.set(match worker.profile(BATCH, passes).await {
                Ok(p) => State::Done(p),
                Err(e) => State::Failed(e),
            });
        });
    };

    if crate::browser::js::url_param("profile").is_some() {
        crate::browser::page::state::client::run_once_when(ready, run);
    }

    view! {
        <section class="card" aria-labelledby="profile-title">
            <h2 id="profile-title">"Where the time goes"</h2>
            <p class="muted small">
                "Each operation of the network timed on its own, on the device in use: which "
                "layers cost most when predicting and when training. Depthwise convolutions do "
                "little arithmetic but are slow on many devices; training adds the backward pass, "
                "BatchNorm's batch statistics and the optimiser."
            </p>
            <label class="small">
                <input type="checkbox" bind:checked=full data-testid="profile-full" />
                " also a full step (every layer trains: slow on an emulated GPU)"
            </label>
            " "
            <button
                type="button"
                class="button secondary"
                data-testid="profile-button"
                disabled=move || !ready() || state.get() == State::Running
                on:click=move |_| run()
            >
                "Profile this device"
            </button>
            {move || match state.get() {
                State::Idle => ().into_any(),
                State::Running => {
                    view! {
                        <p class="muted" role="status">
                            "Timing each operation (on an emulated GPU this takes minutes)…"
                        </p>
                    }
                        .into_any()
                }
                State::Failed(e) => {
                    view! { <p class="error" role="alert">{format!("Not profiled: {e}")}</p> }
                        .into_any()
                }
                State::Done(profiles) => view! { <ProfileTables profiles /> }.into_any(),
            }}
        </section>
    }
}

#[component]
fn ProfileTables(profiles: Vec<Profiles>) -> impl IntoView {
    let json = serde_json::to_string(&profiles).unwrap_or_default();
    let tables = profiles
        .into_iter()
        .map(|p| {
            let kernels = p.kernels.as_ref().map(|k| {
                let launches: usize = k.rows.iter().map(|r| r.calls).sum();
                format!(" {launches} GPU kernels per pass.")
            });
            let phases = p.phases.map(|ph| view! { <OpTable profile=ph caption="Phases of the step" /> });
            view! {
                <div class="profile-pass">
                    <OpTable profile=p.ops.clone() caption="Operations" />
                    {phases}
                    <p class="muted small">
                        {format!(
                            "The {} as the app runs it: {:.0} ms; its operations timed one by one: {:.0} ms.",
                            p.ops.pass,
                            p.ops.measured_seconds * 1e3,
                            p.ops.ops_seconds * 1e3,
                        )}
                        {kernels}
                    </p>
                </div>
            }
        })
        .collect_view();
    view! {
        <div data-testid="profile-result" data-json=json>
            {tables}
        </div>
    }
}

#[component]
fn OpTable(profile: PassProfile, caption: &'static str) -> impl IntoView {
    let rows = profile
        .top(ROWS)
        .iter()
        .map(|r| {
            let width = format!("width: {:.1}%", r.share * 100.0);
            view! {
                <tr>
                    <td>{r.op.clone()}</td>
                    <td class="num">{r.calls}</td>
                    <td class="num">{format!("{:.1}", r.seconds * 1e3)}</td>
                    <td class="share">
                        <span class="share-bar" style=width></span>
                        {format!("{:.0}%", r.share * 100.0)}
                    </td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <table class="profile-table">
            <caption>{format!("{caption}: {} (batch {})", profile.pass, profile.batch)}</caption>
            <thead>
                <tr>
                    <th scope="col">"operation"</th>
                    <th scope="col">"calls"</th>
                    <th scope="col">"ms"</th>
                    <th scope="col">"share"</th>
                </tr>
            </thead>
            <tbody>{rows}</tbody>
        </table>
    }
}
