//! Two-stage query selection: every encoder token proposes an anchor box; the tokens whose
//! projected memory best matches the prompt (dot product) become the decoder's queries, with
//! their refined anchors as initial reference boxes.

use crate::msda::LevelLayout;
use crate::padding::Padding;
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

/// Builds the anchors of one image whose level `l` fills the top-left `image_sizes[l]` of the
/// layout's `(h, w)` (pass `&layout.shapes` for an unpadded image): centre
/// `((x+0.5)/w_image, (y+0.5)/h_image)`, side `0.05·2^level`; padded tokens are invalid.
pub fn anchors(layout: &LevelLayout, image_sizes: &[(usize, usize)]) -> Anchors {
    let s = layout.len();
    let mut logits = Vec::with_capacity(s * 4);
    let mut valid = Vec::with_capacity(s);
    for (level, (&(h, w), &(vh, vw))) in layout.shapes.iter().zip(image_sizes).enumerate() {
        let side = BASE_ANCHOR * (1u32 << level) as f32;
        for y in 0..h {
            for x in 0..w {
                let p = [(x as f32 + 0.5) / vw as f32, (y as f32 + 0.5) / vh as f32, side, side];
                let ok = y < vh && x < vw && p.iter().all(|&v| v > 0.01 && v < 0.99);
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

    /// `memory [B, S, C]`, `prompt [1, C]` → the top-`k` selection; `padding` describes a
    /// padded batch (`None`: every image fills the layout).
    ///
    /// Invalid tokens (and padded ones) have their memory zeroed before the heads, so they all
    /// get the same constant logit (not −∞) and, if selected, a `+inf` anchor (reference box
    /// 1.0), as in the official code.
    pub fn select(
        &self,
        memory: Tensor<3>,
        prompt: &Tensor<2>,
        layout: &LevelLayout,
        padding: Option<&Padding>,
        k: usize,
    ) -> Result<Selection, String> {
        let [b, s, c] = memory.dims();
        let device = memory.device();
        // One anchor set for all images, or one per image of a padded batch.
        let anchor_sets: Vec<Anchors> = match padding {
            Some(padding) => padding.valid.iter().map(|v| anchors(layout, v)).collect(),
            None => vec![anchors(layout, &layout.shapes)],
        };
        let keep: Vec<f32> = anchor_sets
            .iter()
            .flat_map(|a| a.valid.iter().map(|&v| if v { 1.0 } else { 0.0 }))
            .collect();
        let keep = Tensor::<3>::from_data(TensorData::new(keep, [anchor_sets.len(), s, 1]), &device)
            .cast(memory.dtype());
        let output_memory = self
            .enc_output_norm
            .forward(self.enc_output.forward(memory * keep));
        let logits = output_memory
            .clone()
            .matmul(prompt.clone().transpose().unsqueeze::<3>())
            .reshape([b, s]);
        let host = chatrex_common::device::read_f32(logits.clone())?;
        // Padded tokens share the invalid tokens' constant logit but are not part of the image:
        // they never compete for a query (the image alone has at least `k` tokens).
        let indices: Vec<Vec<usize>> = (0..b)
            .map(|i| {
                let row = &host[i * s..(i + 1) * s];
                match padding {
                    Some(padding) => {
                        let ranked: Vec<f32> = row
                            .iter()
                            .zip(padding.image_tokens(i, layout))
                            .map(|(&v, image)| if image { v } else { f32::NEG_INFINITY })
                            .collect();
                        top_k_indices(&ranked, k)
                    }
                    None => top_k_indices(row, k),
                }
            })
            .collect();
        let flat: Vec<i64> = indices.iter().flatten().map(|&i| i as i64).collect();
        let index = Tensor::<1, Int>::from_data(TensorData::new(flat, [b * k]), &device);
        let anchor_logits: Vec<Tensor<2>> = anchor_sets
            .into_iter()
            .map(|a| Tensor::from_data(TensorData::new(a.logits, [s, 4]), &device))
            .collect();
        let mut refs = Vec::with_capacity(b);
        for (i, picked) in indices.iter().enumerate() {
            let idx = index.clone().narrow(0, i * k, picked.len());
            let rows = output_memory.clone().narrow(0, i, 1).reshape([s, c]).select(0, idx.clone());
            let delta = self.enc_out_bbox_embed.forward(rows);
            let anchor = anchor_logits[i.min(anchor_logits.len() - 1)].clone().select(0, idx);
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
