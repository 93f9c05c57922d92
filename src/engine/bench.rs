//! Speed figures of the engine on any device: inference and one training step per strategy,
//! batch at 224x224, medians over timed iterations after a warm-up (shader compilation,
//! allocation). Reported by `finetune bench`; benches report numbers, tests assert behaviour.

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::{Device, Int, Tensor, TensorData};
use image::RgbImage;
use serde::Serialize;
use web_time::Instant;

use super::EngineError;
use super::model::{BackboneSpec, Classifier};
use super::preprocess;
use super::training::{Unfreeze, split};

/// What `finetune bench` prints (ips = images per second).
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub batch: usize,
    pub inference_ips: f64,
    pub head_step_ips: f64,
    pub last_block_step_ips: f64,
    pub full_step_ips: f64,
    /// Wall time of one feature pass plus 20 head epochs on the cached features, over the
    /// feature pass alone (same images, same run). Goal: <= 1.2.
    pub cached_head_20_epochs_over_feature_pass: f64,
    /// One last-block training step over one inference pass of the same batch. Goal: <= 1.3.
    pub last_block_step_over_inference: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn sync(t: Tensor<1>) -> Result<(), EngineError> {
    t.into_data_async()
        .await
        .map(|_| ())
        .map_err(|e| EngineError::Device(format!("{e:?}")))
}

/// Seconds of one training step with `unfreeze` trainable (frozen part as inference).
async fn step_seconds(
    model: &Classifier,
    unfreeze: Unfreeze,
    x: &Tensor<4>,
    iters: usize,
    device: &Device,
) -> Result<f64, EngineError> {
    let ad = device.clone().autodiff();
    let (frozen, trainable) = split(model.clone(), unfreeze);
    let mut trainable = trainable.fork(&ad).train();
    let mut optim = AdamWConfig::new().init();
    let loss_fn = CrossEntropyLossConfig::new().init(&ad);
    let n = x.dims()[0];
    let y = Tensor::<1, Int>::from_data(
        TensorData::new((0..n as i64).map(|i| i % 2).collect::<Vec<_>>(), [n]),
        &ad,
    );
    let mut times = Vec::new();
    for i in 0..=iters {
        let t = Instant::now();
        let boundary = frozen.forward(x.clone());
        let loss = loss_fn.forward(trainable.forward(boundary.autodiff()), y.clone());
        let grads = GradientsParams::from_grads(loss.backward(), &trainable);
        trainable = optim.step(1e-4, trainable, grads);
        // Reading a parameter waits for the whole step, optimizer update included.
        sync(
            trainable
                .head
                .fc
                .bias
                .as_ref()
                .map(|b| b.val())
                .unwrap_or_else(|| loss.clone()),
        )
        .await?;
        if i > 0 {
            times.push(t.elapsed().as_secs_f64());
        }
    }
    Ok(median(times))
}

/// Runs every measurement on `device` with a batch of `batch` synthetic 224x224 images.
pub async fn run(
    model: &Classifier,
    spec: &BackboneSpec,
    batch: usize,
    iters: usize,
    device: &Device,
) -> Result<BenchReport, EngineError> {
    let batch = batch.max(1);
    let iters = iters.max(1);
    let size = spec.input_size;
    // A fixed, non-trivial pattern: speed does not depend on the pixels.
    let img = RgbImage::from_fn(size, size, |x, y| {
        image::Rgb([(x % 251) as u8, (y % 241) as u8, ((x * y) % 239) as u8])
    });
    let x = preprocess::batch_tensor(&vec![img; batch], spec, device);

    let mut times = Vec::new();
    for i in 0..=iters {
        let t = Instant::now();
        let logits = model.forward(x.clone());
        let [n, c] = logits.dims();
        sync(logits.reshape([n * c])).await?;
        if i > 0 {
            times.push(t.elapsed().as_secs_f64());
        }
    }
    let inference = median(times);
    let head_step = step_seconds(model, Unfreeze::Blocks(0), &x, iters, device).await?;
    let last_block = step_seconds(model, Unfreeze::Blocks(1), &x, iters, device).await?;
    let full = step_seconds(model, Unfreeze::All, &x, iters, device).await?;

    // Cached head, as training does it: one feature pass over 4 batches kept on the device,
    // then 20 epochs of head steps on batches `select`ed from it (loss read every step).
    let (frozen, trainable) = split(model.clone(), Unfreeze::Blocks(0));
    let t = Instant::now();
    let mut parts = Vec::new();
    for _ in 0..4 {
        let f = frozen.forward(x.clone());
        sync(f.clone().flatten::<1>(0, 3).narrow(0, 0, 1)).await?;
        parts.push(f);
    }
    let cache = Tensor::cat(parts, 0);
    let feature_pass = t.elapsed().as_secs_f64();
    let ad = device.clone().autodiff();
    let mut head = trainable.fork(&ad).train();
    let mut optim = AdamWConfig::new().init();
    let loss_fn = CrossEntropyLossConfig::new().init(&ad);
    let y = Tensor::<1, Int>::from_data(
        TensorData::new(
            (0..batch as i64).map(|i| i % 2).collect::<Vec<_>>(),
            [batch],
        ),
        &ad,
    );
    let rows = |b: usize| {
        Tensor::<1, Int>::from_data(
            TensorData::new(
                ((b * batch) as i64..((b + 1) * batch) as i64).collect::<Vec<_>>(),
                [batch],
            ),
            device,
        )
    };
    let t = Instant::now();
    for _ in 0..20 {
        for b in 0..4 {
            let features = cache.clone().select(0, rows(b));
            let loss = loss_fn.forward(head.forward(features.autodiff()), y.clone());
            let grads = GradientsParams::from_grads(loss.backward(), &head);
            head = optim.step(1e-3, head, grads);
            sync(loss).await?;
        }
    }
    let head_epochs = t.elapsed().as_secs_f64();

    let ips = |s: f64| batch as f64 / s;
    Ok(BenchReport {
        batch,
        inference_ips: ips(inference),
        head_step_ips: ips(head_step),
        last_block_step_ips: ips(last_block),
        full_step_ips: ips(full),
        cached_head_20_epochs_over_feature_pass: (feature_pass + head_epochs) / feature_pass,
        last_block_step_over_inference: last_block / inference,
    })
}
