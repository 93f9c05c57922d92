//! The depthwise convolution's forward pass over one plane, summed in registers: the input
//! plane is padded once (the zeros SAME padding reads; a stride-2 row is stored as its even
//! then its odd columns, so every tap reads floats side by side), then each block of outputs
//! adds up its k x k taps in registers and is stored once. The row-at-a-time loop it replaces
//! went over each output row k x k times. Lite's kernels (3, 5) and strides (1, 2) only; on
//! x86-64 with AVX2 and FMA (checked once, at run time) the same code is compiled for them.

/// Outputs summed side by side (two 8-float registers with AVX2).
const BLOCK: usize = 16;
/// The last, shorter block, and the step the output row is rounded up to.
const HALF: usize = 8;
/// Largest kernel covered (5 x 5 taps).
const MAX_TAPS: usize = 25;

/// One layer's sizes, and how its planes are computed.
#[derive(Clone, Copy, Debug)]
pub struct Blocked {
    k: usize,
    stride: usize,
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
    top: usize,
    left: usize,
    /// Floats of one phase of a padded row (every column a block reads, plus slack).
    phase: usize,
    /// Padded rows the outputs read.
    rows: usize,
    #[cfg(target_arch = "x86_64")]
    fma: bool,
}

impl Blocked {
    /// `None` outside Lite's kernels and strides.
    pub fn new(
        k: usize,
        stride: usize,
        (h, w): (usize, usize),
        (oh, ow): (usize, usize),
        (top, left): (usize, usize),
    ) -> Option<Self> {
        if !matches!((k, stride), (3 | 5, 1 | 2)) || oh == 0 || ow == 0 {
            return None;
        }
        Some(Self {
            k,
            stride,
            h,
            w,
            oh,
            ow,
            top,
            left,
            phase: ow.div_ceil(HALF) * HALF + (k - 1) / stride + 1,
            rows: (oh - 1) * stride + k,
            #[cfg(target_arch = "x86_64")]
            fma: super::avx2_fma_here(),
        })
    }

    /// The output plane `out` (`oh * ow`) of input plane `x` (`h * w`) by the `k * k` taps
    /// `w` plus `bias`, clamped to [0, 6] when `relu6`.
    pub fn plane(&self, x: &[f32], w: &[f32], bias: f32, relu6: bool, out: &mut [f32]) {
        match (self.k, self.stride) {
            (3, 1) => self.dispatch::<3, 1>(x, w, bias, relu6, out),
            (3, 2) => self.dispatch::<3, 2>(x, w, bias, relu6, out),
            (5, 1) => self.dispatch::<5, 1>(x, w, bias, relu6, out),
            _ => self.dispatch::<5, 2>(x, w, bias, relu6, out),
        }
    }

    fn dispatch<const K: usize, const S: usize>(
        &self,
        x: &[f32],
        w: &[f32],
        bias: f32,
        relu6: bool,
        out: &mut [f32],
    ) {
        #[cfg(target_arch = "x86_64")]
        if self.fma {
            // SAFETY: `fma` is true only where the CPU has AVX2 and FMA (`avx2_fma_here`).
            unsafe { plane_avx2::<K, S>(self, x, w, bias, relu6, out) };
            return;
        }
        plane::<K, S, false>(self, x, w, bias, relu6, out);
    }

