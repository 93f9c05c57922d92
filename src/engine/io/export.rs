//! A trained model as a file in the app's format: safetensors with the checkpoint's tensor
//! names (PyTorch loads it with the reference definition) and metadata in the header (class
//! names, backbone, preprocessing, head, settings, metrics), which the app and
//! `finetune predict --model` read back.

use std::collections::HashMap;

use burn::tensor::Tensor;
use safetensors::Dtype;

use crate::engine::EngineError;
use crate::engine::io::weights::{META_BACKBONE, WeightMap};
use crate::engine::model::{Classifier, ConvBn};
use crate::engine::train::config::TrainConfig;
use crate::engine::train::report::TrainReport;

/// A parameter's values, read back from the device.
async fn values<const D: usize>(t: Tensor<D>) -> Result<(Vec<usize>, Vec<f32>), EngineError> {
    let shape = t.dims().to_vec();
    Ok((shape, crate::engine::read_f32(t).await?))
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

/// Header metadata of an exported model: class names (read back by import), backbone,
/// preprocessing, head layout, training settings and the best epoch's metrics.
pub fn export_metadata(
    classes: &[String],
    cfg: &TrainConfig,
    report: &TrainReport,
) -> std::collections::HashMap<String, String> {
    let json = |v: serde_json::Value| v.to_string();
    [
        (META_CLASSES, json(serde_json::json!(classes))),
        (META_BACKBONE, cfg.backbone.spec().id.to_string()),
        (
            "preprocessing",
            json(serde_json::json!(cfg.backbone.spec())),
        ),
        (
            "head",
            json(serde_json::json!({"layout": "dropout+linear", "dropout": cfg.dropout})),
        ),
        ("training", cfg.to_string()),
        (
            "metrics",
            json(serde_json::json!({
                "val_acc": report.val_acc,
                "best_epoch": report.best_epoch,
                "per_class_acc": report.per_class_acc,
            })),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}
