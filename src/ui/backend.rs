//! WebGPU detection and burn's device. The adapter is requested once through JS only to name it
//! for the user (burn acquires its own device with the same high-performance preference).

use burn::tensor::Device;
use leptos::prelude::*;
use wasm_bindgen::JsValue;

use super::js;

/// Browsers that ship WebGPU, named wherever it is missing.
const WEBGPU_BROWSERS: &str =
    "Chrome or Edge 113 or newer, Safari 26 or newer, or Firefox 141 or newer on Windows";

/// What the backend row shows.
#[derive(Clone, Debug, PartialEq)]
pub enum BackendState {
    Checking,
    Ready { adapter: String },
    Unavailable(String),
}

/// A ready WebGPU device and the adapter's name.
pub struct Backend {
    pub device: Device,
    pub adapter: String,
}

/// Finds WebGPU, names its adapter and initialises burn's device; `Err` is the text for the user.
pub async fn init() -> Result<Backend, String> {
    let window = window();
    let gpu = js::get(&window.navigator(), "gpu").ok_or_else(|| {
        if window.is_secure_context() {
            format!("This browser has no WebGPU, which the app needs to run the model. Use {WEBGPU_BROWSERS}.")
        } else {
            format!(
                "WebGPU only works on secure pages: open the app over https or from localhost \
                 (it needs {WEBGPU_BROWSERS})."
            )
        }
    })?;

    let options = js_sys::Object::new();
    js_sys::Reflect::set(
        &options,
        &"powerPreference".into(),
        &"high-performance".into(),
    )
    .ok();
    let adapter = js::await_promise(js::call_promise(&gpu, "requestAdapter", &options)?)
        .await
        .map_err(|e| format!("WebGPU could not find a GPU adapter: {e}"))?;
    if adapter.is_null() || adapter.is_undefined() {
        return Err(format!(
            "This browser has WebGPU but offers no GPU adapter: the GPU may be blocked or \
             disabled in its settings (Chrome on Linux still needs \
             chrome://flags/#enable-unsafe-webgpu). The app works in {WEBGPU_BROWSERS}."
        ));
    }
    let name = adapter_name(&adapter);

    let device = Device::wgpu_options()
        .init_async()
        .await
        .map_err(|e| format!("WebGPU adapter {name} found, but starting it failed: {e}"))?;
    Ok(Backend {
        device,
        adapter: name,
    })
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

/// The backend row: adapter name when ready, or why the app cannot run here.
#[component]
pub fn BackendStatus(state: RwSignal<BackendState>) -> impl IntoView {
    let ready = move || matches!(state.get(), BackendState::Ready { .. });
    let phase = move || match state.get() {
        BackendState::Checking => "busy",
        BackendState::Ready { .. } => "ready",
        BackendState::Unavailable(_) => "error",
    };
    let text = move || match state.get() {
        BackendState::Checking => "Looking for WebGPU…".to_string(),
        BackendState::Ready { adapter } => format!("WebGPU on {adapter}"),
        BackendState::Unavailable(reason) => reason,
    };
    view! {
        <div class="status-row" data-phase=phase>
            <span class="status-dot" aria-hidden="true"></span>
            <span class="status-name">"GPU"</span>
            <span
                class="status-text"
                data-testid="backend-status"
                data-ready=move || if ready() { "true" } else { "false" }
                role="status"
            >
                {text}
            </span>
        </div>
    }
}
