//! EfficientNet-Lite0/1/2 as a burn [`Module`], one definition driven by a [`BackboneSpec`]:
//! a [`Backbone`] that ends in the pooled 1280-d feature, and a replaceable [`Head`] (`_fc` in
//! the checkpoint), so a head of any class count can take the ImageNet one's place.
//!
//! Exactness matters here: the checkpoint was trained with TensorFlow "SAME" padding
//! (asymmetric for stride 2), BatchNorm eps 1e-3 and ReLU6. Each wrong detail moves the logits by
//! about 1 (see `../shared/golden/golden.json`, `diagnostics_wrong_configs`).

pub mod checkpoint;
pub mod labels;

use burn::module::{Module, Param, RunningState};
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, Dropout, DropoutConfig, Linear, PaddingConfig2d};
use burn::tensor::Tensor;

use crate::engine::kernels::cpu::block::Layers;
use crate::engine::kernels::{self, Route};

/// BatchNorm epsilon of the TF-trained checkpoint (PyTorch's default 1e-5 is wrong here).
pub const BN_EPS: f64 = 1e-3;
/// BatchNorm momentum as PyTorch counts it (weight of the new batch), as in the reference model.
pub const BN_MOMENTUM: f64 = 0.01;
/// Width of the pooled feature the head reads.
pub const FEATURE_DIM: usize = 1280;

/// One stage of MBConv blocks: (repeats, kernel, stride, expand ratio, in channels, out channels).
/// The base (Lite0 / B0) stage table, `../shared/reference/effnet_lite_reference.py`; the other
/// backbones scale it ([`BackboneSpec::stages`]).
const STAGES: [(usize, usize, usize, usize, usize, usize); 7] = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
];
/// Output channels of the stem, the same in every Lite backbone.
pub const STEM_CHANNELS: usize = 32;

/// One pretrained backbone: its Lite scaling (which fixes the architecture) and how it wants
/// its input (sizes and per-channel normalisation on the 0..255 scale, `x = (u8 - mean) / std`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BackboneSpec {
    /// Stable identifier, written into exported models.
    pub id: &'static str,
    /// Name shown to people.
    pub name: &'static str,
    /// Width multiplier of the stage channels (stem and head stay fixed).
    pub width: f32,
    /// Depth multiplier of the stage repeats (the first and last stage keep theirs).
    pub depth: f32,
    /// Shorter side after the resize of the evaluation transform.
    pub resize: u32,
    /// Side of the square centre crop fed to the network.
    pub input_size: u32,
    /// Per-channel (RGB) mean on the 0..255 scale.
    pub mean: [f32; 3],
    /// Per-channel (RGB) standard deviation on the 0..255 scale.
    pub std: [f32; 3],
}

/// EfficientNet-Lite0: this checkpoint wants `(u8 - 127) / 128`, not the ImageNet mean/std.
pub const LITE0: BackboneSpec = BackboneSpec {
    id: "efficientnet-lite0",
    name: "EfficientNet-Lite0",
    width: 1.0,
    depth: 1.0,
    resize: 256,
    input_size: 224,
    mean: [127.0; 3],
    std: [128.0; 3],
};

/// EfficientNet-Lite1: deeper (21 blocks), 240 px input.
pub const LITE1: BackboneSpec = BackboneSpec {
    id: "efficientnet-lite1",
    name: "EfficientNet-Lite1",
    width: 1.0,
    depth: 1.1,
    resize: 272,
    input_size: 240,
    ..LITE0
};

/// EfficientNet-Lite2: deeper and 10% wider, 260 px input.
pub const LITE2: BackboneSpec = BackboneSpec {
    id: "efficientnet-lite2",
    name: "EfficientNet-Lite2",
    width: 1.1,
    depth: 1.2,
    resize: 292,
    input_size: 260,
    ..LITE0
};

/// Every backbone, smallest first.
pub const BACKBONES: [&BackboneSpec; 3] = [&LITE0, &LITE1, &LITE2];

