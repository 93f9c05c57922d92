//! Pretrained weights: safetensors in the checkpoint's own (lukemelas) key names, read into
//! the burn model with every name and shape checked first, so a wrong file fails with a message
//! instead of a panic deep in a convolution.

use std::collections::HashMap;

use burn::tensor::{Device, Tensor, TensorData};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use super::EngineError;
use super::model::{
    BACKBONES, Backbone, BackboneKind, BackboneSpec, BlockSpec, Classifier, ConvBn, FEATURE_DIM,
    Head, LITE0, MbConv, STEM_CHANNELS,
};
use super::quant;

/// How a converted weights file stores its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// The checkpoint's own f32 values.
    F32,
    /// Half precision, half the size.
    F16,
    /// 8-bit weights with a scale per output channel (see [`quant`]): what the app downloads.
    Int8,
}

/// Name of the file `finetune weights` writes for `spec` (`efficientnet-lite0.int8.safetensors`).
pub fn weights_file(spec: &BackboneSpec, precision: Precision) -> String {
    let part = match precision {
        Precision::F32 => "",
        Precision::F16 => ".f16",
        Precision::Int8 => ".int8",
    };
    format!("{}{part}.safetensors", spec.id)
}

/// The copy the app downloads for `kind`: the smallest that keeps each golden photo's top-5
/// order and top-1 probability within 0.02 of PyTorch's (`tests/golden.rs`). Lite1's and
/// Lite2's 8-bit copies reorder a golden photo's top-5, so they come in half precision.
pub fn download_precision(kind: BackboneKind) -> Precision {
    match kind {
        BackboneKind::Lite0 => Precision::Int8,
        BackboneKind::Lite1 | BackboneKind::Lite2 => Precision::F16,
    }
}

/// Learnable parameters of `spec`'s ImageNet classifier (BatchNorm statistics not counted).
pub fn parameter_count(spec: &BackboneSpec) -> usize {
    expected_keys(spec, IMAGENET_CLASSES)
        .iter()
        .filter(|(k, _)| !k.contains("running_"))
        .map(|(_, s)| s.iter().product::<usize>())
        .sum()
}

/// Bytes of the tensors in the file the app downloads for `kind` (the header aside): 8-bit
/// weights with an f32 scale per output channel and the rest in f16, or all in f16.
pub fn download_bytes(kind: BackboneKind) -> usize {
    let precision = download_precision(kind);
    expected_keys(kind.spec(), IMAGENET_CLASSES)
        .iter()
        .map(|(_, shape)| {
            let n: usize = shape.iter().product();
            match precision {
                Precision::Int8 if shape.len() >= 2 => n + 4 * shape[0],
                Precision::F32 => 4 * n,
                _ => 2 * n,
            }
        })
        .sum()
}

/// Metadata key naming the backbone (its id) in converted weights and exported models.
pub const META_BACKBONE: &str = "backbone";
/// Dropout before `_fc` in EfficientNet-Lite (inactive at inference).
pub const HEAD_DROPOUT: f64 = 0.2;
/// Largest model file read (an exported Lite0 is 19 MB): checked before reading into memory.
pub const MAX_MODEL_BYTES: u64 = 256 << 20;
/// Classes of the ImageNet head shipped with the checkpoint.
pub const IMAGENET_CLASSES: usize = 1000;

/// Every parameter `spec`'s model reads, with its expected shape, in checkpoint order.
/// BatchNorm's `num_batches_tracked` is not read (it only matters to PyTorch's momentum-free mode).
pub fn expected_keys(spec: &BackboneSpec, classes: usize) -> Vec<(String, Vec<usize>)> {
    let mut keys = Vec::new();
    let mut conv_bn = |conv: String, bn: String, shape: Vec<usize>| {
        let channels = shape[0];
        keys.push((format!("{conv}.weight"), shape));
        for part in ["weight", "bias", "running_mean", "running_var"] {
            keys.push((format!("{bn}.{part}"), vec![channels]));
        }
    };
    conv_bn(
        "_conv_stem".into(),
        "_bn0".into(),
        vec![STEM_CHANNELS, 3, 3, 3],
    );
    for (i, b) in spec.blocks().iter().enumerate() {
        let p = format!("_blocks.{i}");
        if b.expand != 1 {
            conv_bn(
                format!("{p}._expand_conv"),
                format!("{p}._bn0"),
                vec![b.mid(), b.in_ch, 1, 1],
            );
        }
        conv_bn(
            format!("{p}._depthwise_conv"),
            format!("{p}._bn1"),
            vec![b.mid(), 1, b.kernel, b.kernel],
        );
        conv_bn(
            format!("{p}._project_conv"),
            format!("{p}._bn2"),
            vec![b.out_ch, b.mid(), 1, 1],
        );
    }
    conv_bn(
        "_conv_head".into(),
        "_bn1".into(),
        vec![FEATURE_DIM, spec.head_in(), 1, 1],
    );
    keys.push(("_fc.weight".into(), vec![classes, FEATURE_DIM]));
    keys.push(("_fc.bias".into(), vec![classes]));
    keys
}

