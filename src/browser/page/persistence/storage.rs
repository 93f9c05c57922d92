//! The browser side of projects: the autosave slot in IndexedDB (so a reload or a crashed tab
//! gets everything back), and downloads. The file format itself is the engine's
//! [`crate::engine::io::project::Project`].

use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;

use crate::browser::js;
use crate::browser::object_url::ObjectUrl;

/// Key of the autosaved project's manifest (classes, image keys, settings, report); each image
/// is stored once under its own key, so a change never rewrites them all.
pub const AUTOSAVE_KEY: &str = "autosave";
/// Key of the autosaved model (empty when there is none), apart because it is large.
pub const AUTOSAVE_MODEL_KEY: &str = "autosave-model";

// IndexedDB's request/event API is far shorter in JS than through web-sys.
#[wasm_bindgen(inline_js = r#"
const DB = 'finetune-studio', STORE = 'projects';
function db() {
  return new Promise((resolve, reject) => {
    const r = indexedDB.open(DB, 1);
    r.onupgradeneeded = () => r.result.createObjectStore(STORE);
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}
function run(mode, f) {
  return db().then((d) => new Promise((resolve, reject) => {
    const tx = d.transaction(STORE, mode);
    const req = f(tx.objectStore(STORE));
    tx.oncomplete = () => { d.close(); resolve(req.result ?? null); };
    tx.onerror = tx.onabort = () => { d.close(); reject(tx.error); };
  }));
}
export function idb_put(key, bytes) { return run('readwrite', (s) => s.put(bytes, key)); }
export function idb_get(key) { return run('readonly', (s) => s.get(key)); }
export function idb_delete(key) { return run('readwrite', (s) => s.delete(key)); }
export function idb_keys() { return run('readonly', (s) => s.getAllKeys()); }
"#)]
extern "C" {
    #[wasm_bindgen(catch)]
    fn idb_put(key: &str, bytes: &js_sys::Uint8Array) -> Result<js_sys::Promise, JsValue>;
    #[wasm_bindgen(catch)]
    fn idb_get(key: &str) -> Result<js_sys::Promise, JsValue>;
    #[wasm_bindgen(catch)]
    fn idb_delete(key: &str) -> Result<js_sys::Promise, JsValue>;
    #[wasm_bindgen(catch)]
    fn idb_keys() -> Result<js_sys::Promise, JsValue>;
}

/// Every key in the store.
pub async fn keys() -> Result<Vec<String>, String> {
    let value = js::await_promise(idb_keys().map_err(|e| js::error_text(&e))?).await?;
    Ok(js_sys::Array::from(&value)
        .iter()
        .filter_map(|k| k.as_string())
        .collect())
}

/// Asks the browser to keep this site's storage under storage pressure (it may say no; the
/// autosave works either way).
pub fn request_persistence() {
    let navigator = leptos::prelude::window().navigator();
    let Some(storage) = js::get(&navigator, "storage") else {
        return;
    };
    if let Ok(promise) = js::call_promise(&storage, "persist", &JsValue::UNDEFINED) {
        leptos::task::spawn_local(async move {
            js::await_promise(promise).await.ok();
        });
    }
}

/// Stores `bytes` under `key`, replacing what was there.
pub async fn put(key: &str, bytes: &[u8]) -> Result<(), String> {
    put_js(key, &js_sys::Uint8Array::from(bytes)).await
}

/// Stores bytes already in JS memory under `key`.
pub async fn put_js(key: &str, array: &js_sys::Uint8Array) -> Result<(), String> {
    js::await_promise(idb_put(key, array).map_err(|e| js::error_text(&e))?).await?;
    Ok(())
}

/// The bytes under `key`, `None` if there are none.
pub async fn get(key: &str) -> Result<Option<Vec<u8>>, String> {
    let value = js::await_promise(idb_get(key).map_err(|e| js::error_text(&e))?).await?;
    Ok(value
        .dyn_into::<js_sys::Uint8Array>()
        .ok()
        .map(|a| a.to_vec()))
}

/// Removes `key` (nothing happens if it is not there).
pub async fn delete(key: &str) -> Result<(), String> {
    js::await_promise(idb_delete(key).map_err(|e| js::error_text(&e))?).await?;
    Ok(())
}

/// Offers `bytes` (in JS memory) as a download named `name`.
pub fn download(bytes: &js_sys::Uint8Array, name: &str) -> Result<(), String> {
    let url = ObjectUrl::of_array(bytes)?;
    let doc = leptos::prelude::document();
    let anchor: web_sys::HtmlAnchorElement = doc
        .create_element("a")
        .map_err(|e| js::error_text(&e))?
        .unchecked_into();
    anchor.set_href(url.as_str());
    anchor.set_download(name);
    anchor.click();
    // Freed later: the download has to start first.
    gloo_timers::callback::Timeout::new(60_000, move || drop(url)).forget();
    Ok(())
}
