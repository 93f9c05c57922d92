//! The webcam: hold a button to add frames to a class ([`WebcamCapture`]), or predict on the
//! live picture ([`WebcamPredict`]). The camera calls are a few lines of JS (below) rather than
//! web-sys bindings, whose extra features would rebuild every dependency. The camera needs a
//! secure page (https or localhost); every failure is shown as text, never a panic.

use leptos::html::Video;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

use leptos::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;

use crate::browser::js;
use crate::browser::notify::Notify;
use crate::browser::page::state::workspace::{ClassCard, Workspace};

/// Longest side of a captured frame: training works on far smaller images (Lite2's working size
/// is 292 on the shorter side), and small JPEGs encode fast and keep projects light.
const MAX_SIDE: u32 = 400;
/// Time between frames while the capture button is held (20 a second, so a busy device still
/// takes 15): a class recorded from the webcam wants many varied frames in a few seconds.
const CAPTURE_EVERY_MS: f64 = 50.0;
/// Frames grabbed but not yet encoded at most (3 s of them, about 30 MB): past that a tick is
/// skipped rather than letting a slow device pile up pictures in memory.
const MAX_BUFFERED: usize = 60;
/// Least time between live predictions, so the page stays responsive.
const PREDICT_EVERY_MS: f64 = 300.0;

