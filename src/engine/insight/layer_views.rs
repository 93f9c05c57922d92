//! What each layer sees: the feature maps of the stem, an early, a middle and the last MBConv
//! block for one photo, a few channels each (the most active first), as a grid of small
//! grey images. Low layers answer to edges and colours, high ones to parts and whole things:
//! the reason the first layers can stay frozen and the last ones must adapt.

use burn::tensor::{Device, Tensor};
use image::{GrayImage, Luma, RgbImage};
use serde::{Deserialize, Serialize};

use crate::engine::EngineError;
use crate::engine::data::preprocess;
use crate::engine::model::{BackboneSpec, Classifier};
use crate::engine::read_f32;
use crate::engine::train::plan::Unfreeze;

/// Channels shown per layer.
const CHANNELS_SHOWN: usize = 8;
/// Side of one channel's tile in the grid, in pixels.
pub const TILE: u32 = 56;
/// Tiles per row of a layer's grid.
pub const GRID_COLUMNS: u32 = 4;

/// Where in the network a view is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Depth {
    Stem,
    Early,
    Middle,
    Last,
}

impl Depth {
    pub const ALL: [Depth; 4] = [Depth::Stem, Depth::Early, Depth::Middle, Depth::Last];

    pub fn name(self) -> &'static str {
        match self {
            Depth::Stem => "Stem",
            Depth::Early => "Early block",
            Depth::Middle => "Middle block",
            Depth::Last => "Last block",
        }
    }

    /// What this depth answers to, in one line for students.
    pub fn lesson(self) -> &'static str {
        match self {
            Depth::Stem => {
                "Edges, stripes and colour blobs: the first convolution reacts to simple local \
                 patterns, the same for any photo."
            }
            Depth::Early => "Textures and small shapes, built from those edges.",
            Depth::Middle => {
                "Parts: combinations of textures (an eye, a leg, a wheel); less about where, \
                 more about what."
            }
            Depth::Last => {
                "Whole things: each map lights up where one learned concept is; pooled, these \
                 are the features the head reads."
            }
        }
    }

    /// The block whose output this is (`None`: the stem), for `spec`: the ends of the 2nd and
    /// 4th stages, and the last block.
    pub fn block(self, spec: &BackboneSpec) -> Option<usize> {
        let ends: Vec<usize> = spec
            .stages()
            .iter()
            .scan(0, |end, s| {
                *end += s.0;
                Some(*end - 1)
            })
            .collect();
        match self {
            Depth::Stem => None,
            Depth::Early => ends.get(1).copied(),
            Depth::Middle => ends.get(3).copied(),
            Depth::Last => ends.last().copied(),
        }
    }

    /// Whether this layer learns when `unfreeze` is in effect (`blocks`: the backbone's count).
    pub fn trains(self, spec: &BackboneSpec, unfreeze: Unfreeze) -> bool {
        match (unfreeze, self.block(spec)) {
            (Unfreeze::All, _) => true,
            (Unfreeze::Blocks(_), None) => false,
            (Unfreeze::Blocks(n), Some(b)) => b + n.min(spec.block_count()) >= spec.block_count(),
        }
    }
}

/// One layer's view: its strongest channels as grey tiles in a grid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerView {
    pub depth: Depth,
    /// Block index (`None`: the stem).
    pub block: Option<usize>,
    /// Channels of the layer, and the size of each map.
    pub channels: usize,
    pub width: usize,
    pub height: usize,
    /// The channels shown, most active (largest mean activation) first, with their means.
    pub shown: Vec<(usize, f32)>,
}

