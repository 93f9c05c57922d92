//! Keeping the work: save the whole project (images, classes, settings, last report, model) as
//! one file, open one, and autosave to IndexedDB ([`Autosave`]) so a reload or a crashed tab
//! restores it all.
//! A project that cannot be read changes nothing; the message names the file and the reason.

use std::rc::Rc;

use gloo_timers::callback::Timeout;
use leptos::prelude::*;
use web_sys::HtmlInputElement;

use crate::browser::page::persistence::autosave::Autosave;
use crate::browser::page::persistence::project_state::ProjectSignals;
use crate::browser::page::persistence::storage;
use crate::engine::io::project::Project;
use crate::engine::limits::MAX_PROJECT_BYTES;

/// Quiet time after the last change before the autosave runs.
const AUTOSAVE_DELAY_MS: u32 = 800;
/// Suggested name of a saved project.
const PROJECT_FILE: &str = "finetune-project.ftproj";

/// The autosave's failure as the user reads it: a full disk says what is not saved.
fn save_failure(error: &str) -> String {
    if error.contains("Quota") || error.contains("quota") {
        format!(
            "The browser has no room left for the autosave: your latest images and model are not saved in this browser. Use Save project to keep them in a file. ({error})"
        )
    } else {
        format!("autosave failed: {error}")
    }
}

/// Where the autosave stands, for the user.
#[derive(Clone, Debug, PartialEq)]
enum SaveState {
    Restoring,
    Restored(usize),
    /// Restored from the first autosave layout; the next save writes the current one.
    Migrated(usize),
    Idle,
    Saved,
    Failed(String),
}

/// Key of the work an Open replaced, kept (as a project file) until the user keeps the opened
/// project or opens another: one undo, which survives a reload.
const UNDO_OPEN_KEY: &str = "undo-open";

/// Whether there is work an Open would replace: photos (held ones too) or a model.
fn has_work(project: &ProjectSignals) -> bool {
    project.model.with_untracked(Option::is_some)
        || project
            .workspace
            .snapshot()
            .iter()
            .any(|c| !c.images.is_empty())
}

