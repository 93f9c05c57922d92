//! Where a pass spends its time, operation by operation, on any device: the feature pass (as
//! predictions and frozen layers run it, BatchNorm folded), a last-block step and a full step.
//! Each operation of the real network runs on its real input, alone, and is timed up to a read
//! of one of its values (on a GPU that is the moment its kernels are done); a trained operation
//! is timed forward and backward. The same pass run without those reads is measured too, so the
//! table shows what the reads cost and what the step spends outside the operations (the
//! optimiser update, autodiff bookkeeping). `finetune profile` prints it.

use std::collections::BTreeMap;

use burn::module::Module;
use burn::nn::BatchNorm;
use burn::nn::conv::Conv2d;
use burn::tensor::{Device, Tensor};
use cubecl_runtime::config::{TypeNameFormatLevel, type_name_format};
use serde::{Deserialize, Serialize};
use web_time::Instant;

use crate::engine::EngineError;
use crate::engine::kernels::cpu::{self, batchnorm};
use crate::engine::kernels::shared::relu6;
use crate::engine::kernels::{Route, batch_norm, conv2d, linear};
use crate::engine::measure::bench;
use crate::engine::measure::launches::Kernels;
use crate::engine::model::{BackboneSpec, Classifier, ConvBn, FoldedConv, MbConv};
use crate::engine::train::plan::Unfreeze;

/// One kind of operation in a pass.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpRow {
    pub op: String,
    /// How many times the pass runs it.
    pub calls: usize,
    pub seconds: f64,
    /// Of the sum of all rows.
    pub share: f64,
}

/// The operations of one pass, slowest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PassProfile {
    pub pass: String,
    pub batch: usize,
    pub rows: Vec<OpRow>,
    /// Sum of the rows (each operation alone, the read's own cost taken off).
    pub ops_seconds: f64,
    /// The same pass as the engine runs it, with no read between operations (median).
    pub measured_seconds: f64,
    /// What one read of a value costs on this device (taken off each operation).
    pub read_seconds: f64,
}

impl PassProfile {
    /// The `n` slowest operations.
    pub fn top(&self, n: usize) -> &[OpRow] {
        &self.rows[..n.min(self.rows.len())]
    }

    /// A text table: operation, calls, milliseconds, share.
    pub fn table(&self, n: usize) -> String {
        let mut s = format!(
            "{} (batch {}): operations {:.1} ms, pass as run {:.1} ms, one read {:.2} ms\n",
            self.pass,
            self.batch,
            self.ops_seconds * 1e3,
            self.measured_seconds * 1e3,
            self.read_seconds * 1e3
        );
        s.push_str("| operation | calls | ms | share |\n|---|---|---|---|\n");
        for r in self.top(n) {
            s.push_str(&format!(
                "| {} | {} | {:.1} | {:.1}% |\n",
                r.op,
                r.calls,
                r.seconds * 1e3,
                r.share * 100.0
            ));
        }
        s
    }
}

/// Sums operation times by name.
#[derive(Default)]
struct Ops {
    rows: BTreeMap<String, (usize, f64)>,
    read_seconds: f64,
}

impl Ops {
    fn add(&mut self, op: &str, seconds: f64) {
        let row = self.rows.entry(op.to_string()).or_insert((0, 0.0));
        row.0 += 1;
        row.1 += (seconds - self.read_seconds).max(0.0);
    }

    fn finish(self, pass: &str, batch: usize, measured_seconds: f64) -> PassProfile {
        let ops_seconds: f64 = self.rows.values().map(|r| r.1).sum();
        let mut rows: Vec<OpRow> = self
            .rows
            .into_iter()
            .map(|(op, (calls, seconds))| OpRow {
                op,
                calls,
                seconds,
                share: seconds / ops_seconds.max(1e-12),
            })
            .collect();
        rows.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
        PassProfile {
            pass: pass.to_string(),
            batch,
            rows,
            ops_seconds,
            measured_seconds,
            read_seconds: self.read_seconds,
        }
    }
}

