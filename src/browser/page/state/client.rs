//! The page's client of the worker ([`crate::browser::worker`]): starts it on this page's own wasm
//! module, queues requests until it listens, and turns each request into a future of its one
//! answer. Events (run progress, the best model so far, a crash) go to subscribers. When the
//! worker dies, every open request fails with the reason and a new worker starts with the same
//! weights (at most [`crate::app::protocol::MAX_RESTARTS`] times in a row, each death counted once). Messages are `crate::app::protocol`'s, as JSON text with
//! the bulk bytes moved, not copied, as transferable buffers.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::{Rc, Weak};

use futures_channel::oneshot;
use image::RgbImage;
use leptos::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{MessageEvent, Worker};

use crate::app::device::DeviceKind;
use crate::app::protocol::{
    AfterCrash, Answer, Explained, FromWorker, ImageMeta, InitError, Lives, Request, RunError,
    RunOutcome, ToWorker, Which,
};
use crate::browser::js;
use crate::browser::page::state::model_file::ModelFile;
use crate::browser::spawn::Assets;
use crate::browser::wire::{pack, unpack};
use crate::engine::insight::inference::ClassScore;
use crate::engine::insight::layer_views::LayerView;
use crate::engine::insight::pca::FeatureSpace;
use crate::engine::measure::bench::DeviceSpeed;
use crate::engine::model::BackboneKind;
use crate::engine::train::config::TrainConfig;
use crate::engine::train::report::{Progress, TrainReport};

type Buffers = Vec<js_sys::Uint8Array>;
type Reply = Result<(Answer, Buffers), String>;
type Listener = Rc<dyn Fn(&Event)>;

/// The worker's state, for the page's status lines.
#[derive(Clone, Debug, PartialEq)]
pub enum WorkerStatus {
    /// Running, waiting for the weights.
    Waiting,
    /// Building the network on its device.
    Starting,
    Ready,
    Failed(String),
}

impl WorkerStatus {
    pub fn name(&self) -> &'static str {
        match self {
            WorkerStatus::Waiting => "waiting",
            WorkerStatus::Starting => "starting",
            WorkerStatus::Ready => "ready",
            WorkerStatus::Failed(_) => "failed",
        }
    }
}

/// What the worker says unasked.
#[derive(Clone, Debug)]
pub enum Event {
    Progress(Progress),
    /// The run's best model so far: exported bytes and what they are.
    BestSoFar {
        report: TrainReport,
        model: ModelFile,
    },
    /// The worker died (open requests fail with the reason); a new one is starting unless
    /// `status` says it failed.
    Crashed,
}

/// One started worker: its handlers, and the requests waiting for it to listen.
struct Live {
    worker: Worker,
    /// Which worker this is (see [`Lives`]): its reports name it.
    generation: u64,
    started_ms: f64,
    /// Requests sent before the worker listens; `None` once it does.
    queue: RefCell<Option<Vec<(Request, Buffers)>>>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_error: Closure<dyn FnMut(web_sys::ErrorEvent)>,
}

impl Drop for Live {
    fn drop(&mut self) {
        self.worker.set_onmessage(None);
        self.worker.set_onerror(None);
        self.worker.terminate();
    }
}

/// The worker's client in the page's context (it is not `Send`, so it lives in a local store).
#[derive(Clone, Copy)]
pub struct WorkerContext(StoredValue<Rc<WorkerClient>, LocalStorage>);

impl WorkerContext {
    pub fn provide(client: Rc<WorkerClient>) {
        provide_context(Self(StoredValue::new_local(client)));
    }

    /// The handle (`Copy`, `Send`), for callbacks that need the client later.
    pub fn handle() -> Self {
        expect_context::<Self>()
    }

    pub fn client(&self) -> Rc<WorkerClient> {
        self.0.get_value()
    }
}

/// Runs `run` once, the first time `ready()` holds: the page's `?bench` and `?profile`, which
/// start when the network is ready.
pub fn run_once_when(ready: impl Fn() -> bool + 'static, run: impl Fn() + 'static) {
    Effect::new(move |done: Option<bool>| {
        if done == Some(true) || !ready() {
            return done.unwrap_or(false);
        }
        run();
        true
    });
}

