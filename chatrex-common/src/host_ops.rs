//! Fused element-wise kernels on host memory for the CPU backend's transformer and ConvNeXt
//! paths: layer and RMS norm, bias + activation, SiLU gate, (scaled) residual, softmax,
//! depthwise convolution.
//!
//! Burn's CPU backend runs each tensor op as its own pass over memory (a LayerNorm is six of
//! them, a GELU with its bias three); these kernels do one pass each, over rows in parallel.
//! They are written as plain loops over 16-lane chunks and compiled three times — for
//! AVX-512, for AVX2+FMA and portably — with the best chosen at run time, so the compiler
//! vectorises them. `exp` and `erf` are branch-free polynomials for the same reason (the
//! `erf` is the Abramowitz–Stegun 7.1.26 form PyTorch's vectorised CPU kernels use: absolute
//! error ≤ 1.5e-7 in exact arithmetic, ≤ 4e-7 evaluated in f32).

use rayon::prelude::*;

/// Rows handed to one parallel task by the row-wise kernels.
const ROWS_PER_TASK: usize = 16;

/// The x86 feature levels the [`multiversion!`] kernels are compiled for.
#[cfg(target_arch = "x86_64")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FeatureLevel {
    /// AVX-512 F, DQ, BW and VL.
    Avx512,
    /// AVX2 and FMA.
    Avx2,
    /// Neither.
    Portable,
}

/// This CPU's [`FeatureLevel`], detected once rather than feature by feature on every call
/// (the row kernels run once per row: per 32 values in the tile products' epilogues).
#[cfg(target_arch = "x86_64")]
fn feature_level() -> FeatureLevel {
    static LEVEL: std::sync::OnceLock<FeatureLevel> = std::sync::OnceLock::new();
    *LEVEL.get_or_init(|| {
        if is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512dq")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl")
        {
            FeatureLevel::Avx512
        } else if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            FeatureLevel::Avx2
        } else {
            FeatureLevel::Portable
        }
    })
}

/// Defines `pub fn $name(args)` that runs `$body` compiled for the best available x86
/// feature level (AVX-512, AVX2+FMA, or none).
macro_rules! multiversion {
    ($(#[$meta:meta])* pub fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        pub fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512dq,avx512bw,avx512vl,avx2,fma,f16c")]
                fn v4($($arg: $ty),*) $(-> $ret)? { body($($arg),*) }
                #[target_feature(enable = "avx2,fma")]
                fn v3($($arg: $ty),*) $(-> $ret)? { body($($arg),*) }
                match feature_level() {
                    // SAFETY: the level's features were detected.
                    #[allow(unsafe_code)]
                    FeatureLevel::Avx512 => return unsafe { v4($($arg),*) },
                    // SAFETY: as above.
                    #[allow(unsafe_code)]
                    FeatureLevel::Avx2 => return unsafe { v3($($arg),*) },
                    FeatureLevel::Portable => {}
                }
            }
            body($($arg),*)
        }
    };
}

/// The inputs [`exp`] clamps to.
const EXP_RANGE: (f32, f32) = (-87.0, 88.3);
/// `ln 2` in two parts for [`exp`]'s range reduction (the high part exact in few bits).
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// [`exp`]'s polynomial in the reduced argument, highest degree first (Cephes `expf`).
const EXP_POLYNOMIAL: [f32; 6] = [1.987_569_1e-4, 1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 0.5];

/// `e^x` for `x` in f32, branch-free (Cephes `expf`: range reduction by `ln 2`, degree-6
/// polynomial), relative error ≈ 1 ulp; inputs are clamped to [−87, 88.3].
///
/// Written with fused multiply-adds: one instruction each in the AVX2 and AVX-512 builds of
/// the kernels (1.6× faster softmax than separate multiplies and adds, measured), a libm call
/// in the portable build.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    /// 2²³: adding it to an integer-valued float in [0, 2²³) puts the integer in the mantissa.
    const MANTISSA_SHIFT: f32 = 8_388_608.0;
    let x = x.clamp(EXP_RANGE.0, EXP_RANGE.1);
    let n = x.mul_add(std::f32::consts::LOG2_E, 0.5).floor();
    let r = n.mul_add(-LN2_LO, n.mul_add(-LN2_HI, x));
    let mut p = EXP_POLYNOMIAL[0];
    for &coefficient in &EXP_POLYNOMIAL[1..] {
        p = p.mul_add(r, coefficient);
    }
    let y = (p * r).mul_add(r, r) + 1.0;
    // 2ⁿ from its biased exponent n + 127 ∈ [1, 254], without a float→int conversion (whose
    // saturation semantics keep it from vectorising): n + 127 + 2²³ is exact and holds n + 127
    // in its low mantissa bits, and the shift by 23 drops the bits of 2²³ (0x4B00_0000 · 2²³
    // wraps to 0).
    let biased = (n + (127.0 + MANTISSA_SHIFT)).to_bits() << 23;
    y * f32::from_bits(biased)
}

/// `erf(x)` (Abramowitz–Stegun 7.1.26; absolute error ≤ 4e-7 in f32), branch-free.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [0.254_829_6, -0.284_496_74, 1.421_413_7, -1.453_152_1, 1.061_405_4];
    let a = x.abs();
    let t = 1.0 / P.mul_add(a, 1.0);
    let poly = A[4].mul_add(t, A[3]).mul_add(t, A[2]).mul_add(t, A[1]).mul_add(t, A[0]) * t;
    let y = (-poly).mul_add(exp(-a * a), 1.0);
    y.copysign(x)
}

/// Exact (erf) GELU: `x · (1 + erf(x / √2)) / 2`.
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// CLIP's quick GELU: `x · sigmoid(1.702 x)`.
#[inline(always)]
pub fn quick_gelu(x: f32) -> f32 {
    x / (1.0 + exp(-1.702 * x))
}