/// Little-endian f32 bytes as values (the safetensors layout).
pub(crate) fn le_f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// A float tensor's values as f32 (`None` for other types).
fn floats(view: &TensorView<'_>) -> Option<Vec<f32>> {
    let data = view.data();
    Some(match view.dtype() {
        Dtype::F32 => le_f32s(data),
        Dtype::F16 => data
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::BF16 => data
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        _ => return None,
    })
}

/// Tensors of a safetensors file, decoded to f32 and checked against the model's layout.
pub struct WeightMap {
    file: String,
    tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
    /// The header's free-form metadata (class names etc. for trained models).
    pub metadata: HashMap<String, String>,
}

impl WeightMap {
    /// Parses a safetensors file (f32, f16 or bf16 floats, or 8-bit weights with per-channel
    /// scales, see [`quant`]). `file` names it in errors.
    pub fn from_safetensors(file: &str, bytes: &[u8]) -> Result<Self, EngineError> {
        let st = SafeTensors::deserialize(bytes)
            .map_err(|e| EngineError::weights(file, format!("not a safetensors file ({e})")))?;
        let metadata = SafeTensors::read_metadata(bytes)
            .ok()
            .and_then(|(_, m)| m.metadata().clone())
            .unwrap_or_default();
        let mut tensors = HashMap::new();
        for (name, view) in st.tensors() {
            // A scale is read with its 8-bit tensor.
            if name.ends_with(quant::SCALE_SUFFIX) {
                continue;
            }
            let values = match floats(&view) {
                Some(values) => values,
                None if view.dtype() == Dtype::I8 => {
                    let key = quant::scale_key(&name);
                    let scales =
                        st.tensor(&key)
                            .ok()
                            .and_then(|s| floats(&s))
                            .ok_or_else(|| {
                                EngineError::weights(
                                    file,
                                    format!("{name} is 8-bit without a float {key}"),
                                )
                            })?;
                    let channels = view.shape().first().copied().unwrap_or(0);
                    if scales.len() != channels {
                        return Err(EngineError::weights(
                            file,
                            format!("{name} has {channels} channels but {} scales", scales.len()),
                        ));
                    }
                    let q: Vec<i8> = view.data().iter().map(|&b| b as i8).collect();
                    quant::dequantize(&q, &scales)
                        .map_err(|e| EngineError::weights(file, format!("{name}: {e}")))?
                }
                // Integer buffers such as num_batches_tracked are not model inputs.
                None => continue,
            };
            tensors.insert(name, (view.shape().to_vec(), values));
        }
        Ok(Self {
            file: file.to_string(),
            tensors,
            metadata,
        })
    }

    /// Checks that every key `spec`'s model needs is present, float, and of the right shape.
    /// Reports all problems at once (first few), not just the first.
    pub fn validate(&self, spec: &BackboneSpec, classes: usize) -> Result<(), EngineError> {
        let mut problems = Vec::new();
        for (key, shape) in expected_keys(spec, classes) {
            match self.tensors.get(&key) {
                None => problems.push(format!("missing tensor `{key}`")),
                Some((found, _)) if *found != shape => problems.push(format!(
                    "`{key}` has shape {found:?}, the model needs {shape:?}"
                )),
                Some(_) => {}
            }
        }
        if problems.is_empty() {
            return Ok(());
        }
        let more = problems.len().saturating_sub(3);
        let mut reason = problems.into_iter().take(3).collect::<Vec<_>>().join("; ");
        if more > 0 {
            reason.push_str(&format!(" (and {more} more)"));
        }
        Err(EngineError::weights(&self.file, reason))
    }