/// The page's worker client (from [`WorkerContext::provide`]).
pub fn use_worker() -> Rc<WorkerClient> {
    expect_context::<WorkerContext>().0.get_value()
}

/// The page's handle on the worker, shared through context.
pub struct WorkerClient {
    live: RefCell<Option<Live>>,
    pending: RefCell<HashMap<u64, oneshot::Sender<Reply>>>,
    next_id: Cell<u64>,
    weights: RefCell<Option<(Rc<Vec<u8>>, DeviceKind)>>,
    lives: RefCell<Lives>,
    listeners: RefCell<Vec<Listener>>,
    pub status: RwSignal<WorkerStatus>,
    /// The device the network is on, once `init` succeeded.
    pub device: RwSignal<Option<DeviceKind>>,
    /// Helper workers asked for on the CPU (sharing the frozen layers' pass).
    pub helpers: RwSignal<usize>,
    /// The backbone photos are decoded for (the one chosen, even while it loads).
    pub backbone: Cell<BackboneKind>,
}

impl WorkerClient {
    /// Starts the worker (it decodes photos at once; models wait for [`Self::init`]).
    pub fn start() -> Rc<Self> {
        let client = Rc::new(Self {
            live: RefCell::new(None),
            pending: RefCell::default(),
            next_id: Cell::new(1),
            weights: RefCell::new(None),
            lives: RefCell::default(),
            listeners: RefCell::default(),
            status: RwSignal::new(WorkerStatus::Waiting),
            device: RwSignal::new(None),
            helpers: RwSignal::new(0),
            backbone: Cell::new(BackboneKind::default()),
        });
        client.spawn();
        client
    }

    /// Calls `f` with every event from now on.
    pub fn subscribe(&self, f: impl Fn(&Event) + 'static) {
        self.listeners.borrow_mut().push(Rc::new(f));
    }

    /// Hands the worker the pretrained weights, to run on `device`; `Err` says why not.
    pub async fn init(
        self: &Rc<Self>,
        weights: Rc<Vec<u8>>,
        device: DeviceKind,
    ) -> Result<(), InitError> {
        *self.weights.borrow_mut() = Some((Rc::clone(&weights), device));
        self.status.set(WorkerStatus::Starting);
        let helpers = match device {
            DeviceKind::Cpu => crate::app::device::helper_count(
                web_sys::window().map_or(1, |w| w.navigator().hardware_concurrency() as usize),
                js::url_param("helpers").and_then(|v| v.parse().ok()),
            ),
            DeviceKind::WebGpu => 0,
        };
        self.helpers.set(helpers);
        let request = ToWorker::Init { device, helpers };
        let result = match self.request(request, vec![bytes(&weights)]).await {
            Ok((Answer::Initialized(result), _)) => result,
            Ok(_) => Err(InitError::Weights(unexpected())),
            Err(e) => Err(InitError::Device(e)),
        };
        self.status.set(match &result {
            Ok(()) => WorkerStatus::Ready,
            Err(e) => WorkerStatus::Failed(e.to_string()),
        });
        self.device.set(result.is_ok().then_some(device));
        result
    }

    /// A photo file decoded to the working size, off the page.
    pub async fn decode(self: &Rc<Self>, file: &str, data: &[u8]) -> Result<RgbImage, String> {
        let request = ToWorker::Decode {
            file: file.into(),
            backbone: self.backbone.get(),
        };
        match self.request(request, vec![bytes(data)]).await? {
            (Answer::Decoded(Ok(size)), buffers) => buffers
                .first()
                .and_then(|b| RgbImage::from_raw(size.width, size.height, b.to_vec()))
                .ok_or_else(|| format!("{file}: the decoded pixels did not arrive")),
            (Answer::Decoded(Err(e)), _) => Err(e),
            _ => Err(unexpected()),
        }
    }