/// `x ← x / sum` for softmax numerators `x` and their `sum`, with every probability below
/// the smallest normal f32 set to zero (a subnormal slows every product it enters).
#[inline(always)]
fn normalise_flushing_subnormals(x: &mut [f32], sum: f32) {
    let (inv, smallest) = (1.0 / sum, f32::MIN_POSITIVE * sum);
    for v in x.iter_mut() {
        *v = if *v < smallest { 0.0 } else { *v * inv };
    }
}

/// Sum of a slice with 16 independent accumulators (vectorisable).
#[inline(always)]
fn lane_sum(values: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0f32; 16];
    let chunks = values.chunks_exact(16);
    let rest = chunks.remainder();
    for chunk in chunks {
        for i in 0..16 {
            acc[i] += f(chunk[i]);
        }
    }
    let mut total = 0f32;
    for (i, v) in rest.iter().enumerate() {
        acc[i] += f(*v);
    }
    for a in acc {
        total += a;
    }
    total
}

/// The activation applied by [`bias_activation`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// None: only the bias is added.
    Identity,
    /// Exact (erf) GELU.
    Gelu,
    /// `x · sigmoid(1.702 x)`.
    QuickGelu,
    /// `max(x, 0)`.
    Relu,
}

multiversion! {
    /// One row of [`layer_norm`].
    pub fn layer_norm_row(x: &[f32], weight: &[f32], bias: &[f32], eps: f32, out: &mut [f32]) {
        let d = x.len() as f32;
        let mean = lane_sum(x, |v| v) / d;
        let var = lane_sum(x, |v| (v - mean) * (v - mean)) / d;
        let rstd = 1.0 / (var + eps).sqrt();
        for (((o, &v), &w), &b) in out.iter_mut().zip(x).zip(weight).zip(bias) {
            *o = (v - mean) * rstd * w + b;
        }
    }
}

/// Layer norm over the last dimension of `x [rows, d]` (biased variance) into `out`.
pub fn layer_norm(x: &[f32], weight: &[f32], bias: &[f32], eps: f32, out: &mut [f32]) {
    let d = weight.len();
    out.par_chunks_mut(d * ROWS_PER_TASK)
        .zip(x.par_chunks(d * ROWS_PER_TASK))
        .for_each(|(o, x)| {
            for (o, x) in o.chunks_mut(d).zip(x.chunks(d)) {
                layer_norm_row(x, weight, bias, eps, o);
            }
        });
}

/// In-place [`layer_norm`].
pub fn layer_norm_in_place(x: &mut [f32], weight: &[f32], bias: &[f32], eps: f32) {
    let d = weight.len();
    x.par_chunks_mut(d * ROWS_PER_TASK).for_each_init(
        || vec![0f32; d],
        |row, x| {
            for x in x.chunks_mut(d) {
                row.copy_from_slice(x);
                layer_norm_row(row, weight, bias, eps, x);
            }
        },
    );
}

multiversion! {
    /// One row of [`bias_activation`].
    pub fn bias_activation_row(x: &mut [f32], bias: &[f32], activation: Activation) {
        match activation {
            Activation::Identity => {
                for (v, b) in x.iter_mut().zip(bias) {
                    *v += b;
                }
            }
            Activation::Gelu => {
                for (v, b) in x.iter_mut().zip(bias) {
                    *v = gelu(*v + b);
                }
            }
            Activation::QuickGelu => {
                for (v, b) in x.iter_mut().zip(bias) {
                    *v = quick_gelu(*v + b);
                }
            }
            Activation::Relu => {
                for (v, b) in x.iter_mut().zip(bias) {
                    *v = (*v + b).max(0.0);
                }
            }
        }
    }
}

/// `x ← activation(x + bias)` for every row of `x [rows, d]`, `bias [d]`.
pub fn bias_activation(x: &mut [f32], bias: &[f32], activation: Activation) {
    let d = bias.len();
    x.par_chunks_mut(d * ROWS_PER_TASK).for_each(|x| {
        for row in x.chunks_mut(d) {
            bias_activation_row(row, bias, activation);
        }
    });
}

multiversion! {
    /// One row of [`add_scaled_residual`].
    pub fn add_scaled_residual_row(residual: &mut [f32], y: &[f32], bias: &[f32], scale: Option<&[f32]>) {
        match scale {
            Some(scale) => {
                for (((r, v), b), s) in residual.iter_mut().zip(y).zip(bias).zip(scale) {
                    *r += (v + b) * s;
                }
            }
            None => {
                for ((r, v), b) in residual.iter_mut().zip(y).zip(bias) {
                    *r += v + b;
                }
            }
        }
    }
}

/// `residual ← residual + (y + bias) · scale` row by row (`scale` = layer scale; `None`: 1),
/// all `[rows, d]` with `bias`, `scale` `[d]`.
pub fn add_scaled_residual(residual: &mut [f32], y: &[f32], bias: &[f32], scale: Option<&[f32]>) {
    let d = bias.len();
    residual
        .par_chunks_mut(d * ROWS_PER_TASK)
        .zip(y.par_chunks(d * ROWS_PER_TASK))
        .for_each(|(r, y)| {
            for (r, y) in r.chunks_mut(d).zip(y.chunks(d)) {
                add_scaled_residual_row(r, y, bias, scale);
            }
        });
}

multiversion! {
    /// One row of [`rms_norm`].
    pub fn rms_norm_row(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
        let mean_square = lane_sum(x, |v| v * v) / x.len() as f32;
        let scale = 1.0 / (mean_square + eps).sqrt();
        for ((o, &v), &w) in out.iter_mut().zip(x).zip(weight) {
            *o = w * (v * scale);
        }
    }
}

/// RMS norm over the last dimension of `x [rows, d]` into `out`:
/// `weight · x / sqrt(mean(x²) + eps)` (Llama / Qwen2).
pub fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let d = weight.len();
    out.par_chunks_mut(d * ROWS_PER_TASK)
        .zip(x.par_chunks(d * ROWS_PER_TASK))
        .for_each(|(o, x)| {
            for (o, x) in o.chunks_mut(d).zip(x.chunks(d)) {
                rms_norm_row(x, weight, eps, o);
            }
        });
}

