//! What the engine's unit tests share: tensors as values, and values against a reference.

use burn::tensor::Tensor;

/// The values of an f32 tensor.
pub fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap()
}

/// Every value of `ours` within `tolerance` of `reference`, relative above 1 in size.
pub fn assert_close(what: &str, ours: &[f32], reference: &[f32], tolerance: f32) {
    assert_eq!(ours.len(), reference.len(), "{what}: lengths");
    for (i, (a, b)) in ours.iter().zip(reference).enumerate() {
        let scale = 1.0f32.max(b.abs());
        assert!(
            (a - b).abs() <= tolerance * scale,
            "{what}[{i}]: {a} against {b}"
        );
    }
}
