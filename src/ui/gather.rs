//! Gathering images into class cards: pick or drop photos on a card, pick or drop a folder tree
//! (one folder per class, optionally under `train/` and `val/`), remove single photos, delete a
//! class with undo. Every image keeps its original bytes, so a project can be saved later, and
//! its decoded working-size sample, so training does not decode again. Files are decoded one at a
//! time with a repaint between them; a file that cannot be used is listed and never stops the rest.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use leptos::prelude::*;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{
    DragEvent, File, FileSystemDirectoryEntry, FileSystemEntry, FileSystemFileEntry,
    HtmlInputElement, Url,
};

use super::js;
use super::webcam::WebcamCapture;
use crate::engine::data::{self, IMAGE_EXTENSIONS, Sample};
use crate::engine::model::LITE0;
use crate::engine::preprocess;

/// How long a deleted class can be brought back.
const UNDO_SECONDS: u64 = 10;

/// One image of a class, as the user gave it.
#[derive(Clone)]
pub struct ClassImage {
    /// Unique in the page, so a thumbnail can be removed even when two files share a name.
    pub id: u64,
    pub file: String,
    /// The original file, untouched (for saving projects).
    pub bytes: Rc<Vec<u8>>,
    /// Decoded at working size; its `label` is set by the training code.
    pub sample: Sample,
    /// Object URL of the original file; revoked when the image is removed.
    pub thumb: String,
    /// Came from a `val/` folder: meant for checking the model, not for learning.
    pub val: bool,
}

/// What the card shows of an image (kept apart from `ClassImage`, whose bytes are not reactive).
#[derive(Clone, Debug, PartialEq)]
pub struct Thumb {
    pub id: u64,
    pub file: String,
    pub url: String,
    pub val: bool,
}

/// One class: its name and its images.
#[derive(Clone, Copy)]
pub struct ClassCard {
    pub id: u64,
    pub name: RwSignal<String>,
    pub images: StoredValue<Vec<ClassImage>, LocalStorage>,
    pub count: RwSignal<usize>,
    pub thumbs: RwSignal<Vec<Thumb>>,
}

impl ClassCard {
    pub fn new(id: u64, name: String) -> Self {
        Self {
            id,
            name: RwSignal::new(name),
            images: StoredValue::new_local(Vec::new()),
            count: RwSignal::new(0),
            thumbs: RwSignal::new(Vec::new()),
        }
    }

    /// The decoded images for training, each with whether it came from a `val/` folder.
    pub fn samples(&self) -> Vec<(Sample, bool)> {
        self.images
            .try_with_value(|images| images.iter().map(|i| (i.sample.clone(), i.val)).collect())
            .unwrap_or_default()
    }

    /// Adds a decoded image; `false` (and the thumbnail revoked) when the class is gone for good.
    fn push(&self, image: ClassImage) -> bool {
        let thumb = Thumb {
            id: image.id,
            file: image.file.clone(),
            url: image.thumb.clone(),
            val: image.val,
        };
        let url = image.thumb.clone();
        if self.images.try_update_value(|i| i.push(image)).is_none() {
            revoke(&url);
            return false;
        }
        self.thumbs.try_update(|t| t.push(thumb));
        self.count.try_update(|c| *c += 1);
        true
    }

    /// Removes one image and frees its thumbnail.
    pub fn remove_image(&self, id: u64) {
        let removed = self.images.try_update_value(|images| {
            let index = images.iter().position(|i| i.id == id)?;
            Some(images.remove(index))
        });
        if let Some(Some(image)) = removed {
            revoke(&image.thumb);
            self.thumbs.update(|t| t.retain(|t| t.id != id));
            self.count.update(|c| *c = c.saturating_sub(1));
        }
    }

    /// Removes every image (e.g. before a saved project is restored into the card).
    pub fn clear(&self) {
        let images = self
            .images
            .try_update_value(std::mem::take)
            .unwrap_or_default();
        for image in &images {
            revoke(&image.thumb);
        }
        self.thumbs.try_set(Vec::new());
        self.count.try_set(0);
    }

    /// Frees a class that can no longer come back: its thumbnails and its signals. A decode
    /// still running for it stops at its next image.
    fn discard(self) {
        self.clear();
        self.name.dispose();
        self.images.dispose();
        self.count.dispose();
        self.thumbs.dispose();
    }