    /// The ImageNet model's top classes for a photo file.
    pub async fn classify(
        self: &Rc<Self>,
        file: &str,
        data: &[u8],
        top_k: usize,
    ) -> Result<Vec<ClassScore>, String> {
        let request = ToWorker::Classify {
            file: file.into(),
            top_k,
        };
        self.scores(request, data).await
    }

    /// The trained model's top classes for a photo file.
    pub async fn predict(
        self: &Rc<Self>,
        file: &str,
        data: &[u8],
        top_k: usize,
    ) -> Result<Vec<ClassScore>, String> {
        let request = ToWorker::Predict {
            file: file.into(),
            top_k,
        };
        self.scores(request, data).await
    }

    /// Grad-CAM of `model` for `classes` (none: the predicted class) on a photo: its file's
    /// bytes, or working-size pixels. Each heatmap comes with its PNG (over the network's input).
    pub async fn explain(
        self: &Rc<Self>,
        file: &str,
        model: Which,
        photo: &Photo,
        classes: Vec<usize>,
    ) -> Result<Vec<(Explained, Vec<u8>)>, String> {
        let (pixels, data) = match photo {
            Photo::File(data) => (None, bytes(data)),
            Photo::Pixels(image) => (Some((image.width(), image.height())), bytes(image.as_raw())),
        };
        let request = ToWorker::Explain {
            file: file.into(),
            model,
            pixels,
            classes,
        };
        match self.request(request, vec![data]).await? {
            (Answer::Explained(Ok(heats)), buffers) if buffers.len() == heats.len() => Ok(heats
                .into_iter()
                .zip(buffers)
                .map(|(h, b)| (h, b.to_vec()))
                .collect()),
            (Answer::Explained(Err(e)), _) => Err(e),
            _ => Err(unexpected()),
        }
    }

    /// The last finished run's photos in the feature space.
    pub async fn feature_space(self: &Rc<Self>) -> Result<FeatureSpace, String> {
        match self.request(ToWorker::FeatureSpace, Vec::new()).await? {
            (Answer::FeatureSpace(result), _) => result,
            _ => Err(unexpected()),
        }
    }

    /// What each layer of the pretrained network sees in a photo file, each with its PNG grid.
    pub async fn layers(
        self: &Rc<Self>,
        file: &str,
        data: &[u8],
    ) -> Result<Vec<(LayerView, Vec<u8>)>, String> {
        let request = ToWorker::Layers { file: file.into() };
        match self.request(request, vec![bytes(data)]).await? {
            (Answer::Layers(Ok(views)), buffers) if buffers.len() == views.len() => Ok(views
                .into_iter()
                .zip(buffers)
                .map(|(v, b)| (v, b.to_vec()))
                .collect()),
            (Answer::Layers(Err(e)), _) => Err(e),
            _ => Err(unexpected()),
        }
    }

    async fn scores(
        self: &Rc<Self>,
        request: ToWorker,
        data: &[u8],
    ) -> Result<Vec<ClassScore>, String> {
        match self.request(request, vec![bytes(data)]).await? {
            (Answer::Classified(result), _) => result,
            _ => Err(unexpected()),
        }
    }

    /// Makes an exported model the one `predict` uses; its class names come back.
    pub async fn load_model(
        self: &Rc<Self>,
        file: &str,
        model: &ModelFile,
    ) -> Result<Vec<String>, String> {
        let request = ToWorker::LoadModel { file: file.into() };
        match self.request(request, vec![model.js_copy()]).await? {
            (Answer::ModelLoaded(result), _) => result,
            _ => Err(unexpected()),
        }
    }

