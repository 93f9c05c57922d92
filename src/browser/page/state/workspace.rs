//! The workspace: the class cards, their images (original bytes for projects, a decoded
//! working-size sample for training, a thumbnail) and the files that could not be used. One
//! [`Workspace`] lives in the teach panel's context; the gather views, the webcam, the project
//! file and the autosave all go through it. Photos are decoded by the worker, one at a time,
//! so the page never runs a long decode; a file that cannot be used is listed and never stops
//! the rest.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};

use leptos::prelude::*;
use web_sys::File;

use crate::browser::js;
use crate::browser::object_url::ObjectUrl;
use crate::browser::page::state::client::WorkerClient;
use crate::engine::data::Sample;

use crate::engine::io::project::{ProjectClass, ProjectImage};

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
    /// The original file as an object URL, for its thumbnail.
    pub thumb: Option<ObjectUrl>,
    /// Came from a `val/` folder: meant for checking the model, not for learning.
    pub val: bool,
}

/// What the card shows of an image (kept apart from `ClassImage`, whose bytes are not reactive).
#[derive(Clone, Debug, PartialEq)]
pub struct Thumb {
    pub id: u64,
    pub file: String,
    pub url: Option<ObjectUrl>,
    pub val: bool,
}

/// A saved photo that could not be decoded when the work was restored (a worker that crashed
/// mid-restore, a record this build cannot read): its original bytes are kept, saved with
/// the rest, and only the user removes it; a retry decodes it again.
#[derive(Clone)]
pub struct HeldImage {
    pub id: u64,
    pub file: String,
    pub bytes: Rc<Vec<u8>>,
    pub val: bool,
}

/// What the card shows of a held photo.
#[derive(Clone, Debug, PartialEq)]
pub struct HeldView {
    pub id: u64,
    pub file: String,
    pub reason: String,
}

/// One class: its name and its images.
#[derive(Clone, Copy)]
pub struct ClassCard {
    pub id: u64,
    pub name: RwSignal<String>,
    pub images: StoredValue<Vec<ClassImage>, LocalStorage>,
    pub count: RwSignal<usize>,
    pub thumbs: RwSignal<Vec<Thumb>>,
    /// Saved photos not restored (see [`HeldImage`]).
    pub held: StoredValue<Vec<HeldImage>, LocalStorage>,
    pub held_view: RwSignal<Vec<HeldView>>,
}

impl ClassCard {
    pub fn new(id: u64, name: String) -> Self {
        Self {
            id,
            name: RwSignal::new(name),
            images: StoredValue::new_local(Vec::new()),
            count: RwSignal::new(0),
            thumbs: RwSignal::new(Vec::new()),
            held: StoredValue::new_local(Vec::new()),
            held_view: RwSignal::new(Vec::new()),
        }
    }

    /// Keeps a saved photo that did not decode, with the reason shown on the card.
    fn hold(&self, image: HeldImage, reason: String) {
        let view = HeldView {
            id: image.id,
            file: image.file.clone(),
            reason,
        };
        if self.held.try_update_value(|h| h.push(image)).is_some() {
            self.held_view.try_update(|v| v.push(view));
        }
    }

    /// Takes a held photo out (the user removes it, or it is decoded again).
    pub fn take_held(&self, id: u64) -> Option<HeldImage> {
        let taken = self
            .held
            .try_update_value(|held| {
                let index = held.iter().position(|h| h.id == id)?;
                Some(held.remove(index))
            })
            .flatten();
        if taken.is_some() {
            self.held_view.try_update(|v| v.retain(|h| h.id != id));
        }
        taken
    }

    /// The decoded images for training, each with whether it came from a `val/` folder.
    pub fn samples(&self) -> Vec<(Sample, bool)> {
        self.images
            .try_with_value(|images| images.iter().map(|i| (i.sample.clone(), i.val)).collect())
            .unwrap_or_default()
    }