multiversion! {
    /// A chunk of [`silu_mul`].
    pub fn silu_mul_chunk(gate: &mut [f32], up: &[f32]) {
        for (g, &u) in gate.iter_mut().zip(up) {
            *g = *g / (1.0 + exp(-*g)) * u;
        }
    }
}

/// The gated MLP activation `gate ← silu(gate) · up` (element-wise, same lengths).
pub fn silu_mul(gate: &mut [f32], up: &[f32]) {
    const CHUNK: usize = 1 << 14;
    gate.par_chunks_mut(CHUNK)
        .zip(up.par_chunks(CHUNK))
        .for_each(|(g, u)| silu_mul_chunk(g, u));
}

multiversion! {
    /// A chunk of [`add_assign`].
    pub fn add_assign_chunk(x: &mut [f32], y: &[f32]) {
        for (a, &b) in x.iter_mut().zip(y) {
            *a += b;
        }
    }
}

/// `x ← x + y` (element-wise, same lengths): residual connections.
pub fn add_assign(x: &mut [f32], y: &[f32]) {
    const CHUNK: usize = 1 << 14;
    x.par_chunks_mut(CHUNK).zip(y.par_chunks(CHUNK)).for_each(|(a, b)| add_assign_chunk(a, b));
}

/// The largest value of `x` (−∞ for an empty row), over 16 lanes (a sequential `max` chain
/// does not vectorise).
#[inline(always)]
fn row_max(x: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 16];
    let chunks = x.chunks_exact(16);
    let rest = chunks.remainder();
    for chunk in chunks {
        for i in 0..16 {
            lanes[i] = if chunk[i] > lanes[i] { chunk[i] } else { lanes[i] };
        }
    }
    let mut max = f32::NEG_INFINITY;
    for &v in lanes.iter().chain(rest) {
        max = max.max(v);
    }
    max
}

multiversion! {
    /// Softmax of one row in place. Probabilities below the smallest normal f32 are zero (as
    /// in [`softmax_row_biased`]: a subnormal slows every product it enters).
    pub fn softmax_row(x: &mut [f32]) {
        let max = row_max(x);
        for v in x.iter_mut() {
            *v = exp(*v - max);
        }
        let sum = lane_sum(x, |v| v);
        normalise_flushing_subnormals(x, sum);
    }
}

/// Numerators below this (relative to the largest, 1) are dropped by
/// [`attend_one_position_span`]: they change no f32 sum, and their products with the values
/// could fall below the normal range, where each product is a slow microcode assist.
const NEGLIGIBLE_NUMERATOR: f32 = 1e-30;

/// Attention of one new position (a decode step) over a span of cached positions, for the
/// query heads sharing one key/value head: `q [group·D]` against `keys, values [len, D]`.
/// For each head `i`, with `s_ij = scale · q_i·k_j`: `max[i] = max_j s_ij`,
/// `sum[i] = Σ_j e^(s_ij − max[i])` and `out [group·D]` row `i` `= Σ_j e^(s_ij − max[i]) · v_j`
/// (not yet divided by the sum, so that spans merge: [`merge_attention_spans`]).
/// `scores [group·len]` is scratch. Each key and value row is read once for the whole group.
#[allow(clippy::too_many_arguments)]
pub fn attend_one_position_span(
    q: &[f32],
    keys: &[f32],
    values: &[f32],
    d: usize,
    scale: f32,
    scores: &mut [f32],
    out: &mut [f32],
    (max, sum): (&mut [f32], &mut [f32]),
) {
    let len = keys.len() / d;
    #[cfg(target_arch = "x86_64")]
    // SAFETY: AVX-512 F was detected.
    #[allow(unsafe_code)]
    let scored = feature_level() == FeatureLevel::Avx512 && unsafe { one_position_avx512::scores(q, keys, d, scale, scores) };
    #[cfg(not(target_arch = "x86_64"))]
    let scored = false;
    if !scored {
        one_position_scores(q, keys, d, scale, scores);
    }
    for ((row, max), sum) in scores.chunks_exact_mut(len).zip(max.iter_mut()).zip(sum.iter_mut()) {
        *max = row_max(row);
        *sum = softmax_numerators(row, 1.0);
        for v in row.iter_mut() {
            if *v < NEGLIGIBLE_NUMERATOR {
                *v = 0.0;
            }
        }
    }
    weighted_value_rows(scores, values, d, out);
}

/// Whether [`attend_one_position_span`] computes its scores with its AVX-512 kernel for heads
/// of `d` values (a CPU with AVX-512 F, `d` a multiple of 16). Elsewhere its portable loops
/// are correct but slower than a general matrix product per head.
pub fn one_position_kernel_available(d: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        d > 0 && d.is_multiple_of(16) && feature_level() == FeatureLevel::Avx512
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = d;
        false
    }
}

/// Merges the spans of [`attend_one_position_span`] into the attention of each head:
/// `spans` holds, per span, `(max [heads], sum [heads], out [heads·D])`; `out [heads·D]`
/// (overwritten) `= Σ_s e^(max_s − M) · out_s / Σ_s e^(max_s − M) · sum_s`, `M` the largest
/// `max_s`, per head.
pub fn merge_attention_spans<'a>(spans: impl Iterator<Item = (&'a [f32], &'a [f32], &'a [f32])> + Clone, d: usize, out: &mut [f32]) {
    for (head, out) in out.chunks_exact_mut(d).enumerate() {
        let top = spans.clone().map(|(max, _, _)| max[head]).fold(f32::NEG_INFINITY, f32::max);
        let mut total = 0.0;
        out.fill(0.0);
        for (max, sum, partial) in spans.clone() {
            let weight = exp(max[head] - top);
            total += weight * sum[head];
            for (o, p) in out.iter_mut().zip(&partial[head * d..(head + 1) * d]) {
                *o += weight * p;
            }
        }
        let inverse = 1.0 / total;
        for o in out.iter_mut() {
            *o *= inverse;
        }
    }
}

