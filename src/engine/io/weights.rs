//! Pretrained weights: safetensors in the checkpoint's own (lukemelas) key names, read into
//! the burn model with every name and shape checked first, so a wrong file fails with a message
//! instead of a panic deep in a convolution.

use std::collections::{HashMap, HashSet};

use burn::tensor::{Device, Tensor, TensorData};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use crate::engine::EngineError;
use crate::engine::io::quant;
use crate::engine::limits::{MAX_HEAD_CLASSES, MAX_MODEL_BYTES, MIN_CLASSES, mb};
use crate::engine::model::{
    BACKBONES, Backbone, BackboneKind, BackboneSpec, BlockSpec, Classifier, ConvBn, FEATURE_DIM,
    Head, LITE0, MbConv, STEM_CHANNELS,
};

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
const HEAD_DROPOUT: f64 = 0.2;
/// Classes of the ImageNet head shipped with the checkpoint.
pub const IMAGENET_CLASSES: usize = 1000;

/// Every parameter `spec`'s model reads, with its expected shape, in checkpoint order.
/// BatchNorm's `num_batches_tracked` is not read (it only matters to PyTorch's momentum-free mode).
fn expected_keys(spec: &BackboneSpec, classes: usize) -> Vec<(String, Vec<usize>)> {
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

/// A file's tensor as the header describes it.
struct Entry<'a> {
    shape: Vec<usize>,
    view: TensorView<'a>,
}

/// Whether `name` is a tensor a model file may carry beside the ones the model reads: an
/// 8-bit weight's scales, or PyTorch's BatchNorm step counter.
fn is_companion(name: &str, expected: &HashSet<&str>) -> bool {
    let of_expected = |base: &str| expected.contains(base);
    if let Some(base) = name.strip_suffix(quant::SCALE_SUFFIX) {
        return of_expected(base);
    }
    name.strip_suffix(".num_batches_tracked")
        .is_some_and(|bn| of_expected(&format!("{bn}.running_var")))
}

/// The number of classes of the `_fc` head, from the header alone.
fn head_classes(file: &str, entries: &HashMap<String, Entry<'_>>) -> Result<usize, EngineError> {
    let classes = match entries.get("_fc.weight").map(|e| e.shape.as_slice()) {
        Some(&[classes, FEATURE_DIM]) => classes,
        Some(shape) => {
            return Err(EngineError::weights(
                file,
                format!("`_fc.weight` has shape {shape:?}, expected [classes, {FEATURE_DIM}]"),
            ));
        }
        None => return Err(EngineError::weights(file, "missing tensor `_fc.weight`")),
    };
    if classes < MIN_CLASSES {
        return Err(EngineError::weights(
            file,
            format!("`_fc.weight` has {classes} classes; a model needs at least {MIN_CLASSES}"),
        ));
    }
    if classes > MAX_HEAD_CLASSES {
        return Err(EngineError::weights(
            file,
            format!(
                "`_fc.weight` has {classes} classes, more than the {MAX_HEAD_CLASSES} a model may have"
            ),
        ));
    }
    Ok(classes)
}

/// What does not fit `spec`'s model with `classes` outputs (missing, misshapen, of another
/// type, or unknown tensors), the first few named; empty when the layout fits.
fn layout_problems(
    spec: &BackboneSpec,
    classes: usize,
    entries: &HashMap<String, Entry<'_>>,
) -> Vec<String> {
    let keys = expected_keys(spec, classes);
    let expected: HashSet<&str> = keys.iter().map(|(k, _)| k.as_str()).collect();
    let mut problems = Vec::new();
    for (key, shape) in &keys {
        match entries.get(key) {
            None => problems.push(format!("missing tensor `{key}`")),
            Some(e) if e.shape != *shape => problems.push(format!(
                "`{key}` has shape {:?}, the model needs {shape:?}",
                e.shape
            )),
            Some(e) if !is_float(e.view.dtype()) && e.view.dtype() != Dtype::I8 => {
                problems.push(format!(
                    "`{key}` is {:?}, not a float or 8-bit tensor",
                    e.view.dtype()
                ))
            }
            Some(_) => {}
        }
    }
    let mut unknown: Vec<&String> = entries
        .keys()
        .filter(|k| !expected.contains(k.as_str()) && !is_companion(k, &expected))
        .collect();
    unknown.sort();
    problems.extend(
        unknown
            .into_iter()
            .map(|k| format!("unknown tensor `{k}` (not part of {})", spec.name)),
    );
    problems
}