/// Kernels are timed one by one natively; a browser cannot wait for a kernel, so it counts them.
const TIME_KERNELS: bool = cfg!(not(target_arch = "wasm32"));

/// The kernels `kernels` saw as a profile, by kernel name (generic arguments shortened).
fn kernel_profile(
    kernels: &Kernels,
    pass: &str,
    batch: usize,
    measured_seconds: f64,
) -> PassProfile {
    let mut ops = Ops::default();
    for (name, (calls, seconds)) in kernels.seen() {
        let row = ops
            .rows
            .entry(type_name_format(name, TypeNameFormatLevel::Short))
            .or_insert((0, 0.0));
        row.0 += calls;
        row.1 += seconds;
    }
    ops.finish(pass, batch, measured_seconds)
}

/// Waits until `t` is computed by reading one of its values.
/// Natively the device waits for everything queued; a browser cannot block, so there it is
/// the read, which waits for everything queued before it.
async fn settle<const D: usize>(t: &Tensor<D>) -> Result<(), EngineError> {
    #[cfg(not(target_arch = "wasm32"))]
    if let Ok(()) = t.device().sync() {
        return Ok(());
    }
    t.clone()
        .flatten::<1>(0, D - 1)
        .narrow(0, 0, 1)
        .into_data_async()
        .await
        .map(|_| ())
        .map_err(|e| EngineError::Device(format!("{e:?}")))
}

/// The cost of one read of a value that is already computed (median of 5).
async fn read_cost(device: &Device) -> Result<f64, EngineError> {
    let t = Tensor::<1>::ones([4], device);
    settle(&t).await?;
    let mut times = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        settle(&(t.clone() * 1.0)).await?;
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(times[2])
}

fn conv_name(conv: &Conv2d, role: &str) -> String {
    let [k, _] = conv.kernel_size;
    if conv.groups > 1 {
        format!("depthwise conv {k}x{k}")
    } else {
        format!("conv {k}x{k} ({role})")
    }
}

/// Times `f` on `x`, forward only.
async fn forward_op(
    ops: &mut Ops,
    op: &str,
    x: Tensor<4>,
    f: impl FnOnce(Tensor<4>) -> Tensor<4>,
) -> Result<Tensor<4>, EngineError> {
    // Whatever was queued before (folding, a previous operation) is not this one's time.
    settle(&x).await?;
    let start = Instant::now();
    let y = f(x);
    settle(&y).await?;
    ops.add(op, start.elapsed().as_secs_f64());
    Ok(y)
}

/// Times `f` on `x` forward and backward, on the autodiff device: the gradient flows to the
/// input and to the operation's parameters. Returns the output (inner device) for the next op.
async fn trained_op(
    ops: &mut Ops,
    op: &str,
    x: Tensor<4>,
    f: impl FnOnce(Tensor<4>) -> Tensor<4>,
) -> Result<Tensor<4>, EngineError> {
    let op = format!("{op}, forward + backward");
    let x = x.autodiff().require_grad();
    settle(&x).await?;
    let start = Instant::now();
    let y = f(x.clone());
    let grads = y.clone().sum().backward();
    match x.grad(&grads) {
        Some(g) => settle(&g).await?,
        None => settle(&y).await?,
    }
    ops.add(&op, start.elapsed().as_secs_f64());
    Ok(y.inner())
}