/// Which pretrained backbone a run starts from: the name in settings, files and the CLI.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum BackboneKind {
    #[default]
    Lite0,
    Lite1,
    Lite2,
}

impl BackboneKind {
    pub const ALL: [BackboneKind; 3] = [Self::Lite0, Self::Lite1, Self::Lite2];

    pub fn spec(self) -> &'static BackboneSpec {
        match self {
            Self::Lite0 => &LITE0,
            Self::Lite1 => &LITE1,
            Self::Lite2 => &LITE2,
        }
    }

    /// The short name (`lite1`) used on the command line and in settings.
    pub fn name(self) -> &'static str {
        match self {
            Self::Lite0 => "lite0",
            Self::Lite1 => "lite1",
            Self::Lite2 => "lite2",
        }
    }

    /// By short name (`lite1`) or full id (`efficientnet-lite1`).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|k| k.name() == name || k.spec().id == name)
    }
}

/// `channels` times the width multiplier, rounded to a multiple of 8 and never below 90% of the
/// product (the reference's `round_filters`).
fn round_filters(channels: usize, width: f32) -> usize {
    if width == 1.0 {
        return channels;
    }
    let c = channels as f32 * width;
    let rounded = (((c + 4.0) as usize) / 8 * 8).max(8);
    if (rounded as f32) < 0.9 * c {
        rounded + 8
    } else {
        rounded
    }
}

impl BackboneSpec {
    /// The stage table scaled by this backbone's multipliers.
    pub fn stages(&self) -> Vec<(usize, usize, usize, usize, usize, usize)> {
        let last = STAGES.len() - 1;
        STAGES
            .iter()
            .enumerate()
            .map(|(i, &(repeats, kernel, stride, expand, in_ch, out_ch))| {
                let fixed = i == 0 || i == last;
                let repeats = if fixed {
                    repeats
                } else {
                    (repeats as f32 * self.depth).ceil() as usize
                };
                let in_ch = if i == 0 {
                    STEM_CHANNELS
                } else {
                    round_filters(in_ch, self.width)
                };
                (
                    repeats,
                    kernel,
                    stride,
                    expand,
                    in_ch,
                    round_filters(out_ch, self.width),
                )
            })
            .collect()
    }

    /// The MBConv blocks in checkpoint order (`_blocks.0` ..).
    pub fn blocks(&self) -> Vec<BlockSpec> {
        self.stages()
            .into_iter()
            .flat_map(|(repeats, kernel, stride, expand, in_ch, out_ch)| {
                (0..repeats).map(move |j| BlockSpec {
                    kernel,
                    stride: if j == 0 { stride } else { 1 },
                    expand,
                    in_ch: if j == 0 { in_ch } else { out_ch },
                    out_ch,
                })
            })
            .collect()
    }

    /// Number of MBConv blocks.
    pub fn block_count(&self) -> usize {
        self.stages().iter().map(|s| s.0).sum()
    }

    /// Multiply-accumulates of one forward pass at `input_size` (convolutions and the ImageNet
    /// head; TF "SAME" output sizes): what makes one backbone slower than another.
    pub fn macs(&self) -> u64 {
        let same = |side: u64, stride: u64| side.div_ceil(stride);
        let mut side = same(u64::from(self.input_size), 2);
        let mut macs = side * side * STEM_CHANNELS as u64 * 3 * 9;
        for b in self.blocks() {
            let (cin, mid, cout) = (b.in_ch as u64, b.mid() as u64, b.out_ch as u64);
            if b.expand != 1 {
                macs += side * side * cin * mid;
            }
            side = same(side, b.stride as u64);
            let k = b.kernel as u64;
            macs += side * side * mid * (k * k + cout);
        }
        macs += side * side * self.head_in() as u64 * FEATURE_DIM as u64;
        macs + FEATURE_DIM as u64 * 1000
    }

    /// Channels entering `_conv_head` (the last stage's output).
    pub fn head_in(&self) -> usize {
        self.stages().last().map_or(0, |s| s.5)
    }
}