/// The layer views of `image` (through the evaluation transform already), with each grid as
/// an image: `CHANNELS_SHOWN` tiles of `TILE` pixels, each map scaled to its own range.
pub async fn layer_views(
    model: &Classifier,
    image: &RgbImage,
    spec: &BackboneSpec,
    device: &Device,
) -> Result<Vec<(LayerView, GrayImage)>, EngineError> {
    let b = &model.backbone;
    let x = preprocess::batch_tensor(std::slice::from_ref(image), spec, device);
    let mut taps: Vec<(Depth, Tensor<4>)> = Vec::new();
    let mut x = b.stem.forward(x);
    taps.push((Depth::Stem, x.clone()));
    for (i, block) in b.blocks.iter().enumerate() {
        x = block.forward(x);
        for depth in [Depth::Early, Depth::Middle, Depth::Last] {
            if depth.block(spec) == Some(i) {
                taps.push((depth, x.clone()));
            }
        }
    }
    let mut out = Vec::with_capacity(taps.len());
    for (depth, maps) in taps {
        let [_, channels, height, width] = maps.dims();
        let values = read_f32(maps).await?;
        let cells = height * width;
        let mut means: Vec<(usize, f32)> = (0..channels)
            .map(|c| {
                let m = &values[c * cells..(c + 1) * cells];
                (c, m.iter().sum::<f32>() / cells as f32)
            })
            .collect();
        means.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        means.truncate(CHANNELS_SHOWN);
        let grid = grid(&values, width, height, &means);
        out.push((
            LayerView {
                depth,
                block: depth.block(spec),
                channels,
                width,
                height,
                shown: means,
            },
            grid,
        ));
    }
    Ok(out)
}

/// The channels in `shown` as tiles, each map min-max scaled to 0..255 and spread over its
/// tile (nearest neighbour, so single activations stay visible).
fn grid(values: &[f32], width: usize, height: usize, shown: &[(usize, f32)]) -> GrayImage {
    let cells = width * height;
    let rows = (shown.len() as u32).div_ceil(GRID_COLUMNS).max(1);
    let gap = 2;
    let mut out = GrayImage::from_pixel(
        GRID_COLUMNS * (TILE + gap) - gap,
        rows * (TILE + gap) - gap,
        Luma([255]),
    );
    for (i, &(c, _)) in shown.iter().enumerate() {
        let map = &values[c * cells..(c + 1) * cells];
        let lo = map.iter().copied().fold(f32::INFINITY, f32::min);
        let hi = map.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let range = (hi - lo).max(1e-6);
        let (ox, oy) = (
            (i as u32 % GRID_COLUMNS) * (TILE + gap),
            (i as u32 / GRID_COLUMNS) * (TILE + gap),
        );
        for ty in 0..TILE {
            for tx in 0..TILE {
                let mx = (tx as usize * width / TILE as usize).min(width - 1);
                let my = (ty as usize * height / TILE as usize).min(height - 1);
                let v = (map[my * width + mx] - lo) / range;
                out.put_pixel(ox + tx, oy + ty, Luma([(v * 255.0).round() as u8]));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::model::{LITE0, LITE2};

    #[test]
    fn depths_sit_at_stage_ends_and_follow_the_strategy() {
        assert_eq!(
            Depth::ALL.map(|d| d.block(&LITE0)),
            [None, Some(2), Some(7), Some(15)]
        );
        assert_eq!(
            Depth::ALL.map(|d| d.block(&LITE2)),
            [None, Some(3), Some(10), Some(20)]
        );
        let trains = |u| Depth::ALL.map(|d| d.trains(&LITE0, u));
        assert_eq!(trains(Unfreeze::Blocks(0)), [false; 4]);
        assert_eq!(trains(Unfreeze::Blocks(1)), [false, false, false, true]);
        assert_eq!(trains(Unfreeze::Blocks(8)), [false, false, false, true]);
        assert_eq!(trains(Unfreeze::Blocks(9)), [false, false, true, true]);
        assert_eq!(trains(Unfreeze::All), [true; 4]);
    }

    #[test]
    fn grid_scales_each_map_to_its_own_range_in_order() {
        // Two 2x1 maps: channel 1 rises left to right, channel 0 is flat.
        let values = [5.0, 5.0, 0.0, 2.0];
        let g = grid(&values, 2, 1, &[(1, 1.0), (0, 5.0)]);
        assert_eq!(g.get_pixel(0, 0).0, [0]);
        assert_eq!(g.get_pixel(TILE - 1, 0).0, [255]);
        // The flat map is all one grey (its own range is empty).
        assert_eq!(g.get_pixel(TILE + 2, 0), g.get_pixel(2 * TILE + 1, 0));
    }
}