    /// "Class 3" with no images: a placeholder that a folder of classes replaces.
    fn is_empty_default(&self) -> bool {
        self.count.try_get_untracked() == Some(0)
            && self.name.try_with_untracked(|n| {
                n.strip_prefix("Class ")
                    .is_some_and(|d| !d.is_empty() && d.chars().all(|c| c.is_ascii_digit()))
            }) == Some(true)
    }
}

/// A rejected file and why.
#[derive(Clone, Debug, PartialEq)]
pub struct FileError {
    pub file: String,
    pub message: String,
}

fn report(errors: RwSignal<Vec<FileError>>, file: String, message: String) {
    let message = if message.contains(&file) {
        message
    } else {
        format!("{file}: {message}")
    };
    errors.try_update(|e| e.push(FileError { file, message }));
}

fn revoke(url: &str) {
    if !url.is_empty() {
        Url::revoke_object_url(url).ok();
    }
}

fn next_image_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Images being added, over every card and drop at once, for the progress line.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Progress {
    done: usize,
    total: usize,
    /// Folder trees still being listed (their files are not counted yet).
    scanning: usize,
}

thread_local! {
    /// One progress for the whole page, so `add_images` called from anywhere (a restored project
    /// too) shows it without extra plumbing.
    static PROGRESS: ArcRwSignal<Progress> = ArcRwSignal::new(Progress::default());
}

fn progress() -> ArcRwSignal<Progress> {
    PROGRESS.with(Clone::clone)
}

/// A share of the progress; whatever it has not counted when dropped (a class deleted meanwhile)
/// is counted then, so the line always ends.
struct Batch {
    left: Cell<usize>,
}

impl Batch {
    fn begin(n: usize) -> Self {
        if n > 0 {
            progress().update(|p| p.total += n);
        }
        Self { left: Cell::new(n) }
    }

    fn advance(&self, n: usize) {
        let n = n.min(self.left.get());
        if n == 0 {
            return;
        }
        self.left.set(self.left.get() - n);
        progress().update(|p| {
            p.done += n;
            if p.done >= p.total {
                p.done = 0;
                p.total = 0;
            }
        });
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        self.advance(self.left.get());
    }
}

/// Counts a folder tree being listed, for as long as it lives.
struct Scanning;

impl Scanning {
    fn begin() -> Self {
        progress().update(|p| p.scanning += 1);
        Scanning
    }
}

impl Drop for Scanning {
    fn drop(&mut self) {
        progress().update(|p| p.scanning = p.scanning.saturating_sub(1));
    }
}

/// Where an image comes from: bytes in memory, or a file read only when its turn comes (so a
/// big folder is never all in memory twice).
enum Source {
    Bytes(Vec<u8>),
    File(File),
}

struct Pending {
    /// The file's own name (kept with the image).
    file: String,
    /// The name in messages: the path inside a dropped folder, else the file name.
    shown: String,
    source: Source,
    val: bool,
}

/// Decodes `files` (name, original bytes, from a `val/` folder) into `card`, one at a time with
/// a repaint between them; the ones that fail are listed in `errors` with their reason.
pub async fn add_images(
    card: ClassCard,
    files: Vec<(String, Vec<u8>, bool)>,
    errors: RwSignal<Vec<FileError>>,
) {
    let batch = Batch::begin(files.len());
    let pending = files
        .into_iter()
        .map(|(file, bytes, val)| Pending {
            shown: file.clone(),
            file,
            source: Source::Bytes(bytes),
            val,
        })
        .collect();
    add_pending(card, pending, errors, &batch).await;
}

async fn add_pending(
    card: ClassCard,
    pending: Vec<Pending>,
    errors: RwSignal<Vec<FileError>>,
    batch: &Batch,
) {
    let total = pending.len();
    for (i, item) in pending.into_iter().enumerate() {
        let (bytes, blob) = match item.source {
            Source::Bytes(bytes) => (Ok(bytes), None),
            Source::File(file) => (
                js::read_file(&file, &item.shown, preprocess::MAX_PHOTO_BYTES).await,
                Some(file),
            ),
        };
        let decoded = bytes.and_then(|bytes| {
            data::load_sample(&item.shown, &bytes, 0, &LITE0)
                .map(|sample| (bytes, sample))
                .map_err(|e| e.to_string())
        });
        batch.advance(1);
        match decoded {
            Ok((bytes, sample)) => {
                let thumb = match &blob {
                    Some(file) => Url::create_object_url_with_blob(file).ok(),
                    None => js::object_url(&bytes).ok(),
                };
                let image = ClassImage {
                    id: next_image_id(),
                    file: item.file,
                    bytes: Rc::new(bytes),
                    sample,
                    thumb: thumb.unwrap_or_default(),
                    val: item.val,
                };
                if !card.push(image) {
                    // The class is gone for good: count the rest as done.
                    batch.advance(total - i - 1);
                    return;
                }
            }
            Err(message) => report(errors, item.shown, message),
        }
        // Let the count, the thumbnail and the progress paint between files.
        super::js::next_task().await;
    }
}

