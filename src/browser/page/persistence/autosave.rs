//! The autosave in IndexedDB, incremental: each image is stored once under a key made from its
//! content, the model only when it changes, and a small JSON manifest (classes, image keys,
//! settings, report) on every change. Rewriting every image on each change took over 50 ms of
//! the page's time at 40 photos and would grow with every webcam frame.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::browser::js;
use crate::browser::page::persistence::project_state::ProjectSignals;
use crate::browser::page::persistence::storage::{self, AUTOSAVE_KEY, AUTOSAVE_MODEL_KEY};
use crate::browser::page::state::model_file::ModelFile;
use crate::browser::page::state::workspace::ImageSnapshot;
use crate::engine::io::project::{Project, ProjectClass, ProjectImage, orphaned_images};
use crate::engine::limits::MAX_CLASSES;
use crate::engine::train::report::TrainReport;

/// Layout version of the manifest: 2 names the model's record (version 1 kept it under
/// [`AUTOSAVE_MODEL_KEY`], written before the manifest, so a failed manifest write could leave
/// a new model beside an old report).
const MANIFEST_VERSION: u32 = 2;
/// Prefix of the model's records: each model is written under a new key, and the old one is
/// deleted only after the manifest names the new one.
const MODEL_PREFIX: &str = "model/";

#[derive(Serialize, Deserialize)]
struct Manifest {
    version: u32,
    classes: Vec<ManifestClass>,
    /// The model's record (version 2 on).
    #[serde(default)]
    model: Option<String>,
    /// The panel's settings and the report's class names, as `Project::settings_json` writes
    /// them (older manifests hold the version-1 layout, which the engine still reads).
    #[serde(default)]
    ui: serde_json::Value,
    report: Option<TrainReport>,
}

#[derive(Serialize, Deserialize)]
struct ManifestClass {
    name: String,
    images: Vec<ManifestImage>,
}

#[derive(Serialize, Deserialize)]
struct ManifestImage {
    file: String,
    val: bool,
    key: String,
}

/// The storage key of an image: its content hash and length.
fn image_key(bytes: &[u8]) -> String {
    let mut hasher = DefaultHasher::new();
    bytes.hash(&mut hasher);
    format!("image/{:016x}-{}", hasher.finish(), bytes.len())
}

/// A restored project, with the images whose records were missing, and whether it came from
/// the first autosave layout (the whole project file under one key), now to be saved anew.
pub struct Restored {
    pub project: Project,
    pub missing: Vec<String>,
    pub migrated: bool,
}

/// What is already in IndexedDB, so a save writes only what is new.
#[derive(Default)]
pub struct Autosave {
    /// The record the stored model is under.
    model_key: RefCell<Option<String>>,
    /// Image keys known to be stored.
    stored: RefCell<HashSet<String>>,
    /// Key of each image of this page (by `ClassImage::id`), hashed once.
    keys: RefCell<HashMap<u64, String>>,
    /// The model last written, compared by pointer.
    model: RefCell<Option<ModelFile>>,
}

