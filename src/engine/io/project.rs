//! A whole project in one file: the classes with their images (the original file bytes, so
//! nothing is re-encoded or lost), the user's settings, the last training report and the trained
//! model. The container is safetensors: each image is a `u8` tensor, the model file is one more,
//! and the layout is JSON in the header metadata. The same bytes are the browser's autosave.

use std::collections::HashMap;

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};

use crate::engine::EngineError;
use crate::engine::limits::{MAX_CLASSES, MAX_PROJECT_BYTES, mb};
use crate::engine::train::config::PanelSettings;
use crate::engine::train::report::TrainReport;

/// Header metadata key of the project layout.
const META_PROJECT: &str = "finetune_project";
/// Layout version written by this build; older files are read, newer ones refused.
const PROJECT_VERSION: u32 = 1;
/// Tensor holding the exported model (safetensors bytes), when there is one.
const MODEL_TENSOR: &str = "model";

/// One image of a class, as the user added it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectImage {
    pub file: String,
    pub bytes: Vec<u8>,
    /// Came from a `val/` folder: always held out for validation.
    pub val: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProjectClass {
    pub name: String,
    pub images: Vec<ProjectImage>,
}

/// Everything needed to carry on where the user left off.
#[derive(Debug, Clone, Default)]
pub struct Project {
    pub classes: Vec<ProjectClass>,
    /// The train panel's settings (typed; files of any version read into them).
    pub settings: PanelSettings,
    /// Class names of the last report (the cards may have been renamed since).
    pub report_classes: Vec<String>,
    pub report: Option<TrainReport>,
    /// The trained (or imported) model as an exported safetensors file.
    pub model: Option<Vec<u8>>,
}

#[derive(Serialize, Deserialize)]
struct Layout {
    version: u32,
    classes: Vec<ClassLayout>,
    #[serde(default)]
    settings: serde_json::Value,
    #[serde(default)]
    report: Option<TrainReport>,
}

#[derive(Serialize, Deserialize)]
struct ClassLayout {
    name: String,
    images: Vec<ImageLayout>,
}

#[derive(Serialize, Deserialize)]
struct ImageLayout {
    file: String,
    tensor: String,
    #[serde(default)]
    val: bool,
}

fn tensor_name(class: usize, image: usize) -> String {
    format!("images/{class}/{image}")
}

impl Project {
    /// The settings as stored in files (and the browser's autosave manifest).
    pub fn settings_json(&self) -> serde_json::Value {
        let mut v = self.settings.to_json();
        v["report_classes"] = serde_json::json!(self.report_classes);
        v
    }

    /// Reads stored settings of any version: the panel's and the report's class names.
    pub fn settings_from_json(value: &serde_json::Value) -> (PanelSettings, Vec<String>) {
        let report_classes = value
            .get("report_classes")
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default();
        (PanelSettings::from_json(value), report_classes)
    }

    /// Number of images over all classes.
    pub fn image_count(&self) -> usize {
        self.classes.iter().map(|c| c.images.len()).sum()
    }

    /// The project as one file.
    pub fn to_bytes(&self) -> Result<Vec<u8>, EngineError> {
        let layout = Layout {
            version: PROJECT_VERSION,
            classes: self
                .classes
                .iter()
                .enumerate()
                .map(|(c, class)| ClassLayout {
                    name: class.name.clone(),
                    images: class
                        .images
                        .iter()
                        .enumerate()
                        .map(|(i, image)| ImageLayout {
                            file: image.file.clone(),
                            tensor: tensor_name(c, i),
                            val: image.val,
                        })
                        .collect(),
                })
                .collect(),
            settings: self.settings_json(),
            report: self.report.clone(),
        };
        let meta = serde_json::to_string(&layout)
            .map_err(|e| EngineError::Unsupported(format!("project layout: {e}")))?;
        // Save and Open agree: what would be refused on opening is refused here, before the
        // file is put together (the header's few bytes per tensor are checked after).
        let data: u64 = self
            .classes
            .iter()
            .flat_map(|c| &c.images)
            .map(|i| i.bytes.len() as u64)
            .sum::<u64>()
            + self.model.as_ref().map_or(0, |m| m.len() as u64);
        let too_large = |size: u64| EngineError::Project {
            file: "the project".into(),
            reason: format!(
                "{} MB is more than the {} MB a project file may have (it could not be opened again); remove some photos first",
                mb(size),
                mb(MAX_PROJECT_BYTES)
            ),
        };
        if data + meta.len() as u64 > MAX_PROJECT_BYTES {
            return Err(too_large(data + meta.len() as u64));
        }
        if self.classes.len() > MAX_CLASSES {
            return Err(EngineError::Project {
                file: "the project".into(),
                reason: format!(
                    "{} classes, more than the {MAX_CLASSES} a project may have",
                    self.classes.len()
                ),
            });
        }
        let mut views = Vec::with_capacity(self.image_count() + 1);
        for (c, class) in self.classes.iter().enumerate() {
            for (i, image) in class.images.iter().enumerate() {
                views.push((tensor_name(c, i), byte_view(&image.bytes)?));
            }
        }
        if let Some(model) = &self.model {
            views.push((MODEL_TENSOR.to_string(), byte_view(model)?));
        }
        let bytes = safetensors::serialize(
            views,
            Some(HashMap::from([(META_PROJECT.to_string(), meta)])),
        )
        .map_err(|e| EngineError::Unsupported(format!("project could not be written: {e}")))?;
        if bytes.len() as u64 > MAX_PROJECT_BYTES {
            return Err(too_large(bytes.len() as u64));
        }
        Ok(bytes)
    }

