//! Deterministic random weights for benchmarks and shape tests.

use rayon::prelude::*;

/// Generates a deterministic pseudo-random tensor for any name and shape.
///
/// Values depend only on the seed, the key and the shape, so two loads give identical models.
/// Matrices get N(0, 1/fan_in) entries (fan_in = product of all but the first dimension), norm
/// weights `1 + 0.1·N`, biases and other vectors `0.02·N`: activations stay in a realistic range
/// through deep stacks, which matters for timing (no denormals, no overflow in f16).
#[derive(Debug, Clone, Copy)]
pub struct RandomWeights {
    /// Seed mixed into every tensor's stream.
    pub seed: u64,
}

/// SplitMix64's state increment.
const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN_GAMMA);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1].
    fn uniform(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 + 1.0) * (1.0 / (1u64 << 24) as f32)
    }
}

fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

impl RandomWeights {
    /// A generator with this seed.
    pub fn new(seed: u64) -> Self {
        Self { seed }
    }

    /// Standard-normal values for `key`, `len` of them (Box–Muller on pairs of SplitMix64
    /// uniforms). SplitMix64 is a counter, so blocks of pairs are generated in parallel from
    /// their own starting state and the values do not depend on the thread count.
    pub fn normal(&self, key: &str, len: usize) -> Vec<f32> {
        const PAIRS_PER_BLOCK: usize = 1 << 15;
        let start = self.seed ^ fnv1a(key);
        let mut out = vec![0f32; len];
        out.par_chunks_mut(2 * PAIRS_PER_BLOCK).enumerate().for_each(|(block, chunk)| {
            let first_pair = (block * PAIRS_PER_BLOCK) as u64;
            let mut rng = SplitMix64(start.wrapping_add(first_pair.wrapping_mul(2).wrapping_mul(GOLDEN_GAMMA)));
            for pair in chunk.chunks_mut(2) {
                let (u1, u2) = (rng.uniform(), rng.uniform());
                let r = (-2.0 * u1.ln()).sqrt();
                let theta = std::f32::consts::TAU * u2;
                pair[0] = r * theta.cos();
                if let Some(second) = pair.get_mut(1) {
                    *second = r * theta.sin();
                }
            }
        });
        out
    }

    /// Values for a parameter called `key` with this shape (see the type docs for the scales).
    pub fn values(&self, key: &str, shape: &[usize]) -> Vec<f32> {
        let len = shape.iter().product();
        let mut v = self.normal(key, len);
        if shape.len() >= 2 {
            let fan_in: usize = shape[1..].iter().product::<usize>().max(1);
            let scale = 1.0 / (fan_in as f32).sqrt();
            v.iter_mut().for_each(|x| *x *= scale);
        } else {
            let leaf = key.rsplit('.').next().unwrap_or(key);
            let is_norm_weight = leaf == "weight" && (key.contains("norm") || key.contains("ln"));
            if is_norm_weight {
                v.iter_mut().for_each(|x| *x = 1.0 + 0.1 * *x);
            } else {
                v.iter_mut().for_each(|x| *x *= 0.02);
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_key_dependent() {
        let r = RandomWeights::new(1);
        assert_eq!(r.values("a.weight", &[3, 4]), r.values("a.weight", &[3, 4]));
        assert_ne!(r.values("a.weight", &[3, 4]), r.values("b.weight", &[3, 4]));
        let n = r.normal("x", 20000);
        let mean = n.iter().sum::<f32>() / n.len() as f32;
        let var = n.iter().map(|x| (x - mean) * (x - mean)).sum::<f32>() / n.len() as f32;
        assert!(mean.abs() < 0.03 && (var - 1.0).abs() < 0.05, "mean {mean} var {var}");
    }

    /// The parallel blocks continue one sequential SplitMix64 stream across block edges.
    #[test]
    fn blocks_continue_one_stream() {
        let r = RandomWeights::new(7);
        let len = 2 * (1 << 15) * 2 + 3;
        let mut rng = SplitMix64(7 ^ fnv1a("w"));
        let mut expected = Vec::with_capacity(len);
        while expected.len() < len {
            let (u1, u2) = (rng.uniform(), rng.uniform());
            let r = (-2.0 * u1.ln()).sqrt();
            let theta = std::f32::consts::TAU * u2;
            expected.push(r * theta.cos());
            if expected.len() < len {
                expected.push(r * theta.sin());
            }
        }
        assert_eq!(r.normal("w", len), expected);
    }
}