    /// Adds a decoded image; `false` when the class is gone for good.
    fn push(&self, image: ClassImage) -> bool {
        let thumb = Thumb {
            id: image.id,
            file: image.file.clone(),
            url: image.thumb.clone(),
            val: image.val,
        };
        if self.images.try_update_value(|i| i.push(image)).is_none() {
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
        if let Some(Some(_)) = removed {
            self.thumbs.update(|t| t.retain(|t| t.id != id));
            self.count.update(|c| *c = c.saturating_sub(1));
        }
    }

    /// Removes every image (e.g. before a saved project is restored into the card).
    pub fn clear(&self) {
        self.images.try_update_value(std::mem::take);
        self.thumbs.try_set(Vec::new());
        self.count.try_set(0);
        self.held.try_set_value(Vec::new());
        self.held_view.try_set(Vec::new());
    }

    /// Frees a class that can no longer come back: its thumbnails and its signals. A decode
    /// still running for it stops at its next image.
    pub fn discard(self) {
        self.clear();
        self.name.dispose();
        self.images.dispose();
        self.count.dispose();
        self.thumbs.dispose();
        self.held.dispose();
        self.held_view.dispose();
    }

    /// "Class 3" with no images: a placeholder that a folder of classes replaces.
    pub fn is_empty_default(&self) -> bool {
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

pub fn report(errors: RwSignal<Vec<FileError>>, file: String, message: String) {
    let message = if message.contains(&file) {
        message
    } else {
        format!("{file}: {message}")
    };
    errors.try_update(|e| e.push(FileError { file, message }));
}

fn next_image_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Images being added, over every card and drop at once, for the progress line.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ImportProgress {
    pub done: usize,
    pub total: usize,
    /// Folder trees still being listed (their files are not counted yet).
    pub scanning: usize,
}

thread_local! {
    /// One progress for the whole page, so `add_images` called from anywhere (a restored project
    /// too) shows it without extra plumbing.
    static PROGRESS: ArcRwSignal<ImportProgress> = ArcRwSignal::new(ImportProgress::default());
}

pub fn import_progress() -> ArcRwSignal<ImportProgress> {
    PROGRESS.with(Clone::clone)
}

/// A share of the progress; whatever it has not counted when dropped (a class deleted meanwhile)
/// is counted then, so the line always ends.
pub struct ImportBatch {
    left: Cell<usize>,
}

impl ImportBatch {
    pub fn begin(n: usize) -> Self {
        if n > 0 {
            import_progress().update(|p| p.total += n);
        }
        Self { left: Cell::new(n) }
    }

    pub fn advance(&self, n: usize) {
        let n = n.min(self.left.get());
        if n == 0 {
            return;
        }
        self.left.set(self.left.get() - n);
        import_progress().update(|p| {
            p.done += n;
            if p.done >= p.total {
                p.done = 0;
                p.total = 0;
            }
        });
    }
}

impl Drop for ImportBatch {
    fn drop(&mut self) {
        self.advance(self.left.get());
    }
}

/// Counts a folder tree being listed, for as long as it lives.
pub struct Scanning;

impl Scanning {
    pub fn begin() -> Self {
        import_progress().update(|p| p.scanning += 1);
        Scanning
    }
}

impl Drop for Scanning {
    fn drop(&mut self) {
        import_progress().update(|p| p.scanning = p.scanning.saturating_sub(1));
    }
}

/// Where an image comes from: bytes in memory, or a file read only when its turn comes (so a
/// big folder is never all in memory twice).
pub enum Source {
    Bytes(Vec<u8>),
    File(File),
}

pub struct Pending {
    /// The file's own name (kept with the image).
    pub file: String,
    /// The name in messages: the path inside a dropped folder, else the file name.
    pub shown: String,
    pub source: Source,
    pub val: bool,
}

/// What becomes of a photo that does not decode: a new file is reported and left out; a saved
/// one (a restore, a project) is held on its card with its bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum OnFailure {
    Report,
    Hold,
}

/// A class as saved: its name and images.
pub struct ClassSnapshot {
    pub name: String,
    pub images: Vec<ImageSnapshot>,
}

/// An image as saved; `id` is unique in the page (the autosave hashes each image once).
pub struct ImageSnapshot {
    pub id: u64,
    pub file: String,
    pub val: bool,
    pub bytes: Rc<Vec<u8>>,
}

/// The class cards, their images and the rejected files; shared through context.
#[derive(Clone, Copy)]
pub struct Workspace {
    pub classes: RwSignal<Vec<ClassCard>>,
    pub errors: RwSignal<Vec<FileError>>,
    next_id: StoredValue<u64>,
    /// Cards live as long as the panel that made the workspace, whichever task makes them.
    owner: StoredValue<Option<Owner>>,
    worker: StoredValue<Rc<WorkerClient>, LocalStorage>,
}

impl Workspace {
    /// Two empty classes, "Class 1" and "Class 2".
    pub fn new(worker: Rc<WorkerClient>) -> Self {
        let ws = Self {
            classes: RwSignal::new(Vec::new()),
            errors: RwSignal::new(Vec::new()),
            next_id: StoredValue::new(1),
            owner: StoredValue::new(Owner::current()),
            worker: StoredValue::new_local(worker),
        };
        let cards = vec![ws.new_card("Class 1".into()), ws.new_card("Class 2".into())];
        ws.classes.set(cards);
        ws
    }

    /// A new empty card (not yet in `classes`).
    pub fn new_card(&self, name: String) -> ClassCard {
        let id = self.next_id.get_value();
        self.next_id.set_value(id + 1);
        match self.owner.get_value() {
            Some(owner) => owner.with(|| ClassCard::new(id, name)),
            None => ClassCard::new(id, name),
        }
    }

    /// Photos in every class (tracked).
    pub fn image_count(&self) -> usize {
        self.classes
            .with(|cards| cards.iter().map(|c| c.count.get()).sum())
    }

    /// Adds "Class N" at the end.
    pub fn add_class(&self) {
        let n = self.classes.with_untracked(Vec::len) + 1;
        if n > crate::engine::limits::MAX_CLASSES {
            return;
        }
        let card = self.new_card(format!("Class {n}"));
        self.classes.update(|c| c.push(card));
    }

    pub fn report(&self, file: String, message: String) {
        report(self.errors, file, message);
    }

    /// Every class with its images (shared bytes, nothing copied): what the autosave stores.
    /// Held photos are saved too: only the user deletes a photo.
    pub fn snapshot(&self) -> Vec<ClassSnapshot> {
        let shot = |id, file: &String, val, bytes: &Rc<Vec<u8>>| ImageSnapshot {
            id,
            file: file.clone(),
            val,
            bytes: Rc::clone(bytes),
        };
        self.classes
            .get_untracked()
            .iter()
            .map(|card| {
                let mut images: Vec<ImageSnapshot> = card
                    .images
                    .try_with_value(|images| {
                        images
                            .iter()
                            .map(|i| shot(i.id, &i.file, i.val, &i.bytes))
                            .collect()
                    })
                    .unwrap_or_default();
                card.held.try_with_value(|held| {
                    images.extend(held.iter().map(|h| shot(h.id, &h.file, h.val, &h.bytes)))
                });
                ClassSnapshot {
                    name: card.name.get_untracked(),
                    images,
                }
            })
            .collect()
    }

    /// Every class with its images' original bytes, for a project file.
    pub fn project_classes(&self) -> Vec<ProjectClass> {
        self.snapshot()
            .into_iter()
            .map(|c| ProjectClass {
                name: c.name,
                images: c
                    .images
                    .into_iter()
                    .map(|i| ProjectImage {
                        file: i.file,
                        bytes: i.bytes.as_ref().clone(),
                        val: i.val,
                    })
                    .collect(),
            })
            .collect()
    }

    /// Re-runs the caller (an effect) on any change of a class's name or images.
    pub fn track(&self) {
        for card in self.classes.get() {
            card.name.track();
            card.count.track();
            card.held_view.track();
        }
    }

    /// Replaces every class with `classes` (decoded one by one); the old cards are freed and
    /// the rejected files cleared.
    pub async fn replace(&self, classes: Vec<ProjectClass>) {
        let cards: Vec<(ClassCard, Vec<ProjectImage>)> = classes
            .into_iter()
            .map(|c| (self.new_card(c.name), c.images))
            .collect();
        let old = self.classes.get_untracked();
        self.classes
            .set(cards.iter().map(|(card, _)| *card).collect());
        for card in old {
            card.clear();
        }
        self.errors.set(Vec::new());
        for (card, images) in cards {
            let batch = ImportBatch::begin(images.len());
            let pending = images
                .into_iter()
                .map(|i| Pending {
                    shown: i.file.clone(),
                    file: i.file,
                    source: Source::Bytes(i.bytes),
                    val: i.val,
                })
                .collect();
            self.decode_into(card, pending, &batch, OnFailure::Hold)
                .await;
        }
    }

    /// Decodes a held photo of `card` again; it stays held (with the new reason) if it fails.
    pub async fn retry_held(&self, card: ClassCard, id: u64) {
        let Some(held) = card.take_held(id) else {
            return;
        };
        let batch = ImportBatch::begin(1);
        let pending = Pending {
            shown: held.file.clone(),
            file: held.file,
            source: Source::Bytes(Rc::try_unwrap(held.bytes).unwrap_or_else(|b| (*b).clone())),
            val: held.val,
        };
        self.decode_into(card, vec![pending], &batch, OnFailure::Hold)
            .await;
    }

    /// Decodes `files` (name, original bytes, from a `val/` folder) into `card`; the ones that
    /// fail are listed in `errors` with their reason.
    pub async fn add_images(&self, card: ClassCard, files: Vec<(String, Vec<u8>, bool)>) {
        let batch = ImportBatch::begin(files.len());
        let pending = files
            .into_iter()
            .map(|(file, bytes, val)| Pending {
                shown: file.clone(),
                file,
                source: Source::Bytes(bytes),
                val,
            })
            .collect();
        self.add_pending(card, pending, &batch).await;
    }

    /// Decodes every image again from its original file, one at a time: a new backbone wants
    /// its own working size. Counted in the import progress like new photos.
    pub async fn redecode(&self) {
        let Some(worker) = self.worker.try_get_value() else {
            return;
        };
        let cards = self.classes.get_untracked();
        let images: Vec<(ClassCard, u64, String, Rc<Vec<u8>>)> = cards
            .iter()
            .flat_map(|card| {
                card.images
                    .try_with_value(|images| {
                        images
                            .iter()
                            .map(|i| (*card, i.id, i.file.clone(), Rc::clone(&i.bytes)))
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default()
            })
            .collect();
        let batch = ImportBatch::begin(images.len());
        for (card, id, file, bytes) in images {
            let decoded = worker.decode(&file, &bytes).await;
            batch.advance(1);
            match decoded {
                Ok(image) => {
                    card.images.try_update_value(|images| {
                        if let Some(i) = images.iter_mut().find(|i| i.id == id) {
                            i.sample.image = image;
                        }
                    });
                }
                Err(message) => self.report(file, message),
            }
        }
    }

    /// Reads and decodes `pending` into `card`, one at a time; each is counted in `batch`.
    pub async fn add_pending(&self, card: ClassCard, pending: Vec<Pending>, batch: &ImportBatch) {
        self.decode_into(card, pending, batch, OnFailure::Report)
            .await;
    }

    async fn decode_into(
        &self,
        card: ClassCard,
        pending: Vec<Pending>,
        batch: &ImportBatch,
        on_failure: OnFailure,
    ) {
        let Some(worker) = self.worker.try_get_value() else {
            return;
        };
        let total = pending.len();
        for (i, item) in pending.into_iter().enumerate() {
            let (bytes, blob) = match item.source {
                Source::Bytes(bytes) => (Ok(bytes), None),
                Source::File(file) => (
                    js::read_file(&file, &item.shown, crate::engine::limits::MAX_PHOTO_BYTES).await,
                    Some(file),
                ),
            };
            let decoded = match bytes {
                Ok(bytes) => match worker.decode(&item.shown, &bytes).await {
                    Ok(image) => Ok((bytes, image)),
                    Err(e) if on_failure == OnFailure::Hold => {
                        let held = HeldImage {
                            id: next_image_id(),
                            file: item.file,
                            bytes: Rc::new(bytes),
                            val: item.val,
                        };
                        card.hold(held, e);
                        batch.advance(1);
                        continue;
                    }
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            };
            batch.advance(1);
            match decoded {
                Ok((bytes, image)) => {
                    let thumb = match &blob {
                        Some(file) => ObjectUrl::of_blob(file).ok(),
                        None => ObjectUrl::of_bytes(&bytes).ok(),
                    };
                    let image = ClassImage {
                        id: next_image_id(),
                        sample: Sample {
                            file: item.file.clone(),
                            label: 0,
                            image,
                        },
                        file: item.file,
                        bytes: Rc::new(bytes),
                        thumb,
                        val: item.val,
                    };
                    if !card.push(image) {
                        // The class is gone for good: count the rest as done.
                        batch.advance(total - i - 1);
                        return;
                    }
                }
                Err(message) => report(self.errors, item.shown, message),
            }
        }
    }
}
