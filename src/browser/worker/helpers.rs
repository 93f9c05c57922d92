//! Helper workers: on the CPU backend the worker starts up to [`crate::app::device::MAX_HELPERS`]
//! more workers (the same wasm module, named `finetune-helper`), each with its own CPU device
//! and copy of the pretrained network, and shares the frozen layers' pass with them (see
//! `crate::engine::train::share`). Without cross-origin isolation wasm has no threads, so this is how
//! the feature pass uses more than one core on a plain static host. Each [`HelperRequest`] gets
//! one [`FromHelper::Answer`]; a helper that fails or stops has its share run by the worker.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use burn::tensor::Device;
use futures_channel::oneshot;
use image::RgbImage;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{DedicatedWorkerGlobalScope, MessageEvent, Worker};

use crate::app::protocol::{FromHelper, HelperRequest, ToHelper};
use crate::browser::notify::Notify;
use crate::browser::spawn::Assets;
use crate::browser::wire::{pack, unpack};
use crate::browser::worker::port;
use crate::engine::insight::inference::Predictor;
use crate::engine::model::{Backbone, BackboneSpec, LITE0};
use crate::engine::train::plan::Unfreeze;
use crate::engine::train::share::{self, HelperFuture, Helpers};
use crate::engine::train::split::Frozen;

type Buffers = Vec<js_sys::Uint8Array>;
type Reply = Result<Buffers, String>;
type OnMessage = Closure<dyn FnMut(MessageEvent)>;
type OnError = Closure<dyn FnMut(web_sys::ErrorEvent)>;

/// The worker name that makes the module a helper.
const HELPER_NAME: &str = "finetune-helper";

/// Images per batch in a helper's pass.
const HELPER_BATCH: usize = 4;
/// How long a helper may take for a share, before and per image (a slow CPU takes about
/// 0.2 s a photo): past that it is taken for lost.
const HELPER_DEADLINE_MS: f64 = 20_000.0;
const HELPER_MS_PER_IMAGE: f64 = 2_000.0;

/// Whether this module runs as a helper worker.
pub fn is_helper() -> bool {
    js_sys::global()
        .dyn_into::<DedicatedWorkerGlobalScope>()
        .is_ok_and(|scope| scope.name() == HELPER_NAME)
}

fn post_to_owner(message: &FromHelper, buffers: Buffers) {
    match pack(message, buffers) {
        Ok((data, transfer)) => port::send(&data, &transfer),
        Err(e) => web_sys::console::error_1(&e.into()),
    }
}

/// What a helper holds: the pretrained network, and the frozen part last used.
#[derive(Default)]
struct HelperState {
    backbone: RefCell<Option<Backbone>>,
    /// The backbone's input spec (normalisation).
    spec: RefCell<Option<BackboneSpec>>,
    frozen: RefCell<Option<(Unfreeze, Rc<Frozen>)>>,
}

/// The helper's entry point: builds the network on `Init`, then runs frozen passes.
pub fn run_helper() {
    let state = Rc::new(HelperState::default());
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |ev: MessageEvent| {
        let (HelperRequest { id, body }, buffers) = match unpack::<HelperRequest>(&ev.data()) {
            Ok(decoded) => decoded,
            // Without an id nothing can be answered: the owner's request times out as lost.
            Err(e) => return web_sys::console::error_1(&e.into()),
        };
        let state = Rc::clone(&state);
        wasm_bindgen_futures::spawn_local(async move {
            let (result, out) = match helper_handle(&state, body, &buffers).await {
                Ok(out) => (Ok(()), out),
                Err(e) => (Err(e), Vec::new()),
            };
            post_to_owner(&FromHelper::Answer { id, result }, out);
        });
    });
    port::scope().set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    on_message.forget();
    post_to_owner(&FromHelper::Started, Vec::new());
}