fn is_float(dtype: Dtype) -> bool {
    matches!(dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16)
}

/// Problems joined for one message: the first three, then how many more.
fn summary(file: &str, problems: Vec<String>) -> EngineError {
    let more = problems.len().saturating_sub(3);
    let mut reason = problems.into_iter().take(3).collect::<Vec<_>>().join("; ");
    if more > 0 {
        reason.push_str(&format!(" (and {more} more)"));
    }
    EngineError::weights(file, reason)
}

/// One tensor's values as f32, 8-bit ones scaled by their per-channel scales.
fn values_of(
    file: &str,
    st: &SafeTensors<'_>,
    name: &str,
    view: &TensorView<'_>,
) -> Result<Vec<f32>, EngineError> {
    if let Some(values) = floats(view) {
        return Ok(values);
    }
    let key = quant::scale_key(name);
    let scales = st
        .tensor(&key)
        .ok()
        .and_then(|s| floats(&s))
        .ok_or_else(|| {
            EngineError::weights(file, format!("{name} is 8-bit without a float {key}"))
        })?;
    let channels = view.shape().first().copied().unwrap_or(0);
    if scales.len() != channels {
        return Err(EngineError::weights(
            file,
            format!("{name} has {channels} channels but {} scales", scales.len()),
        ));
    }
    let q: Vec<i8> = view.data().iter().map(|&b| b as i8).collect();
    quant::dequantize(&q, &scales).map_err(|e| EngineError::weights(file, format!("{name}: {e}")))
}

/// Tensors of a model file, checked against the model's layout from the header alone (so a
/// wrong or oversized file costs nothing), then decoded to f32 with every value checked finite.
pub struct WeightMap {
    file: String,
    spec: &'static BackboneSpec,
    classes: usize,
    tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
    /// The header's free-form metadata (class names etc. for trained models).
    pub metadata: HashMap<String, String>,
}

