//! Gathering images into class cards (the views): pick or drop photos on a card, pick or drop a
//! folder tree of classes, remove single photos, delete a class with undo. The cards and their
//! images live in the [`Workspace`]; folder trees in [`crate::browser::page::gather::folders`].

pub(crate) mod drop_target;
pub(crate) mod folders;
pub(crate) mod webcam;

use std::time::Duration;

use leptos::prelude::*;
use web_sys::{DragEvent, File};

use crate::browser::js;
use crate::browser::object_url::ObjectUrl;
use crate::browser::page::gather::drop_target::{DropTarget, Dropped};
use crate::browser::page::gather::folders::Scanning;
use crate::browser::page::gather::webcam::capture::WebcamCapture;
use crate::browser::page::state::file_button::FileButton;
use crate::browser::page::state::workspace::{
    ClassCard, FileError, ImportBatch, Pending, Source, Workspace, import_progress,
};
use crate::engine::data;

/// How long a deleted class can be brought back.
const UNDO_SECONDS: u64 = 10;

/// A deleted class that can still come back.
#[derive(Clone, Copy)]
struct Deleted {
    card: ClassCard,
    index: usize,
    token: u64,
}

/// The class cards with everything that fills them: "+ Add a class", the folder picker, the
/// drop target for folder trees, the undo bar, the progress line and the rejected files.
#[component]
pub fn Gather(
    /// Cards cannot change (no model yet, or training).
    #[prop(into)]
    disabled: Signal<bool>,
    /// Training: no classes can be added.
    #[prop(into)]
    running: Signal<bool>,
) -> impl IntoView {
    let ws = expect_context::<Workspace>();
    let (classes, errors) = (ws.classes, ws.errors);

    let on_folder = move |files: Vec<File>| {
        let tree: Vec<(String, File)> = files
            .into_iter()
            .map(|f| {
                (
                    js::get_string(&f, "webkitRelativePath").unwrap_or_else(|| f.name()),
                    f,
                )
            })
            .collect();
        leptos::task::spawn_local(folders::add_tree(ws, tree));
    };

    let import = Callback::new(move |tree: Vec<(String, File)>| {
        leptos::task::spawn_local(folders::add_tree(ws, tree));
    });
    let area = DropTarget::new();
    let on_drop = move |ev: DragEvent| {
        let Some(drop) = area.drop(&ev, !disabled.get_untracked()) else {
            return;
        };
        leptos::task::spawn_local(async move {
            let tree = match drop {
                Dropped::Entries(entries) => {
                    let _scanning = Scanning::begin();
                    folders::walk(entries, errors).await
                }
                Dropped::Files(files) => files.into_iter().map(|f| (f.name(), f)).collect(),
            };
            import.run(tree);
        });
    };

    let deletions = Deletions::new(classes);
    let delete = Callback::new(move |card| deletions.delete(card));

    view! {
        <div
            class="gather"
            class:dragging=move || area.lit.get()
            on:dragenter=move |ev| area.enter(&ev)
            on:dragover=move |ev| area.over(&ev, !disabled.get_untracked())
            on:dragleave=move |ev| area.leave(&ev)
            on:drop=on_drop
        >
            <div class="classes">
                <For
                    each=move || classes.get()
                    key=|c| c.id
                    children=move |card| {
                        view! { <ClassCardView card disabled delete import /> }
                    }
                />
            </div>
            <div class="gather-actions">
                <button
                    type="button"
                    class="button secondary"
                    data-testid="add-class"
                    disabled=running
                    on:click=move |_| ws.add_class()
                >
                    "+ Add a class"
                </button>
                <FileButton
                    label="Add a folder of classes"
                    testid="folder-input"
                    folders=true
                    multiple=true
                    disabled
                    on_pick=on_folder
                />
                <span class="muted small">"or drop one here: one folder per class"</span>
                <WebcamCapture disabled />
            </div>
            <UndoDelete deletions />
            <ImportProgressBar />
            <FileErrors errors />
        </div>
    }
}

/// Deleting a class, with one undo for a few seconds (only the latest deletion).
#[derive(Clone, Copy)]
struct Deletions {
    classes: RwSignal<Vec<ClassCard>>,
    deleted: RwSignal<Option<Deleted>>,
    next_token: StoredValue<u64>,
}

impl Deletions {
    fn new(classes: RwSignal<Vec<ClassCard>>) -> Self {
        Self {
            classes,
            deleted: RwSignal::new(None),
            next_token: StoredValue::new(0),
        }
    }