    /// Runs a training; images are `(meta, rgb pixels)` (see [`pixels`]). `Ok` carries the
    /// exported model.
    pub async fn train(
        self: &Rc<Self>,
        classes: Vec<String>,
        config: TrainConfig,
        train: Vec<(ImageMeta, js_sys::Uint8Array)>,
        val: Vec<(ImageMeta, js_sys::Uint8Array)>,
    ) -> Result<(RunOutcome, ModelFile), RunError> {
        let (train, mut buffers): (Vec<_>, Vec<_>) = train.into_iter().unzip();
        let (val, val_buffers): (Vec<_>, Vec<_>) = val.into_iter().unzip();
        buffers.extend(val_buffers);
        let request = ToWorker::Train {
            classes,
            config: Box::new(config),
            train,
            val,
        };
        match self
            .request(request, buffers)
            .await
            .map_err(RunError::Failed)?
        {
            (Answer::RunEnded(Ok(outcome)), buffers) => match buffers.first() {
                Some(model) => Ok((outcome, ModelFile::from_js(model.clone()))),
                None => Err(RunError::Failed("the worker sent no model".into())),
            },
            (Answer::RunEnded(Err(e)), _) => Err(e),
            _ => Err(RunError::Failed(unexpected())),
        }
    }

    /// Times the network on `device` at `batch` images a batch (the device check).
    pub async fn bench(
        self: &Rc<Self>,
        device: DeviceKind,
        batch: usize,
    ) -> Result<DeviceSpeed, String> {
        match self
            .request(ToWorker::Bench { device, batch }, Vec::new())
            .await?
        {
            (Answer::Benched(result), _) => result,
            _ => Err(unexpected()),
        }
    }

    /// Where the time goes on the device in use (see `engine::measure::profile`).
    pub async fn profile(
        self: &Rc<Self>,
        batch: usize,
        passes: Vec<crate::engine::measure::profile::Pass>,
    ) -> Result<Vec<crate::engine::measure::profile::Profiles>, String> {
        match self
            .request(ToWorker::Profile { batch, passes }, Vec::new())
            .await?
        {
            (Answer::Profiled(result), _) => result,
            _ => Err(unexpected()),
        }
    }

    /// Asks the run to stop after its current step (its `train` answer keeps the best epoch).
    pub fn cancel(self: &Rc<Self>) {
        let this = Rc::clone(self);
        leptos::task::spawn_local(async move {
            this.request(ToWorker::Cancel, Vec::new()).await.ok();
        });
    }

    /// Sends `body` and waits for its one answer; `Err` when the worker died first.
    async fn request(self: &Rc<Self>, body: ToWorker, buffers: Buffers) -> Reply {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let (tx, rx) = oneshot::channel();
        self.pending.borrow_mut().insert(id, tx);
        let request = Request { id, body };
        let sent = match self.live.borrow().as_ref() {
            Some(live) => live.send(request, buffers),
            None => Err(self.status.with_untracked(|s| match s {
                WorkerStatus::Failed(e) => e.clone(),
                _ => "the worker is not running".to_string(),
            })),
        };
        if let Err(e) = sent {
            self.pending.borrow_mut().remove(&id);
            return Err(e);
        }
        rx.await
            .unwrap_or_else(|_| Err("the worker stopped before answering".into()))
    }

    fn spawn(self: &Rc<Self>) {
        let generation = self.lives.borrow_mut().started();
        match Live::start(Rc::downgrade(self), generation) {
            Ok(live) => *self.live.borrow_mut() = Some(live),
            Err(e) => self.status.set(WorkerStatus::Failed(e)),
        }
    }

    fn on_message(self: &Rc<Self>, generation: u64, message: FromWorker, buffers: Buffers) {
        match message {
            FromWorker::Started => {
                if let Some(live) = self.live.borrow().as_ref() {
                    live.flush();
                }
            }
            FromWorker::Answer { id, body } => {
                if let Some(tx) = self.pending.borrow_mut().remove(&id) {
                    tx.send(Ok((body, buffers))).ok();
                }
            }
            FromWorker::Progress(p) => self.emit(&Event::Progress(p)),
            FromWorker::BestSoFar { report } => {
                if let Some(model) = buffers.into_iter().next() {
                    let model = ModelFile::from_js(model);
                    self.emit(&Event::BestSoFar { report, model });
                }
            }
            FromWorker::Crashed(reason) => self.crashed(generation, reason),
        }
    }

    fn emit(&self, event: &Event) {
        let listeners = self.listeners.borrow().clone();
        for f in listeners {
            f(event);
        }
    }