impl WeightMap {
    /// Parses a model file (f32, f16 or bf16 floats, or 8-bit weights with per-channel scales,
    /// see [`quant`]). `file` names it in errors. Refused, naming the tensor: a layout that is
    /// not one of the backbones' with 2 to [`MAX_HEAD_CLASSES`] classes, unknown tensors, and
    /// values that are not finite (or a negative BatchNorm variance).
    pub fn from_safetensors(file: &str, bytes: &[u8]) -> Result<Self, EngineError> {
        if bytes.len() as u64 > MAX_MODEL_BYTES {
            return Err(EngineError::weights(
                file,
                format!(
                    "{} MB is more than the {} MB a model file may have",
                    mb(bytes.len() as u64),
                    mb(MAX_MODEL_BYTES)
                ),
            ));
        }
        let st = SafeTensors::deserialize(bytes)
            .map_err(|e| EngineError::weights(file, format!("not a safetensors file ({e})")))?;
        let metadata = SafeTensors::read_metadata(bytes)
            .ok()
            .and_then(|(_, m)| m.metadata().clone())
            .unwrap_or_default();
        let entries: HashMap<String, Entry<'_>> = st
            .tensors()
            .into_iter()
            .map(|(name, view)| {
                let shape = view.shape().to_vec();
                (name, Entry { shape, view })
            })
            .collect();
        let classes = head_classes(file, &entries)?;
        let check = |spec: &'static BackboneSpec| (spec, layout_problems(spec, classes, &entries));
        let (spec, problems) = match metadata.get(META_BACKBONE) {
            Some(id) => check(BackboneKind::from_name(id).map(BackboneKind::spec).ok_or_else(
                || {
                    EngineError::weights(
                        file,
                        format!(
                            "made for backbone `{id}`, which this app does not have (it has {})",
                            BACKBONES.map(|s| s.id).join(", ")
                        ),
                    )
                },
            )?),
            // A file from elsewhere without metadata: the backbone whose layout it fits.
            None => BACKBONES
                .into_iter()
                .map(check)
                .find(|(_, problems)| problems.is_empty())
                .unwrap_or_else(|| check(&LITE0)),
        };
        if !problems.is_empty() {
            return Err(summary(file, problems));
        }
        let mut tensors = HashMap::new();
        for (name, shape) in expected_keys(spec, classes) {
            let values = values_of(file, &st, &name, &entries[&name].view)?;
            if let Some(i) = values.iter().position(|v| !v.is_finite()) {
                return Err(EngineError::weights(
                    file,
                    format!(
                        "`{name}` holds a value that is not a finite number ({} at {i})",
                        values[i]
                    ),
                ));
            }
            if name.ends_with(".running_var") && values.iter().any(|&v| v < 0.0) {
                return Err(EngineError::weights(
                    file,
                    format!("`{name}` holds a negative variance"),
                ));
            }
            tensors.insert(name, (shape, values));
        }
        Ok(Self {
            file: file.to_string(),
            spec,
            classes,
            tensors,
            metadata,
        })
    }

    /// Checks that these weights are `spec`'s model with `classes` outputs.
    pub fn validate(&self, spec: &BackboneSpec, classes: usize) -> Result<(), EngineError> {
        if self.spec.id != spec.id || self.classes != classes {
            return Err(EngineError::weights(
                &self.file,
                format!(
                    "{} with {} classes, expected {} with {classes}",
                    self.spec.name, self.classes, spec.name
                ),
            ));
        }
        Ok(())
    }

    /// The backbone these weights are for: the one the metadata names, else the one whose
    /// layout the tensors fit.
    pub fn backbone(&self) -> &'static BackboneSpec {
        self.spec
    }

    /// Number of classes of the `_fc` head in this file.
    pub fn head_classes(&self) -> usize {
        self.classes
    }

    fn tensor<const D: usize>(&self, key: &str, device: &Device) -> Tensor<D> {
        // The layout was checked on reading, so the key exists with the right rank.
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
    pub fn classifier(&self, device: &Device) -> Classifier {
        let spec = self.spec;
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
        Classifier { backbone, head }
    }
}

