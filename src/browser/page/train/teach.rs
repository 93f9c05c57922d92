//! Teaching the network new classes: the class cards ([`Gather`]), the train panel (settings,
//! the run's status, per-epoch table, charts, confusion matrix, mistakes) and the trained model
//! ([`TrainedModelPanel`]). Training runs in the worker, so the page stays responsive; the run
//! as the page sees it is one state machine ([`RunState`]) fed by the worker's events.

use leptos::prelude::*;

use crate::app::run::{RunModel, RunState, check_classes};
use crate::browser::js;
use crate::browser::page::gather::Gather;
use crate::browser::page::insight::feature_map::FeatureSpaceView;
use crate::browser::page::insight::mistakes::Mistakes;
use crate::browser::page::persistence::project::ProjectBar;
use crate::browser::page::persistence::project_state::ProjectSignals;
use crate::browser::page::setup::pretrained::Pretrained;
use crate::browser::page::state::client::{self, Event, WorkerContext, WorkerStatus, use_worker};
use crate::browser::page::state::model_file::ModelFile;
use crate::browser::page::state::workspace::Workspace;
use crate::browser::page::train::charts::TrainCharts;
use crate::browser::page::train::results::{EpochTable, ReportView};
use crate::browser::page::train::run_view::RunControls;
use crate::browser::page::train::settings::{SettingsPanel, run_config};
use crate::browser::page::train::trained::{PROJECT_MODEL, TrainedModel, TrainedModelPanel};
use crate::engine::data::{self, Sample};
use crate::engine::model::BackboneKind;
use crate::engine::train::advisor::Advice;
use crate::engine::train::advisor::{self, Domain};
use crate::engine::train::config::PanelSettings;
use crate::engine::train::config::Strategy;
use crate::engine::train::plan::RunPlan;
use crate::engine::train::report::TrainReport;

/// The teach panel's shared state: the workspace, the settings, the run and what it left.
/// `Copy` (signals only), so callbacks and views take it as it is.
#[derive(Clone, Copy)]
struct Teach {
    ws: Workspace,
    model: TrainedModel,
    /// Everything the user sets for training: the engine's config (saved with the project).
    settings: RwSignal<PanelSettings>,
    advice: Memo<Advice>,
    run: RwSignal<RunState<ModelFile>, LocalStorage>,
    /// The report on show (this session's run, or a project's) and its class names.
    report: RwSignal<Option<TrainReport>>,
    report_classes: RwSignal<Vec<String>>,
    /// The run's validation images in the order sent to the worker (`val_predicted`'s order).
    run_val: StoredValue<Vec<Sample>>,
    /// Its training images, in the same way (the feature map's order: train, then val).
    run_train: StoredValue<Vec<Sample>>,
    handle: WorkerContext,
}

impl Teach {
    fn new() -> Self {
        let worker = use_worker();
        let ws = Workspace::new(worker.clone());
        let classes = ws.classes;
        let advice = Memo::new(move |_| {
            let total = ws.image_count();
            advisor::advise(
                total,
                classes.with(Vec::len).max(1),
                Domain::SimilarToImageNet,
            )
        });
        Self {
            ws,
            model: TrainedModel::new(worker),
            settings: RwSignal::new(PanelSettings::default()),
            advice,
            run: RwSignal::new_local(RunState::default()),
            report: RwSignal::new(None),
            report_classes: RwSignal::new(Vec::new()),
            run_val: StoredValue::new(Vec::new()),
            run_train: StoredValue::new(Vec::new()),
            handle: WorkerContext::handle(),
        }
    }

    /// The strategy in use: the user's, or the advisor's.
    fn strategy(self) -> Strategy {
        self.settings
            .with(|s| s.chosen_strategy)
            .unwrap_or_else(|| self.advice.get().strategy)
    }

    fn running(self) -> bool {
        self.run.with(RunState::running)
    }

