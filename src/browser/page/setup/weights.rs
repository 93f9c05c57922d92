//! The weights: downloaded once with a progress bar, handed to the worker (which validates them
//! against the model and builds the network on its device), then kept in the browser's Cache
//! API so a reload starts without downloading them again.

use std::rc::Rc;

use crate::engine::io::weights::{download_precision, weights_file};
use crate::engine::model::BackboneKind;
use js_sys::Uint8Array;
use leptos::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{Cache, Response};

use crate::app::device::{self, Choice, DeviceKind};
use crate::app::protocol::InitError;
use crate::browser::js;
use crate::browser::page::state::client::WorkerClient;

/// Cache API bucket. Bump the suffix when the weights format changes: older buckets are deleted.
const CACHE_NAME: &str = "finetune-weights-v2";
/// Buckets of earlier versions (v1 held the f16 weights).
const OLD_CACHES: [&str; 1] = ["finetune-weights-v1"];

/// What the weights row shows.
#[derive(Clone, Debug, PartialEq)]
pub enum WeightsState {
    /// Waiting for the device check.
    Waiting,
    Downloading {
        loaded: f64,
        total: Option<f64>,
        from_cache: bool,
    },
    Checking,
    Ready {
        backbone: BackboneKind,
        size: f64,
        from_cache: bool,
        note: Option<String>,
    },
    Failed(String),
}

/// Relative, so the app works from any folder of a static host.
fn weights_url(kind: BackboneKind) -> String {
    format!(
        "weights/{}",
        weights_file(kind.spec(), download_precision(kind))
    )
}

/// Loads `kind`'s weights (cache first) into the worker on `choice`'s device, updating `state`
/// as it goes. A cached copy that the worker refuses is dropped and downloaded again once; a
/// WebGPU device that does not start gives way to the CPU. Returns the device in use.
pub async fn load(
    worker: &Rc<WorkerClient>,
    state: RwSignal<WeightsState>,
    mut choice: Choice,
    kind: BackboneKind,
) -> Choice {
    let cache = open_cache().await;
    let mut use_cache = cache.is_some();
    loop {
        let cached = cache.as_ref().filter(|_| use_cache);
        let loaded = match fetch_weights(cached, state, kind).await {
            Ok(loaded) => loaded,
            Err(reason) => {
                state.set(WeightsState::Failed(reason));
                return choice;
            }
        };
        state.set(WeightsState::Checking);
        let size = loaded.bytes.len() as f64;
        let bytes = Rc::new(loaded.bytes);
        let mut result = worker.init(Rc::clone(&bytes), choice.kind).await;
        if let (Err(InitError::Device(e)), DeviceKind::WebGpu) = (&result, choice.kind) {
            choice = device::webgpu_failed(&choice, e);
            result = worker.init(Rc::clone(&bytes), DeviceKind::Cpu).await;
        }
        match result {
            Ok(()) => {
                let mut note = None;
                if let (Some(cache), false) = (&cache, loaded.from_cache) {
                    if let Err(e) = store(cache, kind, &bytes).await {
                        note = Some(format!("not kept for next time: {e}"));
                    }
                } else if cache.is_none() {
                    note = Some("not kept for next time: this page has no Cache API".to_string());
                }
                state.set(WeightsState::Ready {
                    backbone: kind,
                    size,
                    from_cache: loaded.from_cache,
                    note,
                });
                return choice;
            }
            Err(InitError::Weights(e)) if loaded.from_cache => {
                leptos::logging::warn!("cached weights rejected, downloading again: {e}");
                if let Some(cache) = &cache {
                    js::await_promise(cache.delete_with_str(&weights_url(kind)))
                        .await
                        .ok();
                }
                use_cache = false;
            }
            Err(e) => {
                state.set(WeightsState::Failed(e.to_string()));
                return choice;
            }
        }
    }
}

struct Loaded {
    bytes: Vec<u8>,
    from_cache: bool,
}

/// The Cache API bucket, or `None` where there is none (plain http pages, some private modes).
async fn open_cache() -> Option<Cache> {
    let caches = js::get(&window(), "caches")?;
    let caches: web_sys::CacheStorage = caches.dyn_into().ok()?;
    for old in OLD_CACHES {
        js::await_promise(caches.delete(old)).await.ok();
    }
    let cache = js::await_promise(caches.open(CACHE_NAME)).await.ok()?;
    cache.dyn_into().ok()
}

/// The cached response if there is one, else a network download.
async fn fetch_weights(
    cache: Option<&Cache>,
    state: RwSignal<WeightsState>,
    kind: BackboneKind,
) -> Result<Loaded, String> {
    let url = weights_url(kind);
    if let Some(cache) = cache {
        let hit = js::await_promise(cache.match_with_str(&url)).await.ok();
        if let Some(response) = hit.and_then(|r| r.dyn_into::<Response>().ok()) {
            match read_body(&response, true, state).await {
                Ok(bytes) => {
                    return Ok(Loaded {
                        bytes,
                        from_cache: true,
                    });
                }
                Err(e) => leptos::logging::warn!("cached weights unreadable, downloading: {e}"),
            }
        }
    }
    let response: Response = js::await_promise(window().fetch_with_str(&url))
        .await
        .map_err(|e| format!("could not download {url}: {e}"))?
        .dyn_into()
        .map_err(|_| format!("could not download {url}: not an HTTP response"))?;
    if !response.ok() {
        return Err(format!(
            "could not download {url}: HTTP {} {} (the site was built without weights; \
             `make weights` creates them)",
            response.status(),
            response.status_text()
        ));
    }
    let bytes = read_body(&response, false, state)
        .await
        .map_err(|e| format!("download of {url} broke off: {e}"))?;
    Ok(Loaded {
        bytes,
        from_cache: false,
    })
}

