//! The browser front end (Leptos, client-side rendered). One file per concern: the WebGPU
//! backend, the weights download, the prediction panel, and the app that strings them together.

mod app;
mod backend;
mod js;
mod predict;
mod teach;
mod weights;

use leptos::prelude::*;
use wasm_bindgen::JsCast;

/// Entry point called by `main` on wasm32: installs the panic hook and mounts the app.
pub fn mount() {
    std::panic::set_hook(Box::new(|info| {
        console_error_panic_hook::hook(info);
        show_crash(&info.to_string());
    }));
    if let Some(boot) = document().get_element_by_id("boot") {
        boot.remove();
    }
    leptos::mount::mount_to_body(app::App);
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