    /// The worker is gone: every open request fails with `reason`, and a new worker starts with
    /// the same weights (listeners then give it back its model).
    fn crashed(self: &Rc<Self>, generation: u64, reason: String) {
        let alive_ms = match self.live.borrow().as_ref() {
            Some(live) if live.generation == generation => js::now_ms() - live.started_ms,
            _ => return,
        };
        let after = self.lives.borrow_mut().crashed(generation, alive_ms);
        if after == AfterCrash::Ignore {
            return;
        }
        let Some(dead) = self.live.borrow_mut().take() else {
            return;
        };
        // Not dropped inside its own message handler: at the next task.
        leptos::task::spawn_local(async move {
            js::next_task().await;
            drop(dead);
        });
        for (_, tx) in self.pending.borrow_mut().drain() {
            tx.send(Err(reason.clone())).ok();
        }
        if after == AfterCrash::GiveUp {
            self.status.set(WorkerStatus::Failed(reason.clone()));
            self.emit(&Event::Crashed);
            return;
        }
        self.spawn();
        let weights = self.weights.borrow().clone();
        if let Some((weights, device)) = weights {
            let this = Rc::clone(self);
            leptos::task::spawn_local(async move {
                this.init(weights, device).await.ok();
            });
        }
        self.emit(&Event::Crashed);
    }
}

impl Live {
    fn start(client: Weak<WorkerClient>, generation: u64) -> Result<Self, String> {
        let assets = Assets {
            script: asset_url(".js")?,
            wasm: asset_url(".wasm")?,
        };
        let worker = assets.start("finetune-worker")?;

        let on_message = {
            let client = client.clone();
            Closure::<dyn FnMut(MessageEvent)>::new(move |ev: MessageEvent| {
                let Some(client) = client.upgrade() else {
                    return;
                };
                match unpack::<FromWorker>(&ev.data()) {
                    Ok((message, buffers)) => client.on_message(generation, message, buffers),
                    Err(e) => client.crashed(generation, e),
                }
            })
        };
        let on_error =
            Closure::<dyn FnMut(web_sys::ErrorEvent)>::new(move |ev: web_sys::ErrorEvent| {
                ev.prevent_default();
                if let Some(client) = client.upgrade() {
                    client.crashed(generation, format!("the worker failed: {}", ev.message()));
                }
            });
        worker.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        worker.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        Ok(Self {
            worker,
            generation,
            started_ms: js::now_ms(),
            queue: RefCell::new(Some(Vec::new())),
            _on_message: on_message,
            _on_error: on_error,
        })
    }

    fn send(&self, request: Request, buffers: Buffers) -> Result<(), String> {
        if let Some(waiting) = self.queue.borrow_mut().as_mut() {
            waiting.push((request, buffers));
            return Ok(());
        }
        let (data, transfer) = pack(&request, buffers)?;
        self.worker
            .post_message_with_transfer(&data, &transfer)
            .map_err(|e| {
                format!(
                    "the request did not reach the worker: {}",
                    js::error_text(&e)
                )
            })
    }

    /// The worker listens: sends what waited, in order.
    fn flush(&self) {
        let waiting = self.queue.borrow_mut().take().unwrap_or_default();
        for (request, buffers) in waiting {
            if let Err(e) = self.send(request, buffers) {
                leptos::logging::error!("worker request not sent: {e}");
            }
        }
    }
}

/// A photo for the worker: its file's bytes, or pixels decoded at working size.
pub enum Photo {
    File(std::sync::Arc<Vec<u8>>),
    Pixels(RgbImage),
}

fn bytes(data: &[u8]) -> js_sys::Uint8Array {
    js_sys::Uint8Array::from(data)
}

fn unexpected() -> String {
    "the worker gave an answer of the wrong kind".into()
}

/// The images' pixels as JS buffers for [`WorkerClient::train`], a few per browser task so
/// that copying a big dataset out of wasm memory never blocks the page.
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
            out.push((meta, bytes(s.image.as_raw())));
        }
        crate::browser::js::next_task().await;
    }
    out
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