/// Save / open buttons and the autosave line. Restores the autosave once, then saves every
/// change after a short quiet time. `restoring` is true while saved work is being put back
/// (photos added meanwhile would be replaced by it, so the cards wait).
#[component]
pub fn ProjectBar(
    project: ProjectSignals,
    disabled: Signal<bool>,
    restoring: RwSignal<bool>,
) -> impl IntoView {
    let save_state = RwSignal::new(SaveState::Restoring);
    // The name of the file whose Open can still be undone.
    let undo_open = RwSignal::new(None::<String>);
    let open_error = RwSignal::new(None::<String>);
    // Autosave starts only after the restore, so the empty start page never overwrites it.
    let restored = RwSignal::new(false);
    let saves = RwSignal::new(0u32);
    let autosave = Rc::new(Autosave::default());

    {
        let autosave = Rc::clone(&autosave);
        leptos::task::spawn_local(async move {
            storage::request_persistence();
            let result = autosave.restore().await;
            match result {
                Ok(Some(found)) => {
                    let images = found.project.image_count();
                    project.apply(found.project).await;
                    for file in found.missing {
                        let message = format!("{file}: missing from the autosave, not restored");
                        project.workspace.report(file, message);
                    }
                    save_state.set(if found.migrated {
                        SaveState::Migrated(images)
                    } else {
                        SaveState::Restored(images)
                    });
                }
                Ok(None) => save_state.set(SaveState::Idle),
                Err(e) => {
                    restoring.set(false);
                    // Autosaving now would replace the saved work with this empty page.
                    save_state.set(SaveState::Failed(format!(
                        "Your saved work could not be restored ({e}). Autosave is paused so it is not overwritten; use Save project to keep new work."
                    )));
                    return;
                }
            }
            restoring.set(false);
            restored.set(true);
            // An Open before the reload can still be undone.
            if storage::keys()
                .await
                .is_ok_and(|keys| keys.iter().any(|k| k == UNDO_OPEN_KEY))
            {
                undo_open.set(Some("a project".into()));
            }
        });
    }

    // One save at a time: a change during a save waits for it, and changes coalesce.
    let saving = Rc::new(std::cell::Cell::new(false));
    let again = Rc::new(std::cell::Cell::new(false));
    let run_save: Rc<dyn Fn()> = {
        let autosave = Rc::clone(&autosave);
        let (saving, again) = (Rc::clone(&saving), Rc::clone(&again));
        Rc::new(move || {
            if saving.replace(true) {
                again.set(true);
                return;
            }
            let autosave = Rc::clone(&autosave);
            let (saving, again) = (Rc::clone(&saving), Rc::clone(&again));
            leptos::task::spawn_local(async move {
                loop {
                    again.set(false);
                    let result = autosave.save(&project).await;
                    if result.is_ok() {
                        saves.try_update(|n| *n += 1);
                    }
                    save_state.try_set(match result {
                        Ok(()) => SaveState::Saved,
                        Err(e) => SaveState::Failed(save_failure(&e)),
                    });
                    if !again.get() {
                        break;
                    }
                }
                saving.set(false);
            });
        })
    };

    // Each change restarts the quiet time: dropping the pending timer cancels it.
    let timer = StoredValue::new_local(None::<Timeout>);
    Effect::new(move |_| {
        project.track();
        if !restored.get() {
            return;
        }
        let run_save = Rc::clone(&run_save);
        let pending = Timeout::new(AUTOSAVE_DELAY_MS, move || run_save());
        timer.set_value(Some(pending));
    });

    let save = move |_| {
        open_error.set(None);
        let result = project
            .snapshot()
            .to_bytes()
            .map_err(|e| e.to_string())
            .and_then(|bytes| {
                storage::download(&js_sys::Uint8Array::from(bytes.as_slice()), PROJECT_FILE)
            });
        if let Err(e) = result {
            open_error.set(Some(format!("The project could not be saved: {e}")));
        }
    };

    let open = move |ev: leptos::ev::Event| {
        let input: HtmlInputElement = event_target(&ev);
        let file = input.files().and_then(|f| f.get(0));
        input.set_value("");
        let Some(file) = file else { return };
        open_error.set(None);
        let name = file.name();
        if file.size() > MAX_PROJECT_BYTES as f64 {
            open_error.set(Some(format!(
                "{name}: {:.0} MB is more than the {} MB a project may have; nothing was changed.",
                file.size() / 1_048_576.0,
                MAX_PROJECT_BYTES >> 20
            )));
            return;
        }
        let replacing = has_work(&project);
        if replacing
            && !crate::browser::js::confirm(&format!(
                "Open {name}? It replaces your classes, photos and model. You can undo it right after."
            ))
        {
            return;
        }
        leptos::task::spawn_local(async move {
            let bytes = match crate::browser::js::await_promise(file.array_buffer()).await {
                Ok(buffer) => js_sys::Uint8Array::new(&buffer).to_vec(),
                Err(e) => {
                    open_error.set(Some(format!("{name}: could not read the file: {e}")));
                    return;
                }
            };
            let parsed = Project::from_bytes(&name, &bytes);
            // The file's bytes go before the images are decoded: the project is in memory at
            // most twice (file and parsed) and only while it is parsed.
            drop(bytes);
            match parsed {
                Ok(p) => {
                    // The work it replaces stays stored until the user keeps the new one.
                    if replacing {
                        let kept = project.snapshot().to_bytes().map_err(|e| e.to_string());
                        let stored = match kept {
                            Ok(bytes) => storage::put(UNDO_OPEN_KEY, &bytes).await,
                            Err(e) => Err(e),
                        };
                        if let Err(e) = stored {
                            open_error.set(Some(format!(
                                "{name} was not opened: your current work could not be kept for an undo ({e}). Save it as a file first."
                            )));
                            return;
                        }
                        undo_open.set(Some(name.clone()));
                    }
                    let images = p.image_count();
                    restoring.set(true);
                    project.apply(p).await;
                    restoring.set(false);
                    save_state.set(SaveState::Restored(images));
                }
                Err(e) => open_error.set(Some(format!("{e}. Nothing was changed."))),
            }
        });
    };

    let undo = move |_| {
        undo_open.set(None);
        leptos::task::spawn_local(async move {
            let kept = match storage::get(UNDO_OPEN_KEY).await {
                Ok(Some(bytes)) => Project::from_bytes("your previous work", &bytes),
                Ok(None) => return,
                Err(e) => {
                    open_error.set(Some(format!("The undo failed: {e}")));
                    return;
                }
            };
            match kept {
                Ok(p) => {
                    let images = p.image_count();
                    restoring.set(true);
                    project.apply(p).await;
                    restoring.set(false);
                    storage::delete(UNDO_OPEN_KEY).await.ok();
                    save_state.set(SaveState::Restored(images));
                }
                Err(e) => open_error.set(Some(format!("The undo failed: {e}"))),
            }
        });
    };
    let keep = move |_| {
        undo_open.set(None);
        leptos::task::spawn_local(async move {
            storage::delete(UNDO_OPEN_KEY).await.ok();
        });
    };

    view! {
        <div class="project-bar">
            <button
                type="button"
                class="button secondary"
                data-testid="save-project"
                disabled=disabled
                on:click=save
            >
                "Save project"
            </button>
            <label class="button secondary" class:disabled=disabled>
                <input
                    class="visually-hidden"
                    type="file"
                    accept=".ftproj"
                    data-testid="open-project"
                    disabled=disabled
                    on:change=open
                />
                "Open project"
            </label>
            <span
                class="muted small"
                data-testid="autosave-status"
                data-saves=move || saves.get()
                data-state=move || match save_state.get() {
                    SaveState::Restoring => "restoring",
                    SaveState::Restored(_) => "restored",
                    SaveState::Migrated(_) => "migrated",
                    SaveState::Idle => "idle",
                    SaveState::Saved => "saved",
                    SaveState::Failed(_) => "failed",
                }
            >
                {move || match save_state.get() {
                    SaveState::Restoring => "Looking for your saved work…".to_string(),
                    SaveState::Restored(n) => format!("Restored your project ({n} images)."),
                    SaveState::Migrated(n) => format!("Restored your project ({n} images) from an earlier version of the app; it is now saved in the current layout."),
                    SaveState::Idle => "Your work is saved in this browser as you go.".to_string(),
                    SaveState::Saved => "Saved in this browser.".to_string(),
                    SaveState::Failed(e) => e,
                }}
            </span>
        </div>
        {move || undo_open.get().map(|name| view! {
            <p class="undo-bar" role="status" data-testid="undo-open-bar">
                {format!("Opened {name}; your previous work is kept until you choose. ")}
                <button type="button" class="link-button" data-testid="undo-open" on:click=undo>"Undo open"</button>
                " "
                <button type="button" class="link-button" data-testid="keep-open" on:click=keep>"Keep"</button>
            </p>
        })}
        {move || open_error.get().map(|e| view! { <p class="file-error" role="alert" data-testid="project-error">{e}</p> })}
    }
}