/// Description of one MBConv block, derived from the stage table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockSpec {
    pub kernel: usize,
    pub stride: usize,
    pub expand: usize,
    pub in_ch: usize,
    pub out_ch: usize,
}

impl BlockSpec {
    /// Channels inside the block (after expansion).
    pub fn mid(&self) -> usize {
        self.in_ch * self.expand
    }
}

/// Convolution (no bias) + BatchNorm, optionally followed by ReLU6.
#[derive(Module, Debug)]
pub struct ConvBn {
    pub conv: Conv2d,
    pub bn: BatchNorm,
    pub relu6: bool,
}

impl ConvBn {
    /// Builds the layer from its parameters: conv weight `[out, in/groups, k, k]`, BN weight,
    /// bias, running mean and running variance.
    pub fn from_parts(
        weight: Tensor<4>,
        bn: [Tensor<1>; 4],
        stride: usize,
        groups: usize,
        relu6: bool,
    ) -> Self {
        let [_, _, kh, kw] = weight.dims();
        let [gamma, beta, mean, var] = bn;
        Self {
            conv: Conv2d {
                weight: Param::from_tensor(weight),
                bias: None,
                stride: [stride, stride],
                kernel_size: [kh, kw],
                dilation: [1, 1],
                groups,
                // burn's `Same` is TF's: total = max((ceil(in/s)-1)*s + k - in, 0), the odd
                // pixel at the bottom/right.
                padding: PaddingConfig2d::Same,
            },
            bn: BatchNorm {
                gamma: Param::from_tensor(gamma),
                beta: Param::from_tensor(beta),
                training: Param::from_bool(true),
                running_mean: RunningState::new(mean),
                running_var: RunningState::new(var),
                momentum: BN_MOMENTUM,
                epsilon: BN_EPS,
            },
            relu6,
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        kernels::batch_norm(&self.bn, kernels::conv2d(&self.conv, x), self.relu6)
    }
}

/// A [`ConvBn`] in eval mode as one convolution with a bias. BatchNorm on its running
/// statistics is a per-channel scale and shift, `gamma * (y - mean) / sqrt(var + eps) + beta`,
/// which folds into the convolution's weight and bias: half the layers' kernels, the same
/// outputs up to rounding. For frozen layers and predictions (never for layers that train).
#[derive(Module, Debug)]
pub struct FoldedConv {
    pub conv: Conv2d,
    pub relu6: bool,
}

impl ConvBn {
    pub fn fold(&self) -> FoldedConv {
        let bn = &self.bn;
        let scale = bn.gamma.val() / (bn.running_var.value() + BN_EPS).sqrt();
        let out = scale.dims()[0];
        let weight = self.conv.weight.val() * scale.clone().reshape([out, 1, 1, 1]);
        let shift = match &self.conv.bias {
            Some(b) => b.val() - bn.running_mean.value(),
            None => -bn.running_mean.value(),
        };
        let bias = shift * scale + bn.beta.val();
        FoldedConv {
            conv: Conv2d {
                weight: Param::from_tensor(weight),
                bias: Some(Param::from_tensor(bias)),
                stride: self.conv.stride,
                kernel_size: self.conv.kernel_size,
                dilation: self.conv.dilation,
                groups: self.conv.groups,
                padding: self.conv.padding.clone(),
            },
            relu6: self.relu6,
        }
    }
}

impl FoldedConv {
    /// The kernel [`Self::forward`] runs on `x` (named in `finetune profile`'s rows).
    pub fn route(&self, x: &Tensor<4>) -> Route {
        kernels::folded_route(&self.conv, x)
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        kernels::folded_conv(&self.conv, x, self.relu6)
    }
}

/// An [`MbConv`] with its BatchNorms folded (see [`FoldedConv`]).
#[derive(Module, Debug)]
pub struct FoldedBlock {
    pub expand: Option<FoldedConv>,
    pub depthwise: FoldedConv,
    pub project: FoldedConv,
    pub skip: bool,
}

impl MbConv {
    pub fn fold(&self) -> FoldedBlock {
        FoldedBlock {
            expand: self.expand.as_ref().map(ConvBn::fold),
            depthwise: self.depthwise.fold(),
            project: self.project.fold(),
            skip: self.skip,
        }
    }
}

impl FoldedBlock {
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        if let Some(y) = self.layers().and_then(|l| kernels::folded_block(l, &x)) {
            return y;
        }
        inverted_residual(
            x,
            self.expand.as_ref().map(|l| |h| l.forward(h)),
            |h| self.project.forward(self.depthwise.forward(h)),
            self.skip,
        )
    }