    /// The backbone these weights are for: the one the metadata names, else the one whose
    /// layout the tensors fit (a file from elsewhere without metadata).
    pub fn backbone(&self) -> Result<&'static BackboneSpec, EngineError> {
        if let Some(id) = self.metadata.get(META_BACKBONE) {
            return BackboneKind::from_name(id)
                .map(BackboneKind::spec)
                .ok_or_else(|| {
                    EngineError::weights(
                        &self.file,
                        format!(
                            "made for backbone `{id}`, which this app does not have (it has {})",
                            BACKBONES.map(|s| s.id).join(", ")
                        ),
                    )
                });
        }
        let classes = self.head_classes()?;
        match BACKBONES
            .into_iter()
            .find(|s| self.validate(s, classes).is_ok())
        {
            Some(spec) => Ok(spec),
            None => self.validate(&LITE0, classes).map(|()| &LITE0),
        }
    }

    /// Number of classes of the `_fc` head in this file.
    pub fn head_classes(&self) -> Result<usize, EngineError> {
        match self.tensors.get("_fc.weight") {
            Some((shape, _)) if shape.len() == 2 && shape[1] == FEATURE_DIM => Ok(shape[0]),
            Some((shape, _)) => Err(EngineError::weights(
                &self.file,
                format!("`_fc.weight` has shape {shape:?}, expected [classes, {FEATURE_DIM}]"),
            )),
            None => Err(EngineError::weights(
                &self.file,
                "missing tensor `_fc.weight`",
            )),
        }
    }

    fn tensor<const D: usize>(&self, key: &str, device: &Device) -> Tensor<D> {
        // `validate` ran first, so the key exists with the right rank.
        let (shape, values) = &self.tensors[key];
        Tensor::from_data(TensorData::new(values.clone(), shape.clone()), device)
    }

    fn conv_bn(
        &self,
        conv: &str,
        bn: &str,
        stride: usize,
        groups: usize,
        relu6: bool,
        device: &Device,
    ) -> ConvBn {
        let part = |p: &str| self.tensor::<1>(&format!("{bn}.{p}"), device);
        ConvBn::from_parts(
            self.tensor::<4>(&format!("{conv}.weight"), device),
            [
                part("weight"),
                part("bias"),
                part("running_mean"),
                part("running_var"),
            ],
            stride,
            groups,
            relu6,
        )
    }

    fn block(&self, i: usize, spec: &BlockSpec, device: &Device) -> MbConv {
        let p = format!("_blocks.{i}");
        let expand = (spec.expand != 1).then(|| {
            self.conv_bn(
                &format!("{p}._expand_conv"),
                &format!("{p}._bn0"),
                1,
                1,
                true,
                device,
            )
        });
        MbConv {
            expand,
            depthwise: self.conv_bn(
                &format!("{p}._depthwise_conv"),
                &format!("{p}._bn1"),
                spec.stride,
                spec.mid(),
                true,
                device,
            ),
            project: self.conv_bn(
                &format!("{p}._project_conv"),
                &format!("{p}._bn2"),
                1,
                1,
                false,
                device,
            ),
            skip: spec.stride == 1 && spec.in_ch == spec.out_ch,
        }
    }

    /// Builds the whole classifier (its backbone + the file's `_fc` head) on `device`.
    pub fn classifier(&self, device: &Device) -> Result<Classifier, EngineError> {
        let spec = self.backbone()?;
        let classes = self.head_classes()?;
        self.validate(spec, classes)?;
        let backbone = Backbone {
            stem: self.conv_bn("_conv_stem", "_bn0", 2, 1, true, device),
            blocks: spec
                .blocks()
                .iter()
                .enumerate()
                .map(|(i, spec)| self.block(i, spec, device))
                .collect(),
            conv_head: self.conv_bn("_conv_head", "_bn1", 1, 1, true, device),
        };
        let head = Head::from_parts(
            self.tensor::<2>("_fc.weight", device),
            self.tensor::<1>("_fc.bias", device),
            HEAD_DROPOUT,
        );
        Ok(Classifier { backbone, head })
    }
}

/// Loads a classifier from safetensors bytes (the converted ImageNet checkpoint or a model
/// trained here). `file` names the source in errors.
pub fn load_classifier(
    file: &str,
    bytes: &[u8],
    device: &Device,
) -> Result<Classifier, EngineError> {
    WeightMap::from_safetensors(file, bytes)?.classifier(device)
}

