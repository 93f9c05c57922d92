//! Drop targets inside the page (the class cards, the classes area) and what a drop carries.

use leptos::prelude::*;
use wasm_bindgen::JsValue;
use web_sys::{DragEvent, File, FileSystemEntry};

/// What a drop carries: folder and file entries (read during the event: they expire after it),
/// or, where the browser has no entries, the plain files.
pub enum Dropped {
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
pub struct DropTarget {
    pub lit: RwSignal<bool>,
    /// dragenter/dragleave also fire for children; only the outermost pair counts.
    depth: StoredValue<i32>,
}

impl DropTarget {
    pub fn new() -> Self {
        Self {
            lit: RwSignal::new(false),
            depth: StoredValue::new(0),
        }
    }

    pub fn enter(&self, ev: &DragEvent) {
        if carries_files(ev) {
            ev.stop_propagation();
            self.depth.update_value(|d| *d += 1);
            self.lit.set(true);
        }
    }

    pub fn over(&self, ev: &DragEvent, enabled: bool) {
        if carries_files(ev) {
            ev.prevent_default();
            ev.stop_propagation();
            if let Some(t) = ev.data_transfer() {
                t.set_drop_effect(if enabled { "copy" } else { "none" });
            }
        }
    }

    pub fn leave(&self, ev: &DragEvent) {
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
    pub fn drop(&self, ev: &DragEvent, enabled: bool) -> Option<Dropped> {
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
