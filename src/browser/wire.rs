//! Messages between the page and its workers as they cross: `crate::app::protocol`'s types as JSON
//! text, the bulk bytes moved, not copied, as transferable buffers.

use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;

use crate::app::protocol;
use crate::browser::js;

pub(crate) type Buffers = Vec<js_sys::Uint8Array>;

/// A message as the JS object `{json, buffers}` and the list of buffers to transfer.
pub(crate) fn pack<T: serde::Serialize + for<'de> serde::Deserialize<'de>>(
    message: &T,
    buffers: Buffers,
) -> Result<(JsValue, js_sys::Array), String> {
    let text = protocol::encode(message).map_err(|e| e.to_string())?;
    let object = js_sys::Object::new();
    js_sys::Reflect::set(&object, &"json".into(), &text.into()).ok();
    let list = js_sys::Array::new();
    let transfer = js_sys::Array::new();
    for b in buffers {
        transfer.push(&b.buffer());
        list.push(&b);
    }
    js_sys::Reflect::set(&object, &"buffers".into(), &list).ok();
    Ok((object.into(), transfer))
}

/// The message and its buffers from a `{json, buffers}` object.
pub(crate) fn unpack<T: for<'de> serde::Deserialize<'de>>(
    data: &JsValue,
) -> Result<(T, Buffers), String> {
    let text = js::get_string(data, "json").ok_or("a message without a body")?;
    let message = protocol::decode(&text).map_err(|e| e.to_string())?;
    let buffers = js::get(data, "buffers")
        .map(|list| {
            js_sys::Array::from(&list)
                .iter()
                .map(|b| b.unchecked_into::<js_sys::Uint8Array>())
                .collect()
        })
        .unwrap_or_default();
    Ok((message, buffers))
}
