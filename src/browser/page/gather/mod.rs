//! Gathering images into class cards (the views): pick or drop photos on a card, pick or drop a
//! folder tree of classes, remove single photos, delete a class with undo. The cards and their
//! images live in the [`Workspace`]; folder trees in [`crate::browser::page::gather::folders`].

pub(crate) mod drop_target;
pub(crate) mod folders;
pub(crate) mod webcam;

use std::time::Duration;

use leptos::prelude::*;
use web_sys::{DragEvent, File, HtmlInputElement};

use crate::browser::js;
use crate::browser::object_url::ObjectUrl;
use crate::browser::page::gather::drop_target::{DropTarget, Dropped};
use crate::browser::page::gather::folders::Scanning;
use crate::browser::page::gather::webcam::WebcamCapture;
use crate::browser::page::state::workspace::{
    ClassCard, ImportBatch, Pending, Source, Workspace, import_progress,
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

    let on_folder = move |ev: leptos::ev::Event| {
        let input: HtmlInputElement = event_target(&ev);
        let tree: Vec<(String, File)> = js::files_of(&input)
            .into_iter()
            .map(|f| {
                (
                    js::get_string(&f, "webkitRelativePath").unwrap_or_else(|| f.name()),
                    f,
                )
            })
            .collect();
        input.set_value("");
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

    let deleted = RwSignal::new(None::<Deleted>);
    let next_token = StoredValue::new(0u64);
    let delete = Callback::new(move |card: ClassCard| {
        let Some(index) = classes.with_untracked(|c| c.iter().position(|c| c.id == card.id)) else {
            return;
        };
        if classes.with_untracked(Vec::len) <= 2 {
            return;
        }
        // Only the latest deletion can be undone.
        if let Some(old) = deleted.get_untracked() {
            old.card.discard();
        }
        classes.update(|c| {
            c.remove(index);
        });
        let token = next_token.get_value() + 1;
        next_token.set_value(token);
        deleted.set(Some(Deleted { card, index, token }));
        set_timeout(
            move || {
                let current = deleted
                    .try_get_untracked()
                    .flatten()
                    .filter(|d| d.token == token);
                if let Some(d) = current {
                    d.card.discard();
                    deleted.set(None);
                }
            },
            Duration::from_secs(UNDO_SECONDS),
        );
    });
    let undo = move |_| {
        if let Some(d) = deleted.get_untracked() {
            deleted.set(None);
            classes.update(|c| c.insert(d.index.min(c.len()), d.card));
        }
    };

    let progress = import_progress();
    let progress_text = {
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
                <label class="button secondary" class:disabled=disabled>
                    <input
                        class="visually-hidden"
                        type="file"
                        prop:webkitdirectory=true
                        multiple
                        data-testid="folder-input"
                        disabled=disabled
                        on:change=on_folder
                    />
                    "Add a folder of classes"
                </label>
                <span class="muted small">"or drop one here: one folder per class"</span>
                <WebcamCapture disabled />
            </div>
            // The live region stays in the page, so the bar appearing in it is announced.
            <div role="status">
                {move || deleted.get().map(|d| view! {
                    <div class="undo-bar">
                        <span>{format!("Deleted {}.", d.card.name.try_get_untracked().unwrap_or_default())}</span>
                        <button type="button" class="link-button" on:click=undo>"Undo"</button>
                    </div>
                })}
            </div>
            {move || progress_text().map(|text| {
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
            })}
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
        </div>
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
    let (classes, errors) = (ws.classes, ws.errors);
    let add = move |files: Vec<File>| {
        let pending = files
            .into_iter()
            .map(|f| Pending {
                file: f.name(),
                shown: f.name(),
                source: Source::File(f),
                val: false,
            })
            .collect::<Vec<_>>();
        leptos::task::spawn_local(async move {
            let batch = ImportBatch::begin(pending.len());
            ws.add_pending(card, pending, &batch).await;
        });
    };
    let on_files = move |ev: leptos::ev::Event| {
        let input: HtmlInputElement = event_target(&ev);
        let files = js::files_of(&input);
        input.set_value("");
        add(files);
    };
    let target = DropTarget::new();
    let on_drop = move |ev: DragEvent| {
        let Some(drop) = target.drop(&ev, !disabled.get_untracked()) else {
            return;
        };
        match drop {
            Dropped::Files(files) => add(files),
            Dropped::Entries(entries) => leptos::task::spawn_local(async move {
                let tree = {
                    let _scanning = Scanning::begin();
                    folders::walk(entries, errors).await
                };
                // Cards cover most of the drop area, so a tree of classes is still classes.
                if folders::class_count(&tree) >= 2 {
                    return import.run(tree);
                }
                // Photos, or one folder of them: all go to this class.
                let mut pending = Vec::new();
                for (path, f) in tree {
                    if path.contains('/') && !data::is_image_name(&path) {
                        ws.report(path.clone(), folders::not_image_type(&path));
                        continue;
                    }
                    pending.push(Pending {
                        file: f.name(),
                        shown: path,
                        source: Source::File(f),
                        val: false,
                    });
                }
                let batch = ImportBatch::begin(pending.len());
                ws.add_pending(card, pending, &batch).await;
            }),
        }
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
            <label class="button secondary small-button" class:disabled=disabled>
                <input
                    class="visually-hidden"
                    type="file"
                    multiple
                    accept=crate::engine::data::ACCEPT_IMAGES
                    data-testid="class-file-input"
                    disabled=disabled
                    on:change=on_files
                />
                "Add images"
            </label>
            <span class="muted small drop-note">"or drop photos here"</span>
        </div>
    }
}
