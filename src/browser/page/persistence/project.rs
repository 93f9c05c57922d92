//! Keeping the work: save the whole project (images, classes, settings, last report, model) as
//! one file, open one, and autosave to IndexedDB ([`Autosave`]) so a reload or a crashed tab
//! restores it all.
//! A project that cannot be read changes nothing; the message names the file and the reason.

use std::rc::Rc;

use gloo_timers::callback::Timeout;
use leptos::prelude::*;

use crate::browser::page::persistence::autosave::Autosave;
use crate::browser::page::persistence::project_state::ProjectSignals;
use crate::browser::page::persistence::storage;
use crate::browser::page::state::file_button::FileButton;
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

/// The project bar's state: where the autosave stands, the Open that can be undone, and
/// the last error. `Copy` (signals only).
#[derive(Clone, Copy)]
struct Keeper {
    project: ProjectSignals,
    save_state: RwSignal<SaveState>,
    /// The name of the file whose Open can still be undone.
    undo_open: RwSignal<Option<String>>,
    open_error: RwSignal<Option<String>>,
    /// Autosave starts only after the restore, so the empty start page never overwrites it.
    restored: RwSignal<bool>,
    saves: RwSignal<u32>,
    /// Saved work being put back (the cards wait meanwhile).
    restoring: RwSignal<bool>,
}

impl Keeper {
    /// Puts back the autosaved work, if there is any.
    async fn restore_saved(self, autosave: Rc<Autosave>) {
        storage::request_persistence();
        match autosave.restore().await {
            Ok(Some(found)) => {
                let images = found.project.image_count();
                self.project.apply(found.project).await;
                for file in found.missing {
                    let message = format!("{file}: missing from the autosave, not restored");
                    self.project.workspace.report(file, message);
                }
                self.save_state.set(if found.migrated {
                    SaveState::Migrated(images)
                } else {
                    SaveState::Restored(images)
                });
            }
            Ok(None) => self.save_state.set(SaveState::Idle),
            Err(e) => {
                self.restoring.set(false);
                // Autosaving now would replace the saved work with this empty page.
                self.save_state.set(SaveState::Failed(format!(
                    "Your saved work could not be restored ({e}). Autosave is paused so it is not overwritten; use Save project to keep new work."
                )));
                return;
            }
        }
        self.restoring.set(false);
        self.restored.set(true);
        // An Open before the reload can still be undone.
        if storage::keys()
            .await
            .is_ok_and(|keys| keys.iter().any(|k| k == UNDO_OPEN_KEY))
        {
            self.undo_open.set(Some("a project".into()));
        }
    }

    /// Saves the work after each change, once it has been quiet for [`AUTOSAVE_DELAY_MS`]. One
    /// save at a time: a change during a save waits for it, and changes coalesce.
    fn autosave_changes(self, autosave: Rc<Autosave>) {
        let saving = Rc::new(std::cell::Cell::new(false));
        let again = Rc::new(std::cell::Cell::new(false));
        let run_save: Rc<dyn Fn()> = Rc::new(move || {
            if saving.replace(true) {
                again.set(true);
                return;
            }
            let autosave = Rc::clone(&autosave);
            let (saving, again) = (Rc::clone(&saving), Rc::clone(&again));
            leptos::task::spawn_local(async move {
                loop {
                    again.set(false);
                    let result = autosave.save(&self.project).await;
                    if result.is_ok() {
                        self.saves.try_update(|n| *n += 1);
                    }
                    self.save_state.try_set(match result {
                        Ok(()) => SaveState::Saved,
                        Err(e) => SaveState::Failed(save_failure(&e)),
                    });
                    if !again.get() {
                        break;
                    }
                }
                saving.set(false);
            });
        });
        // Each change restarts the quiet time: dropping the pending timer cancels it.
        let timer = StoredValue::new_local(None::<Timeout>);
        Effect::new(move |_| {
            self.project.track();
            if !self.restored.get() {
                return;
            }
            let run_save = Rc::clone(&run_save);
            let pending = Timeout::new(AUTOSAVE_DELAY_MS, move || run_save());
            timer.set_value(Some(pending));
        });
    }

    /// Offers the whole project as a file.
    fn save_file(self) {
        self.open_error.set(None);
        let result = self
            .project
            .snapshot()
            .to_bytes()
            .map_err(|e| e.to_string())
            .and_then(|bytes| {
                storage::download(&js_sys::Uint8Array::from(bytes.as_slice()), PROJECT_FILE)
            });
        if let Err(e) = result {
            self.open_error
                .set(Some(format!("The project could not be saved: {e}")));
        }
    }

