//! The network cut at the freeze boundary: a [`Frozen`] front that runs as pure inference
//! (no autodiff, BatchNorm on running statistics, folded) and a [`Trainable`] back on the
//! autodiff device; [`merge`] joins them again.

use std::ops::Range;

use burn::module::Module;
use burn::nn::{DropoutConfig, LinearConfig};
use burn::tensor::{Device, Tensor};

use crate::engine::model::{
    Backbone, Classifier, ConvBn, FEATURE_DIM, FoldedBlock, FoldedConv, Head, MbConv,
};
use crate::engine::train::plan::Unfreeze;

/// A new classifier layer for `classes` classes, as a run starts it.
pub(crate) fn new_head(classes: usize, dropout: f64, device: &Device) -> Head {
    Head {
        dropout: DropoutConfig::new(dropout).init(),
        fc: LinearConfig::new(FEATURE_DIM, classes).init(device),
    }
}

/// The frozen front of the network: pure inference, BatchNorm on running statistics. It keeps
/// its layers as they are (a run's model is joined from them again) and runs them folded: each
/// convolution and its BatchNorm as one convolution with a bias (see [`FoldedConv`]).
#[derive(Module, Debug)]
pub struct Frozen {
    pub stem: Option<ConvBn>,
    pub blocks: Vec<MbConv>,
    /// Present when the head alone trains: the output is then the pooled feature.
    pub conv_head: Option<ConvBn>,
    folded_stem: Option<FoldedConv>,
    folded_blocks: Vec<FoldedBlock>,
    folded_head: Option<FoldedConv>,
}

impl Frozen {
    fn new(stem: Option<ConvBn>, blocks: Vec<MbConv>, conv_head: Option<ConvBn>) -> Self {
        Frozen {
            folded_stem: stem.as_ref().map(ConvBn::fold),
            folded_blocks: blocks.iter().map(MbConv::fold).collect(),
            folded_head: conv_head.as_ref().map(ConvBn::fold),
            stem,
            blocks,
            conv_head,
        }
    }

    /// The tensor at the freeze boundary (`[n, 1280, 1, 1]` when only the head trains).
    ///
    /// Natively on burn's CPU backend the batch is cut into one part per core, run side by
    /// side: that backend runs its element-wise operations (ReLU6, bias, residual adds) on one
    /// thread, so one pass left the second core mostly idle. Each photo's result is the same
    /// (a frozen pass has no batch statistics).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let parts = cpu_parts(&x);
        self.forward_in_parts(x, parts)
    }

    /// [`Frozen::forward`] with the batch cut into `parts` parts, run side by side in rayon's
    /// pool (burn-flex's own: a part's matrix products share its threads instead of competing
    /// with them, faster than a thread per part), joined back in order. Natively only
    /// (one part in the browser).
    pub fn forward_in_parts(&self, x: Tensor<4>, parts: usize) -> Tensor<4> {
        let n = x.dims()[0];
        let parts = parts.min(n);
        if parts < 2 {
            return self.forward_part(x);
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            use rayon::prelude::*;
            let outputs: Vec<Tensor<4>> = even_ranges(n, parts)
                .into_par_iter()
                .map(|r| self.forward_part(x.clone().slice([r])))
                .collect();
            Tensor::cat(outputs, 0)
        }
        #[cfg(target_arch = "wasm32")]
        self.forward_part(x)
    }

    fn forward_part(&self, mut x: Tensor<4>) -> Tensor<4> {
        if let Some(stem) = &self.folded_stem {
            x = stem.forward(x);
        }
        for b in &self.folded_blocks {
            x = b.forward(x);
        }
        match &self.folded_head {
            Some(ch) => ch.forward(x).mean_dim(3).mean_dim(2),
            None => x,
        }
    }
}