multiversion! {
    /// `scores [group·len]`: row `i` holds `scale · q_i·k_j` for the `group` query heads
    /// `q [group·D]` and the keys `[len, D]` (the portable build of
    /// [`attend_one_position_span`]'s scores).
    pub fn one_position_scores(q: &[f32], keys: &[f32], d: usize, scale: f32, scores: &mut [f32]) {
        let len = keys.len() / d;
        for (j, key) in keys.chunks_exact(d).enumerate() {
            for (i, q) in q.chunks_exact(d).enumerate() {
                scores[i * len + j] = scale * q.iter().zip(key).map(|(a, b)| a * b).sum::<f32>();
            }
        }
    }
}

multiversion! {
    /// `out [group·D] = P · V`: head `i`'s row is `Σ_j P[i][j] · V[j]` for probabilities
    /// `p [group·len]` and values `[len, D]`; each value row is read once for all heads.
    pub fn weighted_value_rows(p: &[f32], values: &[f32], d: usize, out: &mut [f32]) {
        let len = values.len() / d;
        out.fill(0.0);
        for (j, value) in values.chunks_exact(d).enumerate() {
            for (i, out) in out.chunks_exact_mut(d).enumerate() {
                let weight = p[i * len + j];
                for (o, v) in out.iter_mut().zip(value) {
                    *o += weight * v;
                }
            }
        }
    }
}

/// [`attend_one_position_span`]'s scores in AVX-512: one 16-lane product sum per head and
/// key, reduced in registers. A portable 16-lane sum compiled to scalar shuffles instead:
/// the whole step for 7 heads × 700 keys × 64 took 103 µs with it and 39 µs with this kernel
/// (one core, keys in cache).
#[cfg(target_arch = "x86_64")]
mod one_position_avx512 {
    use std::arch::x86_64::*;

    /// Returns `false`, computing nothing, unless `d` is a multiple of 16 and `scores` holds
    /// `q.len() / d · keys.len() / d` values.
    ///
    /// # Safety
    /// The CPU has AVX-512 F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn scores(q: &[f32], keys: &[f32], d: usize, scale: f32, scores: &mut [f32]) -> bool {
        if d == 0 || !d.is_multiple_of(16) || scores.len() < (q.len() / d) * (keys.len() / d) {
            return false;
        }
        let (group, len) = (q.len() / d, keys.len() / d);
        for j in 0..len {
            for i in 0..group {
                // SAFETY: query row i and key row j hold d values each, read 16 at a time.
                let sum = unsafe {
                    let (qi, kj) = (q.as_ptr().add(i * d), keys.as_ptr().add(j * d));
                    let mut acc = _mm512_setzero_ps();
                    for c in (0..d).step_by(16) {
                        acc = _mm512_fmadd_ps(_mm512_loadu_ps(qi.add(c)), _mm512_loadu_ps(kj.add(c)), acc);
                    }
                    _mm512_reduce_add_ps(acc)
                };
                scores[i * len + j] = scale * sum;
            }
        }
        true
    }
}

multiversion! {
    /// Softmax of one row of scores plus `bias` (as long as the row) in place, the entries
    /// where `mask` is `true` left out (exactly zero; `None`: none; a row masked whole is all
    /// zeros). Probabilities below the smallest normal f32 are zero: a subnormal slows every
    /// product it enters by orders of magnitude (measured: a Swin window's probabilities
    /// times its values 10× slower).
    pub fn softmax_row_biased(x: &mut [f32], bias: &[f32], mask: Option<&[bool]>) {
        let n = x.len().min(bias.len()).min(mask.map_or(usize::MAX, <[bool]>::len));
        let (x, bias) = (&mut x[..n], &bias[..n]);
        for (v, b) in x.iter_mut().zip(bias) {
            *v += b;
        }
        let max = match mask {
            Some(mask) => x.iter().zip(mask).fold(f32::NEG_INFINITY, |m, (&v, &hidden)| if hidden || v <= m { m } else { v }),
            None => row_max(x),
        };
        match mask {
            Some(mask) => {
                for (v, &hidden) in x.iter_mut().zip(mask) {
                    let e = exp(*v - max);
                    *v = if hidden { 0.0 } else { e };
                }
            }
            None => {
                for v in x.iter_mut() {
                    *v = exp(*v - max);
                }
            }
        }
        let sum = lane_sum(x, |v| v);
        if sum > 0.0 {
            normalise_flushing_subnormals(x, sum);
        }
    }
}

/// The softmax numerators of one row of unscaled scores in place, `x ← e^(s − max s)` with
/// `s = scale · x` (`scale > 0`; rounded to f32 first, as PyTorch's CPU attention scales its
/// f32 score blocks), returning their sum (the denominator), for callers that divide later
/// (attention divides its output rows). `max s = scale · max x` exactly: rounding a product
/// is monotone, so no second pass is needed. With AVX-512 the [`exp`] runs on explicit
/// vectors (`VSCALEFPS` for its `2ⁿ`; the same values bit for bit).
pub fn softmax_numerators(x: &mut [f32], scale: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if feature_level() == FeatureLevel::Avx512 {
        // SAFETY: the CPU has AVX-512 F (checked just above).
        #[allow(unsafe_code)]
        return unsafe { softmax_avx512::numerators(x, scale) };
    }
    softmax_numerators_portable(x, scale)
}

multiversion! {
    /// [`softmax_numerators`] as plain 16-lane loops (what runs without AVX-512).
    pub fn softmax_numerators_portable(x: &mut [f32], scale: f32) -> f32 {
        let max = row_max(x) * scale;
        let mut lanes = [0f32; 16];
        let mut chunks = x.chunks_exact_mut(16);
        for chunk in &mut chunks {
            for i in 0..16 {
                chunk[i] = exp(chunk[i] * scale - max);
                lanes[i] += chunk[i];
            }
        }
        let mut sum = 0.0;
        for v in chunks.into_remainder() {
            *v = exp(*v * scale - max);
            sum += *v;
        }
        lanes.iter().sum::<f32>() + sum
    }
}

