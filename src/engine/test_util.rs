//! What the engine's unit tests share: tensors as values, and values against a reference.

use burn::module::Param;
use burn::nn::conv::Conv2d;
use burn::tensor::{Distribution, Tensor};

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

/// `ours` (a layer's operation that trains, `None` where it does not apply) against burn's
/// `conv.forward` on `x`: the output, and the gradients of `x` and of the weight under a
/// weighted sum (random weights: a plain sum's gradient is the same everywhere).
pub fn assert_trains_as_burns_conv(
    what: &str,
    conv: &Conv2d,
    x: &Tensor<4>,
    ours: impl Fn(&Conv2d, &Tensor<4>) -> Option<Tensor<4>>,
    tolerance: f32,
) {
    let y_shape = conv.forward(x.clone()).dims();
    let weights = Tensor::<4>::random(y_shape, Distribution::Normal(0.0, 1.0), &x.device());
    let run = |mine: bool| {
        // A fresh parameter each run, so that each backward's gradient is its own.
        let conv = Conv2d {
            weight: Param::from_tensor(conv.weight.val().detach().require_grad()),
            ..conv.clone()
        };
        let x = x.clone().detach().require_grad();
        let y = if mine {
            ours(&conv, &x).unwrap_or_else(|| panic!("{what}: our operation applies"))
        } else {
            conv.forward(x.clone())
        };
        let grads = (y.clone() * weights.clone()).sum().backward();
        [
            values(y),
            values(x.grad(&grads).unwrap()),
            values(conv.weight.val().grad(&grads).unwrap()),
        ]
    };
    let (mine, burns) = (run(true), run(false));
    for (part, (a, b)) in ["output", "x grad", "weight grad"]
        .iter()
        .zip(mine.iter().zip(&burns))
    {
        assert_close(&format!("{part}, {what}"), a, b, tolerance);
    }
}