    /// Opens a project file, asking first when it replaces work (which is then kept for an
    /// undo).
    fn open_file(self, file: web_sys::File) {
        self.open_error.set(None);
        let name = file.name();
        if file.size() > MAX_PROJECT_BYTES as f64 {
            self.open_error.set(Some(format!(
                "{name}: {:.0} MB is more than the {} MB a project may have; nothing was changed.",
                file.size() / 1_048_576.0,
                MAX_PROJECT_BYTES >> 20
            )));
            return;
        }
        let replacing = has_work(&self.project);
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
                    self.open_error
                        .set(Some(format!("{name}: could not read the file: {e}")));
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
                    if replacing && !self.keep_for_undo(&name).await {
                        return;
                    }
                    self.apply(p).await;
                }
                Err(e) => self
                    .open_error
                    .set(Some(format!("{e}. Nothing was changed."))),
            }
        });
    }

    /// Stores the work as it is for "Undo open"; `false` (and why, shown) when it cannot.
    async fn keep_for_undo(self, name: &str) -> bool {
        let kept = self
            .project
            .snapshot()
            .to_bytes()
            .map_err(|e| e.to_string());
        let stored = match kept {
            Ok(bytes) => storage::put(UNDO_OPEN_KEY, &bytes).await,
            Err(e) => Err(e),
        };
        if let Err(e) = stored {
            self.open_error.set(Some(format!(
                "{name} was not opened: your current work could not be kept for an undo ({e}). Save it as a file first."
            )));
            return false;
        }
        self.undo_open.set(Some(name.to_string()));
        true
    }

    /// Puts `project` in place of the work on the page.
    async fn apply(self, project: Project) {
        let images = project.image_count();
        self.restoring.set(true);
        self.project.apply(project).await;
        self.restoring.set(false);
        self.save_state.set(SaveState::Restored(images));
    }

    /// Brings back the work the last Open replaced.
    async fn undo(self) {
        self.undo_open.set(None);
        let kept = match storage::get(UNDO_OPEN_KEY).await {
            Ok(Some(bytes)) => Project::from_bytes("your previous work", &bytes),
            Ok(None) => return,
            Err(e) => {
                self.open_error.set(Some(format!("The undo failed: {e}")));
                return;
            }
        };
        match kept {
            Ok(p) => {
                self.apply(p).await;
                storage::delete(UNDO_OPEN_KEY).await.ok();
            }
            Err(e) => self.open_error.set(Some(format!("The undo failed: {e}"))),
        }
    }

    /// Keeps the opened project: the replaced work is let go.
    async fn keep(self) {
        self.undo_open.set(None);
        storage::delete(UNDO_OPEN_KEY).await.ok();
    }
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
    let keeper = Keeper {
        project,
        save_state: RwSignal::new(SaveState::Restoring),
        undo_open: RwSignal::new(None),
        open_error: RwSignal::new(None),
        restored: RwSignal::new(false),
        saves: RwSignal::new(0),
        restoring,
    };
    let autosave = Rc::new(Autosave::default());
    leptos::task::spawn_local(keeper.restore_saved(Rc::clone(&autosave)));
    keeper.autosave_changes(autosave);
    let open = move |files: Vec<web_sys::File>| {
        if let Some(file) = files.into_iter().next() {
            keeper.open_file(file);
        }
    };
    let Keeper {
        undo_open,
        open_error,
        ..
    } = keeper;
    view! {
        <div class="project-bar">
            <button
                type="button"
                class="button secondary"
                data-testid="save-project"
                disabled=disabled
                on:click=move |_| keeper.save_file()
            >
                "Save project"
            </button>
            <FileButton label="Open project" testid="open-project" accept=".ftproj" disabled on_pick=open />
            <SaveStatus state=keeper.save_state saves=keeper.saves />
        </div>
        {move || undo_open.get().map(|name| view! {
            <p class="undo-bar" role="status" data-testid="undo-open-bar">
                {format!("Opened {name}; your previous work is kept until you choose. ")}
                <button
                    type="button"
                    class="link-button"
                    data-testid="undo-open"
                    on:click=move |_| leptos::task::spawn_local(keeper.undo())
                >
                    "Undo open"
                </button>
                " "
                <button
                    type="button"
                    class="link-button"
                    data-testid="keep-open"
                    on:click=move |_| leptos::task::spawn_local(keeper.keep())
                >
                    "Keep"
                </button>
            </p>
        })}
        {move || open_error.get().map(|e| view! { <p class="file-error" role="alert" data-testid="project-error">{e}</p> })}
    }
}

/// Where the autosave stands, in words.
#[component]
fn SaveStatus(state: RwSignal<SaveState>, saves: RwSignal<u32>) -> impl IntoView {
    view! {
        <span
            class="muted small"
            data-testid="autosave-status"
            data-saves=move || saves.get()
            data-state=move || match state.get() {
                SaveState::Restoring => "restoring",
                SaveState::Restored(_) => "restored",
                SaveState::Migrated(_) => "migrated",
                SaveState::Idle => "idle",
                SaveState::Saved => "saved",
                SaveState::Failed(_) => "failed",
            }
        >
            {move || match state.get() {
                SaveState::Restoring => "Looking for your saved work…".to_string(),
                SaveState::Restored(n) => format!("Restored your project ({n} images)."),
                SaveState::Migrated(n) => format!("Restored your project ({n} images) from an earlier version of the app; it is now saved in the current layout."),
                SaveState::Idle => "Your work is saved in this browser as you go.".to_string(),
                SaveState::Saved => "Saved in this browser.".to_string(),
                SaveState::Failed(e) => e,
            }}
        </span>
    }
}