    /// Takes `card` off the page (never below two classes); it is freed for good once the
    /// undo has passed.
    fn delete(self, card: ClassCard) {
        let Self {
            classes,
            deleted,
            next_token,
        } = self;
        let Some(index) = classes.with_untracked(|c| c.iter().position(|c| c.id == card.id)) else {
            return;
        };
        if classes.with_untracked(Vec::len) <= 2 {
            return;
        }
        if let Some(old) = deleted.get_untracked() {
            old.card.discard();
        }
        classes.update(|c| {
            c.remove(index);
        });
        let token = next_token.get_value() + 1;
        next_token.set_value(token);
        deleted.set(Some(Deleted { card, index, token }));
        let expire = move || {
            let current = deleted
                .try_get_untracked()
                .flatten()
                .filter(|d| d.token == token);
            if let Some(d) = current {
                d.card.discard();
                deleted.set(None);
            }
        };
        set_timeout(expire, Duration::from_secs(UNDO_SECONDS));
    }

    fn undo(self) {
        if let Some(d) = self.deleted.get_untracked() {
            self.deleted.set(None);
            self.classes
                .update(|c| c.insert(d.index.min(c.len()), d.card));
        }
    }
}

#[component]
fn UndoDelete(deletions: Deletions) -> impl IntoView {
    // The live region stays in the page, so the bar appearing in it is announced.
    view! {
        <div role="status">
            {move || deletions.deleted.get().map(|d| view! {
                <div class="undo-bar">
                    <span>{format!("Deleted {}.", d.card.name.try_get_untracked().unwrap_or_default())}</span>
                    <button type="button" class="link-button" on:click=move |_| deletions.undo()>"Undo"</button>
                </div>
            })}
        </div>
    }
}

/// "Adding images 3/40" (or the folder scan) while photos are added.
#[component]
fn ImportProgressBar() -> impl IntoView {
    let progress = import_progress();
    let text = {
        let progress = progress.clone();
        move || {
            let p = progress.get();
            if p.total > 0 {
                Some(format!("Adding images {}/{}", p.done, p.total))
            } else if p.scanning > 0 {
                Some("Looking through the folder…".to_string())
            } else {
                None
            }
        }
    };
    move || {
        text().map(|text| {
            let (total, done) = (progress.clone(), progress.clone());
            view! {
                <div class="gather-progress" data-testid="gather-progress">
                    <progress
                        max=move || total.get().total.max(1).to_string()
                        prop:value=move || done.get().done as f64
                        aria-label="Adding images"
                    ></progress>
                    <span>{text}</span>
                </div>
            }
        })
    }
}

/// The files that were not added, each with its reason.
#[component]
fn FileErrors(errors: RwSignal<Vec<FileError>>) -> impl IntoView {
    view! {
        <Show when=move || errors.with(|e| !e.is_empty())>
            <div class="file-errors">
                <div class="results-head">
                    <h3>"Files not added"</h3>
                    <button type="button" class="link-button" on:click=move |_| errors.set(Vec::new())>
                        "Clear"
                    </button>
                </div>
                <ul>
                    <For
                        each=move || errors.get()
                        key=|e| (e.file.clone(), e.message.clone())
                        children=|e| view! {
                            <li class="file-error" data-testid="file-error" data-file=e.file.clone() role="alert">
                                {e.message}
                            </li>
                        }
                    />
                </ul>
            </div>
        </Show>
    }
}

/// One class card: name, photo picker and drop target, count, thumbnails, delete.
#[component]
fn ClassCardView(
    card: ClassCard,
    disabled: Signal<bool>,
    delete: Callback<ClassCard>,
    /// Takes a dropped tree of class folders (it makes classes, not images of this one).
    import: Callback<Vec<(String, File)>>,
) -> impl IntoView {
    let ws = expect_context::<Workspace>();
    let classes = ws.classes;
    let on_files = move |files: Vec<File>| {
        let named = files.into_iter().map(|f| (f.name(), f)).collect();
        leptos::task::spawn_local(add_to(ws, card, named));
    };
    let target = DropTarget::new();
    let on_drop = move |ev: DragEvent| match target.drop(&ev, !disabled.get_untracked()) {
        Some(Dropped::Files(files)) => {
            let named = files.into_iter().map(|f| (f.name(), f)).collect();
            leptos::task::spawn_local(add_to(ws, card, named));
        }
        Some(Dropped::Entries(entries)) => {
            leptos::task::spawn_local(add_dropped(ws, card, entries, import));
        }
        None => {}
    };
    let can_delete = move || classes.with(|c| c.len() > 2);
    let checking = move || card.thumbs.with(|t| t.iter().filter(|t| t.val).count());
    view! {
        <div
            class="class-card"
            class:dragging=move || target.lit.get()
            data-testid="class-card"
            data-class-name=move || card.name.get()
            on:dragenter=move |ev| target.enter(&ev)
            on:dragover=move |ev| target.over(&ev, !disabled.get_untracked())
            on:dragleave=move |ev| target.leave(&ev)
            on:drop=on_drop
        >
            <div class="class-head">
                <input
                    class="class-name"
                    type="text"
                    aria-label="Class name"
                    data-testid="class-name-input"
                    prop:value=move || card.name.get()
                    on:input=move |ev| card.name.set(event_target_value(&ev))
                    disabled=disabled
                />
                <button
                    type="button"
                    class="link-button"
                    aria-label=move || format!("Delete class {}", card.name.get())
                    disabled=move || disabled.get() || !can_delete()
                    on:click=move |_| delete.run(card)
                >
                    "Delete"
                </button>
            </div>
            <p class="muted small">
                <span data-testid="class-count">{move || card.count.get()}</span>
                " images"
                {move || match checking() {
                    0 => String::new(),
                    n => format!(" ({n} from val/, for checking)"),
                }}
            </p>
            <Thumbs card disabled />
            <HeldPhotos card disabled />
            <FileButton
                label="Add images"
                testid="class-file-input"
                class="button secondary small-button"
                multiple=true
                accept=crate::engine::data::ACCEPT_IMAGES
                disabled
                on_pick=on_files
            />
            <span class="muted small drop-note">"or drop photos here"</span>
        </div>
    }
}