    /// Reads a project file; `file` names it in errors. Nothing is returned unless all of it
    /// reads, so a broken file never half-replaces the user's work.
    pub fn from_bytes(file: &str, bytes: &[u8]) -> Result<Self, EngineError> {
        let bad = |reason: String| EngineError::Project {
            file: file.to_string(),
            reason,
        };
        if bytes.len() as u64 > MAX_PROJECT_BYTES {
            return Err(bad(format!(
                "{} MB is more than the {} MB a project may have",
                bytes.len() >> 20,
                MAX_PROJECT_BYTES >> 20
            )));
        }
        let (_, header) = SafeTensors::read_metadata(bytes)
            .map_err(|e| bad(format!("not a project file ({e})")))?;
        let text = header
            .metadata()
            .as_ref()
            .and_then(|m| m.get(META_PROJECT))
            .ok_or_else(|| {
                bad("a safetensors file, but not a project (no project layout)".into())
            })?;
        let layout: Layout =
            serde_json::from_str(text).map_err(|e| bad(format!("unreadable layout: {e}")))?;
        if layout.version > PROJECT_VERSION {
            return Err(bad(format!(
                "made by a newer version of the app (project version {})",
                layout.version
            )));
        }
        if layout.classes.len() > MAX_CLASSES {
            return Err(bad(format!(
                "{} classes, more than the {MAX_CLASSES} a project may have",
                layout.classes.len()
            )));
        }
        let tensors =
            SafeTensors::deserialize(bytes).map_err(|e| bad(format!("damaged file ({e})")))?;
        // Each tensor is read once: a layout naming one tensor many times would multiply it in
        // memory (a small file that fills the tab).
        let mut used = std::collections::HashSet::new();
        let mut read = |name: &str| -> Result<Vec<u8>, EngineError> {
            if !used.insert(name.to_string()) {
                return Err(bad(format!("{name} is used twice")));
            }
            let view = tensors
                .tensor(name)
                .map_err(|_| bad(format!("{name} is missing")))?;
            if view.dtype() != Dtype::U8 || view.shape().len() != 1 {
                return Err(bad(format!("{name} is not a byte string")));
            }
            Ok(view.data().to_vec())
        };
        let mut classes = Vec::with_capacity(layout.classes.len());
        for c in layout.classes {
            let mut images = Vec::with_capacity(c.images.len());
            for i in c.images {
                images.push(ProjectImage {
                    bytes: read(&i.tensor)?,
                    file: i.file,
                    val: i.val,
                });
            }
            classes.push(ProjectClass {
                name: c.name,
                images,
            });
        }
        let model = match tensors.tensor(MODEL_TENSOR) {
            Ok(_) => Some(read(MODEL_TENSOR)?),
            Err(_) => None,
        };
        let (settings, report_classes) = Self::settings_from_json(&layout.settings);
        Ok(Self {
            classes,
            settings,
            report_classes,
            report: layout.report,
            model,
        })
    }
}

/// Prefix of the autosave's image records (each image stored once, by content).
const AUTOSAVE_IMAGE_PREFIX: &str = "image/";

/// The autosave's image records that no manifest names any more (left by a tab closed during
/// a save, or by an older version): to be deleted.
pub fn orphaned_images<'a>(
    stored: impl IntoIterator<Item = &'a str>,
    named: &std::collections::HashSet<String>,
) -> Vec<String> {
    stored
        .into_iter()
        .filter(|k| k.starts_with(AUTOSAVE_IMAGE_PREFIX) && !named.contains(*k))
        .map(str::to_string)
        .collect()
}