    /// The backbone: no switch while a run goes; the settings name the one the worker holds
    /// (photos are prepared again for a new one); a restored project's backbone is loaded.
    fn follow_backbone(self) {
        let (settings, ws) = (self.settings, self.ws);
        let pretrained = Pretrained::get();
        Effect::new(move |_| pretrained.locked.set(self.running()));
        Effect::new(move |before: Option<Option<BackboneKind>>| {
            let now = pretrained.loaded.get();
            if let Some(kind) = now {
                if settings.with_untracked(|s| s.train.backbone != kind) {
                    settings.update(|s| s.train.backbone = kind);
                }
                if before.flatten().is_some_and(|b| b != kind) {
                    leptos::task::spawn_local(async move { ws.redecode().await });
                }
            }
            now.or(before.flatten())
        });
        let wanted = Memo::new(move |_| settings.with(|s| s.train.backbone));
        Effect::new(move |_| {
            let wanted = wanted.get();
            if let Some(loaded) = pretrained.loaded.get_untracked()
                && loaded != wanted
            {
                pretrained.chosen.set(wanted);
            }
        });
    }

    /// The worker's events. After a crash the new worker gets the model back (a run's own
    /// answer handles the model of a run that was going).
    fn listen(self) {
        let (run, model) = (self.run, self.model);
        self.handle.client().subscribe(move |event| match event {
            Event::Progress(p) => {
                run.try_update(|r| r.on_progress(p));
            }
            Event::BestSoFar { report, model } => {
                run.try_update(|r| r.on_best(report.clone(), model.clone()));
            }
            Event::Crashed => {
                let going = run.try_with_untracked(RunState::running) == Some(true);
                let bytes = model.bytes.try_get_untracked().flatten();
                if let (false, Some(bytes)) = (going, bytes) {
                    let note = "Your model, back after the worker restarted".to_string();
                    model.load(bytes, PROJECT_MODEL.to_string(), note);
                }
            }
        });
    }

    /// A model a run leaves (finished, cancelled, or the best epoch of a failed one): the
    /// report and the model in use. A kept model goes to the (new) worker.
    fn use_run_model(self, m: RunModel<ModelFile>, in_worker: bool) {
        let best_epoch = m.report.best_epoch;
        self.report_classes.set(m.classes.clone());
        self.report.set(Some(m.report));
        if in_worker {
            self.model.adopt(m.bytes, m.classes, m.note);
        } else {
            // The worker that made it is gone: the new one loads it (the note gets the names).
            let note = format!("Kept from epoch {best_epoch} of a run that did not finish");
            self.model.load(m.bytes, PROJECT_MODEL.to_string(), note);
        }
    }

    /// Starts a run with the classes and settings as they are, or says why it cannot.
    fn start(self) {
        let ready = self
            .handle
            .client()
            .status
            .with_untracked(|s| *s == WorkerStatus::Ready);
        if !ready || self.running() {
            return;
        }
        let run = self.run;
        let refuse = move |message: String| run.update(|r| r.fail(message));
        let cards = self.ws.classes.get_untracked();
        let counts: Vec<(String, usize)> = cards
            .iter()
            .map(|c| (c.name.get_untracked(), c.count.get_untracked()))
            .collect();
        let names: Vec<String> = counts.iter().map(|(name, _)| name.clone()).collect();
        if let Err(e) = check_classes(&counts) {
            return refuse(e.to_string());
        }
        let Some(backbone) = Pretrained::get().loaded.get_untracked() else {
            return refuse("The pretrained model is still loading.".into());
        };
        let settings = self.settings.get_untracked();
        let cfg = run_config(&settings, self.strategy()).with_backbone(backbone);
        if let Err(e) = cfg.validate() {
            return refuse(format!("{e}."));
        }
        if !run.try_update(RunState::begin).unwrap_or(false) {
            return;
        }
        // Gather and send the pixels in a later task: this one only repaints the panel.
        leptos::task::spawn_local(async move {
            js::next_task().await;
            let mut samples: Vec<(Sample, bool)> = Vec::new();
            for (label, c) in cards.iter().enumerate() {
                let class = c.samples().into_iter();
                samples.extend(class.map(|(s, val)| (Sample { label, ..s }, val)));
                js::next_task().await;
            }
            let (train, val) =
                data::split_samples(samples, names.len(), cfg.val_fraction, cfg.seed);
            if val.is_empty() {
                return refuse("No images are left to check the model: add more images.".into());
            }
            run.update(|r| r.planned(RunPlan::new(&cfg, train.len()), names.clone()));
            let train_pixels = client::pixels(&train).await;
            let val_pixels = client::pixels(&val).await;
            self.run_val.set_value(val);
            self.run_train.set_value(train);
            let result = self
                .handle
                .client()
                .train(names, cfg, train_pixels, val_pixels)
                .await;
            // The worker still holds a model it finished; a kept one went with a dead worker.
            let in_worker = result.is_ok();
            let Some(made) = run.try_update(|r| r.finish(result)).flatten() else {
                return;
            };
            // The results render in later tasks, so no single one keeps the page busy.
            js::next_task().await;
            self.use_run_model(made, in_worker);
        });
    }

