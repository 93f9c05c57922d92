//! The frozen part's pass, shared with helpers: other workers, each with its own CPU device and
//! its own copy of the pretrained network, that run the same frozen layers on a share of the
//! images. In the browser burn's CPU backend runs on one thread per worker (threads would need
//! cross-origin isolation, which a plain static host does not give), so helpers are how the
//! feature pass, the cost of head training, uses more than one core. Natively there are none.

use std::future::Future;
use std::ops::Range;
use std::pin::Pin;

use burn::tensor::{Device, Tensor, TensorData};
use image::RgbImage;

use crate::engine::EngineError;
use crate::engine::data::preprocess;
use crate::engine::model::{Backbone, BackboneSpec, Classifier, FEATURE_DIM, Head};
use crate::engine::read_f32;
use crate::engine::train::plan::Unfreeze;
use crate::engine::train::split::{Frozen, even_ranges, split};

/// A helper's answer: the boundary outputs of its images, row-major, or why it failed.
pub type HelperFuture = Pin<Box<dyn Future<Output = Result<Vec<f32>, String>>>>;

/// Workers that can run the pretrained network's frozen part on images.
pub trait Helpers {
    /// How many helpers are ready now.
    fn ready(&self) -> usize;
    /// Starts helper `index` (below [`Helpers::ready`]) on `images` through the frozen part
    /// below `unfreeze`, at once: the work must go on while the caller computes its own share.
    fn start(&self, index: usize, unfreeze: Unfreeze, images: &[RgbImage]) -> HelperFuture;
}

/// Fewest images worth sending to a helper (below that the messages cost more than they save).
const MIN_SHARE: usize = 2;

/// Contiguous shares of `n` images for the caller (first) and up to `helpers` helpers, sizes
/// differing by at most one; fewer parts when a share would fall below [`MIN_SHARE`].
pub fn shares(n: usize, helpers: usize) -> Vec<Range<usize>> {
    even_ranges(n, (helpers + 1).min((n / MIN_SHARE).max(1)))
}

/// The frozen part of the pretrained `backbone` below `unfreeze`: what a helper builds once
/// per stage. (Frozen layers are never trained, and a run's stages only unfreeze more, so this
/// is the same frozen part the run itself uses.)
pub fn frozen_part(backbone: &Backbone, unfreeze: Unfreeze, device: &Device) -> Frozen {
    // A zero head (it is split off and dropped): no draw from the device's random stream,
    // which a run on the same device relies on.
    let head = Head::from_parts(
        Tensor::zeros([2, FEATURE_DIM], device),
        Tensor::zeros([2], device),
        0.0,
    );
    let model = Classifier {
        backbone: backbone.clone(),
        head,
    };
    split(model, unfreeze).0
}

/// The frozen part's output on `images` in batches of `batch`, kept on the device;
/// `progress(done)` fires after each batch has really been computed, and the pass ends with
/// [`EngineError::Cancelled`] there when it returns `false` (a Cancel waits one batch at most).
pub async fn frozen_pass(
    frozen: &Frozen,
    images: &[RgbImage],
    spec: &BackboneSpec,
    batch: usize,
    device: &Device,
    mut progress: impl FnMut(usize) -> bool,
) -> Result<Vec<Tensor<4>>, EngineError> {
    let mut parts = Vec::new();
    let mut done = 0;
    for chunk in images.chunks(batch.max(1)) {
        let out = frozen.forward(preprocess::batch_tensor(chunk, spec, device));
        // Reading one value waits for the batch, so the progress is real and the GPU queue short.
        read_f32(out.clone().flatten::<1>(0, 3).narrow(0, 0, 1)).await?;
        done += chunk.len();
        crate::engine::let_host_run().await;
        if !progress(done) {
            return Err(EngineError::Cancelled);
        }
        parts.push(out);
    }
    Ok(parts)
}

/// A helper's work: the frozen part's output on `images`, as floats.
pub async fn helper_pass(
    frozen: &Frozen,
    images: &[RgbImage],
    spec: &BackboneSpec,
    batch: usize,
    device: &Device,
) -> Result<Vec<f32>, EngineError> {
    let mut out = Vec::new();
    for part in frozen_pass(frozen, images, spec, batch, device, |_| true).await? {
        out.extend(read_f32(part).await?);
    }
    Ok(out)
}