// getUserMedia, enumerateDevices and canvas.toBlob are promise/callback APIs: much shorter in JS.
// A start is cancelled by any later start or stop of the same video (`__ftsToken`), so a slow
// permission prompt never leaves a stream running after the panel closed.
#[wasm_bindgen(inline_js = r#"
function media() {
  if (!window.isSecureContext) {
    throw new Error('The camera only works on a secure page: open the app over https, or on localhost.');
  }
  const m = navigator.mediaDevices;
  if (!m || !m.getUserMedia) throw new Error('This browser cannot use a camera here.');
  return m;
}
function explain(e) {
  const name = e && e.name;
  if (name === 'NotAllowedError' || name === 'SecurityError') {
    return 'The camera was not allowed. Allow camera access for this page (the camera icon in the address bar), then try again.';
  }
  if (name === 'NotFoundError' || name === 'OverconstrainedError' || name === 'DevicesNotFoundError') {
    return 'No camera was found. Plug one in, or pick another camera.';
  }
  if (name === 'NotReadableError' || name === 'AbortError' || name === 'TrackStartError') {
    return 'The camera could not start: another app or tab may be using it. Close it and try again.';
  }
  return 'The camera could not start: ' + ((e && e.message) || e);
}
function stopTracks(video) {
  const s = video.srcObject;
  if (s && s.getTracks) s.getTracks().forEach((t) => t.stop());
}
export async function list_cameras() {
  const devices = await media().enumerateDevices();
  return devices
    .filter((d) => d.kind === 'videoinput')
    .map((d, i) => ({ id: d.deviceId || '', label: d.label || `Camera ${i + 1}` }));
}
export async function start_camera(video, deviceId) {
  const m = media();
  const token = (video.__ftsToken = (video.__ftsToken || 0) + 1);
  stopTracks(video);
  let stream;
  try {
    stream = await m.getUserMedia({
      video: deviceId ? { deviceId: { exact: deviceId } } : { facingMode: 'user' },
      audio: false,
    });
  } catch (e) {
    throw new Error(explain(e));
  }
  if (video.__ftsToken !== token) {
    stream.getTracks().forEach((t) => t.stop());
    return false;
  }
  video.muted = true;
  video.playsInline = true;
  video.setAttribute('playsinline', '');
  video.srcObject = stream;
  try {
    await video.play();
  } catch (e) {
    if (video.__ftsToken !== token) return false;
  }
  return video.__ftsToken === token;
}
export function current_camera(video) {
  const s = video.srcObject;
  const track = s && s.getVideoTracks && s.getVideoTracks()[0];
  const settings = track && track.getSettings ? track.getSettings() : {};
  return settings.deviceId || '';
}
export function stop_camera(video) {
  video.__ftsToken = (video.__ftsToken || 0) + 1;
  stopTracks(video);
  video.srcObject = null;
}
export async function capture_jpeg(video, maxSide) {
  const w = video.videoWidth, h = video.videoHeight;
  if (!w || !h) throw new Error('The camera has no picture yet; wait a moment and try again.');
  const scale = Math.min(1, maxSide / Math.max(w, h));
  const canvas = document.createElement('canvas');
  canvas.width = Math.max(1, Math.round(w * scale));
  canvas.height = Math.max(1, Math.round(h * scale));
  canvas.getContext('2d').drawImage(video, 0, 0, canvas.width, canvas.height);
  const blob = await new Promise((resolve, reject) =>
    canvas.toBlob((b) => (b ? resolve(b) : reject(new Error('Could not capture a frame.'))), 'image/jpeg', 0.9));
  return new Uint8Array(await blob.arrayBuffer());
}
// Recording: the frame of this instant, already at its small size (a promise of an ImageBitmap);
// encoding comes later and never holds up the next grab.
export function grab_frame(video, maxSide) {
  const w = video.videoWidth, h = video.videoHeight;
  if (!w || !h) throw new Error('The camera has no picture yet; wait a moment and try again.');
  const scale = Math.min(1, maxSide / Math.max(w, h));
  return createImageBitmap(video, {
    resizeWidth: Math.max(1, Math.round(w * scale)),
    resizeHeight: Math.max(1, Math.round(h * scale)),
    resizeQuality: 'medium',
  });
}
export async function encode_frame(frame, maxSide) {
  const bitmap = await frame;
  // A browser that ignored the resize options still gets a small JPEG.
  const scale = Math.min(1, maxSide / Math.max(bitmap.width, bitmap.height));
  const canvas = document.createElement('canvas');
  canvas.width = Math.max(1, Math.round(bitmap.width * scale));
  canvas.height = Math.max(1, Math.round(bitmap.height * scale));
  canvas.getContext('2d').drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  bitmap.close();
  const blob = await new Promise((resolve, reject) =>
    canvas.toBlob((b) => (b ? resolve(b) : reject(new Error('Could not capture a frame.'))), 'image/jpeg', 0.9));
  return new Uint8Array(await blob.arrayBuffer());
}
"#)]
extern "C" {
    #[wasm_bindgen(catch)]
    fn list_cameras() -> Result<js_sys::Promise, JsValue>;
    #[wasm_bindgen(catch)]
    fn start_camera(video: &JsValue, device_id: &str) -> Result<js_sys::Promise, JsValue>;
    #[wasm_bindgen(catch)]
    fn current_camera(video: &JsValue) -> Result<String, JsValue>;
    #[wasm_bindgen(catch)]
    fn stop_camera(video: &JsValue) -> Result<(), JsValue>;
    #[wasm_bindgen(catch)]
    fn capture_jpeg(video: &JsValue, max_side: u32) -> Result<js_sys::Promise, JsValue>;
    #[wasm_bindgen(catch)]
    fn grab_frame(video: &JsValue, max_side: u32) -> Result<js_sys::Promise, JsValue>;
    #[wasm_bindgen(catch)]
    fn encode_frame(frame: &js_sys::Promise, max_side: u32) -> Result<js_sys::Promise, JsValue>;
}

/// One camera the browser offers.
#[derive(Clone, Debug, PartialEq)]
struct CameraInfo {
    /// Empty before permission is granted (the browser's default camera).
    id: String,
    label: String,
}

/// A preview `<video>` and the camera behind it, shared by both components.
#[derive(Clone, Copy)]
struct Camera {
    video: NodeRef<Video>,
    cameras: RwSignal<Vec<CameraInfo>>,
    /// The chosen camera's id; empty: the default (front) camera.
    device: RwSignal<String>,
    live: RwSignal<bool>,
    starting: RwSignal<bool>,
    error: RwSignal<Option<String>>,
}

impl Camera {
    fn new() -> Self {
        Self {
            video: NodeRef::new(),
            cameras: RwSignal::new(Vec::new()),
            device: RwSignal::new(String::new()),
            live: RwSignal::new(false),
            starting: RwSignal::new(false),
            error: RwSignal::new(None),
        }
    }

