//! The browser side, split by where the code runs: [`page`] (the Leptos app, client-side
//! rendered, in folders by part of the page) and [`worker`] (the Web Worker that owns the
//! device and every model, with its pool of helper workers). Both run this same wasm module;
//! [`start`] tells which one this is. [`wire`] is how their messages cross, [`js`] small
//! JavaScript interop both use.

mod js;
mod notify;
mod object_url;
mod page;
mod spawn;
mod wire;
mod worker;

use leptos::prelude::*;
use wasm_bindgen::JsCast;

/// Entry point called by `main` on wasm32: the page mounts the app; the training worker (the
/// same module, started by the page, with no `window`) listens for work instead, and so do its
/// helper workers (started by the worker, named `finetune-helper`).
pub fn start() {
    if web_sys::window().is_none() {
        if worker::helpers::is_helper() {
            worker::helpers::run_helper();
        } else {
            worker::run_worker();
        }
    } else {
        mount();
    }
}

/// Installs the panic hook and mounts the app.
fn mount() {
    std::panic::set_hook(Box::new(|info| {
        console_error_panic_hook::hook(info);
        show_crash(&info.to_string());
    }));
    if let Some(boot) = document().get_element_by_id("boot") {
        boot.remove();
    }
    leptos::mount::mount_to_body(page::app::App);
    register_service_worker();
}

/// Lets the app open offline after the first visit (public/sw.js). Optional: plain-http pages
/// other than localhost have no service workers, and the app works without one.
fn register_service_worker() {
    let navigator = window().navigator();
    let Some(container) = js::get(&navigator, "serviceWorker") else {
        return;
    };
    match js::call_promise(&container, "register", &"./sw.js".into()) {
        Ok(promise) => leptos::task::spawn_local(async move {
            if let Err(e) = js::await_promise(promise).await {
                leptos::logging::warn!("offline support unavailable: {e}");
            }
        }),
        Err(e) => leptos::logging::warn!("offline support unavailable: {e}"),
    }
}

/// A panic stops the wasm module; say so on the page instead of leaving it silently frozen.
fn show_crash(message: &str) {
    let doc = document();
    let (Ok(banner), Some(body)) = (doc.create_element("div"), doc.body()) else {
        return;
    };
    banner.set_class_name("crash");
    banner.set_attribute("role", "alert").ok();
    banner.set_text_content(Some(&format!(
        "The app stopped after an internal error; reload the page to start again. ({message})"
    )));
    if let Ok(banner) = banner.dyn_into::<web_sys::HtmlElement>() {
        body.prepend_with_node_1(&banner).ok();
    }
}