/// The frozen part's output on `images`, on `device`: the caller runs the first share and
/// `helpers` the others at the same time. A helper that fails or answers the wrong size has
/// its share run here instead, so a lost helper costs time, never the run.
#[allow(clippy::too_many_arguments)]
pub async fn shared_pass(
    frozen: &Frozen,
    unfreeze: Unfreeze,
    images: &[RgbImage],
    spec: &BackboneSpec,
    batch: usize,
    device: &Device,
    helpers: Option<&dyn Helpers>,
    mut progress: impl FnMut(usize) -> bool,
) -> Result<Tensor<4>, EngineError> {
    let ready = helpers.map_or(0, |h| h.ready());
    let parts = shares(images.len(), ready);
    // Started first, so they run while this worker computes its own share.
    let pending: Vec<(Range<usize>, HelperFuture)> = match helpers {
        Some(h) => parts[1..]
            .iter()
            .enumerate()
            .map(|(i, r)| (r.clone(), h.start(i, unfreeze, &images[r.clone()])))
            .collect(),
        None => Vec::new(),
    };
    let own = parts.first().cloned().unwrap_or(0..images.len());
    // A cancel drops the helpers' futures: their answers are not waited for.
    let mut outputs = frozen_pass(frozen, &images[own.clone()], spec, batch, device, |done| {
        progress(done)
    })
    .await?;
    let mut done = own.len();
    // The shape at the boundary, from this worker's own output (never empty when helpers
    // share: every share holds at least MIN_SHARE images).
    if let Some([_, c, h, w]) = outputs
        .first()
        .filter(|_| !pending.is_empty())
        .map(|t| t.dims())
    {
        let per_image = c * h * w;
        for (range, future) in pending {
            let n = range.len();
            let floats = match future.await {
                Ok(v) if v.len() == n * per_image => Some(v),
                // The helper pool reports its own failures; the share is redone here.
                _ => None,
            };
            match floats {
                Some(v) => {
                    outputs.push(Tensor::from_data(TensorData::new(v, [n, c, h, w]), device))
                }
                None => {
                    let base = done;
                    outputs.extend(
                        frozen_pass(frozen, &images[range], spec, batch, device, |d| {
                            progress(base + d)
                        })
                        .await?,
                    )
                }
            }
            done += n;
            if !progress(done) {
                return Err(EngineError::Cancelled);
            }
        }
    }
    if outputs.is_empty() {
        let [c, h, w] = boundary_dims(frozen, spec, device);
        return Ok(Tensor::zeros([0, c, h, w], device));
    }
    Ok(Tensor::cat(outputs, 0))
}

/// The shape of one image's output at the freeze boundary.
pub fn boundary_dims(frozen: &Frozen, spec: &BackboneSpec, device: &Device) -> [usize; 3] {
    let probe = Tensor::<4>::zeros([1, 3, spec.input_size, spec.input_size], device);
    let [_, c, h, w] = frozen.forward(probe).dims();
    [c, h, w]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_cover_every_image_once_in_order() {
        for n in 0..40 {
            for helpers in 0..5 {
                let parts = shares(n, helpers);
                assert!(!parts.is_empty() && parts.len() <= helpers + 1);
                assert_eq!(parts[0].start, 0);
                assert_eq!(parts.last().unwrap().end, n);
                for w in parts.windows(2) {
                    assert_eq!(w[0].end, w[1].start);
                }
                let sizes: Vec<usize> = parts.iter().map(|r| r.len()).collect();
                let (lo, hi) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
                assert!(hi - lo <= 1, "{n} images, {helpers} helpers: {sizes:?}");
                if parts.len() > 1 {
                    assert!(*lo >= MIN_SHARE, "{n} images, {helpers} helpers: {sizes:?}");
                }
            }
        }
        // 40 photos, 3 helpers: 10 each.
        assert_eq!(shares(40, 3), vec![0..10, 10..20, 20..30, 30..40]);
        // 3 photos: too few to share.
        assert_eq!(shares(3, 3), vec![0..3]);
    }
}
