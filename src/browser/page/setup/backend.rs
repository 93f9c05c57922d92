//! Where the network runs: the page probes WebGPU through JS (`navigator.gpu`, the adapter and
//! its name) and reads `?device=`; `crate::app::device::choose` decides. The worker then acquires
//! burn's device itself (WebGPU, or the CPU backend in the wasm), so the page holds no device.

use leptos::prelude::*;
use wasm_bindgen::JsValue;

use crate::browser::js;
use gloo_storage::{LocalStorage, Storage};

use crate::app::device::{self, Adapter, Choice, DeviceKind, Measured, Probe};

/// What the device row shows.
#[derive(Clone, Debug, PartialEq)]
pub enum BackendState {
    Checking,
    Ready(Choice),
}

/// `?device=webgpu` or `?device=cpu` in the page's address.
pub fn forced() -> Option<DeviceKind> {
    js::url_param("device")
        .as_deref()
        .and_then(DeviceKind::from_name)
}

/// Finds out what WebGPU this browser offers.
pub async fn probe() -> Probe {
    let window = window();
    let mut probe = Probe {
        api: false,
        secure: window.is_secure_context(),
        adapter: None,
        error: None,
    };
    let Some(gpu) = js::get(&window.navigator(), "gpu") else {
        return probe;
    };
    probe.api = true;
    let options = js_sys::Object::new();
    js_sys::Reflect::set(
        &options,
        &"powerPreference".into(),
        &"high-performance".into(),
    )
    .ok();
    let requested = match js::call_promise(&gpu, "requestAdapter", &options) {
        Ok(promise) => js::await_promise(promise).await,
        Err(e) => Err(e),
    };
    match requested {
        Ok(adapter) if !adapter.is_null() && !adapter.is_undefined() => {
            probe.adapter = Some(Adapter {
                name: adapter_name(&adapter),
                fallback: js::get(&adapter, "info")
                    .and_then(|info| js::get(&info, "isFallbackAdapter"))
                    .and_then(|v| v.as_bool())
                    .unwrap_or(false),
            });
        }
        Ok(_) => {}
        Err(e) => probe.error = Some(e),
    }
    probe
}

/// The probe, the address's wish and the last device check, decided.
pub async fn choose() -> Choice {
    device::choose(&probe().await, forced(), measured().as_ref())
}

/// Where the device check's finding is kept between visits.
const MEASURED_KEY: &str = "finetune-studio.device-check";

/// The last device check's finding on this computer, if any.
pub fn measured() -> Option<Measured> {
    LocalStorage::get(MEASURED_KEY).ok()
}

/// Keeps the device check's finding for the next visit (a failure to keep it costs nothing but
/// the choice: the rule applies again).
pub fn remember(m: &Measured) {
    if let Err(e) = LocalStorage::set(MEASURED_KEY, m) {
        leptos::logging::warn!("the device check's finding was not kept: {e}");
    }
}

/// Limits of the WebGPU adapter that bound what the network can do: buffer sizes (the largest
/// activation or weight), workgroup memory and size. Empty without an adapter.
pub async fn adapter_limits() -> Vec<(String, f64)> {
    let Some(gpu) = js::get(&window().navigator(), "gpu") else {
        return Vec::new();
    };
    let adapter = match js::call_promise(&gpu, "requestAdapter", &js_sys::Object::new()) {
        Ok(promise) => js::await_promise(promise).await.ok(),
        Err(_) => None,
    };
    let Some(limits) = adapter
        .filter(|a| !a.is_null() && !a.is_undefined())
        .and_then(|a| js::get(&a, "limits"))
    else {
        return Vec::new();
    };
    [
        "maxBufferSize",
        "maxStorageBufferBindingSize",
        "maxComputeWorkgroupStorageSize",
        "maxComputeInvocationsPerWorkgroup",
        "maxStorageBuffersPerShaderStage",
    ]
    .iter()
    .filter_map(|key| Some((key.to_string(), js::get(&limits, key)?.as_f64()?)))
    .collect()
}

/// "google swiftshader" style name from `GPUAdapter.info`, without repeated words.
fn adapter_name(adapter: &JsValue) -> String {
    let Some(info) = js::get(adapter, "info") else {
        return "unnamed adapter".to_string();
    };
    let mut parts: Vec<String> = Vec::new();
    for key in ["vendor", "architecture", "device", "description"] {
        if let Some(part) = js::get_string(&info, key)
            && !parts.iter().any(|p| p.eq_ignore_ascii_case(&part))
        {
            parts.push(part);
        }
    }
    let mut name = if parts.is_empty() {
        "unnamed adapter".to_string()
    } else {
        parts.join(" ")
    };
    if js::get(&info, "isFallbackAdapter").and_then(|v| v.as_bool()) == Some(true) {
        name.push_str(" (software)");
    }
    name
}

/// The device row: where the network runs and why, with a link to the other device.
#[component]
pub fn BackendStatus(state: RwSignal<BackendState>) -> impl IntoView {
    let choice = move || match state.get() {
        BackendState::Ready(choice) => Some(choice),
        BackendState::Checking => None,
    };
    let text = move || match choice() {
        None => "Looking for WebGPU…".to_string(),
        Some(c) => c.reason,
    };
    let switch = move || {
        let c = choice().filter(|c| c.can_switch)?;
        let other = c.kind.other();
        let label = match other {
            DeviceKind::WebGpu => "Use WebGPU instead",
            DeviceKind::Cpu => "Use the CPU instead",
        };
        let href = format!("?device={}", other.name());
        Some(view! {
            <a class="link-button" data-testid="device-switch" href=href>{label}</a>
        })
    };
    view! {
        <div class="status-row" data-phase=move || if choice().is_some() { "ready" } else { "busy" }>
            <span class="status-dot" aria-hidden="true"></span>
            <span class="status-name">
                {move || match choice().map(|c| c.kind) {
                    Some(DeviceKind::Cpu) => "CPU",
                    _ => "GPU",
                }}
            </span>
            <span
                class="status-text"
                data-testid="backend-status"
                data-ready=move || if choice().is_some() { "true" } else { "false" }
                data-device=move || choice().map(|c| c.kind.name())
                role="status"
            >
                {text}
            </span>
            {switch}
        </div>
    }
}