    fn element(self) -> Option<JsValue> {
        self.video.try_get_untracked().flatten().map(JsValue::from)
    }

    /// Starts (or switches to) the chosen camera; lists the cameras again once allowed, since
    /// browsers only give their names after permission.
    fn start(self) {
        let Some(video) = self.element() else {
            return;
        };
        let device = self.device.get_untracked();
        self.error.set(None);
        self.live.set(false);
        self.starting.set(true);
        leptos::task::spawn_local(async move {
            let started = match start_camera(&video, &device) {
                Ok(promise) => js::await_promise(promise).await,
                Err(e) => Err(js::error_text(&e)),
            };
            match started {
                // Cancelled by a later start or stop, which owns the state now.
                Ok(value) if value.as_bool() != Some(true) => return,
                Ok(_) => {
                    self.live.try_set(true);
                    self.starting.try_set(false);
                }
                Err(e) => {
                    self.starting.try_set(false);
                    self.error.try_set(Some(e));
                    return;
                }
            }
            self.list().await;
            if let Ok(id) = current_camera(&video)
                && !id.is_empty()
            {
                self.device.try_set(id);
            }
        });
    }

    fn stop(self) {
        if let Some(video) = self.element() {
            stop_camera(&video).ok();
        }
        self.live.try_set(false);
        self.starting.try_set(false);
    }

    async fn list(self) {
        let listed = match list_cameras() {
            Ok(promise) => js::await_promise(promise).await,
            Err(e) => Err(js::error_text(&e)),
        };
        // A failed listing only leaves the default camera; starting it says what is wrong.
        let Ok(array) = listed.and_then(|v| {
            v.dyn_into::<js_sys::Array>()
                .map_err(|_| "no camera list".to_string())
        }) else {
            return;
        };
        let cameras = array
            .iter()
            .enumerate()
            .map(|(i, c)| CameraInfo {
                id: js::get_string(&c, "id").unwrap_or_default(),
                label: js::get_string(&c, "label").unwrap_or_else(|| format!("Camera {}", i + 1)),
            })
            .collect();
        self.cameras.try_set(cameras);
    }

    /// The current frame as a JPEG.
    async fn capture(self) -> Result<Vec<u8>, String> {
        let video = self.element().ok_or("The camera preview is gone.")?;
        let promise = capture_jpeg(&video, MAX_SIDE).map_err(|e| js::error_text(&e))?;
        let value = js::await_promise(promise).await?;
        value
            .dyn_into::<js_sys::Uint8Array>()
            .map(|a| a.to_vec())
            .map_err(|_| "Could not capture a frame.".to_string())
    }

    /// The frame of this instant, to be encoded with [`encode`] later.
    fn grab(self) -> Result<js_sys::Promise, String> {
        let video = self.element().ok_or("The camera preview is gone.")?;
        grab_frame(&video, MAX_SIDE).map_err(|e| js::error_text(&e))
    }

    /// The camera `<select>`; picking another camera restarts the preview when it is on.
    fn picker(self, test_id: &'static str) -> impl IntoView {
        let on_change = move |ev: leptos::ev::Event| {
            self.device.set(event_target_value(&ev));
            if self.live.get_untracked() || self.starting.get_untracked() {
                self.start();
            }
        };
        view! {
            <label class="webcam-field">
                <span>"Camera"</span>
                <select data-testid=test_id on:change=on_change>
                    {move || {
                        let cameras = self.cameras.get();
                        if cameras.is_empty() {
                            return vec![view! { <option value="">"Default camera"</option> }.into_any()];
                        }
                        let device = self.device.get();
                        cameras
                            .into_iter()
                            .map(|c| {
                                let selected = c.id == device;
                                view! { <option value=c.id selected=selected>{c.label}</option> }.into_any()
                            })
                            .collect()
                    }}
                </select>
            </label>
        }
    }

