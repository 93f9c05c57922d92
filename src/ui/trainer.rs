//! The page's client of the training worker ([`super::worker`]): starts it on this page's own
//! wasm module, queues requests until it listens, and hands each answer to the page. Messages
//! are `crate::protocol`'s, as JSON text with the bulk bytes (weights, pixels, the trained
//! model) moved, not copied, as transferable buffers.

use std::cell::RefCell;
use std::rc::Rc;

use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{MessageEvent, Worker, WorkerOptions, WorkerType};

use super::js;
use crate::engine::training::TrainConfig;
use crate::protocol::{self, FromWorker, ImageMeta, ToWorker};

/// A message as the JS object `{json, buffers}` and the list of buffers to transfer.
pub(super) fn pack<T: serde::Serialize + for<'de> serde::Deserialize<'de>>(
    message: &T,
    buffers: Vec<js_sys::Uint8Array>,
) -> Result<(JsValue, js_sys::Array), String> {
    let text = protocol::encode(message)?;
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
pub(super) fn unpack<T: for<'de> serde::Deserialize<'de>>(
    data: &JsValue,
) -> Result<(T, Vec<js_sys::Uint8Array>), String> {
    let text = js::get_string(data, "json").ok_or("a message without a body")?;
    let message = protocol::decode(&text)?;
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

// ---------------------------------------------------------------- the page's side

/// The page's handle on the training worker. Dropping it stops the worker (the page starts a
/// new one after a crash).
pub struct Trainer {
    worker: Worker,
    /// Messages sent before the worker listens; `None` once it does.
    queue: Queue,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_error: Closure<dyn FnMut(web_sys::ErrorEvent)>,
}

impl Trainer {
    /// Starts the worker on this page's own wasm module and hands it `weights` once it runs.
    /// Every message (and `Crashed` for a worker that cannot start or stops) goes to
    /// `on_message`.
    pub fn spawn(
        weights: Vec<u8>,
        on_message: impl Fn(FromWorker, Option<Vec<u8>>) + 'static,
    ) -> Result<Rc<Self>, String> {
        let script = asset_url(".js")?;
        let wasm = asset_url(".wasm")?;
        // The glue's own default wasm name lacks Trunk's hash: pass the real one. A failed
        // start is reported as a `Failed` message, which the page shows.
        let source = format!(
            "import init from {script:?};\n\
             try {{ await init({{ module_or_path: {wasm:?} }}); }}\n\
             catch (e) {{ postMessage({{ json: JSON.stringify({{ Crashed: `the training worker could not start: ${{e}}` }}) }}); }}\n"
        );
        let parts = js_sys::Array::of1(&source.into());
        let options = web_sys::BlobPropertyBag::new();
        options.set_type("text/javascript");
        let blob = web_sys::Blob::new_with_str_sequence_and_options(&parts, &options)
            .map_err(|e| js::error_text(&e))?;
        let url =
            web_sys::Url::create_object_url_with_blob(&blob).map_err(|e| js::error_text(&e))?;
        let worker_options = WorkerOptions::new();
        worker_options.set_type(WorkerType::Module);
        worker_options.set_name("finetune-trainer");
        let worker = Worker::new_with_options(&url, &worker_options).map_err(|e| {
            format!(
                "the training worker could not start: {}",
                js::error_text(&e)
            )
        })?;
        web_sys::Url::revoke_object_url(&url).ok();

        let on_message = Rc::new(on_message);
        let weights = RefCell::new(Some(weights));
        let queue: Queue = Rc::new(RefCell::new(Some(Vec::new())));
        let handler = {
            let on_message = Rc::clone(&on_message);
            let worker = worker.clone();
            let queue = Rc::clone(&queue);
            Closure::<dyn FnMut(MessageEvent)>::new(move |ev: MessageEvent| {
                match unpack::<FromWorker>(&ev.data()) {
                    Ok((FromWorker::Started, _)) => {
                        if let Some(bytes) = weights.borrow_mut().take() {
                            send(
                                &worker,
                                &ToWorker::Init,
                                vec![js_sys::Uint8Array::from(bytes.as_slice())],
                            );
                        }
                        for (message, buffers) in queue.borrow_mut().take().unwrap_or_default() {
                            send(&worker, &message, buffers);
                        }
                    }
                    Ok((message, buffers)) => {
                        on_message(message, buffers.first().map(js_sys::Uint8Array::to_vec))
                    }
                    Err(e) => on_message(FromWorker::Crashed(e), None),
                }
            })
        };
        let on_error =
            Closure::<dyn FnMut(web_sys::ErrorEvent)>::new(move |ev: web_sys::ErrorEvent| {
                ev.prevent_default();
                on_message(
                    FromWorker::Crashed(format!("the training worker failed: {}", ev.message())),
                    None,
                );
            });
        worker.set_onmessage(Some(handler.as_ref().unchecked_ref()));
        worker.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        Ok(Rc::new(Self {
            worker,
            queue,
            _on_message: handler,
            _on_error: on_error,
        }))
    }

    /// Starts a run; images are `(meta, rgb pixels)` (see [`pixels`]).
    pub fn train(
        &self,
        classes: Vec<String>,
        config: TrainConfig,
        train: Vec<(ImageMeta, js_sys::Uint8Array)>,
        val: Vec<(ImageMeta, js_sys::Uint8Array)>,
    ) {
        let (train, mut buffers): (Vec<_>, Vec<_>) = train.into_iter().unzip();
        let (val, val_buffers): (Vec<_>, Vec<_>) = val.into_iter().unzip();
        buffers.extend(val_buffers);
        let message = ToWorker::Train {
            classes,
            config: Box::new(config),
            train,
            val,
        };
        self.send(message, buffers);
    }

    pub fn cancel(&self) {
        self.send(ToWorker::Cancel, Vec::new());
    }

    /// Makes `bytes` (an exported model) the worker's model; answered by `ModelLoaded`.
    pub fn load_model(&self, file: String, bytes: &[u8]) {
        self.send(
            ToWorker::LoadModel { file },
            vec![js_sys::Uint8Array::from(bytes)],
        );
    }

    /// Classifies a photo file with the worker's model; answered by `Prediction`.
    pub fn predict(&self, file: String, bytes: &[u8], top_k: usize) {
        self.send(
            ToWorker::Predict { file, top_k },
            vec![js_sys::Uint8Array::from(bytes)],
        );
    }

    fn send(&self, message: ToWorker, buffers: Vec<js_sys::Uint8Array>) {
        match self.queue.borrow_mut().as_mut() {
            Some(waiting) => waiting.push((message, buffers)),
            None => send(&self.worker, &message, buffers),
        }
    }
}

impl Drop for Trainer {
    fn drop(&mut self) {
        self.worker.set_onmessage(None);
        self.worker.set_onerror(None);
        self.worker.terminate();
    }
}

/// The images' pixels as JS buffers for [`Trainer::train`], a few per browser task so that
/// copying a big dataset out of wasm memory never blocks the page.
pub async fn pixels(
    samples: &[crate::engine::data::Sample],
) -> Vec<(ImageMeta, js_sys::Uint8Array)> {
    let mut out = Vec::with_capacity(samples.len());
    for chunk in samples.chunks(8) {
        for s in chunk {
            let meta = ImageMeta {
                file: s.file.clone(),
                label: s.label,
                width: s.image.width(),
                height: s.image.height(),
            };
            out.push((meta, js_sys::Uint8Array::from(s.image.as_raw().as_slice())));
        }
        super::js::next_task().await;
    }
    out
}

type Queue = Rc<RefCell<Option<Vec<(ToWorker, Vec<js_sys::Uint8Array>)>>>>;

fn send(worker: &Worker, message: &ToWorker, buffers: Vec<js_sys::Uint8Array>) {
    match pack(message, buffers) {
        Ok((data, transfer)) => {
            if let Err(e) = worker.post_message_with_transfer(&data, &transfer) {
                web_sys::console::error_1(&e);
            }
        }
        Err(e) => leptos::logging::error!("training worker request not sent: {e}"),
    }
}

/// The absolute URL of this app's JS glue (`.js`) or wasm (`.wasm`), which Trunk names with a
/// content hash and preloads from the page's head.
fn asset_url(ext: &str) -> Result<String, String> {
    let document = web_sys::window()
        .and_then(|w| w.document())
        .ok_or("no document")?;
    let link = document
        .query_selector(&format!(r#"link[rel$="preload"][href$="{ext}"]"#))
        .ok()
        .flatten()
        .ok_or_else(|| format!("the page does not name its {ext} file (link rel=preload)"))?;
    js::get_string(&link, "href").ok_or_else(|| "the script link has no address".to_string())
}
