//! What the models say: decoding photos, predictions, Grad-CAM, the feature space, layer
//! views, a profile, and loading a model file.

use std::rc::Rc;

use image::RgbImage;

use crate::app::protocol::{Explained, Which};
use crate::engine::data::preprocess;
use crate::engine::data::{self};
use crate::engine::insight::gradcam;
use crate::engine::insight::inference::{ClassScore, Predictor, top_k};
use crate::engine::insight::layer_views::{self, LayerView};
use crate::engine::insight::pca;
use crate::engine::model::BackboneKind;

use super::Held;

/// A photo file at `backbone`'s working size (decoded here, off the page).
pub(super) fn decode(
    file: &str,
    bytes: Option<Vec<u8>>,
    backbone: BackboneKind,
) -> Result<RgbImage, String> {
    let bytes = bytes.ok_or("no photo was sent")?;
    data::load_sample(file, &bytes, 0, backbone.spec())
        .map(|s| s.image)
        .map_err(|e| e.to_string())
}

pub(super) async fn classify(
    predictor: &Predictor,
    file: &str,
    bytes: Option<Vec<u8>>,
    top_k: usize,
) -> Result<Vec<ClassScore>, String> {
    let bytes = bytes.ok_or("no photo was sent")?;
    predictor
        .predict_image(file, &bytes, top_k)
        .await
        .map(|p| p.top)
        .map_err(|e| e.to_string())
}

/// Grad-CAM of `which` model on a photo (a file, or working-size pixels), for `classes` (none:
/// the predicted class); each heatmap with its PNG over the network's input.
pub(super) async fn explain(
    state: &Held,
    file: &str,
    which: Which,
    pixels: Option<(u32, u32)>,
    bytes: Option<Vec<u8>>,
    classes: Vec<usize>,
) -> Result<(Vec<Explained>, Vec<Vec<u8>>), String> {
    let predictor = match which {
        Which::ImageNet => state.imagenet().await?,
        Which::Trained => state
            .trained
            .borrow()
            .clone()
            .ok_or("there is no trained model yet")?,
    };
    let bytes = bytes.ok_or("no photo was sent")?;
    let spec = &predictor.spec;
    let input = match pixels {
        Some((w, h)) => {
            let image = RgbImage::from_raw(w, h, bytes)
                .ok_or_else(|| format!("{file}: pixel buffer does not match its size"))?;
            preprocess::eval_transform(&image, spec)
        }
        None => preprocess::eval_transform(
            &preprocess::decode(file, &bytes).map_err(|e| e.to_string())?,
            spec,
        ),
    };
    let cam = gradcam::grad_cam(&predictor.model, &input, spec, &classes, &predictor.device)
        .await
        .map_err(|e| e.to_string())?;
    let scores = top_k(&cam.logits, cam.logits.len(), &predictor.labels);
    let heats = cam.heats;
    let mut pngs = Vec::with_capacity(heats.len());
    let mut out = Vec::with_capacity(heats.len());
    for heat in heats {
        pngs.push(preprocess::png(&gradcam::overlay(&input, &heat)).map_err(|e| e.to_string())?);
        let score = scores.iter().find(|s| s.index == heat.class);
        out.push(Explained {
            label: score.map_or_else(|| format!("class {}", heat.class), |s| s.label.clone()),
            prob: score.map_or(0.0, |s| s.prob),
            quadrants: heat.quadrant_shares(),
            heat,
        });
    }
    Ok((out, pngs))
}

/// Where the time goes on the device in use (the pretrained network, pattern images).
pub(super) async fn profile(
    state: &Held,
    batch: usize,
    passes: &[crate::engine::measure::profile::Pass],
) -> Result<Vec<crate::engine::measure::profile::Profiles>, String> {
    let p = state.imagenet().await?;
    crate::engine::measure::profile::run(&p.model, &p.spec, batch, 1, passes, &p.device)
        .await
        .map_err(|e| e.to_string())
}

/// The last run's photos in the feature space, before and (when the backbone learned) after.
pub(super) async fn feature_space(state: &Held) -> Result<pca::FeatureSpace, String> {
    // A clone of the `Rc`: no borrow is held while the device works (a run may start meanwhile).
    let run = state.last_run.borrow().clone();
    let run = run.ok_or("no run has finished in this session yet")?;
    let p = &run.trained;
    pca::feature_space(
        &run.pretrained,
        &p.model.backbone,
        run.backbone_trained,
        &run.dataset,
        &run.val_predicted,
        &p.spec,
        &p.device,
    )
    .await
    .map_err(|e| e.to_string())
}

/// The pretrained network's layer views of a photo file, each grid as a PNG.
pub(super) async fn layer_views(
    state: &Held,
    file: &str,
    bytes: Option<Vec<u8>>,
) -> Result<(Vec<LayerView>, Vec<Vec<u8>>), String> {
    let predictor = state.imagenet().await?;
    let bytes = bytes.ok_or("no photo was sent")?;
    let input = preprocess::eval_transform(
        &preprocess::decode(file, &bytes).map_err(|e| e.to_string())?,
        &predictor.spec,
    );
    let views =
        layer_views::layer_views(&predictor.model, &input, &predictor.spec, &predictor.device)
            .await
            .map_err(|e| e.to_string())?;
    let mut pngs = Vec::with_capacity(views.len());
    let mut out = Vec::with_capacity(views.len());
    for (view, grid) in views {
        pngs.push(preprocess::png(&grid).map_err(|e| e.to_string())?);
        out.push(view);
    }
    Ok((out, pngs))
}

pub(super) async fn load_model(
    state: &Held,
    file: &str,
    bytes: Option<Vec<u8>>,
) -> Result<Vec<String>, String> {
    let bytes = bytes.ok_or("no model was sent")?;
    let device = state.imagenet().await?.device.clone();
    let predictor = Predictor::from_model_file(file, &bytes, &device).map_err(|e| e.to_string())?;
    let labels = predictor.labels.clone();
    *state.trained.borrow_mut() = Some(Rc::new(predictor));
    Ok(labels)
}
