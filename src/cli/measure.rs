//! `finetune profile` and `finetune bench`: where the time goes and how fast each pass runs.

use std::path::PathBuf;

use clap::ValueEnum;
use serde_json::json;

use crate::engine::EngineError;
use crate::engine::model::BackboneKind;

use super::{Backend, pretrained};

/// A pass for `finetune profile --pass`.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum ProfilePass {
    /// The feature pass (predictions, frozen layers).
    Features,
    /// A training step with the last block and the head trained.
    LastBlock,
    /// A training step with every layer trained.
    Full,
}

impl ProfilePass {
    fn pass(self) -> crate::engine::measure::profile::Pass {
        use crate::engine::measure::profile::Pass;
        match self {
            ProfilePass::Features => Pass::Features,
            ProfilePass::LastBlock => Pass::LastBlockStep,
            ProfilePass::Full => Pass::FullStep,
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn profile(
    backend: Backend,
    backbone: BackboneKind,
    weights: Option<PathBuf>,
    batch: usize,
    iters: usize,
    top: usize,
    passes: &[ProfilePass],
    json: bool,
) -> Result<i32, EngineError> {
    let (device, model, spec) = pretrained(backend, backbone, weights)?;
    let passes: Vec<_> = match passes {
        [] => crate::engine::measure::profile::Pass::ALL.to_vec(),
        chosen => chosen.iter().map(|p| p.pass()).collect(),
    };
    let profiles = pollster::block_on(crate::engine::measure::profile::run(
        &model,
        spec,
        batch,
        iters.max(1),
        &passes,
        &device,
    ))?;
    if json {
        println!(
            "{}",
            json!({"backend": backend.name(), "backbone": spec.id, "passes": profiles})
        );
        return Ok(0);
    }
    println!("# {} on {}\n", spec.name, backend.name());
    for p in &profiles {
        if let Some(phases) = &p.phases {
            println!("Phases of one step:\n{}", phases.table(top));
        }
        println!("{}", p.ops.table(top));
        if let Some(k) = &p.kernels {
            println!("GPU kernels, each timed alone:\n{}", k.table(top));
        }
    }
    Ok(0)
}

pub(crate) fn bench(
    backend: Backend,
    backbone: BackboneKind,
    weights: Option<PathBuf>,
    batch: usize,
    iters: usize,
) -> Result<i32, EngineError> {
    let (device, model, spec) = pretrained(backend, backbone, weights)?;
    let report = pollster::block_on(crate::engine::measure::bench::run(
        &model, spec, batch, iters, &device,
    ))?;
    let mut out = json!(report);
    out["backend"] = json!(backend.name());
    out["backbone"] = json!(spec.id);
    println!("{out}");
    Ok(0)
}