/// [`softmax_numerators`] on explicit AVX-512 vectors: [`exp`]'s steps one for one, with its
/// `2ⁿ` from `VSCALEFPS` (exact, as the bit construction it replaces: `n ≥ −126` after the
/// clamp) and its `floor` from `VRNDSCALEPS`; 16-lane sums added in the portable order.
/// Measured on 577-key rows (CLIP-L's), one core: 3.4 vs 2.5 G values/s.
#[cfg(target_arch = "x86_64")]
mod softmax_avx512 {
    use super::{EXP_POLYNOMIAL, EXP_RANGE, LN2_HI, LN2_LO, exp};
    use std::arch::x86_64::*;

    /// The numerators of `x` in place and their sum.
    ///
    /// # Safety
    /// The CPU has AVX-512 F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn numerators(x: &mut [f32], scale: f32) -> f32 {
        let max = row_max(x) * scale;
        let mut chunks = x.chunks_exact_mut(16);
        let mut lanes = [0f32; 16];
        // SAFETY: every load and store covers one 16-value chunk of `x`, or `lanes`.
        unsafe {
            let (scales, maxes) = (_mm512_set1_ps(scale), _mm512_set1_ps(max));
            let mut sums = _mm512_setzero_ps();
            for chunk in &mut chunks {
                let scores = _mm512_sub_ps(_mm512_mul_ps(_mm512_loadu_ps(chunk.as_ptr()), scales), maxes);
                let numerators = exp16(scores);
                _mm512_storeu_ps(chunk.as_mut_ptr(), numerators);
                sums = _mm512_add_ps(sums, numerators);
            }
            _mm512_storeu_ps(lanes.as_mut_ptr(), sums);
        }
        let mut rest = 0.0;
        for v in chunks.into_remainder() {
            *v = exp(*v * scale - max);
            rest += *v;
        }
        lanes.iter().sum::<f32>() + rest
    }

    /// The largest value of `x` (NaN ignored; −∞ for an empty row).
    #[target_feature(enable = "avx512f")]
    fn row_max(x: &[f32]) -> f32 {
        let mut chunks = x.chunks_exact(16);
        // SAFETY: every load covers one 16-value chunk of `x`.
        let mut max = unsafe {
            let mut lanes = _mm512_set1_ps(f32::NEG_INFINITY);
            for chunk in &mut chunks {
                // `VMAXPS` returns its second operand when either is NaN: a NaN is skipped.
                lanes = _mm512_max_ps(_mm512_loadu_ps(chunk.as_ptr()), lanes);
            }
            _mm512_reduce_max_ps(lanes)
        };
        for &v in chunks.remainder() {
            max = max.max(v);
        }
        max
    }

    /// [`exp`] of 16 values.
    #[target_feature(enable = "avx512f")]
    fn exp16(x: __m512) -> __m512 {
        let c = _mm512_set1_ps;
        // The clamp keeps a NaN (the second operand is returned when either is NaN).
        let x = _mm512_min_ps(c(EXP_RANGE.1), _mm512_max_ps(c(EXP_RANGE.0), x));
        let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC }>(_mm512_fmadd_ps(x, c(std::f32::consts::LOG2_E), c(0.5)));
        let r = _mm512_fnmadd_ps(n, c(LN2_LO), _mm512_fnmadd_ps(n, c(LN2_HI), x));
        let mut p = c(EXP_POLYNOMIAL[0]);
        for &coefficient in &EXP_POLYNOMIAL[1..] {
            p = _mm512_fmadd_ps(p, r, c(coefficient));
        }
        let y = _mm512_add_ps(_mm512_fmadd_ps(_mm512_mul_ps(p, r), r, r), c(1.0));
        _mm512_scalef_ps(y, n)
    }
}

/// Channels accumulated in registers at once by the depthwise convolution (four AVX-512
/// registers).
const DW_LANES: usize = 64;

multiversion! {
    /// One output row of [`depthwise_conv`] on any kernel size (what [`depthwise_conv_row`]
    /// runs when the blocked kernel does not apply): `out [W, C]` for input row `y`. Each
    /// output pixel accumulates all taps for a block of channels in registers and is stored
    /// once.
    pub fn depthwise_conv_row_portable(
        input: &[f32],
        shape: (usize, usize, usize),
        weight: &[f32],
        bias: &[f32],
        kernel: usize,
        y: usize,
        out: &mut [f32],
    ) {
        let (height, width, channels) = shape;
        let pad = kernel / 2;
        let rows = (y.saturating_sub(pad))..(y + kernel - pad).min(height);
        for (x, px) in out.chunks_exact_mut(channels).enumerate().take(width) {
            let cols = (x.saturating_sub(pad))..(x + kernel - pad).min(width);
            let mut c0 = 0;
            while c0 + DW_LANES <= channels {
                let mut acc = [0f32; DW_LANES];
                acc.copy_from_slice(&bias[c0..c0 + DW_LANES]);
                for iy in rows.clone() {
                    let ky = iy + pad - y;
                    for ix in cols.clone() {
                        let tap = ky * kernel + ix + pad - x;
                        let src = &input[(iy * width + ix) * channels + c0..][..DW_LANES];
                        let w = &weight[tap * channels + c0..][..DW_LANES];
                        for i in 0..DW_LANES {
                            acc[i] += src[i] * w[i];
                        }
                    }
                }
                px[c0..c0 + DW_LANES].copy_from_slice(&acc);
                c0 += DW_LANES;
            }
            // Remaining channels one at a time.
            for c in c0..channels {
                let mut acc = bias[c];
                for iy in rows.clone() {
                    let ky = iy + pad - y;
                    for ix in cols.clone() {
                        let tap = ky * kernel + ix + pad - x;
                        acc += input[(iy * width + ix) * channels + c] * weight[tap * channels + c];
                    }
                }
                px[c] = acc;
            }
        }
    }
}

