//! Shared helpers for the integration tests: paths to `../shared` and the converted weights,
//! a minimal `.npy` reader and the golden fixture.
#![allow(dead_code)]

use std::path::PathBuf;

pub use finetune::engine::io::weights::{Precision, weights_file};
use finetune::engine::model::BackboneSpec;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn shared() -> PathBuf {
    repo().join("../shared")
}

pub fn golden_dir() -> PathBuf {
    shared().join("golden")
}

/// The converted Lite0 weights; the tests fail (not skip) without them.
pub fn weights_bytes() -> Vec<u8> {
    backbone_weights(&finetune::engine::model::LITE0, Precision::F32)
}

/// One backbone's converted weights (`finetune weights --backbone ..`).
pub fn backbone_weights(spec: &BackboneSpec, precision: Precision) -> Vec<u8> {
    weights_file_bytes(&weights_file(spec, precision))
}

/// One of the files `finetune weights` writes (f32, f16, int8).
pub fn weights_file_bytes(file: &str) -> Vec<u8> {
    let path = repo().join("weights").join(file);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run `make weights` (finetune weights) first",
            path.display()
        )
    })
}

/// Reads a float32 little-endian `.npy` file.
pub fn read_npy_f32(path: &std::path::Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&bytes[..6], b"\x93NUMPY", "{} is not .npy", path.display());
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
    assert!(
        header.contains("'<f4'"),
        "{}: expected float32, got {header}",
        path.display()
    );
    bytes[10 + header_len..]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

pub fn golden_json() -> serde_json::Value {
    golden_json_in(&golden_dir())
}

/// `golden.json` of a folder of golden outputs (`golden/`, `golden/lite1/`, ..).
pub fn golden_json_in(dir: &std::path::Path) -> serde_json::Value {
    let path = dir.join("golden.json");
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

/// The golden outputs of `spec`: Lite0's in `golden/`, the others' in `golden/lite1/` ..
pub fn golden_dir_of(spec: &BackboneSpec) -> PathBuf {
    match spec.id.strip_prefix("efficientnet-") {
        Some("lite0") | None => golden_dir(),
        Some(short) => golden_dir().join(short),
    }
}

/// Golden image names, in a fixed order.
pub fn golden_names() -> Vec<String> {
    golden_names_in(&golden_dir())
}

/// Golden image names of a folder of golden outputs, in a fixed order.
pub fn golden_names_in(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = golden_json_in(dir)["images"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    names.sort();
    names
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