fn extension(path: &str) -> String {
    path.rsplit_once('.')
        .map(|(_, e)| e.to_lowercase())
        .unwrap_or_default()
}

/// Why a file of a folder tree is not read: folder trees take the training image types of the
/// command line (`data::is_image_name`), so the same folder gives the same classes here and
/// there; other files are not even read (a folder may hold videos).
fn not_image_type(path: &str) -> String {
    format!(
        "not used: .{} is not a training image type ({})",
        extension(path),
        IMAGE_EXTENSIONS.join(", ")
    )
}

/// How many classes a tree of (path, file) would make.
fn class_count(tree: &[(String, File)]) -> usize {
    let paths: Vec<Vec<&str>> = tree
        .iter()
        .map(|(path, _)| path.split('/').filter(|s| !s.is_empty()).collect())
        .collect();
    let mut names: Vec<String> = data::place(&paths)
        .into_iter()
        .flatten()
        .map(|(name, _)| name.trim().to_lowercase())
        .collect();
    names.sort();
    names.dedup();
    names.len()
}

/// Adds a folder tree (path, file) as classes: matching names (case aside) add to the existing
/// card, others become new cards; empty "Class N" placeholders give way to them.
async fn add_tree(
    tree: Vec<(String, File)>,
    classes: RwSignal<Vec<ClassCard>>,
    errors: RwSignal<Vec<FileError>>,
    new_card: impl Fn(String) -> ClassCard,
) {
    let tree: Vec<(String, File)> = tree
        .into_iter()
        .filter(|(path, _)| !path.split('/').any(data::is_clutter))
        .collect();
    let paths: Vec<Vec<&str>> = tree
        .iter()
        .map(|(path, _)| path.split('/').filter(|s| !s.is_empty()).collect())
        .collect();
    let places = data::place(&paths);
    // Class name (lower case) -> (name as written, its files), sorted as ImageFolder does.
    let mut groups: BTreeMap<String, (String, Vec<Pending>)> = BTreeMap::new();
    for ((path, file), place) in tree.iter().zip(places) {
        let message = match place {
            None => "not used: not inside a class folder (drop single photos on a class card)"
                .to_string(),
            Some(_) if !data::is_image_name(path) => not_image_type(path),
            Some((class, val)) => {
                let group = groups
                    .entry(class.trim().to_lowercase())
                    .or_insert_with(|| (class.trim().to_string(), Vec::new()));
                group.1.push(Pending {
                    file: file.name(),
                    shown: path.clone(),
                    source: Source::File(file.clone()),
                    val,
                });
                continue;
            }
        };
        report(errors, path.clone(), message);
    }
    if groups.is_empty() {
        return;
    }
    let batch = Batch::begin(groups.values().map(|(_, files)| files.len()).sum());

    let mut cards = classes.get_untracked();
    let mut jobs = Vec::new();
    let mut matched = Vec::new();
    let mut added = Vec::new();
    for (key, (name, mut files)) in groups {
        files.sort_by(|a, b| a.shown.cmp(&b.shown));
        let existing = cards.iter().find(|c| {
            c.name
                .try_with_untracked(|n| n.trim().to_lowercase() == key)
                .unwrap_or(false)
        });
        let card = match existing {
            Some(card) => *card,
            None => {
                let card = new_card(name);
                added.push(card);
                card
            }
        };
        matched.push(card.id);
        jobs.push((card, files));
    }
    // Placeholders go, as long as at least two classes remain.
    let mut spare = (cards.len() + added.len()).saturating_sub(2);
    let mut gone = Vec::new();
    cards.retain(|c| {
        let drop = spare > 0 && !matched.contains(&c.id) && c.is_empty_default();
        if drop {
            spare -= 1;
            gone.push(*c);
        }
        !drop
    });
    cards.extend(added);
    classes.set(cards);
    for card in gone {
        card.discard();
    }

    for (card, files) in jobs {
        add_pending(card, files, errors, &batch).await;
    }
}