async fn forward_folded(
    ops: &mut Ops,
    layer: &FoldedConv,
    role: &str,
    x: Tensor<4>,
) -> Result<Tensor<4>, EngineError> {
    let name = format!("{} + bias", conv_name(&layer.conv, role));
    // The convolution, its bias and the ReLU6 as one operation of ours, as the layer runs
    // them: one kernel on a GPU, one pass natively on the CPU backend.
    let one = match layer.route(&x) {
        Route::Kernel => Some("one kernel"),
        Route::Pass => Some("one pass"),
        Route::Burn => None,
    };
    if let Some(one) = one {
        let act = if layer.relu6 { " + relu6" } else { "" };
        let name = format!("{name}{act} ({one})");
        return forward_op(ops, &name, x, |x| layer.forward(x)).await;
    }
    let y = forward_op(ops, &name, x, |x| conv2d(&layer.conv, x)).await?;
    if layer.relu6 {
        forward_op(ops, "relu6", y, relu6).await
    } else {
        Ok(y)
    }
}

async fn train_conv_bn(
    ops: &mut Ops,
    layer: &ConvBn,
    role: &str,
    x: Tensor<4>,
    ad: &Device,
) -> Result<Tensor<4>, EngineError> {
    let conv: Conv2d = layer.conv.clone().fork(ad);
    let bn: BatchNorm = layer.bn.clone().fork(ad).train();
    let y = trained_op(ops, &conv_name(&layer.conv, role), x, |x| conv2d(&conv, x)).await?;
    if layer.relu6 && batchnorm::applies(&bn, ad, y.dtype()) {
        // One operation there, as training runs it.
        let name = "batch norm (batch statistics) + relu6";
        return trained_op(ops, name, y, |y| batchnorm::forward(&bn, y, true)).await;
    }
    let name = "batch norm (batch statistics)";
    let y = trained_op(ops, name, y, |y| batch_norm(&bn, y, false)).await?;
    if layer.relu6 {
        trained_op(ops, "relu6", y, relu6).await
    } else {
        Ok(y)
    }
}

async fn forward_block(
    ops: &mut Ops,
    block: &MbConv,
    x: Tensor<4>,
) -> Result<Tensor<4>, EngineError> {
    let folded = block.fold();
    // The whole block as one operation of ours, as it runs natively on the CPU backend.
    if let Some(layers) = folded.layers().filter(|l| cpu::block::applies(*l, &x)) {
        let residual = if folded.skip { " + residual" } else { "" };
        let name = format!(
            "block: conv 1x1 (expand) + {} + conv 1x1 (project){residual} (one pass)",
            conv_name(layers.depthwise.0, "depthwise")
        );
        return forward_op(ops, &name, x, |x| folded.forward(x)).await;
    }
    let mut h = x.clone();
    if let Some(expand) = &folded.expand {
        h = forward_folded(ops, expand, "expand", h).await?;
    }
    h = forward_folded(ops, &folded.depthwise, "depthwise", h).await?;
    h = forward_folded(ops, &folded.project, "project", h).await?;
    if folded.skip {
        h = forward_op(ops, "residual add", h, |h| h + x).await?;
    }
    Ok(h)
}

async fn train_block(
    ops: &mut Ops,
    block: &MbConv,
    x: Tensor<4>,
    ad: &Device,
) -> Result<Tensor<4>, EngineError> {
    let mut h = x.clone();
    if let Some(expand) = &block.expand {
        h = train_conv_bn(ops, expand, "expand", h, ad).await?;
    }
    h = train_conv_bn(ops, &block.depthwise, "depthwise", h, ad).await?;
    h = train_conv_bn(ops, &block.project, "project", h, ad).await?;
    if block.skip {
        let skip = x.autodiff();
        h = trained_op(ops, "residual add", h, |h| h + skip).await?;
    }
    Ok(h)
}

