//! EfficientNet-Lite0/1/2 as a burn [`Module`], one definition driven by a [`BackboneSpec`]:
//! a [`Backbone`] that ends in the pooled 1280-d feature, and a replaceable [`Head`] (`_fc` in
//! the checkpoint), so a head of any class count can take the ImageNet one's place.
//!
//! Exactness matters here: the checkpoint was trained with TensorFlow "SAME" padding
//! (asymmetric for stride 2), BatchNorm eps 1e-3 and ReLU6. Each wrong detail moves the logits by
//! about 1 (see `../shared/golden/golden.json`, `diagnostics_wrong_configs`).

pub mod labels;

use burn::module::{Module, Param, RunningState};
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, Dropout, DropoutConfig, Linear, PaddingConfig2d};
use burn::tensor::{Device, Tensor};

/// BatchNorm epsilon of the TF-trained checkpoint (PyTorch's default 1e-5 is wrong here).
pub const BN_EPS: f64 = 1e-3;
/// BatchNorm momentum as PyTorch counts it (weight of the new batch), as in the reference model.
pub const BN_MOMENTUM: f64 = 0.01;
/// Width of the pooled feature the head reads.
pub const FEATURE_DIM: usize = 1280;

/// One stage of MBConv blocks: (repeats, kernel, stride, expand ratio, in channels, out channels).
/// The base (Lite0 / B0) stage table, `../shared/reference/effnet_lite_reference.py`; the other
/// backbones scale it ([`BackboneSpec::stages`]).
pub const STAGES: [(usize, usize, usize, usize, usize, usize); 7] = [
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

/// Natively a 1x1 convolution runs as a matrix product: on burn's CPU backend its backward is
/// faster (last-block step 1.3x, full step 1.35x), on wgpu (lavapipe) burn's direct
/// convolution kernel was the slowest kernel. In the browser the convolution stays: there the
/// matmul made SwiftShader's first feature pass of 40 photos 2.6x slower (`finetune profile`,
/// `scripts/feature_pass_browser.mjs`; figures in the README).
pub const POINTWISE_AS_MATMUL: bool = cfg!(not(target_arch = "wasm32"));

/// A convolution; a 1x1 one (stride 1, one group: the expansions, projections and the head's)
/// as one batched matrix product `W[out, in] x X[n, in, h*w]` where [`POINTWISE_AS_MATMUL`],
/// the same sums.
pub fn conv2d(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    if let Some(y) = crate::engine::kernels::cpu::depthwise::forward(conv, &x) {
        return y;
    }
    if !as_matmul(conv) {
        return conv.forward(x);
    }
    let [_, _, h, w] = x.dims();
    let channel_major = x.device().is_autodiff() && h * w <= CHANNEL_MAJOR_MAX_PLANE;
    pointwise(conv, x, channel_major)
}

/// Whether `conv` runs as matrix products: a 1x1 convolution (stride 1, one group) where
/// [`POINTWISE_AS_MATMUL`].
pub fn as_matmul(conv: &Conv2d) -> bool {
    let [_, _, kh, kw] = conv.weight.dims();
    POINTWISE_AS_MATMUL && (kh, kw, conv.groups, conv.stride) == (1, 1, 1, [1, 1])
}

/// A 1x1 convolution's sums without its bias, batched: `W[out, in] x X[n, in, h*w]`.
pub fn batched_pointwise(conv: &Conv2d, x: Tensor<3>) -> Tensor<3> {
    let [out, inp, _, _] = conv.weight.dims();
    conv.weight.val().reshape([1, out, inp]).matmul(x)
}

/// The largest plane (`h * w`) whose 1x1 layers train as one matrix product over every
/// pixel of the batch (see [`pointwise`]): Lite0's stages 4-7 (14x14 and 7x7).
const CHANNEL_MAJOR_MAX_PLANE: usize = 14 * 14;

/// A 1x1 convolution as matrix products. Batched (`W[out, in] x X[n, in, h*w]`), the weight's
/// gradient is `n` products with `h*w` terms each, summed: on a 7x7 plane 49 terms, and an
/// `[n, out, in]` tensor to sum. `channel_major` first lays `x` out as `[in, n*h*w]`: one
/// product for the output and one for each gradient, over every pixel of the batch, at the
/// cost of copying the input and output into and out of that layout.
fn pointwise(conv: &Conv2d, x: Tensor<4>, channel_major: bool) -> Tensor<4> {
    let [out, inp, _, _] = conv.weight.dims();
    let [n, c, h, w] = x.dims();
    let x = x.reshape([n, c, h * w]);
    if channel_major {
        let x = x.swap_dims(0, 1).reshape([c, n * h * w]);
        let y = conv.weight.val().reshape([out, inp]).matmul(x);
        let y = match &conv.bias {
            Some(b) => y + b.val().reshape([out, 1]),
            None => y,
        };
        return y
            .reshape([out, n, h * w])
            .swap_dims(0, 1)
            .reshape([n, out, h, w]);
    }
    let y = batched_pointwise(conv, x);
    let y = match &conv.bias {
        Some(b) => y + b.val().reshape([1, out, 1]),
        None => y,
    };
    y.reshape([n, out, h, w])
}

/// ReLU6, `min(max(x, 0), 6)`. On burn's CPU backend as `relu` then `clamp_max`: its `clamp`
/// is a scalar loop that took about twice as long, forward and backward, on Lite0's activations
/// (batch 16, release: 10.2 ms against 4.2 ms forward on `[16, 240, 28, 28]`, 54 ms against
/// 25 ms with the backward). On a GPU one clamp is one kernel instead of two.
pub fn relu6<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if on_cpu_backend(&x.device()) {
        burn::tensor::activation::relu(x).clamp_max(6.0)
    } else {
        x.clamp(0.0, 6.0)
    }
}