/// Runs `start(resolve, reject)` (a callback-style API) and awaits its outcome.
async fn callback(
    start: impl FnOnce(&js_sys::Function, &js_sys::Function) -> Result<(), JsValue>,
) -> Result<JsValue, String> {
    let mut start = Some(start);
    let promise = js_sys::Promise::new(&mut |resolve, reject| {
        if let Some(start) = start.take()
            && let Err(e) = start(&resolve, &reject)
        {
            reject.call1(&JsValue::NULL, &e).ok();
        }
    });
    js::await_promise(promise).await
}

/// Every file under the dropped entries, with its path ("pets/cat/1.jpg"). A folder or file
/// that cannot be read is listed in `errors`.
async fn walk(
    roots: Vec<FileSystemEntry>,
    errors: RwSignal<Vec<FileError>>,
) -> Vec<(String, File)> {
    let mut found = Vec::new();
    let mut stack = roots;
    while let Some(entry) = stack.pop() {
        if data::is_clutter(&entry.name()) {
            continue;
        }
        let path = entry.full_path().trim_start_matches('/').to_string();
        if entry.is_directory() {
            let reader = entry
                .unchecked_into::<FileSystemDirectoryEntry>()
                .create_reader();
            // readEntries hands out a directory in chunks (100 in Chrome) until an empty one.
            loop {
                match callback(|ok, err| reader.read_entries_with_callback_and_callback(ok, err))
                    .await
                {
                    Ok(chunk) => {
                        let chunk: js_sys::Array = chunk.unchecked_into();
                        if chunk.length() == 0 {
                            break;
                        }
                        stack.extend(chunk.iter().map(JsCast::unchecked_into));
                    }
                    Err(e) => {
                        report(
                            errors,
                            path.clone(),
                            format!("could not read the folder: {e}"),
                        );
                        break;
                    }
                }
            }
        } else if entry.is_file() {
            let file_entry: FileSystemFileEntry = entry.unchecked_into();
            match callback(|ok, err| {
                file_entry.file_with_callback_and_callback(ok, err);
                Ok(())
            })
            .await
            {
                Ok(file) => found.push((path, file.unchecked_into())),
                Err(e) => report(errors, path, format!("could not read the file: {e}")),
            }
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

/// What a drop carries: folder and file entries (read during the event: they expire after it),
/// or, where the browser has no entries, the plain files.
enum Dropped {
    Entries(Vec<FileSystemEntry>),
    Files(Vec<File>),
}

fn carries_files(ev: &DragEvent) -> bool {
    ev.data_transfer()
        .is_some_and(|t| t.types().includes(&JsValue::from_str("Files"), 0))
}

fn dropped(ev: &DragEvent) -> Dropped {
    let Some(transfer) = ev.data_transfer() else {
        return Dropped::Files(Vec::new());
    };
    let items = transfer.items();
    let entries: Vec<FileSystemEntry> = (0..items.length())
        .filter_map(|i| items.get(i))
        .filter(|item| item.kind() == "file")
        .filter_map(|item| item.webkit_get_as_entry().ok().flatten())
        .collect();
    if !entries.is_empty() {
        return Dropped::Entries(entries);
    }
    Dropped::Files(
        transfer
            .files()
            .map(|list| (0..list.length()).filter_map(|i| list.get(i)).collect())
            .unwrap_or_default(),
    )
}

/// Drag handlers for a drop target inside the page: they keep the event from the page-wide photo
/// drop (which classifies with ImageNet) and light the target while files are over it.
#[derive(Clone, Copy)]
struct DropTarget {
    lit: RwSignal<bool>,
    /// dragenter/dragleave also fire for children; only the outermost pair counts.
    depth: StoredValue<i32>,
}

impl DropTarget {
    fn new() -> Self {
        Self {
            lit: RwSignal::new(false),
            depth: StoredValue::new(0),
        }
    }

    fn enter(&self, ev: &DragEvent) {
        if carries_files(ev) {
            ev.stop_propagation();
            self.depth.update_value(|d| *d += 1);
            self.lit.set(true);
        }
    }

    fn over(&self, ev: &DragEvent, enabled: bool) {
        if carries_files(ev) {
            ev.prevent_default();
            ev.stop_propagation();
            if let Some(t) = ev.data_transfer() {
                t.set_drop_effect(if enabled { "copy" } else { "none" });
            }
        }
    }

    fn leave(&self, ev: &DragEvent) {
        if carries_files(ev) {
            ev.stop_propagation();
            self.depth.update_value(|d| *d -= 1);
            if self.depth.get_value() <= 0 {
                self.depth.set_value(0);
                self.lit.set(false);
            }
        }
    }

    /// `Some` with the drop when it is files for this target.
    fn drop(&self, ev: &DragEvent, enabled: bool) -> Option<Dropped> {
        if !carries_files(ev) {
            return None;
        }
        ev.prevent_default();
        ev.stop_propagation();
        self.depth.set_value(0);
        self.lit.set(false);
        // The page-wide photo drop zone lit up on the way here and never sees this drop; a
        // drag leaving the window (no related target) is what turns it off.
        if let Ok(leave) = DragEvent::new("dragleave") {
            window().dispatch_event(&leave).ok();
        }
        enabled.then(|| dropped(ev))
    }
}

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
    classes: RwSignal<Vec<ClassCard>>,
    errors: RwSignal<Vec<FileError>>,
    next_id: StoredValue<u64>,
    /// Cards cannot change (no model yet, or training).
    #[prop(into)]
    disabled: Signal<bool>,
    /// Training: no classes can be added.
    #[prop(into)]
    running: Signal<bool>,
) -> impl IntoView {
    // Cards live as long as this panel, whichever task or handler makes them.
    let owner = Owner::current();
    let new_card = move |name: String| {
        let id = next_id.get_value();
        next_id.set_value(id + 1);
        match &owner {
            Some(owner) => owner.with(|| ClassCard::new(id, name)),
            None => ClassCard::new(id, name),
        }
    };

    let add_class = {
        let new_card = new_card.clone();
        move |_| {
            let n = classes.with_untracked(Vec::len) + 1;
            let card = new_card(format!("Class {n}"));
            classes.update(|c| c.push(card));
        }
    };

    let on_folder = {
        let new_card = new_card.clone();
        move |ev: leptos::ev::Event| {
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
            leptos::task::spawn_local(add_tree(tree, classes, errors, new_card.clone()));
        }
    };

    let import = Callback::new(move |tree: Vec<(String, File)>| {
        leptos::task::spawn_local(add_tree(tree, classes, errors, new_card.clone()));
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
                    walk(entries, errors).await
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

    let progress = progress();
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
                        view! { <ClassCardView card classes errors disabled delete import /> }
                    }
                />
            </div>
            <div class="gather-actions">
                <button
                    type="button"
                    class="button secondary"
                    data-testid="add-class"
                    disabled=running
                    on:click=add_class
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
                <WebcamCapture classes errors disabled />
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
    classes: RwSignal<Vec<ClassCard>>,
    errors: RwSignal<Vec<FileError>>,
    disabled: Signal<bool>,
    delete: Callback<ClassCard>,
    /// Takes a dropped tree of class folders (it makes classes, not images of this one).
    import: Callback<Vec<(String, File)>>,
) -> impl IntoView {
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
            let batch = Batch::begin(pending.len());
            add_pending(card, pending, errors, &batch).await;
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
                    walk(entries, errors).await
                };
                // Cards cover most of the drop area, so a tree of classes is still classes.
                if class_count(&tree) >= 2 {
                    return import.run(tree);
                }
                // Photos, or one folder of them: all go to this class.
                let mut pending = Vec::new();
                for (path, f) in tree {
                    if path.contains('/') && !data::is_image_name(&path) {
                        let message = not_image_type(&path);
                        report(errors, path, message);
                        continue;
                    }
                    pending.push(Pending {
                        file: f.name(),
                        shown: path,
                        source: Source::File(f),
                        val: false,
                    });
                }
                let batch = Batch::begin(pending.len());
                add_pending(card, pending, errors, &batch).await;
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
                                <img class="thumb" src=t.url alt=t.file.clone() title=t.file.clone() loading="lazy" decoding="async" />
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