/// Depthwise `kernel × kernel` convolution (stride 1, zero padding `kernel / 2`) of a
/// channels-last map `input [H, W, C]` with `weight [kernel², C]` (tap-major) and `bias [C]`
/// → `[H, W, C]`.
pub fn depthwise_conv(
    input: &[f32],
    (height, width, channels): (usize, usize, usize),
    weight: &[f32],
    bias: &[f32],
    kernel: usize,
) -> Vec<f32> {
    let mut out = vec![0f32; height * width * channels];
    let shape = (height, width, channels);
    out.par_chunks_mut(width * channels).enumerate().for_each(|(y, row)| {
        depthwise_conv_row(input, shape, weight, bias, kernel, y, row);
    });
    out
}

/// Output row `y` (`out [W, C]`) of [`depthwise_conv`], for callers that consume the
/// convolution row by row (the blocked AVX-512 kernel for 7×7 kernels and whole 16-channel
/// blocks, the portable one otherwise).
pub fn depthwise_conv_row(
    input: &[f32],
    shape: (usize, usize, usize),
    weight: &[f32],
    bias: &[f32],
    kernel: usize,
    y: usize,
    out: &mut [f32],
) {
    if depthwise_7x7::applies(input, shape, weight, bias, kernel) {
        // SAFETY: `applies` checked the CPU features, the kernel size, the channel count and
        // every slice length the blocked kernel reads; `row` checks `out`'s length.
        #[allow(unsafe_code)]
        unsafe {
            depthwise_7x7::row(input, shape, weight, bias, y, out);
        }
        return;
    }
    depthwise_conv_row_portable(input, shape, weight, bias, kernel, y, out);
}

/// The 7×7 depthwise convolution (ConvNeXt's) blocked in registers on AVX-512: for 16
/// channels and 8 neighbouring output pixels, the 7 weights of one kernel row and the 8 sums
/// stay in registers while the 14 input pixels under them are loaded once each — 56 FMAs per
/// 21 loads, where the one-pixel kernel loads an input and a weight for every FMA. The taps
/// are summed in the same order (bias, then rows, then columns). Measured on ConvNeXt-L's
/// four stage shapes, 2 threads: 25–31 GMAC/s against 10–12 for the one-pixel kernel
/// (rearranging the input into 16-channel planes first, for contiguous reads, gained
/// nothing).
#[cfg(target_arch = "x86_64")]
mod depthwise_7x7 {
    use std::arch::x86_64::*;

    const K: usize = 7;
    const PAD: usize = K / 2;
    const LANES: usize = 16;
    /// Output pixels per register block, and the input pixels one kernel row spans for them.
    const OUT_PX: usize = 8;
    const SPAN: usize = OUT_PX + K - 1;

    /// Whether [`row`] can run: AVX-512F, a 7×7 kernel, whole 16-channel blocks and slices
    /// as long as the shape says.
    pub fn applies(input: &[f32], (h, w, c): (usize, usize, usize), weight: &[f32], bias: &[f32], kernel: usize) -> bool {
        kernel == K
            && c > 0
            && c.is_multiple_of(LANES)
            && input.len() >= h * w * c
            && weight.len() >= K * K * c
            && bias.len() >= c
            && is_x86_feature_detected!("avx512f")
    }