async fn helper_handle(
    state: &HelperState,
    body: ToHelper,
    buffers: &Buffers,
) -> Result<Buffers, String> {
    let device = Device::flex();
    match body {
        ToHelper::Init => {
            let bytes = buffers.first().ok_or("no weights were sent")?.to_vec();
            let predictor =
                Predictor::from_safetensors(&bytes, &device).map_err(|e| e.to_string())?;
            *state.spec.borrow_mut() = Some(predictor.spec.clone());
            *state.backbone.borrow_mut() = Some(predictor.model.backbone);
            *state.frozen.borrow_mut() = None;
            Ok(Vec::new())
        }
        ToHelper::Boundary { unfreeze, size } => {
            let frozen = {
                let mut cached = state.frozen.borrow_mut();
                match cached.as_ref() {
                    Some((u, f)) if *u == unfreeze => Rc::clone(f),
                    _ => {
                        let backbone = state.backbone.borrow();
                        let backbone = backbone.as_ref().ok_or("the helper has no network yet")?;
                        let f = Rc::new(share::frozen_part(backbone, unfreeze, &device));
                        *cached = Some((unfreeze, Rc::clone(&f)));
                        f
                    }
                }
            };
            let images = buffers
                .iter()
                .map(|b| {
                    RgbImage::from_raw(size, size, b.to_vec())
                        .ok_or_else(|| "an image buffer does not match its size".to_string())
                })
                .collect::<Result<Vec<_>, _>>()?;
            let spec = state.spec.borrow().clone().unwrap_or(LITE0);
            let floats = share::helper_pass(&frozen, &images, &spec, HELPER_BATCH, &device)
                .await
                .map_err(|e| e.to_string())?;
            let array = js_sys::Float32Array::from(floats.as_slice());
            Ok(vec![js_sys::Uint8Array::new(&array.buffer())])
        }
    }
}

/// One helper worker, seen from the worker that owns it.
struct Link {
    worker: Worker,
    /// The weights, until the helper has started and been sent them.
    weights: RefCell<Option<Rc<Vec<u8>>>>,
    /// The id of the `Init` request, until it is answered.
    init_id: Cell<Option<u64>>,
    ready: Cell<bool>,
    dead: Cell<bool>,
    /// The pool's: told when this helper becomes ready or is lost.
    settled: Rc<Notify>,
    next_id: Cell<u64>,
    pending: RefCell<HashMap<u64, oneshot::Sender<Reply>>>,
    _on_message: RefCell<Option<OnMessage>>,
    _on_error: RefCell<Option<OnError>>,
}

impl Link {
    fn send(&self, body: ToHelper, buffers: Buffers) -> Result<u64, String> {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let (data, transfer) = pack(&HelperRequest { id, body }, buffers)?;
        self.worker
            .post_message_with_transfer(&data, &transfer)
            .map_err(|e| crate::browser::js::error_text(&e))?;
        Ok(id)
    }

    fn on_message(&self, data: &JsValue) {
        let (message, buffers) = match unpack::<FromHelper>(data) {
            Ok(m) => m,
            Err(e) => return self.lost(&e),
        };
        match message {
            FromHelper::Started => {
                if let Some(weights) = self.weights.borrow_mut().take() {
                    let bytes = js_sys::Uint8Array::from(weights.as_slice());
                    match self.send(ToHelper::Init, vec![bytes]) {
                        Ok(id) => self.init_id.set(Some(id)),
                        Err(e) => self.lost(&e),
                    }
                }
            }
            FromHelper::Answer { id, result } if self.init_id.get() == Some(id) => {
                self.init_id.set(None);
                match result {
                    Ok(()) => {
                        self.ready.set(true);
                        self.settled.notify_all();
                    }
                    Err(e) => self.lost(&format!("its network did not build: {e}")),
                }
            }
            FromHelper::Answer { id, result } => {
                if let Some(tx) = self.pending.borrow_mut().remove(&id) {
                    tx.send(result.map(|()| buffers)).ok();
                }
            }
        }
    }

