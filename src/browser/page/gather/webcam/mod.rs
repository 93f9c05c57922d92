//! The webcam: hold a button to add frames to a class ([`capture::WebcamCapture`]), or predict
//! on the live picture ([`predict::WebcamPredict`]). The camera calls are a few lines of JS
//! (below) rather than web-sys bindings, whose extra features would rebuild every dependency.
//! The camera needs a secure page (https or localhost); every failure is shown as text, never a
//! panic.

pub(crate) mod capture;
pub(crate) mod predict;

use leptos::html::Video;

use leptos::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;

use crate::browser::js;

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