    /// Output row `y` (`out [W, C]`) of the convolution.
    ///
    /// # Safety
    /// [`applies`] returned true for these arguments, and `out` holds `W · C` values.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn row(input: &[f32], (h, w, c): (usize, usize, usize), weight: &[f32], bias: &[f32], y: usize, out: &mut [f32]) {
        if out.len() < w * c {
            return;
        }
        // SAFETY: every load reads 16 values at a channel offset c0 + 16 ≤ c of a pixel inside
        // the map (rows and columns are range-checked), of a tap < 49, or of the bias; every
        // store writes 16 values of an output pixel < w.
        unsafe {
            // Channel blocks innermost: the 14 × 7 input pixels of an 8-pixel block are read
            // 64 bytes after the previous block's (measured 10–20% faster than the other order).
            for x0 in (0..w).step_by(OUT_PX) {
                for c0 in (0..c).step_by(LANES) {
                    let mut acc = [_mm512_loadu_ps(bias.as_ptr().add(c0)); OUT_PX];
                    for ky in 0..K {
                        // Input row y + ky − PAD, when inside the map.
                        let Some(iy) = (y + ky).checked_sub(PAD).filter(|&iy| iy < h) else {
                            continue;
                        };
                        let mut taps = [_mm512_setzero_ps(); K];
                        for (kx, tap) in taps.iter_mut().enumerate() {
                            *tap = _mm512_loadu_ps(weight.as_ptr().add((ky * K + kx) * c + c0));
                        }
                        for d in 0..SPAN {
                            // Input column x0 + d − PAD, when inside the map.
                            let Some(ix) = (x0 + d).checked_sub(PAD).filter(|&ix| ix < w) else {
                                continue;
                            };
                            let pixel = _mm512_loadu_ps(input.as_ptr().add((iy * w + ix) * c + c0));
                            for (j, sum) in acc.iter_mut().enumerate() {
                                // Output x0 + j sees this pixel through tap column d − j.
                                if d >= j && d - j < K {
                                    *sum = _mm512_fmadd_ps(pixel, taps[d - j], *sum);
                                }
                            }
                        }
                    }
                    for (j, sum) in acc.iter().enumerate().take(w - x0) {
                        _mm512_storeu_ps(out.as_mut_ptr().add((x0 + j) * c + c0), *sum);
                    }
                }
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod depthwise_7x7 {
    pub fn applies(_: &[f32], _: (usize, usize, usize), _: &[f32], _: &[f32], _: usize) -> bool {
        false
    }
    pub unsafe fn row(_: &[f32], _: (usize, usize, usize), _: &[f32], _: &[f32], _: usize, _: &mut [f32]) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_and_erf_are_accurate() {
        for i in -2000..=2000 {
            let x = i as f32 * 0.04;
            let e = exp(x) as f64;
            let want = (x as f64).exp();
            assert!(((e - want) / want).abs() < 3e-7, "exp({x}) = {e}, want {want}");
        }
        // erf's Maclaurin series in f64 (converges to ~1e-15 for |x| ≤ 3).
        let erf64 = |x: f64| {
            let mut sum = 0.0;
            let mut term = x;
            let mut n = 0.0;
            while term.abs() > 1e-17 || n < 5.0 {
                sum += term / (2.0 * n + 1.0);
                n += 1.0;
                term *= -x * x / n;
                if n > 200.0 {
                    break;
                }
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        };
        for i in -300..=300 {
            let x = i as f32 * 0.01;
            let got = erf(x) as f64;
            let want = erf64(x as f64);
            assert!((got - want).abs() < 4e-7, "erf({x}) = {got}, want {want}");
        }
        assert_eq!(erf(10.0), 1.0);
        assert_eq!(erf(-10.0), -1.0);
        assert!(exp(-200.0) < 1e-37);
    }

    #[test]
    fn one_position_attention_over_merged_spans_matches_f64() {
        // Head widths with and without 16-lane rows; one and several heads per group; one
        // span, even spans, a short last span, and a span whose scores all sit far below the
        // others' (its weight in the merge is e^-87, exp's floor).
        for (group, d, len, span, far) in [(7, 64, 37, 37, false), (7, 64, 37, 8, false), (1, 80, 5, 2, false), (2, 16, 40, 16, true), (2, 8, 1, 1, false)] {
            let value = |i: usize, m: usize| ((i * m) % 97) as f32 / 24.0 - 2.0;
            let q: Vec<f32> = (0..group * d).map(|i| value(i, 31)).collect();
            let mut keys: Vec<f32> = (0..len * d).map(|i| value(i, 53)).collect();
            if far {
                // Keys of the first span: q·k about −400 below the rest.
                for (i, k) in keys[..span * d].iter_mut().enumerate() {
                    *k = -40.0 * q[i % d].signum();
                }
            }
            let values: Vec<f32> = (0..len * d).map(|i| value(i, 71)).collect();
            let scale = 1.0 / (d as f32).sqrt();
            let spans: Vec<(Vec<f32>, Vec<f32>, Vec<f32>)> = (0..len)
                .step_by(span)
                .map(|start| {
                    let rows = start * d..(start + span).min(len) * d;
                    let (mut max, mut sum, mut out) = (vec![0f32; group], vec![0f32; group], vec![f32::NAN; group * d]);
                    let mut scores = vec![0f32; group * (rows.len() / d)];
                    attend_one_position_span(&q, &keys[rows.clone()], &values[rows], d, scale, &mut scores, &mut out, (&mut max, &mut sum));
                    (max, sum, out)
                })
                .collect();
            let mut out = vec![f32::NAN; group * d];
            merge_attention_spans(spans.iter().map(|(m, s, o)| (&m[..], &s[..], &o[..])), d, &mut out);
            let mut want = vec![0f64; group * d];
            for i in 0..group {
                let logits: Vec<f64> = (0..len)
                    .map(|j| (0..d).map(|c| q[i * d + c] as f64 * keys[j * d + c] as f64).sum::<f64>() * scale as f64)
                    .collect();
                let max = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let weights: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
                let sum: f64 = weights.iter().sum();
                for c in 0..d {
                    want[i * d + c] = (0..len).map(|j| weights[j] / sum * values[j * d + c] as f64).sum();
                }
            }
            let err: f64 = out.iter().zip(&want).map(|(a, b)| (*a as f64 - b).powi(2)).sum::<f64>().sqrt();
            let norm: f64 = want.iter().map(|b| b * b).sum::<f64>().sqrt();
            assert!(err / norm < 1e-6, "group {group}, d {d}, len {len}, span {span}: relative error {}", err / norm);
        }
    }

    #[test]
    fn row_kernels_match_scalar_formulas() {
        let d = 37;
        let x: Vec<f32> = (0..3 * d).map(|i| ((i * 7919) % 101) as f32 / 17.0 - 3.0).collect();
        let w: Vec<f32> = (0..d).map(|i| 0.5 + i as f32 / d as f32).collect();
        let b: Vec<f32> = (0..d).map(|i| i as f32 * 0.01 - 0.1).collect();
        let mut out = vec![0f32; x.len()];
        layer_norm(&x, &w, &b, 1e-6, &mut out);
        for (row, o) in x.chunks(d).zip(out.chunks(d)) {
            let mean = row.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
            let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / d as f64;
            for j in 0..d {
                let want = (row[j] as f64 - mean) / (var + 1e-6).sqrt() * w[j] as f64 + b[j] as f64;
                assert!((o[j] as f64 - want).abs() < 1e-5, "{} vs {want}", o[j]);
            }
        }
        let mut g = x.clone();
        bias_activation(&mut g, &b, Activation::QuickGelu);
        for (i, v) in g.iter().enumerate() {
            let z = (x[i] + b[i % d]) as f64;
            assert!((*v as f64 - z / (1.0 + (-1.702 * z).exp())).abs() < 1e-6);
        }
        let mut s = x[..d].to_vec();
        softmax_row(&mut s);
        let max = x[..d].iter().cloned().fold(f32::MIN, f32::max) as f64;
        let total: f64 = x[..d].iter().map(|&v| (v as f64 - max).exp()).sum();
        for (v, &xi) in s.iter().zip(&x[..d]) {
            assert!((*v as f64 - (xi as f64 - max).exp() / total).abs() < 1e-7);
        }
        // Numerators and their sum, on whole 16-lane chunks with and without a remainder, of
        // scores scaled in f32 first (a power of two, and a scale that rounds).
        for (len, scale) in [(d, 1.0f32), (37, 0.125), (5, 0.0883883)] {
            let mut e = x[..len].to_vec();
            let sum = softmax_numerators(&mut e, scale);
            let scaled: Vec<f32> = x[..len].iter().map(|&v| v * scale).collect();
            let max = scaled.iter().cloned().fold(f32::MIN, f32::max) as f64;
            let want: Vec<f64> = scaled.iter().map(|&v| (v as f64 - max).exp()).collect();
            for (v, w) in e.iter().zip(&want) {
                assert!((*v as f64 - w).abs() < 1e-6 * w.max(1e-30) + 1e-12, "{v} vs {w}");
            }
            let total: f64 = want.iter().sum();
            assert!((sum as f64 - total).abs() < 1e-6 * total, "{sum} vs {total}");
        }
    }

    /// The biased, masked softmax against f64: masked entries exactly zero, the rest summing to
    /// one; an entry far below the others is never subnormal.
    #[test]
    fn biased_masked_softmax_matches_f64() {
        let x: Vec<f32> = (0..37).map(|i| ((i * 7919 % 101) as f32) * 0.05 - 2.5).collect();
        let bias: Vec<f32> = (0..37).map(|i| ((i * 31 % 17) as f32) * 0.1 - 0.8).collect();
        let mask: Vec<bool> = (0..37).map(|i| i % 5 == 3).collect();
        for masked in [false, true] {
            let mut p = x.clone();
            softmax_row_biased(&mut p, &bias, masked.then_some(&mask[..]));
            let logits: Vec<f64> = x.iter().zip(&bias).map(|(&a, &b)| f64::from(a) + f64::from(b)).collect();
            let seen = |j: usize| !(masked && mask[j]);
            let max = (0..37).filter(|&j| seen(j)).map(|j| logits[j]).fold(f64::NEG_INFINITY, f64::max);
            let total: f64 = (0..37).filter(|&j| seen(j)).map(|j| (logits[j] - max).exp()).sum();
            for j in 0..37 {
                let want = if seen(j) { (logits[j] - max).exp() / total } else { 0.0 };
                assert!((f64::from(p[j]) - want).abs() < 1e-7, "masked {masked} entry {j}: {} vs {want}", p[j]);
            }
        }
        let mut hidden = vec![1.0f32; 5];
        softmax_row_biased(&mut hidden, &[0.0; 5], Some(&[true; 5]));
        assert_eq!(hidden, vec![0.0; 5], "a row masked whole");
        let mut far = vec![0.0f32, -95.0, -200.0, 1.0];
        softmax_row_biased(&mut far, &[0.0; 4], None);
        // e^-95 and e^-200 (f32 subnormal or zero) come out zero or at most e^-87 (the exp's clamp):
        // normal numbers either way.
        assert!(far.iter().all(|p| *p == 0.0 || p.is_normal()), "{far:?}");
        assert!(far[1] < 2e-38 && far[2] < 2e-38, "{far:?}");
    }

    /// The AVX-512 numerators are the portable loop's bit for bit (values, sum), on rows with
    /// and without a remainder, scores spread past the clamp (−87) and a NaN score.
    #[test]
    fn softmax_numerators_paths_agree_bit_for_bit() {
        let row: Vec<f32> = (0..613).map(|i| ((i * 7919 % 100_003) as f32) * 0.003 - 150.0).collect();
        for (len, scale) in [(613, 0.125f32), (577, 0.0883883), (16, 1.0), (7, 0.3)] {
            for nan in [false, true] {
                let mut x = row[..len].to_vec();
                if nan {
                    x[len / 2] = f32::NAN;
                }
                let mut portable = x.clone();
                let portable_sum = softmax_numerators_portable(&mut portable, scale);
                let sum = softmax_numerators(&mut x, scale);
                assert_eq!(sum.to_bits(), portable_sum.to_bits(), "len {len} nan {nan}");
                let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&x), bits(&portable), "len {len} nan {nan}");
            }
        }
    }

    #[test]
    fn depthwise_conv_matches_direct_sum() {
        // 3 channels: the per-channel tail only; 70: one register block and a tail; 7×7 taps
        // on a map smaller than the kernel.
        // 7×7 with whole 16-channel blocks: the register-blocked kernel, on maps narrower than
        // one 8-pixel block, with a partial last block, and larger than the kernel.
        for (h, w, c, k) in [(5, 6, 3, 3), (4, 9, 70, 7), (3, 5, 16, 7), (9, 13, 32, 7), (12, 17, 48, 7)] {
            check_depthwise(h, w, c, k);
        }
    }

    fn check_depthwise(h: usize, w: usize, c: usize, k: usize) {
        let input: Vec<f32> = (0..h * w * c).map(|i| (i % 11) as f32 - 5.0).collect();
        let weight: Vec<f32> = (0..k * k * c).map(|i| (i % 5) as f32 * 0.25 - 0.5).collect();
        let bias: Vec<f32> = (0..c).map(|i| (i % 3) as f32 * 0.2 - 0.1).collect();
        let out = depthwise_conv(&input, (h, w, c), &weight, &bias, k);
        let pad = (k / 2) as i64;
        for y in 0..h {
            for x in 0..w {
                for ch in 0..c {
                    let mut want = bias[ch];
                    for ky in 0..k {
                        for kx in 0..k {
                            let (iy, ix) = (y as i64 + ky as i64 - pad, x as i64 + kx as i64 - pad);
                            if iy >= 0 && ix >= 0 && iy < h as i64 && ix < w as i64 {
                                want += input[(iy as usize * w + ix as usize) * c + ch] * weight[(ky * k + kx) * c + ch];
                            }
                        }
                    }
                    assert!((out[(y * w + x) * c + ch] - want).abs() < 1e-5);
                }
            }
        }
    }
}