    /// The input plane with its padding into `padded`, each row as `S` phases of `phase`
    /// floats.
    fn pad<const S: usize>(&self, x: &[f32], padded: &mut Vec<f32>) {
        let row = S * self.phase;
        padded.clear();
        padded.resize(self.rows * row, 0.0);
        // Padded columns past the last one a block reads are never read.
        let read = ((self.ow - 1) * S + self.k).min(self.left + self.w);
        for r in 0..self.rows {
            let Some(iy) = r.checked_sub(self.top).filter(|&iy| iy < self.h) else {
                continue;
            };
            let src = &x[iy * self.w..(iy + 1) * self.w];
            let dst = &mut padded[r * row..(r + 1) * row];
            // Padded column `j` (input column `j - left`) goes to phase `j % S`, at `j / S`.
            for p in 0..S {
                let first = self.left + (p + S - self.left % S) % S;
                if first >= read {
                    continue;
                }
                let out = &mut dst[p * self.phase + first / S..];
                let input = src[first - self.left..read - self.left].iter().step_by(S);
                out.iter_mut().zip(input).for_each(|(d, v)| *d = *v);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn plane_avx2<const K: usize, const S: usize>(
    b: &Blocked,
    x: &[f32],
    w: &[f32],
    bias: f32,
    relu6: bool,
    out: &mut [f32],
) {
    plane::<K, S, true>(b, x, w, bias, relu6, out);
}

#[inline(always)]
fn madd<const FMA: bool>(acc: f32, w: f32, x: f32) -> f32 {
    if FMA { w.mul_add(x, acc) } else { acc + w * x }
}

/// `N` outputs from column `ox` of output row `oy`: the taps of every kernel row and column.
#[inline(always)]
fn block<const K: usize, const S: usize, const N: usize, const FMA: bool>(
    b: &Blocked,
    padded: &[f32],
    taps: &[f32; MAX_TAPS],
    bias: f32,
    oy: usize,
    ox: usize,
) -> [f32; N] {
    let row = S * b.phase;
    let mut acc = [bias; N];
    for ky in 0..K {
        let r = &padded[(oy * S + ky) * row..(oy * S + ky + 1) * row];
        for kx in 0..K {
            let start = (kx % S) * b.phase + ox + kx / S;
            let src: &[f32; N] = r[start..start + N].try_into().expect("within the phase");
            let wv = taps[ky * K + kx];
            for i in 0..N {
                acc[i] = madd::<FMA>(acc[i], wv, src[i]);
            }
        }
    }
    acc
}

#[inline(always)]
fn plane<const K: usize, const S: usize, const FMA: bool>(
    b: &Blocked,
    x: &[f32],
    w: &[f32],
    bias: f32,
    relu6: bool,
    out: &mut [f32],
) {
    PADDED.with_borrow_mut(|padded| {
        b.pad::<S>(x, padded);
        sum_blocks::<K, S, FMA>(b, padded, w, bias, relu6, out);
    });
}

thread_local! {
    /// A plane's padded copy, kept between the thread's planes.
    static PADDED: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Every block of outputs of one plane from its `padded` copy.
#[inline(always)]
fn sum_blocks<const K: usize, const S: usize, const FMA: bool>(
    b: &Blocked,
    padded: &[f32],
    w: &[f32],
    bias: f32,
    relu6: bool,
    out: &mut [f32],
) {
    let mut taps = [0.0f32; MAX_TAPS];
    taps[..K * K].copy_from_slice(&w[..K * K]);
    let store = |dst: &mut [f32], acc: &[f32]| {
        for (d, &v) in dst.iter_mut().zip(acc) {
            *d = if relu6 { v.clamp(0.0, 6.0) } else { v };
        }
    };
    for oy in 0..b.oh {
        let orow = &mut out[oy * b.ow..(oy + 1) * b.ow];
        let mut ox = 0;
        while ox + BLOCK <= b.ow {
            let acc = block::<K, S, BLOCK, FMA>(b, padded, &taps, bias, oy, ox);
            store(&mut orow[ox..ox + BLOCK], &acc);
            ox += BLOCK;
        }
        // The rest, 8 at a time (the padded rows hold the columns past the row's end).
        while ox < b.ow {
            let acc = block::<K, S, HALF, FMA>(b, padded, &taps, bias, oy, ox);
            let end = (ox + HALF).min(b.ow);
            store(&mut orow[ox..end], &acc);
            ox += HALF;
        }
    }
}