/// Loads a classifier from safetensors bytes (the converted ImageNet checkpoint or a model
/// trained here). `file` names the source in errors.
pub fn load_classifier(
    file: &str,
    bytes: &[u8],
    device: &Device,
) -> Result<Classifier, EngineError> {
    Ok(WeightMap::from_safetensors(file, bytes)?.classifier(device))
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
        let values = |bytes: &[u8]| {
            let st = SafeTensors::deserialize(bytes).unwrap();
            let view = st.tensor("w").unwrap();
            values_of("q.safetensors", &st, "w", &view)
        };
        // Two channels of two values, scaled 0.5 and 2.
        let good = file(vec![
            ("w".into(), tensor(Dtype::I8, vec![2, 2], &q)),
            (quant::scale_key("w"), tensor(Dtype::F32, vec![2], &scales)),
        ]);
        assert_eq!(values(&good).unwrap(), vec![0.5, 1.0, 6.0, 8.0]);
        let missing = file(vec![("w".into(), tensor(Dtype::I8, vec![2, 2], &q))]);
        let err = values(&missing).unwrap_err().to_string();
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
        let err = values(&short).unwrap_err().to_string();
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

    /// A Lite0 model file of `classes` outputs (zeros, unit variances), with `change` applied
    /// to its tensors before writing.
    fn model_file(
        classes: usize,
        change: impl Fn(&mut Vec<(String, Vec<usize>, Vec<f32>)>),
    ) -> Vec<u8> {
        let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = expected_keys(&LITE0, classes)
            .into_iter()
            .map(|(k, shape)| {
                let fill = if k.ends_with("running_var") { 1.0 } else { 0.0 };
                let n = shape.iter().product();
                (k, shape, vec![fill; n])
            })
            .collect();
        change(&mut tensors);
        let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
            .into_iter()
            .map(|(k, s, v)| (k, s, v.iter().flat_map(|x| x.to_le_bytes()).collect()))
            .collect();
        let views = bytes.iter().map(|(k, s, b)| {
            (
                k.clone(),
                TensorView::new(Dtype::F32, s.clone(), b).unwrap(),
            )
        });
        safetensors::serialize(views, None).unwrap()
    }

    fn refusal(bytes: &[u8]) -> String {
        match WeightMap::from_safetensors("m.safetensors", bytes) {
            Ok(_) => panic!("accepted"),
            Err(e) => e.to_string(),
        }
    }

    fn set(tensors: &mut [(String, Vec<usize>, Vec<f32>)], key: &str, value: f32) {
        let t = tensors.iter_mut().find(|(k, _, _)| k == key).unwrap();
        t.2[0] = value;
    }

    #[test]
    fn a_model_file_of_two_classes_loads() {
        let map = WeightMap::from_safetensors("m.safetensors", &model_file(2, |_| {})).unwrap();
        assert_eq!((map.backbone().id, map.head_classes()), (LITE0.id, 2));
    }

    #[test]
    fn a_head_of_fewer_than_two_or_too_many_classes_is_refused() {
        for classes in [0, 1] {
            let err = refusal(&model_file(classes, |_| {}));
            assert!(
                err.contains("m.safetensors") && err.contains("at least 2"),
                "{err}"
            );
        }
        let err = refusal(&model_file(MAX_HEAD_CLASSES + 1, |_| {}));
        assert!(err.contains("1001 classes"), "{err}");
    }

    #[test]
    fn non_finite_weights_and_negative_variances_are_refused_by_name() {
        for (key, value) in [
            ("_fc.weight", f32::NAN),
            ("_bn1.running_var", f32::INFINITY),
            ("_blocks.3._depthwise_conv.weight", f32::NEG_INFINITY),
        ] {
            let err = refusal(&model_file(2, |t| set(t, key, value)));
            assert!(
                err.contains(&format!("`{key}`")) && err.contains("finite"),
                "{err}"
            );
        }
        let err = refusal(&model_file(2, |t| set(t, "_bn0.running_var", -1.0)));
        assert!(
            err.contains("`_bn0.running_var`") && err.contains("negative"),
            "{err}"
        );
    }

    #[test]
    fn unknown_and_misshapen_tensors_are_named() {
        let err = refusal(&model_file(2, |t| {
            t.push(("extra".into(), vec![4], vec![0.0; 4]))
        }));
        assert!(err.contains("unknown tensor `extra`"), "{err}");
        let err = refusal(&model_file(2, |t| {
            t.retain(|(k, _, _)| k != "_conv_stem.weight")
        }));
        assert!(err.contains("missing tensor `_conv_stem.weight`"), "{err}");
        let err = refusal(&model_file(2, |t| {
            let fc = t.iter_mut().find(|(k, _, _)| k == "_fc.bias").unwrap();
            *fc = ("_fc.bias".into(), vec![3], vec![0.0; 3]);
        }));
        assert!(err.contains("`_fc.bias` has shape [3]"), "{err}");
        let data = vec![0u8; 4 * 10];
        let view = TensorView::new(Dtype::F32, vec![10], &data).unwrap();
        let bytes = safetensors::serialize([("_fc.weight", view)], None).unwrap();
        let err = refusal(&bytes);
        assert!(err.contains("_fc.weight") && err.contains("[10]"), "{err}");
    }
}