fn byte_view(bytes: &[u8]) -> Result<TensorView<'_>, EngineError> {
    TensorView::new(Dtype::U8, vec![bytes.len()], bytes)
        .map_err(|e| EngineError::Unsupported(format!("project tensor: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Project {
        Project {
            classes: vec![
                ProjectClass {
                    name: "ants".into(),
                    images: vec![ProjectImage {
                        file: "a.jpg".into(),
                        bytes: vec![1, 2, 3],
                        val: false,
                    }],
                },
                ProjectClass {
                    name: "bees".into(),
                    images: vec![ProjectImage {
                        file: "b.png".into(),
                        bytes: vec![9; 10],
                        val: true,
                    }],
                },
            ],
            settings: PanelSettings {
                train: crate::engine::train::config::TrainConfig::new().with_epochs(3),
                ..PanelSettings::default()
            },
            report_classes: vec!["ants".into()],
            report: None,
            model: Some(vec![7; 5]),
        }
    }

    #[test]
    fn round_trip_keeps_everything() {
        let p = sample();
        let back = Project::from_bytes("p", &p.to_bytes().unwrap()).unwrap();
        assert_eq!(back.classes, p.classes);
        assert_eq!(back.settings, p.settings);
        assert_eq!(back.report_classes, p.report_classes);
        assert_eq!(back.model, p.model);
    }

    #[test]
    fn orphans_are_unnamed_image_records_only() {
        let named = ["image/a-1".to_string()].into_iter().collect();
        let stored = ["autosave", "autosave-model", "image/a-1", "image/b-2"];
        assert_eq!(
            orphaned_images(stored, &named),
            vec!["image/b-2".to_string()]
        );
    }

    #[test]
    fn a_tensor_named_twice_is_refused() {
        let layout = serde_json::json!({"version": 1, "classes": [
            {"name": "a", "images": [{"file": "1.jpg", "tensor": "images/0/0"},
                                     {"file": "2.jpg", "tensor": "images/0/0"}]},
            {"name": "b", "images": [{"file": "3.jpg", "tensor": "model"}]}]});
        let data = [1u8, 2, 3];
        let bytes = safetensors::serialize(
            [
                ("images/0/0", byte_view(&data).unwrap()),
                ("model", byte_view(&data).unwrap()),
            ],
            Some(HashMap::from([(
                META_PROJECT.to_string(),
                layout.to_string(),
            )])),
        )
        .unwrap();
        let err = Project::from_bytes("twice.ftproj", &bytes).unwrap_err();
        assert_eq!(
            err.to_string(),
            "twice.ftproj: images/0/0 is used twice",
            "{err}"
        );
    }

    #[test]
    fn broken_files_name_the_file_and_reason() {
        let bytes = sample().to_bytes().unwrap();
        let err = Project::from_bytes("cut.ftproj", &bytes[..bytes.len() - 4]).unwrap_err();
        assert!(err.to_string().starts_with("cut.ftproj: "), "{err}");
        let err = Project::from_bytes("junk.ftproj", b"hello").unwrap_err();
        assert!(err.to_string().contains("not a project file"), "{err}");
        let plain = safetensors::serialize(
            [("x", TensorView::new(Dtype::U8, vec![1], &[0u8]).unwrap())],
            None,
        )
        .unwrap();
        let err = Project::from_bytes("model.safetensors", &plain).unwrap_err();
        assert!(err.to_string().contains("not a project"), "{err}");
    }

    #[test]
    fn more_classes_than_a_project_may_have_are_refused_both_ways() {
        let many = |n: usize| Project {
            classes: (0..n)
                .map(|i| ProjectClass {
                    name: format!("c{i}"),
                    images: Vec::new(),
                })
                .collect(),
            ..Project::default()
        };
        let bytes = many(MAX_CLASSES).to_bytes().unwrap();
        assert_eq!(
            Project::from_bytes("p", &bytes).unwrap().classes.len(),
            MAX_CLASSES
        );
        let err = many(MAX_CLASSES + 1).to_bytes().unwrap_err().to_string();
        assert!(err.contains("201 classes"), "{err}");
        // A file written elsewhere with 10,000 classes (10,000 cards) is refused on opening.
        let layout = serde_json::json!({"version": 1, "classes":
            (0..10_000).map(|i| serde_json::json!({"name": format!("c{i}"), "images": []})).collect::<Vec<_>>()});
        let data = [0u8];
        let bytes = safetensors::serialize(
            [("unused", byte_view(&data).unwrap())],
            Some(HashMap::from([(
                META_PROJECT.to_string(),
                layout.to_string(),
            )])),
        )
        .unwrap();
        let err = Project::from_bytes("many.ftproj", &bytes)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("many.ftproj") && err.contains("10000 classes"),
            "{err}"
        );
    }
}