/// The pool and the classifier layer after the backbone, trained or not.
async fn head(
    ops: &mut Ops,
    model: &Classifier,
    x: Tensor<4>,
    ad: Option<&Device>,
) -> Result<(), EngineError> {
    let pool = |x: Tensor<4>| x.mean_dim(3).mean_dim(2);
    let pooled = match ad {
        Some(_) => trained_op(ops, "global average pool", x, pool).await?,
        None => forward_op(ops, "global average pool", x, pool).await?,
    };
    let [n, c, _, _] = pooled.dims();
    let fc = |fc: &burn::nn::Linear, p: Tensor<4>| {
        let y = linear(fc, p.reshape([n, c]));
        let k = y.dims()[1];
        y.reshape([n, k, 1, 1])
    };
    match ad {
        Some(ad) => {
            let layer = model.head.fc.clone().fork(ad);
            trained_op(ops, "linear (classifier)", pooled, |p| fc(&layer, p)).await?;
        }
        None => {
            forward_op(ops, "linear (classifier)", pooled, |p| {
                fc(&model.head.fc, p)
            })
            .await?;
        }
    }
    Ok(())
}

/// One pass, operation by operation: `unfreeze` says which part trains (`Blocks(0)` with
/// `train == false` is the feature pass).
async fn pass(
    model: &Classifier,
    unfreeze: Unfreeze,
    train: bool,
    x: &Tensor<4>,
    read_seconds: f64,
    device: &Device,
) -> Result<Ops, EngineError> {
    let ad = device.clone().autodiff();
    let mut ops = Ops {
        read_seconds,
        ..Ops::default()
    };
    let blocks = &model.backbone.blocks;
    let trained_blocks = match (train, unfreeze) {
        (false, _) => 0,
        (true, Unfreeze::All) => blocks.len(),
        (true, Unfreeze::Blocks(n)) => n.min(blocks.len()),
    };
    let all = train && unfreeze == Unfreeze::All;
    let mut h = x.clone();
    h = if all {
        train_conv_bn(&mut ops, &model.backbone.stem, "stem", h, &ad).await?
    } else {
        forward_folded(&mut ops, &model.backbone.stem.fold(), "stem", h).await?
    };
    let first_trained = blocks.len() - trained_blocks;
    for (i, block) in blocks.iter().enumerate() {
        h = if i >= first_trained {
            train_block(&mut ops, block, h, &ad).await?
        } else {
            forward_block(&mut ops, block, h).await?
        };
    }
    let head_conv = &model.backbone.conv_head;
    h = if train && (trained_blocks > 0 || all) {
        train_conv_bn(&mut ops, head_conv, "head", h, &ad).await?
    } else {
        forward_folded(&mut ops, &head_conv.fold(), "head", h).await?
    };
    head(&mut ops, model, h, train.then_some(&ad)).await?;
    Ok(ops)
}

/// One real training step (as [`bench::step_seconds`] runs it) cut into its phases by a read
/// after each: the frozen part, the trainable part's forward, the backward pass, the optimiser
/// update. What the per-operation rows leave out (the optimiser, the autodiff graph of the
/// whole step) shows here. Two steps; the second is timed.
async fn step_phases(
    model: &Classifier,
    unfreeze: Unfreeze,
    x: &Tensor<4>,
    read_seconds: f64,
    device: &Device,
) -> Result<Ops, EngineError> {
    // The very step `finetune bench` times.
    let (mut step, labels) = bench::bench_step(model, unfreeze, x.dims()[0], device);
    let mut ops = Ops::default();
    for _ in 0..2 {
        ops = Ops {
            read_seconds,
            ..Ops::default()
        };
        let t = Instant::now();
        let boundary = step.frozen.forward(x.clone());
        settle(&boundary).await?;
        ops.add(
            "frozen part (folded, no autodiff)",
            t.elapsed().as_secs_f64(),
        );
        let t = Instant::now();
        let (_, loss) = step.forward(boundary, &labels, None);
        settle(&loss).await?;
        ops.add(
            "trainable part: forward and loss",
            t.elapsed().as_secs_f64(),
        );
        let t = Instant::now();
        let grads = step.gradients(loss);
        let bias = step.trainable.head.fc.bias.as_ref();
        if let Some(g) = bias.and_then(|b| grads.get::<1>(b.id)) {
            settle(&g).await?;
        }
        ops.add("trainable part: backward", t.elapsed().as_secs_f64());
        let t = Instant::now();
        step = step.apply(grads);
        if let Some(b) = &step.trainable.head.fc.bias {
            settle(&b.val()).await?;
        }
        ops.add("optimiser update (AdamW)", t.elapsed().as_secs_f64());
    }
    Ok(ops)
}