impl Autosave {
    /// Reads the autosaved project, `None` if there is none. Images whose record is missing
    /// are left out and named in the returned list.
    pub async fn restore(&self) -> Result<Option<Restored>, String> {
        let Some(bytes) = storage::get(AUTOSAVE_KEY).await? else {
            // No manifest: any image record is left over from an unfinished first save.
            if let Ok(keys) = storage::keys().await {
                for key in orphaned_images(keys.iter().map(String::as_str), &HashSet::new()) {
                    storage::delete(&key).await.ok();
                }
            }
            return Ok(None);
        };
        let manifest: Manifest = match serde_json::from_slice(&bytes) {
            Ok(manifest) => manifest,
            // The first layout: the whole project file under this key, the model apart.
            Err(e) => {
                let mut project = Project::from_bytes("the saved project", &bytes)
                    .map_err(|_| format!("unreadable manifest ({e})"))?;
                if project.model.is_none() {
                    project.model = storage::get(AUTOSAVE_MODEL_KEY)
                        .await?
                        .filter(|m| !m.is_empty());
                    if project.model.is_some() {
                        // Deleted once a manifest names the model's new record.
                        *self.model_key.borrow_mut() = Some(AUTOSAVE_MODEL_KEY.to_string());
                    }
                }
                return Ok(Some(Restored {
                    project,
                    missing: Vec::new(),
                    migrated: true,
                }));
            }
        };
        if manifest.version > MANIFEST_VERSION {
            return Err("saved by a newer version of the app".into());
        }
        if manifest.classes.len() > MAX_CLASSES {
            return Err(format!(
                "{} classes, more than the {MAX_CLASSES} a project may have",
                manifest.classes.len()
            ));
        }
        let mut missing = Vec::new();
        let mut classes = Vec::with_capacity(manifest.classes.len());
        for class in manifest.classes {
            let mut images = Vec::with_capacity(class.images.len());
            for image in class.images {
                match storage::get(&image.key).await? {
                    Some(bytes) => {
                        self.stored.borrow_mut().insert(image.key);
                        images.push(ProjectImage {
                            file: image.file,
                            bytes,
                            val: image.val,
                        });
                    }
                    None => missing.push(image.file),
                }
            }
            classes.push(ProjectClass {
                name: class.name,
                images,
            });
        }
        let model_key = match manifest.version {
            1 => Some(AUTOSAVE_MODEL_KEY.to_string()),
            _ => manifest.model.clone(),
        };
        let model = match &model_key {
            Some(key) => storage::get(key).await?.filter(|m| !m.is_empty()),
            None => None,
        };
        *self.model_key.borrow_mut() = model_key.clone();
        let (settings, report_classes) = Project::settings_from_json(&manifest.ui);
        let project = Project {
            classes,
            settings,
            report_classes,
            report: manifest.report,
            model,
        };
        // Records no manifest names (a tab closed mid-save, a model whose manifest was never
        // written) are swept now.
        let named: HashSet<String> = self.stored.borrow().clone();
        if let Ok(keys) = storage::keys().await {
            for key in orphaned_images(keys.iter().map(String::as_str), &named) {
                storage::delete(&key).await.ok();
            }
            for key in keys.iter().filter(|k| k.starts_with(MODEL_PREFIX)) {
                if model_key.as_ref() != Some(key) {
                    storage::delete(key).await.ok();
                }
            }
        }
        Ok(Some(Restored {
            project,
            missing,
            migrated: false,
        }))
    }

    /// Writes what changed since the last save: new images, the model if it is another one,
    /// and the manifest; then drops images no longer used.
    pub async fn save(&self, project: &ProjectSignals) -> Result<(), String> {
        let mut classes = Vec::new();
        let mut used = HashSet::new();
        for class in project.workspace.snapshot() {
            let mut entries = Vec::with_capacity(class.images.len());
            for ImageSnapshot {
                id,
                file,
                val,
                bytes,
            } in class.images
            {
                let known = self.keys.borrow().get(&id).cloned();
                let key = match known {
                    Some(key) => key,
                    None => {
                        let key = image_key(&bytes);
                        self.keys.borrow_mut().insert(id, key.clone());
                        key
                    }
                };
                if !self.stored.borrow().contains(&key) {
                    storage::put(&key, &bytes).await?;
                    self.stored.borrow_mut().insert(key.clone());
                    js::next_task().await;
                }
                used.insert(key.clone());
                entries.push(ManifestImage { file, val, key });
            }
            classes.push(ManifestClass {
                name: class.name,
                images: entries,
            });
        }
        // The manifest is written last: it never names an image or model not yet stored. A
        // new model goes under a new key, so until the manifest names it the old manifest
        // still names the old model (a full disk never pairs a new model with an old report).
        let model = project.model.get_untracked();
        // The model's previous record, when a new one was written.
        let mut replaced: Option<Option<String>> = None;
        if model != *self.model.borrow() {
            let key = match &model {
                Some(model) => {
                    let key = format!("{MODEL_PREFIX}{}", js::now_ms() as u64);
                    storage::put_js(&key, model.js()).await?;
                    Some(key)
                }
                None => None,
            };
            replaced = Some(self.model_key.replace(key));
            *self.model.borrow_mut() = model;
        }

        let manifest = Manifest {
            version: MANIFEST_VERSION,
            classes,
            model: self.model_key.borrow().clone(),
            ui: Project {
                settings: project.settings.get_untracked(),
                report_classes: project.report_classes.get_untracked(),
                ..Project::default()
            }
            .settings_json(),
            report: project.report.get_untracked(),
        };
        let json = serde_json::to_vec(&manifest).map_err(|e| e.to_string())?;
        if let Err(e) = storage::put(AUTOSAVE_KEY, &json).await {
            // The old manifest stands, naming the old model, which stays; the next save writes
            // the new one again (the record just written is swept on the next restore).
            if let Some(old) = replaced {
                *self.model_key.borrow_mut() = old;
                *self.model.borrow_mut() = None;
            }
            return Err(e);
        }
        if let Some(Some(old)) = replaced {
            storage::delete(&old).await?;
        }

        let unused: Vec<String> = self
            .stored
            .borrow()
            .iter()
            .filter(|k| !used.contains(*k))
            .cloned()
            .collect();
        for key in unused {
            storage::delete(&key).await?;
            self.stored.borrow_mut().remove(&key);
        }
        Ok(())
    }
}