/// How many side-by-side parts a frozen pass over `x` runs in (see [`Frozen::forward`]): one
/// per core natively on burn's CPU backend; one elsewhere (a GPU runs
/// the batch as one, and a browser's worker has one thread: there helper workers share passes).
fn cpu_parts(x: &Tensor<4>) -> usize {
    #[cfg(not(target_arch = "wasm32"))]
    if crate::engine::kernels::shared::on_cpu_backend(&x.device()) {
        return rayon::current_num_threads();
    }
    #[cfg(target_arch = "wasm32")]
    let _ = x; // one thread per browser worker: one part
    1
}

/// The trainable back of the network, on the autodiff device.
#[derive(Module, Debug)]
pub struct Trainable {
    pub stem: Option<ConvBn>,
    pub blocks: Vec<MbConv>,
    pub conv_head: Option<ConvBn>,
    pub head: Head,
}

impl Trainable {
    pub fn forward(&self, mut x: Tensor<4>) -> Tensor<2> {
        if let Some(stem) = &self.stem {
            x = stem.forward(x);
        }
        for b in &self.blocks {
            x = b.forward(x);
        }
        if let Some(ch) = &self.conv_head {
            x = ch.forward(x);
        }
        let [n, c, _, _] = x.dims();
        self.head.forward(x.mean_dim(3).mean_dim(2).reshape([n, c]))
    }
}

/// Splits a classifier at the freeze boundary of `unfreeze`.
pub fn split(model: Classifier, unfreeze: Unfreeze) -> (Frozen, Trainable) {
    let Classifier { backbone, head } = model;
    let Backbone {
        stem,
        mut blocks,
        conv_head,
    } = backbone;
    match unfreeze {
        Unfreeze::All => (
            Frozen::new(None, Vec::new(), None),
            Trainable {
                stem: Some(stem),
                blocks,
                conv_head: Some(conv_head),
                head,
            },
        ),
        Unfreeze::Blocks(0) => (
            Frozen::new(Some(stem), blocks, Some(conv_head)),
            Trainable {
                stem: None,
                blocks: Vec::new(),
                conv_head: None,
                head,
            },
        ),
        Unfreeze::Blocks(n) => {
            let tail = blocks.split_off(blocks.len().saturating_sub(n));
            (
                Frozen::new(Some(stem), blocks, None),
                Trainable {
                    stem: None,
                    blocks: tail,
                    conv_head: Some(conv_head),
                    head,
                },
            )
        }
    }
}

/// Joins the parts back into one classifier on the plain (inference) device.
pub fn merge(frozen: Frozen, trainable: &Trainable) -> Classifier {
    let t = trainable.valid();
    let mut blocks = frozen.blocks;
    blocks.extend(t.blocks);
    Classifier {
        backbone: Backbone {
            stem: t
                .stem
                .or(frozen.stem)
                .expect("the stem is frozen or trainable"),
            blocks,
            conv_head: t
                .conv_head
                .or(frozen.conv_head)
                .expect("the conv head is frozen or trainable"),
        },
        head: t.head,
    }
}

/// Puts every BatchNorm of the trainable part in eval mode (running statistics).
pub(crate) fn freeze_batchnorm(t: Trainable) -> Trainable {
    fn cb(mut c: ConvBn) -> ConvBn {
        c.bn.training = burn::module::Param::from_bool(false);
        c
    }
    fn block(b: MbConv) -> MbConv {
        MbConv {
            expand: b.expand.map(cb),
            depthwise: cb(b.depthwise),
            project: cb(b.project),
            skip: b.skip,
        }
    }
    Trainable {
        stem: t.stem.map(cb),
        blocks: t.blocks.into_iter().map(block).collect(),
        conv_head: t.conv_head.map(cb),
        head: t.head,
    }
}

/// `0..n` cut into `parts` contiguous ranges (at least one) whose lengths differ by at most one.
pub fn even_ranges(n: usize, parts: usize) -> Vec<Range<usize>> {
    let parts = parts.max(1);
    let (size, extra) = (n / parts, n % parts);
    let mut start = 0;
    (0..parts)
        .map(|i| {
            let len = size + usize::from(i < extra);
            let range = start..start + len;
            start += len;
            range
        })
        .collect()
}