/// Whether `device` is burn's CPU backend (with or without autodiff).
pub fn on_cpu_backend(device: &Device) -> bool {
    device.clone().inner() == Device::flex()
}

/// The classifier layer: natively burn's matmul; in the browser a 1x1 convolution over the
/// pooled features (the same sums). On SwiftShader burn's matmul kernel took 2 s for
/// ImageNet's 1280 x 1000 layer at batch 2, 15% of a prediction (`?profile`).
pub fn linear(fc: &Linear, x: Tensor<2>) -> Tensor<2> {
    if POINTWISE_AS_MATMUL {
        fc.forward(x)
    } else {
        linear_as_conv(fc, x)
    }
}

/// `fc` on `x` as a 1x1 convolution (see [`linear`]).
pub fn linear_as_conv(fc: &Linear, x: Tensor<2>) -> Tensor<2> {
    let [n, c] = x.dims();
    // burn keeps the weight as `[in, out]`; a convolution wants `[out, in, 1, 1]`.
    let w = fc.weight.val().transpose();
    let k = w.dims()[0];
    let y = burn::tensor::module::conv2d(
        x.reshape([n, c, 1, 1]),
        w.reshape([k, c, 1, 1]),
        fc.bias.as_ref().map(|b| b.val()),
        burn::tensor::ops::ConvOptions::new([1, 1], [0, 0], [1, 1], 1),
    );
    y.reshape([n, k])
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
        crate::engine::kernels::cpu::batchnorm::forward(&self.bn, conv2d(&self.conv, x), self.relu6)
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

/// How a [`FoldedConv`] runs on an input: the choice [`FoldedConv::forward`] makes, which
/// `finetune profile` names in its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FoldedPath {
    /// One CubeCL kernel of the project's (a GPU): convolution, bias and ReLU6.
    Kernel,
    /// One pass of the project's on burn's CPU backend (natively): the depthwise loop, or
    /// burn's matrix product then bias and ReLU6 in place.
    Pass,
    /// burn's convolution (a 1x1 one as a matrix product), then ReLU6 as its own operation.
    Burn,
}