    /// The layers as [`kernels::folded_block`] takes them (blocks with an expansion).
    pub fn layers(&self) -> Option<Layers<'_>> {
        fn layer(l: &FoldedConv) -> (&Conv2d, bool) {
            (&l.conv, l.relu6)
        }
        Some(Layers {
            expand: layer(self.expand.as_ref()?),
            depthwise: layer(&self.depthwise),
            project: layer(&self.project),
            skip: self.skip,
        })
    }
}

/// Inverted-residual block: optional 1x1 expansion, depthwise conv, linear 1x1 projection.
#[derive(Module, Debug)]
pub struct MbConv {
    pub expand: Option<ConvBn>,
    pub depthwise: ConvBn,
    pub project: ConvBn,
    /// Residual add when stride 1 and in == out channels.
    pub skip: bool,
}

impl MbConv {
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        inverted_residual(
            x,
            self.expand.as_ref().map(|l| |h| l.forward(h)),
            |h| self.project.forward(self.depthwise.forward(h)),
            self.skip,
        )
    }
}

/// The inverted-residual pattern of both block kinds (a folded block where no one-pass kernel
/// runs it): optional expansion, then the depthwise and projection layers, plus the input when
/// `skip`.
fn inverted_residual(
    x: Tensor<4>,
    expand: Option<impl Fn(Tensor<4>) -> Tensor<4>>,
    depthwise_project: impl Fn(Tensor<4>) -> Tensor<4>,
    skip: bool,
) -> Tensor<4> {
    let h = match expand {
        Some(f) => f(x.clone()),
        None => x.clone(),
    };
    let h = depthwise_project(h);
    if skip { h + x } else { h }
}

/// Everything up to and including global average pooling: image in, 1280-d feature out.
#[derive(Module, Debug)]
pub struct Backbone {
    pub stem: ConvBn,
    pub blocks: Vec<MbConv>,
    pub conv_head: ConvBn,
}

impl Backbone {
    /// The backbone this model is, read from its layout (block count and `_conv_head` width;
    /// shapes only, nothing is read from the device). `None` for a layout no spec has.
    pub fn spec(&self) -> Option<&'static BackboneSpec> {
        let head_in = self.conv_head.conv.weight.dims()[1];
        BACKBONES
            .into_iter()
            .find(|s| s.block_count() == self.blocks.len() && s.head_in() == head_in)
    }

    /// Feature maps before pooling, `[batch, 1280, h/32, w/32]`.
    pub fn feature_maps(&self, x: Tensor<4>) -> Tensor<4> {
        let mut x = self.stem.forward(x);
        for block in &self.blocks {
            x = block.forward(x);
        }
        self.conv_head.forward(x)
    }

    /// Pooled feature, `[batch, 1280]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let maps = self.feature_maps(x);
        let [batch, channels, _, _] = maps.dims();
        maps.mean_dim(3).mean_dim(2).reshape([batch, channels])
    }
}

/// Classifier head: Dropout + Linear, as `_dropout` + `_fc` in the checkpoint.
#[derive(Module, Debug)]
pub struct Head {
    pub dropout: Dropout,
    pub fc: Linear,
}