    fn preview(self, test_id: &'static str) -> impl IntoView {
        view! {
            <div class="webcam-preview">
                <video
                    node_ref=self.video
                    data-testid=test_id
                    autoplay
                    muted
                    playsinline
                    aria-label="Camera preview"
                ></video>
                {move || self.starting.get().then(|| view! {
                    <span class="webcam-overlay">"Starting the camera…"</span>
                })}
            </div>
            {move || self.error.get().map(|e| view! {
                <p class="webcam-error" role="alert">{e}</p>
            })}
        }
    }
}

/// A grabbed frame as a JPEG.
async fn encode(frame: &js_sys::Promise) -> Result<Vec<u8>, String> {
    let promise = encode_frame(frame, MAX_SIDE).map_err(|e| js::error_text(&e))?;
    js::await_promise(promise)
        .await?
        .dyn_into::<js_sys::Uint8Array>()
        .map(|a| a.to_vec())
        .map_err(|_| "Could not capture a frame.".to_string())
}

/// "webcam-cat-3.jpg": the class name kept to letters and digits, so it is a safe file name.
fn frame_name(class: &str, n: u64) -> String {
    let mut slug = String::new();
    for c in class.trim().chars().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() {
            slug.push(c);
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
    }
    let slug: String = slug.trim_end_matches('-').chars().take(40).collect();
    let slug = if slug.is_empty() {
        "class".into()
    } else {
        slug
    };
    format!("webcam-{slug}-{n}.jpg")
}

/// Frames grabbed and not yet encoded, shared by a hold's two loops.
#[derive(Default)]
struct Frames {
    buffer: RefCell<VecDeque<(u64, js_sys::Promise)>>,
    /// The grab loop is still going.
    grabbing: Cell<bool>,
    /// Told when a frame arrives or grabbing ends.
    changed: Notify,
}

/// One hold of the capture button, as the page follows it.
#[derive(Clone, Copy)]
struct Recorder {
    ws: Workspace,
    cam: Camera,
    holding: RwSignal<bool>,
    /// Frames added by the current (or last) hold, and how many a second.
    taken: RwSignal<usize>,
    rate: RwSignal<f64>,
    taken_class: RwSignal<String>,
    /// Numbers frames across holds, so names do not repeat.
    serial: StoredValue<u64>,
    /// Each hold has its own number; a loop ends when a newer hold starts.
    hold_id: StoredValue<u64>,
}

impl Recorder {
    fn new(ws: Workspace, cam: Camera) -> Self {
        Self {
            ws,
            cam,
            holding: RwSignal::new(false),
            taken: RwSignal::new(0),
            rate: RwSignal::new(0.0),
            taken_class: RwSignal::new(String::new()),
            serial: StoredValue::new(0),
            hold_id: StoredValue::new(0),
        }
    }

    /// Adds frames to `card` until released or `stop` says so (just one frame when `once`).
    /// Frames are grabbed on a fixed clock into a small buffer; one encoder turns them into
    /// JPEGs for the class meanwhile (the clock never waits for it, nor for the worker).
    fn press(self, card: ClassCard, once: bool, disabled: Signal<bool>) {
        let id = self.hold_id.get_value() + 1;
        self.hold_id.set_value(id);
        self.holding.set(true);
        self.taken.set(0);
        self.rate.set(0.0);
        let class = card.name.try_get_untracked().unwrap_or_default();
        self.taken_class.set(class.clone());
        self.cam.error.set(None);
        let frames = Rc::new(Frames::default());
        frames.grabbing.set(true);
        leptos::task::spawn_local(self.encode_frames(card, class, Rc::clone(&frames)));
        leptos::task::spawn_local(self.grab_frames(id, once, disabled, frames));
    }

    fn release(self) {
        self.holding.try_set(false);
    }

    /// Whether hold `id` goes on.
    fn still(self, id: u64, disabled: Signal<bool>) -> bool {
        self.holding.try_get_untracked() == Some(true)
            && self.hold_id.try_get_value() == Some(id)
            && disabled.try_get_untracked() == Some(false)
            && self.cam.live.try_get_untracked() == Some(true)
    }

