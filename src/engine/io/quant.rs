//! 8-bit weights for the download: each output channel of a convolution or linear weight is
//! stored as `i8` with one f32 scale (symmetric, `scale = max |w| / 127`), and turned back into
//! f32 on load. EfficientNet-Lite was designed for this (ReLU6, no squeeze-excite): the page
//! downloads a quarter of the f32 weights, and the golden photos keep their top-5 order.

/// Name of the scale tensor stored next to a quantised tensor `name`.
pub fn scale_key(name: &str) -> String {
    format!("{name}{SCALE_SUFFIX}")
}

/// Suffix of scale tensors (never a model key: those end in `weight`, `bias`, `running_*`).
pub const SCALE_SUFFIX: &str = ".int8_scale";

/// Quantises `values` (shape `[channels, ...]`, row-major) per channel: the `i8` values and
/// one scale per channel. A channel of zeros gets scale 0.
pub fn quantize(values: &[f32], channels: usize) -> (Vec<i8>, Vec<f32>) {
    let per = values.len() / channels.max(1);
    let mut q = Vec::with_capacity(values.len());
    let mut scales = Vec::with_capacity(channels);
    for channel in values.chunks(per.max(1)) {
        let max = channel.iter().fold(0f32, |m, v| m.max(v.abs()));
        let scale = max / 127.0;
        scales.push(scale);
        q.extend(channel.iter().map(|v| {
            if scale > 0.0 {
                (v / scale).round().clamp(-127.0, 127.0) as i8
            } else {
                0
            }
        }));
    }
    (q, scales)
}

/// The f32 values of a quantised tensor; `Err` says what does not fit.
pub fn dequantize(q: &[i8], scales: &[f32]) -> Result<Vec<f32>, String> {
    if scales.is_empty() || !q.len().is_multiple_of(scales.len()) {
        return Err(format!(
            "{} values do not split into {} channels",
            q.len(),
            scales.len()
        ));
    }
    let per = q.len() / scales.len();
    Ok(q.chunks(per.max(1))
        .zip(scales)
        .flat_map(|(channel, &s)| channel.iter().map(move |&v| v as f32 * s))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_channel_is_scaled_by_its_own_largest_value() {
        // Channel 0 spans [-2, 1], channel 1 is zeros, channel 2 is one value.
        let values = [-2.0, 1.0, 0.5, 0.0, 0.0, 0.0, 0.3, 0.3, 0.3];
        let (q, scales) = quantize(&values, 3);
        assert_eq!(scales, vec![2.0 / 127.0, 0.0, 0.3 / 127.0]);
        // -2 -> -127, 1 -> 63.5 rounds to 64, 0.5 -> 31.75 rounds to 32.
        assert_eq!(q, vec![-127, 64, 32, 0, 0, 0, 127, 127, 127]);
        let back = dequantize(&q, &scales).unwrap();
        for (b, v) in back.iter().zip(values) {
            // Rounding error is at most half a step of the channel's scale.
            assert!((b - v).abs() <= 1.0 / 127.0 + 1e-7, "{b} vs {v}");
        }
    }

    #[test]
    fn a_scale_count_that_does_not_divide_is_an_error() {
        let err = dequantize(&[1, 2, 3], &[1.0, 1.0]).unwrap_err();
        assert!(
            err.contains("3 values") && err.contains("2 channels"),
            "{err}"
        );
        assert!(dequantize(&[1], &[]).is_err());
    }
}
