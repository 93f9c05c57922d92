//! Hold to record: frames from the camera on a fixed clock into a small buffer, one encoder
//! turning them into photos of the chosen class.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

use leptos::prelude::*;
use wasm_bindgen::JsCast;

use super::{CAPTURE_EVERY_MS, Camera, MAX_BUFFERED, encode, frame_name};
use crate::browser::js;
use crate::browser::notify::Notify;
use crate::browser::page::state::workspace::{ClassCard, Workspace};

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
                <CaptureButton rec can_capture=Signal::derive(can_capture) press />
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
fn CaptureButton(rec: Recorder, can_capture: Signal<bool>, press: Callback<bool>) -> impl IntoView {
    let holding = rec.holding;
    // A pointer or key started this press: the click that follows is not a separate capture.
    let engaged = StoredValue::new(false);
    let press = move |once| press.run(once);
    let release = move || rec.release();
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