    /// What a project saves and restores of the panel.
    fn project(self) -> ProjectSignals {
        let model = self.model;
        // A model from a restored project goes to the worker; a project without one leaves
        // no model in use.
        let apply_model = move |bytes: Option<ModelFile>| match bytes {
            Some(bytes) => model.load(bytes, PROJECT_MODEL.to_string(), "From your project".into()),
            None => model.clear(),
        };
        ProjectSignals {
            workspace: self.ws,
            settings: self.settings,
            report: self.report,
            report_classes: self.report_classes,
            model: model.bytes,
            apply_model: Callback::new(apply_model),
        }
    }
}

#[component]
pub fn TeachPanel() -> impl IntoView {
    let teach = Teach::new();
    provide_context(teach.ws);
    provide_context(teach.model);
    teach.follow_backbone();
    teach.listen();
    let ready = move || {
        teach
            .handle
            .client()
            .status
            .with(|s| *s == WorkerStatus::Ready)
    };
    let running = Signal::derive(move || teach.running());
    // Saved work being put back: the cards wait, or the restore would replace new photos.
    let restoring = RwSignal::new(true);
    let classes = teach.ws.classes;
    let (settings, advice, run) = (teach.settings, teach.advice, teach.run);
    let on_cancel = move |_: ()| teach.handle.client().cancel();

    view! {
        <section class="card teach" aria-labelledby="teach-title" data-testid="teach-section">
            <h2 id="teach-title">"Teach new classes"</h2>
            <p class="why">
                <strong>"Transfer learning. "</strong>
                "The network already knows shapes, textures and parts of objects from a million "
                "ImageNet photos. We keep that knowledge and teach it your classes with a few "
                "examples each."
            </p>
            <ProjectBar project=teach.project() disabled=running restoring />
            <Gather
                disabled=Signal::derive(move || !ready() || running.get() || restoring.get())
                running
            />
            <p class="advice" data-testid="data-advice">
                {move || format!("{} images in {} classes. ", teach.ws.image_count(), classes.with(Vec::len))}
                {move || advice.get().why}
            </p>

            <h3>"Train"</h3>
            <SettingsPanel
                settings
                strategy=Signal::derive(move || teach.strategy())
                advice
                classes
                running
            />
            <RunControls run start=Callback::new(move |_| teach.start()) cancel=Callback::new(on_cancel) />
            <RunResults teach />
            <TrainedModelPanel />
        </section>
    }
}

/// What a run shows: charts and the epoch table as it goes, then the report, the mistakes and
/// the feature space.
#[component]
fn RunResults(teach: Teach) -> impl IntoView {
    let Teach {
        run,
        report,
        report_classes,
        run_val,
        run_train,
        ..
    } = teach;
    // What the charts and the table draw: memos, so a step's progress redraws only what moved.
    let rows = Memo::new(move |_| run.with(|r| r.rows.clone()));
    let plan = Memo::new(move |_| run.with(|r| r.plan.clone()));
    let steps_done = Memo::new(move |_| run.with(|r| r.steps_done));
    // This session's run only: a report from a saved project has no photos (`None`).
    let this_run = move || {
        let predicted = report.with(|r| r.as_ref().map(|r| r.val_predicted.clone()))?;
        (run_val.with_value(Vec::len) == predicted.len() && !predicted.is_empty())
            .then_some(predicted)
    };
    view! {
        <TrainCharts rows=rows.into() shape=plan.into() step=steps_done.into() />
        <EpochTable rows=rows.into() />
        {move || report.get().map(|r| view! { <ReportView report=r classes=report_classes.get() /> })}
        {move || {
            this_run().map(|predicted| {
                view! { <Mistakes predicted val=run_val classes=report_classes.get() /> }
            })
        }}
        {move || {
            this_run().map(|_| {
                let samples: Vec<Sample> = run_train
                    .with_value(|t| run_val.with_value(|v| t.iter().chain(v).cloned().collect()));
                view! { <FeatureSpaceView classes=report_classes.get() samples /> }
            })
        }}
    }
}
