//! Choosing the next token from logits: greedy, or sampling with temperature, top-k, top-p
//! and a seeded RNG; plus the repetition penalty.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// How the next token is chosen.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Sampling {
    /// The most likely token (first one on ties, as `torch.argmax`).
    Greedy,
    /// Sampling from the softmax of `logits / temperature`, optionally restricted to the
    /// `top_k` most likely tokens and to the smallest set whose probability reaches `top_p`.
    Sample {
        /// Softmax temperature (> 0).
        temperature: f32,
        /// Keep only the k most likely tokens.
        top_k: Option<usize>,
        /// Nucleus mass in (0, 1].
        top_p: Option<f32>,
        /// RNG seed (same seed, same output).
        seed: u64,
    },
}

impl Sampling {
    /// Checks the parameters.
    pub fn validate(&self) -> Result<(), String> {
        if let Sampling::Sample { temperature, top_k, top_p, .. } = self {
            if !(temperature.is_finite() && *temperature > 0.0) {
                return Err(format!("temperature must be > 0, got {temperature}"));
            }
            if *top_k == Some(0) {
                return Err("top_k must be at least 1".into());
            }
            if let Some(p) = top_p
                && !(*p > 0.0 && *p <= 1.0) {
                    return Err(format!("top_p must be in (0, 1], got {p}"));
                }
        }
        Ok(())
    }
}

/// Index of the largest finite-or-infinite value (first on ties); `None` if all are −∞/NaN.
pub fn argmax(logits: &[f32]) -> Option<usize> {
    let mut best: Option<(usize, f32)> = None;
    for (i, &v) in logits.iter().enumerate() {
        if v.is_nan() || v == f32::NEG_INFINITY {
            continue;
        }
        if best.is_none_or(|(_, b)| v > b) {
            best = Some((i, v));
        }
    }
    best.map(|(i, _)| i)
}

/// Hugging Face's repetition penalty on the tokens in `history`: positive logits are divided
/// by `penalty`, negative ones multiplied.
pub fn apply_repetition_penalty(logits: &mut [f32], history: &[u32], penalty: f32) {
    let mut seen = history.to_vec();
    seen.sort_unstable();
    seen.dedup();
    for id in seen {
        if let Some(l) = logits.get_mut(id as usize) {
            *l = if *l < 0.0 { *l * penalty } else { *l / penalty };
        }
    }
}

/// A token chooser with its own seeded RNG.
#[derive(Debug, Clone)]
pub struct Sampler {
    sampling: Sampling,
    rng: StdRng,
}

impl Sampler {
    /// A sampler for `sampling`.
    pub fn new(sampling: Sampling) -> Self {
        let seed = match &sampling {
            Sampling::Sample { seed, .. } => *seed,
            Sampling::Greedy => 0,
        };
        Self {
            sampling,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// Picks a token from `logits` (already masked/penalised); `None` if no token is allowed.
    pub fn pick(&mut self, logits: &[f32]) -> Option<u32> {
        match &self.sampling {
            Sampling::Greedy => argmax(logits).map(|i| i as u32),
            Sampling::Sample {
                temperature,
                top_k,
                top_p,
                ..
            } => {
                let mut candidates: Vec<(usize, f32)> = logits
                    .iter()
                    .enumerate()
                    .filter(|(_, v)| v.is_finite())
                    .map(|(i, &v)| (i, v / temperature))
                    .collect();
                if candidates.is_empty() {
                    return None;
                }
                candidates.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                if let Some(k) = top_k {
                    candidates.truncate(*k);
                }
                let max = candidates[0].1;
                let mut probs: Vec<f32> = candidates.iter().map(|(_, v)| (v - max).exp()).collect();
                let total: f32 = probs.iter().sum();
                probs.iter_mut().for_each(|p| *p /= total);
                if let Some(p) = top_p {
                    let mut mass = 0.0;
                    let mut keep = probs.len();
                    for (i, &q) in probs.iter().enumerate() {
                        mass += q;
                        if mass >= *p {
                            keep = i + 1;
                            break;
                        }
                    }
                    probs.truncate(keep);
                    let total: f32 = probs.iter().sum();
                    probs.iter_mut().for_each(|q| *q /= total);
                }
                let r: f32 = self.rng.random();
                let mut acc = 0.0;
                for (i, &q) in probs.iter().enumerate() {
                    acc += q;
                    if r < acc {
                        return Some(candidates[i].0 as u32);
                    }
                }
                Some(candidates[probs.len() - 1].0 as u32)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_first_maximum() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, f32::NEG_INFINITY]), Some(1));
        assert_eq!(argmax(&[f32::NEG_INFINITY; 3]), None);
    }

    #[test]
    fn sampling_is_seeded_and_respects_top_k() {
        let logits: Vec<f32> = (0..50).map(|i| (i % 7) as f32).collect();
        let s = Sampling::Sample { temperature: 0.8, top_k: Some(3), top_p: Some(0.9), seed: 42 };
        let run = || {
            let mut sampler = Sampler::new(s.clone());
            (0..20).map(|_| sampler.pick(&logits).unwrap()).collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
        // Top-3 of the logits are the three indices with value 6.
        assert!(run().iter().all(|&t| logits[t as usize] == 6.0));
    }

    #[test]
    fn repetition_penalty_follows_hf() {
        let mut l = vec![2.0, -2.0, 1.0];
        apply_repetition_penalty(&mut l, &[0, 1, 1], 2.0);
        assert_eq!(l, vec![1.0, -4.0, 1.0]);
    }
}