    /// The clock: a frame every [`CAPTURE_EVERY_MS`] into the buffer while hold `id` goes on.
    async fn grab_frames(self, id: u64, once: bool, disabled: Signal<bool>, frames: Rc<Frames>) {
        let started = js::now_ms();
        let mut next_at = started;
        while self.still(id, disabled) {
            let wait = next_at - js::now_ms();
            if wait > 0.0 {
                js::sleep_ms(wait).await;
                continue;
            }
            next_at = next_at.max(js::now_ms() - CAPTURE_EVERY_MS) + CAPTURE_EVERY_MS;
            if frames.buffer.borrow().len() < MAX_BUFFERED {
                match self.cam.grab() {
                    Ok(frame) => {
                        let n = self.serial.try_get_value().unwrap_or(0) + 1;
                        self.serial.try_set_value(n);
                        frames.buffer.borrow_mut().push_back((n, frame));
                        frames.changed.notify_all();
                        self.taken.try_update(|t| *t += 1);
                    }
                    Err(e) => {
                        self.cam.error.try_set(Some(e));
                        break;
                    }
                }
            }
            let seconds = ((js::now_ms() - started) / 1000.0).max(CAPTURE_EVERY_MS / 1000.0);
            let taken = self.taken.try_get_untracked().unwrap_or(0);
            self.rate.try_set(taken as f64 / seconds);
            if once {
                break;
            }
        }
        frames.grabbing.set(false);
        frames.changed.notify_all();
        if self.hold_id.try_get_value() == Some(id) {
            self.holding.try_set(false);
        }
    }

    /// The encoder: each buffered frame as a JPEG into `card`, until grabbing has ended and
    /// the buffer is empty.
    async fn encode_frames(self, card: ClassCard, class: String, frames: Rc<Frames>) {
        loop {
            let next = frames.buffer.borrow_mut().pop_front();
            let Some((n, frame)) = next else {
                if !frames.grabbing.get() {
                    break;
                }
                frames.changed.notified().await;
                continue;
            };
            match encode(&frame).await {
                Ok(bytes) => {
                    let frame = vec![(frame_name(&class, n), bytes, false)];
                    let ws = self.ws;
                    leptos::task::spawn_local(async move { ws.add_images(card, frame).await });
                }
                Err(e) => {
                    self.cam.error.try_set(Some(e));
                    self.holding.try_set(false);
                }
            }
        }
    }
}

