//! Two-stage query selection: every encoder token proposes an anchor box; the tokens whose
//! projected memory best matches the prompt (dot product) become the decoder's queries, with
//! their refined anchors as initial reference boxes.

use crate::msda::LevelLayout;
use burn::tensor::{Device, Int, Tensor, TensorData};
use chatrex_common::layers::{Activation, LayerNorm, Linear, Mlp};
use chatrex_common::weights::WeightLoader;

const LN_EPS: f64 = 1e-5;
/// Anchor side at level 0 (doubling per level).
const BASE_ANCHOR: f32 = 0.05;

/// Anchors of all tokens of unpadded levels, in logit space (`+inf` where invalid), and the
/// validity of each token.
#[derive(Debug, Clone)]
pub struct Anchors {
    /// `[S, 4]` row-major: `log(p / (1 − p))` of (cx, cy, w, h), or `+inf` when invalid.
    pub logits: Vec<f32>,
    /// Whether all four anchor numbers lie in (0.01, 0.99).
    pub valid: Vec<bool>,
}

/// Builds the anchors: centre `((x+0.5)/w, (y+0.5)/h)`, side `0.05·2^level`.
pub fn anchors(layout: &LevelLayout) -> Anchors {
    let s = layout.len();
    let mut logits = Vec::with_capacity(s * 4);
    let mut valid = Vec::with_capacity(s);
    for (level, &(h, w)) in layout.shapes.iter().enumerate() {
        let side = BASE_ANCHOR * (1u32 << level) as f32;
        for y in 0..h {
            for x in 0..w {
                let p = [(x as f32 + 0.5) / w as f32, (y as f32 + 0.5) / h as f32, side, side];
                let ok = p.iter().all(|&v| v > 0.01 && v < 0.99);
                valid.push(ok);
                for v in p {
                    logits.push(if ok { (v / (1.0 - v)).ln() } else { f32::INFINITY });
                }
            }
        }
    }
    Anchors { logits, valid }
}

/// Indices of the `k` largest values, in descending order (ties: lower index first; NaN last).
pub fn top_k_indices(values: &[f32], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    let key = |i: usize| if values[i].is_nan() { f32::NEG_INFINITY } else { values[i] };
    order.sort_by(|&a, &b| key(b).total_cmp(&key(a)).then(a.cmp(&b)));
    order.truncate(k);
    order
}

/// The selection heads (`transformer.enc_output`, `enc_output_norm`, `enc_out_bbox_embed`).
#[derive(Debug, Clone)]
pub struct QuerySelection {
    enc_output: Linear,
    enc_output_norm: LayerNorm,
    enc_out_bbox_embed: Mlp,
}

/// What the selection hands to the decoder.
#[derive(Debug, Clone)]
pub struct Selection {
    /// Selected memory token of each query slot, per image: `[B][k]`.
    pub indices: Vec<Vec<usize>>,
    /// Selection logit of every token `[B, S]`.
    pub logits: Tensor<2>,
    /// Initial reference boxes before the sigmoid `[B, k, 4]`.
    pub reference_unsigmoid: Tensor<3>,
}

impl QuerySelection {
    /// Loads the heads (under `transformer`).
    pub fn load(vb: &WeightLoader, d_model: usize) -> Self {
        Self {
            enc_output: Linear::load(&vb.pp("enc_output"), d_model, d_model, true),
            enc_output_norm: LayerNorm::load(&vb.pp("enc_output_norm"), d_model, LN_EPS),
            enc_out_bbox_embed: Mlp::load_detr(
                &vb.pp("enc_out_bbox_embed"),
                d_model,
                d_model,
                4,
                3,
                Activation::Relu,
            ),
        }
    }

    /// `memory [B, S, C]`, `prompt [1, C]` → the top-`k` selection.
    ///
    /// Invalid tokens have their memory zeroed before the heads, so they all get the same
    /// constant logit (not −∞) and, if selected, a `+inf` anchor (reference box 1.0), as in
    /// the official code.
    pub fn select(
        &self,
        memory: Tensor<3>,
        prompt: &Tensor<2>,
        layout: &LevelLayout,
        k: usize,
    ) -> Result<Selection, String> {
        let [b, s, c] = memory.dims();
        let device = memory.device();
        let anchors = anchors(layout);
        let keep: Vec<f32> = anchors.valid.iter().map(|&v| if v { 1.0 } else { 0.0 }).collect();
        let keep = Tensor::<3>::from_data(TensorData::new(keep, [1, s, 1]), &device).cast(memory.dtype());
        let output_memory = self
            .enc_output_norm
            .forward(self.enc_output.forward(memory * keep));
        let logits = output_memory
            .clone()
            .matmul(prompt.clone().transpose().unsqueeze::<3>())
            .reshape([b, s]);
        let host = logits
            .clone()
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .map_err(|e| format!("{e:?}"))?;
        let indices: Vec<Vec<usize>> = (0..b)
            .map(|i| top_k_indices(&host[i * s..(i + 1) * s], k))
            .collect();
        let flat: Vec<i64> = indices.iter().flatten().map(|&i| i as i64).collect();
        let index = Tensor::<1, Int>::from_data(TensorData::new(flat, [b * k]), &device);
        let anchor_logits = Tensor::<2>::from_data(TensorData::new(anchors.logits, [s, 4]), &device);
        let mut refs = Vec::with_capacity(b);
        for (i, picked) in indices.iter().enumerate() {
            let idx = index.clone().narrow(0, i * k, picked.len());
            let rows = output_memory.clone().narrow(0, i, 1).reshape([s, c]).select(0, idx.clone());
            let delta = self.enc_out_bbox_embed.forward(rows);
            let anchor = anchor_logits.clone().select(0, idx);
            refs.push((delta.cast(burn::tensor::DType::F32) + anchor).unsqueeze::<3>());
        }
        Ok(Selection {
            indices,
            logits,
            reference_unsigmoid: Tensor::cat(refs, 0),
        })
    }
}

/// Uploads host indices as an Int tensor.
pub fn index_tensor(indices: &[usize], device: &Device) -> Tensor<1, Int> {
    Tensor::from_data(
        TensorData::new(indices.iter().map(|&i| i as i64).collect::<Vec<_>>(), [indices.len()]),
        device,
    )
}
