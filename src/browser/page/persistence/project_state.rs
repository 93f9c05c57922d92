//! What a project holds of the teach panel (the workspace, settings, last report, model), read
//! for a project file and the autosave, and replaced when one is opened or restored.

use leptos::prelude::*;

use crate::browser::page::state::model_file::ModelFile;
use crate::browser::page::state::workspace::Workspace;
use crate::engine::io::project::Project;
use crate::engine::train::config::PanelSettings;
use crate::engine::train::report::TrainReport;

/// Everything of the panel that a project holds. The panel owns the signals; this only reads
/// and writes them.
#[derive(Clone, Copy)]
pub struct ProjectSignals {
    pub workspace: Workspace,
    pub settings: RwSignal<PanelSettings>,
    pub report: RwSignal<Option<TrainReport>>,
    pub report_classes: RwSignal<Vec<String>>,
    /// The trained or imported model as an exported safetensors file.
    pub model: RwSignal<Option<ModelFile>, LocalStorage>,
    /// Hands a restored model to the worker (`None`: the project has none, so the previous
    /// model is dropped).
    pub apply_model: Callback<Option<ModelFile>>,
}

impl ProjectSignals {
    /// The current work as a project (untracked reads).
    pub fn snapshot(&self) -> Project {
        Project {
            classes: self.workspace.project_classes(),
            settings: self.settings.get_untracked(),
            report_classes: self.report_classes.get_untracked(),
            report: self.report.get_untracked(),
            model: self.model.get_untracked().map(|m| m.to_vec()),
        }
    }

    /// Tracks everything a project holds, so an effect re-runs on any change.
    pub fn track(&self) {
        self.workspace.track();
        self.settings.track();
        self.report.track();
        self.model.track();
    }

    /// Replaces the work with `project`: new cards (decoded one by one), settings, report and
    /// model. The old cards are freed.
    pub async fn apply(self, project: Project) {
        self.settings.set(project.settings);
        self.report_classes.set(project.report_classes);
        self.report.set(project.report);
        let model = project.model.as_deref().map(ModelFile::from_bytes);
        self.model.set(model.clone());
        self.apply_model.run(model);
        self.workspace.replace(project.classes).await;
    }
}