impl FoldedConv {
    /// The path [`Self::forward`] takes on `x`.
    pub fn path(&self, x: &Tensor<4>) -> FoldedPath {
        if crate::engine::kernels::gpu::conv::covers(&self.conv, x) {
            FoldedPath::Kernel
        } else if crate::engine::kernels::cpu::depthwise::folds(&self.conv, x)
            || crate::engine::kernels::cpu::epilogue::covers(&self.conv, x)
        {
            FoldedPath::Pass
        } else {
            FoldedPath::Burn
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let (conv, act) = (&self.conv, self.relu6);
        let fused = match self.path(&x) {
            FoldedPath::Kernel => crate::engine::kernels::gpu::conv::forward(conv, &x, act),
            FoldedPath::Pass => crate::engine::kernels::cpu::depthwise::folded(conv, &x, act)
                .or_else(|| crate::engine::kernels::cpu::epilogue::pointwise(conv, &x, act)),
            FoldedPath::Burn => None,
        };
        fused.unwrap_or_else(|| self.unfused(x))
    }

    /// burn's convolution, then ReLU6 (see [`FoldedPath::Burn`]).
    fn unfused(&self, x: Tensor<4>) -> Tensor<4> {
        let x = conv2d(&self.conv, x);
        if self.relu6 { relu6(x) } else { x }
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
        inverted_residual(
            x,
            self.expand.as_ref().map(|l| |h| l.forward(h)),
            |h| self.project.forward(self.depthwise.forward(h)),
            self.skip,
        )
    }
}

/// The inverted-residual pattern of both block kinds: optional expansion, then the depthwise
/// and projection layers, plus the input when `skip`.
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
        linear(&self.fc, self.dropout.forward(features))
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
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::{Device, Distribution, TensorData};

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    #[test]
    fn relu6_on_the_cpu_backend_is_the_clamp_forward_and_backward() {
        // Closed form: min(max(x, 0), 6), gradient 1 strictly between 0 and 6, else 0.
        let x = Tensor::<1>::from_data(
            TensorData::new(vec![-3.0f32, -0.5, 0.25, 3.0, 5.5, 6.5, 9.0], [7]),
            &Device::flex().autodiff(),
        )
        .require_grad();
        assert!(on_cpu_backend(&x.device()));
        let y = relu6(x.clone());
        let grads = (y.clone() * 1.0).sum().backward();
        assert_eq!(values(y), [0.0, 0.0, 0.25, 3.0, 5.5, 6.0, 6.0]);
        assert_eq!(
            values(x.grad(&grads).unwrap()),
            [0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0]
        );
    }