/// A parameter's values, read back from the device.
async fn values<const D: usize>(t: Tensor<D>) -> Result<(Vec<usize>, Vec<f32>), EngineError> {
    let shape = t.dims().to_vec();
    Ok((shape, super::read_f32(t).await?))
}

async fn push_conv_bn(
    out: &mut Vec<(String, Vec<usize>, Vec<f32>)>,
    layer: &ConvBn,
    conv: &str,
    bn: &str,
) -> Result<(), EngineError> {
    let (s, v) = values(layer.conv.weight.val()).await?;
    out.push((format!("{conv}.weight"), s, v));
    let parts = [
        ("weight", layer.bn.gamma.val()),
        ("bias", layer.bn.beta.val()),
        ("running_mean", layer.bn.running_mean.value()),
        ("running_var", layer.bn.running_var.value()),
    ];
    for (name, t) in parts {
        let (s, v) = values(t).await?;
        out.push((format!("{bn}.{name}"), s, v));
    }
    Ok(())
}

/// Every parameter of `model` under the checkpoint's key names, in PyTorch layouts
/// (Linear weights `[out, in]`), so `load_state_dict` in PyTorch accepts them.
pub async fn named_tensors(
    model: &Classifier,
) -> Result<Vec<(String, Vec<usize>, Vec<f32>)>, EngineError> {
    let mut out = Vec::new();
    let b = &model.backbone;
    push_conv_bn(&mut out, &b.stem, "_conv_stem", "_bn0").await?;
    for (i, block) in b.blocks.iter().enumerate() {
        let p = format!("_blocks.{i}");
        if let Some(expand) = &block.expand {
            push_conv_bn(
                &mut out,
                expand,
                &format!("{p}._expand_conv"),
                &format!("{p}._bn0"),
            )
            .await?;
        }
        push_conv_bn(
            &mut out,
            &block.depthwise,
            &format!("{p}._depthwise_conv"),
            &format!("{p}._bn1"),
        )
        .await?;
        push_conv_bn(
            &mut out,
            &block.project,
            &format!("{p}._project_conv"),
            &format!("{p}._bn2"),
        )
        .await?;
    }
    push_conv_bn(&mut out, &b.conv_head, "_conv_head", "_bn1").await?;
    let (s, v) = values(model.head.fc.weight.val().transpose()).await?;
    out.push(("_fc.weight".into(), s, v));
    if let Some(bias) = &model.head.fc.bias {
        let (s, v) = values(bias.val()).await?;
        out.push(("_fc.bias".into(), s, v));
    }
    Ok(out)
}

/// Metadata key holding the class names (JSON list) of a trained model.
pub const META_CLASSES: &str = "classes";

