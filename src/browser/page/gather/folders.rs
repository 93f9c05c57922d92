//! Folder trees of classes (one folder per class, optionally under `train/` and `val/`), from
//! the folder picker or a drop: listing them and turning them into classes with the engine's
//! folder-tree rule (`data::place`), the same rule as the command line's.

use std::collections::BTreeMap;

use leptos::prelude::*;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{File, FileSystemDirectoryEntry, FileSystemEntry, FileSystemFileEntry};

use crate::browser::js;
pub use crate::browser::page::state::workspace::Scanning;
use crate::browser::page::state::workspace::{
    FileError, ImportBatch, Pending, Source, Workspace, report,
};
use crate::engine::data::{self, IMAGE_EXTENSIONS};
use crate::engine::limits::MAX_CLASSES;

fn extension(path: &str) -> String {
    path.rsplit_once('.')
        .map(|(_, e)| e.to_lowercase())
        .unwrap_or_default()
}

/// Why a file of a folder tree is not read: folder trees take the training image types of the
/// command line (`data::is_image_name`), so the same folder gives the same classes here and
/// there; other files are not even read (a folder may hold videos).
pub fn not_image_type(path: &str) -> String {
    format!(
        "not used: .{} is not a training image type ({})",
        extension(path),
        IMAGE_EXTENSIONS.join(", ")
    )
}

/// How many classes a tree of (path, file) would make.
pub fn class_count(tree: &[(String, File)]) -> usize {
    let paths: Vec<Vec<&str>> = tree
        .iter()
        .map(|(path, _)| path.split('/').filter(|s| !s.is_empty()).collect())
        .collect();
    let mut names: Vec<String> = data::place(&paths)
        .into_iter()
        .flatten()
        .map(|(name, _)| data::class_key(&name))
        .collect();
    names.sort();
    names.dedup();
    names.len()
}

/// Adds a folder tree (path, file) as classes: matching names (case aside) add to the existing
/// card, others become new cards; empty "Class N" placeholders give way to them.
pub async fn add_tree(ws: Workspace, tree: Vec<(String, File)>) {
    let (classes, errors) = (ws.classes, ws.errors);
    let tree: Vec<(String, File)> = tree
        .into_iter()
        .filter(|(path, _)| !path.split('/').any(data::is_clutter))
        .collect();
    let paths: Vec<Vec<&str>> = tree
        .iter()
        .map(|(path, _)| path.split('/').filter(|s| !s.is_empty()).collect())
        .collect();
    let places = data::place(&paths);
    // Class key (`data::class_key`) -> (name as written, its files), in the command line's order.
    let mut groups: BTreeMap<String, (String, Vec<Pending>)> = BTreeMap::new();
    for ((path, file), place) in tree.iter().zip(places) {
        let message = match place {
            None => "not used: not inside a class folder (drop single photos on a class card)"
                .to_string(),
            Some(_) if !data::is_image_name(path) => not_image_type(path),
            Some((class, val)) => {
                let group = groups
                    .entry(data::class_key(&class))
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
    let mut cards = classes.get_untracked();
    // A tree of thousands of folders would make thousands of cards: refused with the reason.
    let new_classes = groups
        .keys()
        .filter(|key| {
            !cards.iter().any(|c| {
                c.name
                    .try_with_untracked(|n| data::class_key(n) == **key)
                    .unwrap_or(false)
            })
        })
        .count();
    let kept = cards.iter().filter(|c| !c.is_empty_default()).count();
    if kept + new_classes > MAX_CLASSES {
        let root = tree
            .first()
            .map(|(p, _)| p.split('/').next().unwrap_or_default().to_string())
            .unwrap_or_default();
        report(
            errors,
            root,
            format!(
                "not added: {new_classes} new classes would make more than the {MAX_CLASSES} a project may have"
            ),
        );
        return;
    }
    let batch = ImportBatch::begin(groups.values().map(|(_, files)| files.len()).sum());

    let mut jobs = Vec::new();
    let mut matched = Vec::new();
    let mut added = Vec::new();
    for (key, (name, mut files)) in groups {
        files.sort_by(|a, b| a.shown.cmp(&b.shown));
        let existing = cards.iter().find(|c| {
            c.name
                .try_with_untracked(|n| data::class_key(n) == key)
                .unwrap_or(false)
        });
        let card = match existing {
            Some(card) => *card,
            None => {
                let card = ws.new_card(name);
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
        ws.add_pending(card, files, &batch).await;
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
pub async fn walk(
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
