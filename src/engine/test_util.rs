//! What the engine's unit tests share: tensors as values, and values against a reference.

use burn::nn::conv::Conv2d;
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

/// `ours` against burn's `conv` (its bias included) on `x`, then min(max(y, 0), 6) when
/// `relu6`; the inputs must spread wide enough that both clamps bite.
pub fn assert_conv_bias_relu6(
    what: &str,
    ours: Tensor<4>,
    conv: &Conv2d,
    x: &Tensor<4>,
    relu6: bool,
) {
    let reference = conv.forward(x.clone());
    let reference = if relu6 {
        reference.clamp(0.0, 6.0)
    } else {
        reference
    };
    let (ours, reference) = (values(ours), values(reference));
    if relu6 {
        assert!(
            reference.contains(&0.0) && reference.contains(&6.0),
            "{what}: both clamps"
        );
    }
    assert_close(what, &ours, &reference, 1e-5);
}