/// Adds files to `card`, each with the name shown for it (its path within a dropped folder).
async fn add_to(ws: Workspace, card: ClassCard, files: Vec<(String, File)>) {
    let pending = files
        .into_iter()
        .map(|(shown, f)| Pending {
            file: f.name(),
            shown,
            source: Source::File(f),
            val: false,
        })
        .collect::<Vec<_>>();
    let batch = ImportBatch::begin(pending.len());
    ws.add_pending(card, pending, &batch).await;
}

/// A drop of folders on `card`: a tree of class folders makes classes (`import`); photos, or
/// one folder of them, all go to this class.
async fn add_dropped(
    ws: Workspace,
    card: ClassCard,
    entries: Vec<web_sys::FileSystemEntry>,
    import: Callback<Vec<(String, File)>>,
) {
    let tree = {
        let _scanning = Scanning::begin();
        folders::walk(entries, ws.errors).await
    };
    // Cards cover most of the drop area, so a tree of classes is still classes.
    if folders::class_count(&tree) >= 2 {
        return import.run(tree);
    }
    let mut photos = Vec::new();
    for (path, f) in tree {
        if path.contains('/') && !data::is_image_name(&path) {
            ws.report(path.clone(), folders::not_image_type(&path));
            continue;
        }
        photos.push((path, f));
    }
    add_to(ws, card, photos).await;
}

/// The card's photos, each with its remove button.
#[component]
fn Thumbs(card: ClassCard, disabled: Signal<bool>) -> impl IntoView {
    view! {
        <ul class="thumbs" aria-label=move || format!("Images of {}", card.name.get())>
            <For
                each=move || card.thumbs.get()
                key=|t| t.id
                children=move |t| {
                    let id = t.id;
                    view! {
                        <li class="thumb-item" class:val=t.val>
                            <img class="thumb" src=t.url.as_ref().map(ObjectUrl::to_string) alt=t.file.clone() title=t.file.clone() loading="lazy" decoding="async" />
                            <button
                                type="button"
                                class="thumb-remove"
                                aria-label=format!("Remove {}", t.file)
                                disabled=disabled
                                on:click=move |_| card.remove_image(id)
                            >
                                "×"
                            </button>
                        </li>
                    }
                }
            />
        </ul>
    }
}

/// Saved photos of the card that could not be restored: kept until the user retries or
/// removes them.
#[component]
fn HeldPhotos(card: ClassCard, disabled: Signal<bool>) -> impl IntoView {
    let ws = expect_context::<Workspace>();
    view! {
        <ul class="held" aria-label=move || format!("Saved images of {} not restored", card.name.get())>
            <For
                each=move || card.held_view.get()
                key=|h| h.id
                children=move |h| {
                    let id = h.id;
                    view! {
                        <li class="file-error" data-testid="held-image" data-file=h.file.clone()>
                            {format!("{}: could not be restored ({}). It is kept; try again, or remove it.", h.file, h.reason)}
                            " "
                            <button
                                type="button"
                                class="link-button"
                                data-testid="held-retry"
                                disabled=disabled
                                on:click=move |_| {
                                    leptos::task::spawn_local(async move { ws.retry_held(card, id).await });
                                }
                            >
                                "Try again"
                            </button>
                            " "
                            <button
                                type="button"
                                class="link-button"
                                data-testid="held-remove"
                                disabled=disabled
                                on:click=move |_| {
                                    card.take_held(id);
                                }
                            >
                                "Remove"
                            </button>
                        </li>
                    }
                }
            />
        </ul>
    }
}