/// "Use the webcam": a panel with a preview, the camera and class to fill, and a button that
/// adds frames while it is held (pointer, Space or Enter).
#[component]
pub fn WebcamCapture(
    /// Cards cannot change (no model yet, or training): nothing is captured.
    #[prop(into)]
    disabled: Signal<bool>,
) -> impl IntoView {
    let ws = expect_context::<Workspace>();
    let classes = ws.classes;
    let open = RwSignal::new(false);
    let cam = Camera::new();
    let rec = Recorder::new(ws, cam);
    let Recorder {
        holding,
        taken,
        rate,
        taken_class,
        ..
    } = rec;
    // Chosen class; `None` or a deleted class: the first one.
    let target = RwSignal::new(None::<u64>);

    let chosen = move || {
        let wanted = target.get();
        classes.with(|c| {
            c.iter()
                .find(|card| Some(card.id) == wanted)
                .or_else(|| c.first())
                .copied()
        })
    };
    let can_capture = move || !disabled.get() && cam.live.get() && classes.with(|c| !c.is_empty());
    let release = Callback::new(move |()| rec.release());
    let press = Callback::new(move |once: bool| {
        if holding.get_untracked() || !can_capture() {
            return;
        }
        if let Some(card) = chosen() {
            rec.press(card, once, disabled);
        }
    });

    let close = move || {
        holding.set(false);
        cam.stop();
        open.set(false);
    };
    let toggle = move |_| {
        if open.get_untracked() {
            close();
        } else {
            open.set(true);
            cam.start();
        }
    };
    on_cleanup(move || {
        holding.try_set(false);
        cam.stop();
    });

    let on_class = move |ev: leptos::ev::Event| {
        target.set(event_target_value(&ev).parse().ok());
    };

    let hint = move || {
        if disabled.get() {
            Some("Capturing is off while the model loads or trains.")
        } else if classes.with(Vec::is_empty) {
            Some("Add a class first.")
        } else {
            None
        }
    };

    view! {
        <div class="webcam">
            <button
                type="button"
                class="button secondary"
                data-testid="webcam-toggle"
                aria-expanded=move || open.get().to_string()
                aria-controls="webcam-panel"
                on:click=toggle
            >
                {move || if open.get() { "Close the webcam" } else { "Use the webcam" }}
            </button>
            <div id="webcam-panel" class="webcam-panel card" hidden=move || !open.get()>
                {cam.preview("webcam-preview")}
                <div class="webcam-controls">
                    {cam.picker("webcam-select")}
                    <label class="webcam-field">
                        <span>"Add to class"</span>
                        <select data-testid="webcam-class-select" on:change=on_class>
                            <For
                                each=move || classes.get()
                                key=|c| c.id
                                children=move |card| {
                                    let selected = move || chosen().map(|c| c.id) == Some(card.id);
                                    view! {
                                        <option value=card.id.to_string() prop:selected=selected>
                                            {move || card.name.try_get().unwrap_or_default()}
                                        </option>
                                    }
                                }
                            />
                        </select>
                    </label>
                </div>
                <CaptureButton rec can_capture=Signal::derive(can_capture) press release />
                <p
                    class="webcam-count"
                    role="status"
                    data-testid="webcam-count"
                    data-frames=move || taken.get()
                    data-fps=move || format!("{:.1}", rate.get())
                >
                    {move || count_text(taken.get(), holding.get(), taken_class.get())}
                </p>
                {move || hint().map(|h| view! { <p class="muted small">{h}</p> })}
                <p class="webcam-why muted small">
                    "Move the object while you hold: turn it, bring it closer and further, try "
                    "another background and other light. Then the model learns the object, not "
                    "the room behind it."
                </p>
            </div>
        </div>
    }
}

/// The hold-to-capture button: held by pointer (captured, so a layout shift does not end the
/// hold), by Space or Enter, or a bare click (screen readers) for one frame.
#[component]
fn CaptureButton(
    rec: Recorder,
    can_capture: Signal<bool>,
    press: Callback<bool>,
    release: Callback<()>,
) -> impl IntoView {
    let holding = rec.holding;
    // A pointer or key started this press: the click that follows is not a separate capture.
    let engaged = StoredValue::new(false);
    let press = move |once| press.run(once);
    let release = move || release.run(());
    let is_hold_key = |key: &str| key == " " || key == "Enter";
    let on_key_down = move |ev: leptos::ev::KeyboardEvent| {
        if is_hold_key(&ev.key()) {
            // No click (and no page scroll for Space): the key itself is the hold.
            ev.prevent_default();
            if !ev.repeat() {
                engaged.set_value(true);
                press(false);
            }
        }
    };
    let on_key_up = move |ev: leptos::ev::KeyboardEvent| {
        if is_hold_key(&ev.key()) {
            ev.prevent_default();
            engaged.set_value(false);
            release();
        }
    };
    let on_pointer_down = move |ev: leptos::ev::PointerEvent| {
        if ev.button() == 0 {
            // The button keeps the pointer while it is held: the cards above it grow with each
            // frame, and a mouse the layout moved off the button would end the hold.
            if let Some(button) = ev
                .current_target()
                .and_then(|t| t.dyn_into::<web_sys::Element>().ok())
            {
                button.set_pointer_capture(ev.pointer_id()).ok();
            }
            engaged.set_value(true);
            press(false);
        }
    };
    // Screen readers may send a bare click with no press: that takes one frame.
    let on_click = move |_| {
        if engaged.get_value() {
            engaged.set_value(false);
        } else {
            press(true);
        }
    };
    let capture_label = move || {
        if holding.get() {
            "Capturing… keep holding"
        } else {
            "Hold to capture"
        }
    };
    view! {
                <button
                    type="button"
                    class="button webcam-capture"
                    class:holding=move || holding.get()
                    data-testid="webcam-capture"
                    disabled=move || !can_capture.get()
                    on:pointerdown=on_pointer_down
                    on:pointerup=move |_| release()
                    on:pointerleave=move |_| release()
                    on:pointercancel=move |_| release()
                    on:keydown=on_key_down
                    on:keyup=on_key_up
                    on:blur=move |_| release()
                    on:click=on_click
                    on:contextmenu=|ev| ev.prevent_default()
                >
                    {capture_label}
                </button>
    }
}