/// A pass to profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Pass {
    /// Inference as predictions and frozen layers run it.
    Features,
    LastBlockStep,
    FullStep,
}

impl Pass {
    pub const ALL: [Pass; 3] = [Pass::Features, Pass::LastBlockStep, Pass::FullStep];

    fn case(self) -> (&'static str, Unfreeze, bool) {
        match self {
            Pass::Features => ("feature pass", Unfreeze::Blocks(0), false),
            Pass::LastBlockStep => ("last-block step", Unfreeze::Blocks(1), true),
            Pass::FullStep => ("full step", Unfreeze::All, true),
        }
    }
}

/// The profiles of `passes`: feature pass, last-block step, full step, each after one
/// untimed warm-up of the same pass (shader compilation, allocation).
pub async fn run(
    model: &Classifier,
    spec: &BackboneSpec,
    batch: usize,
    iters: usize,
    passes: &[Pass],
    device: &Device,
) -> Result<Vec<Profiles>, EngineError> {
    let batch = batch.max(1);
    let x = bench::pattern_batch(spec, batch, device);
    let model = &bench::two_classes(model, device);
    let read = read_cost(device).await?;
    let mut out = Vec::new();
    for &p in passes {
        let (name, unfreeze, train) = p.case();
        pass(model, unfreeze, train, &x, read, device).await?;
        let ops = pass(model, unfreeze, train, &x, read, device).await?;
        // The pass as the engine runs it, then once more with each kernel timed (GPU only).
        let (measured, kernels) = if train {
            bench::observed_steps(model, unfreeze, &x, iters, device, Some(TIME_KERNELS)).await?
        } else {
            bench::observed_inference(model, &x, iters, Some(TIME_KERNELS)).await?
        };
        let phases = if train {
            Some(
                step_phases(model, unfreeze, &x, read, device)
                    .await?
                    .finish(name, batch, measured),
            )
        } else {
            None
        };
        out.push(Profiles {
            phases,
            ops: ops.finish(name, batch, measured),
            kernels: kernels
                .filter(|k| k.launches() > 0)
                .map(|k| kernel_profile(&k, name, batch, measured)),
        });
    }
    Ok(out)
}

/// A pass by operation, and by GPU kernel where the backend launches kernels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profiles {
    /// A training step's phases (see [`step_phases`]).
    pub phases: Option<PassProfile>,
    pub ops: PassProfile,
    pub kernels: Option<PassProfile>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_sum_by_name_less_the_read_and_sort_slowest_first() {
        let mut ops = Ops {
            read_seconds: 0.001,
            ..Ops::default()
        };
        ops.add("depthwise conv 3x3", 0.011);
        ops.add("relu6", 0.0015);
        ops.add("depthwise conv 3x3", 0.021);
        // An operation faster than a read counts as nothing, never as negative time.
        ops.add("residual add", 0.0005);
        let p = ops.finish("feature pass", 4, 0.05);
        assert_eq!(p.rows[0].op, "depthwise conv 3x3");
        assert_eq!(p.rows[0].calls, 2);
        assert!((p.rows[0].seconds - 0.030).abs() < 1e-12);
        assert!((p.rows[1].seconds - 0.0005).abs() < 1e-12);
        assert_eq!(p.rows[2].seconds, 0.0);
        assert!((p.ops_seconds - 0.0305).abs() < 1e-12);
        assert!((p.rows.iter().map(|r| r.share).sum::<f64>() - 1.0).abs() < 1e-12);
        assert_eq!(p.top(1).len(), 1);
        assert!(
            p.table(10)
                .contains("| depthwise conv 3x3 | 2 | 30.0 | 98.4% |")
        );
    }
}
