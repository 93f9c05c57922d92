//! Small JavaScript interop helpers. WebGPU's JS objects are read through `Reflect` because
//! web-sys only exposes them behind `--cfg web_sys_unstable_apis`.

use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

/// Awaits a promise, turning a rejection into readable text.
pub async fn await_promise(promise: js_sys::Promise) -> Result<JsValue, String> {
    JsFuture::from(promise).await.map_err(|e| error_text(&e))
}

/// A property that is present (neither `undefined` nor `null`).
pub fn get(target: &JsValue, key: &str) -> Option<JsValue> {
    js_sys::Reflect::get(target, &JsValue::from_str(key))
        .ok()
        .filter(|v| !v.is_undefined() && !v.is_null())
}

/// A non-empty string property.
pub fn get_string(target: &JsValue, key: &str) -> Option<String> {
    get(target, key)
        .and_then(|v| v.as_string())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Calls `target[name](arg)` and expects a promise back.
pub fn call_promise(
    target: &JsValue,
    name: &str,
    arg: &JsValue,
) -> Result<js_sys::Promise, String> {
    let function: js_sys::Function = get(target, name)
        .and_then(|f| f.dyn_into().ok())
        .ok_or_else(|| format!("{name} is not available"))?;
    function
        .call1(target, arg)
        .map_err(|e| error_text(&e))?
        .dyn_into()
        .map_err(|_| format!("{name} did not return a promise"))
}

/// The message of a JS error, exception or string.
pub fn error_text(error: &JsValue) -> String {
    if let Some(text) = error.as_string() {
        return text;
    }
    match (get_string(error, "name"), get_string(error, "message")) {
        (Some(name), Some(message)) if name != "Error" => format!("{name}: {message}"),
        (_, Some(message)) => message,
        _ => format!("{error:?}"),
    }
}

/// Ends the current browser task and resumes in a new one (a zero-delay timeout), so the page
/// can paint and no single task runs long. (`leptos::task::tick` only yields to microtasks.)
pub async fn next_task() {
    sleep_ms(0.0).await;
}

/// Waits `ms` milliseconds in a later task, on the page or in a worker (the global
/// `setTimeout`).
pub async fn sleep_ms(ms: f64) {
    gloo_timers::future::TimeoutFuture::new(ms.max(0.0) as u32).await;
}

/// Reads a file into bytes; `Err` is a message naming it as `shown`.
/// Files over `max` bytes are refused before any copy into wasm memory (an allocation failure
/// there would stop the whole page).
pub async fn read_file(file: &web_sys::File, shown: &str, max: u64) -> Result<Vec<u8>, String> {
    if file.size() > max as f64 {
        return Err(format!(
            "{shown}: {} is more than the {} this app reads",
            format_bytes(file.size()),
            format_bytes(max as f64)
        ));
    }
    let buffer = await_promise(file.array_buffer())
        .await
        .map_err(|e| format!("{shown}: could not read the file: {e}"))?;
    Ok(js_sys::Uint8Array::new(&buffer).to_vec())
}

/// The files chosen in a file input.
pub fn files_of(input: &web_sys::HtmlInputElement) -> Vec<web_sys::File> {
    input
        .files()
        .map(|list| (0..list.length()).filter_map(|i| list.get(i)).collect())
        .unwrap_or_default()
}

/// Milliseconds since navigation start (the page's time origin).
pub fn now_ms() -> f64 {
    web_sys::window()
        .and_then(|w| w.performance())
        .map(|p| p.now())
        .unwrap_or(0.0)
}

/// "18.6 MB" style sizes for the user.
pub fn format_bytes(bytes: f64) -> String {
    if bytes >= 1e6 {
        format!("{:.1} MB", bytes / 1e6)
    } else {
        format!("{:.0} kB", bytes / 1e3)
    }
}

/// A parameter of the page's address (`Some("")` for a bare `?bench`).
pub fn url_param(name: &str) -> Option<String> {
    let search = web_sys::window()?.location().search().ok()?;
    web_sys::UrlSearchParams::new_with_str(&search)
        .ok()?
        .get(name)
}

/// Asks the user to confirm (the browser's own dialog); `false` where it cannot be shown.
pub fn confirm(message: &str) -> bool {
    web_sys::window()
        .and_then(|w| w.confirm_with_message(message).ok())
        .unwrap_or(false)
}