/// "12 frames added to ants this time", while and after a hold.
fn count_text(n: usize, holding: bool, class: String) -> Option<String> {
    (n > 0 || holding).then(|| {
        let frames = if n == 1 { "frame" } else { "frames" };
        format!("{n} {frames} added to {class} this time")
    })
}

/// "Live webcam": predicts on the camera picture, one frame at a time: the next frame is taken
/// once the previous prediction is back (`busy` false), and at least 300 ms after the last.
#[component]
pub fn WebcamPredict(
    /// Runs a prediction on ("webcam", JPEG bytes).
    predict: Callback<(String, Vec<u8>)>,
    /// A prediction is running.
    #[prop(into)]
    busy: Signal<bool>,
    /// A model is ready to predict.
    #[prop(into)]
    enabled: Signal<bool>,
    /// Told when the live webcam is turned on or off.
    #[prop(optional)]
    on_toggle: Option<Callback<bool>>,
) -> impl IntoView {
    let on = RwSignal::new(false);
    let cam = Camera::new();
    // Each start has its own number; a loop ends when the webcam is turned off or on again.
    let run_id = StoredValue::new(0u64);

    let run = move |id: u64| {
        leptos::task::spawn_local(async move {
            let mut last = f64::NEG_INFINITY;
            loop {
                if on.try_get_untracked() != Some(true) || run_id.try_get_value() != Some(id) {
                    break;
                }
                let ready = cam.live.try_get_untracked() == Some(true)
                    && enabled.try_get_untracked() == Some(true)
                    && busy.try_get_untracked() == Some(false);
                let wait = last + PREDICT_EVERY_MS - js::now_ms();
                if !ready || wait > 0.0 {
                    js::sleep_ms(if ready { wait } else { 100.0 }).await;
                    continue;
                }
                last = js::now_ms();
                match cam.capture().await {
                    Ok(bytes) => {
                        if on.try_get_untracked() == Some(true)
                            && run_id.try_get_value() == Some(id)
                        {
                            predict.run(("webcam".into(), bytes));
                        }
                    }
                    // No picture yet right after starting: try again shortly.
                    Err(_) => js::sleep_ms(PREDICT_EVERY_MS).await,
                }
            }
        });
    };
    let stop = move || {
        on.try_set(false);
        run_id.try_update_value(|id| *id += 1);
        cam.stop();
    };
    let toggle = move |_| {
        if on.get_untracked() {
            stop();
        } else {
            let id = run_id.get_value() + 1;
            run_id.set_value(id);
            on.set(true);
            cam.start();
            run(id);
        }
        if let Some(on_toggle) = on_toggle {
            on_toggle.run(on.get_untracked());
        }
    };
    on_cleanup(stop);

    view! {
        <div class="webcam">
            <button
                type="button"
                class="button secondary"
                data-testid="webcam-predict-toggle"
                aria-pressed=move || on.get().to_string()
                aria-controls="webcam-predict-panel"
                on:click=toggle
            >
                {move || if on.get() { "Stop the live webcam" } else { "Live webcam" }}
            </button>
            <div id="webcam-predict-panel" class="webcam-panel card" hidden=move || !on.get()>
                {cam.preview("webcam-predict-preview")}
                <div class="webcam-controls">{cam.picker("webcam-predict-select")}</div>
                {move || (!enabled.get()).then(|| view! {
                    <p class="muted small">"Live predictions start once a model is ready."</p>
                })}
            </div>
        </div>
    }
}