/// A trained model as safetensors bytes: checkpoint key names, f32, and `metadata` (class names
/// under [`META_CLASSES`], backbone, preprocessing, settings, metrics) in the header.
pub async fn export_safetensors(
    model: &Classifier,
    metadata: HashMap<String, String>,
) -> Result<Vec<u8>, EngineError> {
    let tensors = named_tensors(model).await?;
    let mut bytes: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> =
        Vec::with_capacity(tensors.len() * 5 / 4);
    for (k, s, v) in tensors {
        // PyTorch's BatchNorm also keeps a step counter; write it (0) so the key set is the
        // checkpoint's own and `load_state_dict(strict=True)` is satisfied on every version.
        if let Some(bn) = k.strip_suffix(".running_var") {
            bytes.push((
                format!("{bn}.num_batches_tracked"),
                Dtype::I64,
                Vec::new(),
                0i64.to_le_bytes().to_vec(),
            ));
        }
        bytes.push((
            k,
            Dtype::F32,
            s,
            v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        ));
    }
    let views = bytes
        .iter()
        .map(|(k, d, s, b)| {
            safetensors::tensor::TensorView::new(*d, s.clone(), b)
                .map(|v| (k.clone(), v))
                .map_err(|e| EngineError::weights(k, format!("cannot serialise ({e})")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    safetensors::serialize(views, Some(metadata))
        .map_err(|e| EngineError::weights("model", format!("cannot serialise ({e})")))
}

/// Class names stored in a trained model's metadata, if any.
pub fn class_names(map: &WeightMap) -> Option<Vec<String>> {
    map.metadata
        .get(META_CLASSES)
        .and_then(|s| serde_json::from_str(s).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_has_the_checkpoint_parameter_count() {
        // 296 tensors in the .pth = these float tensors + one num_batches_tracked per BN.
        let keys = expected_keys(&LITE0, 1000);
        let bns = keys
            .iter()
            .filter(|(k, _)| k.ends_with(".running_var"))
            .count();
        assert_eq!(keys.len() + bns, 296);
        let params: usize = keys
            .iter()
            .filter(|(k, _)| !k.contains("running_"))
            .map(|(_, s)| s.iter().product::<usize>())
            .sum();
        // EfficientNet-Lite0 has about 4.65 million parameters.
        assert!((4_600_000..4_700_000).contains(&params), "{params}");
    }

    #[test]
    fn lite1_and_lite2_layouts_have_their_checkpoints_tensor_counts() {
        // 386 tensors in each .pth (the issue); Lite2 is about 6.1 million parameters.
        use crate::engine::model::{LITE1, LITE2};
        for (spec, params) in [
            (&LITE1, 5_300_000..5_500_000),
            (&LITE2, 6_000_000..6_200_000),
        ] {
            let keys = expected_keys(spec, 1000);
            let bns = keys
                .iter()
                .filter(|(k, _)| k.ends_with(".running_var"))
                .count();
            assert_eq!(keys.len() + bns, 386, "{}", spec.id);
            let n: usize = keys
                .iter()
                .filter(|(k, _)| !k.contains("running_"))
                .map(|(_, s)| s.iter().product::<usize>())
                .sum();
            assert!(params.contains(&n), "{}: {n}", spec.id);
        }
        assert_eq!(
            weights_file(&LITE1, Precision::Int8),
            "efficientnet-lite1.int8.safetensors"
        );
    }

    #[test]
    fn int8_tensors_need_one_scale_per_channel() {
        let q = [1u8, 2, 3, 4];
        fn tensor(dtype: Dtype, shape: Vec<usize>, data: &[u8]) -> TensorView<'_> {
            TensorView::new(dtype, shape, data).unwrap()
        }
        let scales: Vec<u8> = [0.5f32, 2.0].iter().flat_map(|s| s.to_le_bytes()).collect();
        let one_scale = 0.5f32.to_le_bytes();
        let file =
            |tensors: Vec<(String, TensorView<'_>)>| safetensors::serialize(tensors, None).unwrap();
        // Two channels of two values, scaled 0.5 and 2.
        let good = file(vec![
            ("w".into(), tensor(Dtype::I8, vec![2, 2], &q)),
            (quant::scale_key("w"), tensor(Dtype::F32, vec![2], &scales)),
        ]);
        let map = WeightMap::from_safetensors("q.safetensors", &good).unwrap();
        assert_eq!(map.tensors["w"], (vec![2, 2], vec![0.5, 1.0, 6.0, 8.0]));
        assert!(!map.tensors.contains_key(&quant::scale_key("w")));
        let missing = file(vec![("w".into(), tensor(Dtype::I8, vec![2, 2], &q))]);
        let err = WeightMap::from_safetensors("q.safetensors", &missing)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("q.safetensors") && err.contains("w is 8-bit"),
            "{err}"
        );
        let short = file(vec![
            ("w".into(), tensor(Dtype::I8, vec![2, 2], &q)),
            (
                quant::scale_key("w"),
                tensor(Dtype::F32, vec![1], &one_scale),
            ),
        ]);
        let err = WeightMap::from_safetensors("q.safetensors", &short)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("2 channels but 1 scales"), "{err}");
    }

    #[test]
    fn garbage_is_a_clear_error() {
        let err = WeightMap::from_safetensors("x.safetensors", b"not a file")
            .err()
            .map(|e| e.to_string());
        assert!(
            err.is_some_and(|e| e.contains("x.safetensors") && e.contains("not a safetensors"))
        );
    }

    #[test]
    fn wrong_shape_is_named() {
        let data = vec![0u8; 4 * 10];
        let view = safetensors::tensor::TensorView::new(Dtype::F32, vec![10], &data).unwrap();
        let bytes = safetensors::serialize([("_fc.weight", view)], None).unwrap();
        let map = WeightMap::from_safetensors("m.safetensors", &bytes).unwrap();
        let err = map.head_classes().unwrap_err().to_string();
        assert!(err.contains("_fc.weight") && err.contains("[10]"), "{err}");
        let err = map.validate(&LITE0, 1000).unwrap_err().to_string();
        assert!(err.contains("missing tensor `_conv_stem.weight`"), "{err}");
    }
}