/// Reads a body chunk by chunk so the progress bar moves; Content-Length gives the total.
async fn read_body(
    response: &Response,
    from_cache: bool,
    state: RwSignal<WeightsState>,
) -> Result<Vec<u8>, String> {
    let total = response
        .headers()
        .get("content-length")
        .ok()
        .flatten()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|t| *t > 0.0);
    let progress = |loaded: f64| {
        state.set(WeightsState::Downloading {
            loaded,
            total,
            from_cache,
        })
    };
    progress(0.0);
    let Some(body) = response.body() else {
        let buffer =
            js::await_promise(response.array_buffer().map_err(|e| js::error_text(&e))?).await?;
        let bytes = Uint8Array::new(&buffer).to_vec();
        progress(bytes.len() as f64);
        return Ok(bytes);
    };
    let reader: web_sys::ReadableStreamDefaultReader = body.get_reader().unchecked_into();
    let mut bytes = Vec::with_capacity(total.unwrap_or(0.0) as usize);
    loop {
        let chunk = js::await_promise(reader.read()).await?;
        if js::get(&chunk, "done").and_then(|d| d.as_bool()) == Some(true) {
            break;
        }
        let value: Uint8Array = js::get(&chunk, "value")
            .and_then(|v| v.dyn_into().ok())
            .ok_or("the stream gave a chunk that is not bytes")?;
        let start = bytes.len();
        bytes.resize(start + value.length() as usize, 0);
        value.copy_to(&mut bytes[start..]);
        progress(bytes.len() as f64);
    }
    Ok(bytes)
}

/// Keeps validated weights for the next visit.
async fn store(cache: &Cache, kind: BackboneKind, bytes: &[u8]) -> Result<(), String> {
    let headers = web_sys::Headers::new().map_err(|e| js::error_text(&e))?;
    headers.set("content-type", "application/octet-stream").ok();
    headers.set("content-length", &bytes.len().to_string()).ok();
    let init = web_sys::ResponseInit::new();
    init.set_headers(&headers);
    let body = Uint8Array::from(bytes);
    let response = Response::new_with_opt_buffer_source_and_init(Some(&body), &init)
        .map_err(|e| js::error_text(&e))?;
    js::await_promise(cache.put_with_str(&weights_url(kind), &response)).await?;
    Ok(())
}

/// The weights row: progress while downloading, size and source when ready.
#[component]
pub fn WeightsStatus(state: RwSignal<WeightsState>) -> impl IntoView {
    let ready = move || matches!(state.get(), WeightsState::Ready { .. });
    let phase = move || match state.get() {
        WeightsState::Waiting => "idle",
        WeightsState::Downloading { .. } | WeightsState::Checking => "busy",
        WeightsState::Ready { .. } => "ready",
        WeightsState::Failed(_) => "error",
    };
    let text = move || match state.get() {
        WeightsState::Waiting => "Waiting for the device check".to_string(),
        WeightsState::Downloading {
            loaded,
            total,
            from_cache,
        } => {
            let verb = if from_cache {
                "Reading from cache"
            } else {
                "Downloading"
            };
            match total {
                Some(total) => format!(
                    "{verb} {} of {}",
                    js::format_bytes(loaded),
                    js::format_bytes(total)
                ),
                None => format!("{verb} {}", js::format_bytes(loaded)),
            }
        }
        WeightsState::Checking => {
            "Checking the weights and building the network on the device…".to_string()
        }
        WeightsState::Ready {
            backbone,
            size,
            from_cache,
            note,
        } => {
            let source = if from_cache {
                "from cache"
            } else {
                "downloaded"
            };
            let note = note.map(|n| format!("; {n}")).unwrap_or_default();
            format!(
                "{}, {} {source}{note}",
                backbone.spec().name,
                js::format_bytes(size)
            )
        }
        WeightsState::Failed(reason) => reason,
    };
    // Some(fraction) for a determinate bar; None hides it (unknown total or not downloading).
    let fraction = move || match state.get() {
        WeightsState::Downloading {
            loaded,
            total: Some(total),
            ..
        } => Some((loaded / total).clamp(0.0, 1.0)),
        _ => None,
    };
    view! {
        <div class="status-row" data-phase=phase>
            <span class="status-dot" aria-hidden="true"></span>
            <span class="status-name">"Weights"</span>
            <span
                class="status-text"
                data-testid="weights-status"
                data-ready=move || if ready() { "true" } else { "false" }
                role="status"
            >
                {text}
            </span>
            <Show when=move || fraction().is_some()>
                <progress
                    class="status-progress"
                    max="1"
                    prop:value=move || fraction().unwrap_or(0.0)
                    aria-label="Weights download"
                ></progress>
            </Show>
        </div>
    }
}