    #[test]
    fn pointwise_layers_in_either_form_are_the_same_forward_and_backward() {
        let device = Device::flex();
        // Closed form: out = 1*a + 2*b + 0.5 at every pixel.
        let conv = Conv2d {
            weight: Param::from_tensor(Tensor::from_data(
                TensorData::new(vec![1.0f32, 2.0], [1, 2, 1, 1]),
                &device,
            )),
            bias: Some(Param::from_tensor(Tensor::from_data(
                TensorData::new(vec![0.5f32], [1]),
                &device,
            ))),
            ..Conv2dConfig::new([2, 1], [1, 1]).init(&device)
        };
        let x = Tensor::<4>::from_data(
            TensorData::new(vec![1.0f32, 2.0, 3.0, 10.0, 20.0, 30.0], [1, 2, 1, 3]),
            &device,
        );
        assert_eq!(values(conv2d(&conv, x)), [21.5, 42.5, 63.5]);

        // Against burn's own convolution on random data: values, and the gradients of the
        // input and the weight.
        let ad = device.clone().autodiff();
        let conv = Conv2dConfig::new([8, 6], [1, 1]).init(&ad);
        let x = Tensor::<4>::random([2, 8, 5, 3], Distribution::Normal(0.0, 1.0), &ad);
        // Both layouts of the matrix product (`None`: burn's convolution).
        let run = |ours: Option<bool>| {
            let x = x.clone().require_grad();
            let y = match ours {
                Some(channel_major) => pointwise(&conv, x.clone(), channel_major),
                None => conv.forward(x.clone()),
            };
            let grads = (y.clone() * y.clone()).sum().backward();
            let gx = x.grad(&grads).unwrap();
            let gw = conv.weight.val().grad(&grads).unwrap();
            let gb = conv.bias.as_ref().unwrap().val().grad(&grads).unwrap();
            let flat = |t: Tensor<4>| t.flatten::<1>(0, 3);
            [flat(y.inner()), flat(gx), flat(gw), gb].map(values)
        };
        let close = |a: &[f32], b: &[f32]| {
            assert_eq!(a.len(), b.len());
            for (u, v) in a.iter().zip(b) {
                assert!((u - v).abs() <= 1e-4 * (1.0 + v.abs()), "{u} != {v}");
            }
        };
        let reference = run(None);
        for channel_major in [false, true] {
            for (ours, theirs) in run(Some(channel_major)).iter().zip(&reference) {
                close(ours, theirs);
            }
        }

        // The browser's classifier layer as a 1x1 convolution against burn's Linear.
        let fc = burn::nn::LinearConfig::new(12, 5).init(&ad);
        let x = Tensor::<2>::random([3, 12], Distribution::Normal(0.0, 1.0), &ad);
        let run = |ours: bool| {
            let x = x.clone().require_grad();
            let y = if ours {
                linear_as_conv(&fc, x.clone())
            } else {
                fc.forward(x.clone())
            };
            let grads = (y.clone() * y.clone()).sum().backward();
            let gx = x.grad(&grads).unwrap();
            let gw = fc.weight.val().grad(&grads).unwrap();
            let gb = fc.bias.as_ref().unwrap().val().grad(&grads).unwrap();
            (values(y.inner()), values(gx), values(gw), values(gb))
        };
        let (y, gx, gw, gb) = run(true);
        let (y_ref, gx_ref, gw_ref, gb_ref) = run(false);
        close(&y, &y_ref);
        close(&gx, &gx_ref);
        close(&gw, &gw_ref);
        close(&gb, &gb_ref);
    }

    #[test]
    fn a_folded_layer_names_its_path_and_each_path_is_burns_convolution_bias_and_relu6() {
        use crate::engine::test_util::assert_conv_bias_relu6;
        use burn::nn::PaddingConfig2d;
        let device = Device::flex();
        let c = 6;
        let layer = |conv: Conv2d| FoldedConv { conv, relu6: true };
        let depthwise = layer(
            Conv2dConfig::new([c, c], [3, 3])
                .with_groups(c)
                .with_padding(PaddingConfig2d::Same)
                .init(&device),
        );
        let pointwise = layer(Conv2dConfig::new([c, 4], [1, 1]).init(&device));
        let dense = layer(Conv2dConfig::new([c, 4], [3, 3]).init(&device));
        let x = Tensor::<4>::random([2, c, 7, 9], Distribution::Normal(0.0, 8.0), &device);
        // Natively on the CPU backend the depthwise and 1x1 layers take one pass of ours; a
        // dense 3x3 layer (the stem's kind) keeps burn's operations.
        assert_eq!(depthwise.path(&x), FoldedPath::Pass);
        assert_eq!(pointwise.path(&x), FoldedPath::Pass);
        assert_eq!(dense.path(&x), FoldedPath::Burn);
        // An input that tracks gradients keeps burn's operations.
        let tracked = Tensor::<4>::from_data(x.to_data(), &device.autodiff());
        assert_eq!(depthwise.path(&tracked), FoldedPath::Burn);
        assert_eq!(pointwise.path(&tracked), FoldedPath::Burn);
        for (what, l) in [
            ("depthwise", &depthwise),
            ("1x1", &pointwise),
            ("dense", &dense),
        ] {
            assert_conv_bias_relu6(what, l.forward(x.clone()), &l.conv, &x, true);
        }
    }

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