impl Head {
    /// Builds a head from a Linear weight in PyTorch layout `[classes, features]`.
    pub fn from_parts(weight_out_in: Tensor<2>, bias: Tensor<1>, dropout: f64) -> Self {
        Self {
            dropout: DropoutConfig::new(dropout).init(),
            fc: Linear {
                // burn stores `[d_input, d_output]`.
                weight: Param::from_tensor(weight_out_in.transpose()),
                bias: Some(Param::from_tensor(bias)),
            },
        }
    }

    pub fn forward(&self, features: Tensor<2>) -> Tensor<2> {
        kernels::linear(&self.fc, self.dropout.forward(features))
    }

    /// Number of classes this head predicts.
    pub fn classes(&self) -> usize {
        self.fc.weight.dims()[1]
    }
}

/// Backbone + head: image in, logits out.
#[derive(Module, Debug)]
pub struct Classifier {
    pub backbone: Backbone,
    pub head: Head,
}

impl Classifier {
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.head.forward(self.backbone.forward(x))
    }

    /// Logits and the pooled feature they came from.
    pub fn forward_with_features(&self, x: Tensor<4>) -> (Tensor<2>, Tensor<2>) {
        let features = self.backbone.forward(x);
        (self.head.forward(features.clone()), features)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_table_matches_lite0() {
        let specs = LITE0.blocks();
        assert_eq!(specs.len(), 16);
        assert_eq!(specs[0].mid(), 32);
        assert_eq!(specs[1].stride, 2);
        assert_eq!(specs[2].stride, 1);
        assert_eq!(specs[15].in_ch, 192);
        assert_eq!(specs[15].out_ch, 320);
        assert_eq!(specs.iter().filter(|s| s.stride == 2).count(), 4);
    }

    #[test]
    fn lite1_and_lite2_scale_the_stage_table_as_the_reference_does() {
        // (repeats, in, out) per stage, from `shared/golden/lite{1,2}/golden.json`.
        let table = |spec: &BackboneSpec| -> Vec<(usize, usize, usize)> {
            spec.stages().iter().map(|s| (s.0, s.4, s.5)).collect()
        };
        assert_eq!(
            table(&LITE1),
            [
                (1, 32, 16),
                (3, 16, 24),
                (3, 24, 40),
                (4, 40, 80),
                (4, 80, 112),
                (5, 112, 192),
                (1, 192, 320)
            ]
        );
        assert_eq!(
            table(&LITE2),
            [
                (1, 32, 16),
                (3, 16, 24),
                (3, 24, 48),
                (4, 48, 88),
                (4, 88, 120),
                (5, 120, 208),
                (1, 208, 352)
            ]
        );
        assert_eq!(
            BACKBONES.map(|s| (s.block_count(), s.head_in())),
            [(16, 320), (21, 320), (21, 352)]
        );
        // Evaluation transform: resize to input + 32, centre crop.
        for spec in BACKBONES {
            assert_eq!(spec.resize, spec.input_size + 32, "{}", spec.id);
        }
        assert_eq!(BackboneKind::from_name("lite2"), Some(BackboneKind::Lite2));
        assert_eq!(
            BackboneKind::from_name("efficientnet-lite1"),
            Some(BackboneKind::Lite1)
        );
        assert_eq!(BackboneKind::from_name("lite3"), None);
        // Lite0 is EfficientNet-B0 without squeeze-excitation (under 1% of B0's work): the
        // EfficientNet paper gives B0 0.39 billion FLOPs (multiply-adds).
        let lite0 = LITE0.macs() as f64;
        assert!((0.38e9..0.40e9).contains(&lite0), "{lite0}");
        // TensorFlow's EfficientNet-Lite table (407M, 631M, 899M) counts about 5% more than
        // convolutions, the same share for each: the ratios between backbones agree.
        for (spec, table) in [(&LITE1, 631.0 / 407.0), (&LITE2, 899.0 / 407.0)] {
            let ratio = spec.macs() as f64 / lite0;
            assert!((ratio / table - 1.0).abs() < 0.015, "{}: {ratio}", spec.id);
        }
    }
}