    /// The helper is gone: no more work for it, and its open requests fail (their shares are
    /// then run by the owner).
    fn lost(&self, reason: &str) {
        if !self.dead.replace(true) {
            leptos::logging::warn!("a helper worker stopped: {reason}");
        }
        self.ready.set(false);
        self.settled.notify_all();
        self.worker.terminate();
        for (_, tx) in self.pending.borrow_mut().drain() {
            tx.send(Err(reason.to_string())).ok();
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.worker.terminate();
    }
}

/// The worker's helpers (see the module's text).
pub struct HelperPool {
    links: Vec<Rc<Link>>,
    settled: Rc<Notify>,
}

impl HelperPool {
    /// Starts `count` helpers, each building the pretrained network from `weights` in the
    /// background; they count as ready once built. A helper that cannot start is left out.
    pub fn start(count: usize, weights: &Rc<Vec<u8>>) -> HelperPool {
        let Some(assets) = Assets::of_worker() else {
            return HelperPool {
                links: Vec::new(),
                settled: Rc::default(),
            };
        };
        let mut links = Vec::new();
        let settled = Rc::new(Notify::default());
        for _ in 0..count {
            let worker = match assets.start(HELPER_NAME) {
                Ok(w) => w,
                Err(e) => {
                    leptos::logging::warn!("a helper worker did not start: {e}");
                    continue;
                }
            };
            let link = Rc::new(Link {
                worker,
                weights: RefCell::new(Some(Rc::clone(weights))),
                init_id: Cell::new(None),
                ready: Cell::new(false),
                dead: Cell::new(false),
                settled: Rc::clone(&settled),
                next_id: Cell::new(1),
                pending: RefCell::default(),
                _on_message: RefCell::new(None),
                _on_error: RefCell::new(None),
            });
            let weak = Rc::downgrade(&link);
            let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |ev: MessageEvent| {
                if let Some(link) = weak.upgrade() {
                    link.on_message(&ev.data());
                }
            });
            let weak = Rc::downgrade(&link);
            let on_error =
                Closure::<dyn FnMut(web_sys::ErrorEvent)>::new(move |ev: web_sys::ErrorEvent| {
                    ev.prevent_default();
                    if let Some(link) = weak.upgrade() {
                        link.lost(&ev.message());
                    }
                });
            link.worker
                .set_onmessage(Some(on_message.as_ref().unchecked_ref()));
            link.worker
                .set_onerror(Some(on_error.as_ref().unchecked_ref()));
            *link._on_message.borrow_mut() = Some(on_message);
            *link._on_error.borrow_mut() = Some(on_error);
            links.push(link);
        }
        HelperPool { links, settled }
    }

    /// Waits (at most `max_ms`) until no helper is still starting. The worker handles a
    /// helper's messages only between its own tasks, so a helper started just before a long
    /// task (a device check, a run) is ready only once the worker has waited like this.
    pub async fn settle(&self, max_ms: f64) {
        // Woken by each helper that becomes ready or is lost, and once when time is up (the
        // timer says so itself: a clock read could still be a hair short of the deadline).
        let expired = Rc::new(Cell::new(false));
        let _deadline = {
            let (settled, expired) = (Rc::clone(&self.settled), Rc::clone(&expired));
            gloo_timers::callback::Timeout::new(max_ms.max(0.0) as u32, move || {
                expired.set(true);
                settled.notify_all();
            })
        };
        while !expired.get() && self.links.iter().any(|l| !l.ready.get() && !l.dead.get()) {
            self.settled.notified().await;
        }
    }

    fn ready_links(&self) -> Vec<&Rc<Link>> {
        self.links.iter().filter(|l| l.ready.get()).collect()
    }
}

impl Helpers for HelperPool {
    fn ready(&self) -> usize {
        self.ready_links().len()
    }

    fn start(&self, index: usize, unfreeze: Unfreeze, images: &[RgbImage]) -> HelperFuture {
        let Some(link) = self.ready_links().get(index).map(|l| Rc::clone(l)) else {
            return Box::pin(async { Err("no such helper".to_string()) });
        };
        let size = images.first().map_or(0, |i| i.width());
        let buffers = images
            .iter()
            .map(|i| js_sys::Uint8Array::from(i.as_raw().as_slice()))
            .collect();
        let (tx, rx) = oneshot::channel();
        match link.send(ToHelper::Boundary { unfreeze, size }, buffers) {
            Ok(id) => {
                link.pending.borrow_mut().insert(id, tx);
                // A helper that stops answering (a hung or killed worker) would stall the run:
                // past its deadline it counts as lost, and the worker runs its share.
                let deadline = HELPER_DEADLINE_MS + HELPER_MS_PER_IMAGE * images.len() as f64;
                let weak = Rc::downgrade(&link);
                wasm_bindgen_futures::spawn_local(async move {
                    crate::browser::js::sleep_ms(deadline).await;
                    if let Some(link) = weak.upgrade()
                        && link.pending.borrow().contains_key(&id)
                    {
                        link.lost(&format!("no answer within {:.0} s", deadline / 1000.0));
                    }
                });
            }
            Err(e) => {
                link.lost(&e);
                return Box::pin(async move { Err(e) });
            }
        }
        Box::pin(async move {
            let buffers = rx
                .await
                .unwrap_or_else(|_| Err("the helper stopped".to_string()))?;
            let bytes = buffers.first().ok_or("the helper sent no outputs")?;
            if bytes.length() % 4 != 0 {
                return Err("the helper's outputs are not whole floats".into());
            }
            let floats = js_sys::Float32Array::new_with_byte_offset_and_length(
                &bytes.buffer(),
                bytes.byte_offset(),
                bytes.length() / 4,
            );
            Ok(floats.to_vec())
        })
    }
}
