//! The UPN decoder: `num_queries` learned targets refine their reference boxes layer by layer
//! (self-attention → deformable cross-attention → FFN, each post-norm), with the DINO-style
//! box update through the shared box head.

use crate::encoder::LayerSizes;
use crate::msda::{LevelLayout, MsdaParts, MultiScaleDeformableAttention, Reference};
use crate::padding::Padding;
use burn::tensor::activation::{relu, sigmoid, softmax};
use burn::tensor::{DType, Int, Tensor, TensorData};
use chatrex_common::layers::{Activation, LayerNorm, Linear, Mlp};
use chatrex_common::sine::sine_embedding;
use chatrex_common::weights::WeightLoader;

const LN_EPS: f64 = 1e-5;
/// Temperature of the query sine embedding.
const QUERY_TEMPERATURE: f32 = 10000.0;
/// Clamp of `inverse_sigmoid` (the official eps is 1e-3, not 1e-5).
const INVERSE_SIGMOID_EPS: f64 = 1e-3;

/// `log(x / (1 − x))` with x clamped to [0, 1] and both terms clamped to ≥ 1e-3.
pub fn inverse_sigmoid<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let x = x.clamp(0.0, 1.0);
    let x1 = x.clone().clamp_min(INVERSE_SIGMOID_EPS);
    let x2 = (x.neg() + 1.0).clamp_min(INVERSE_SIGMOID_EPS);
    (x1 / x2).log()
}

/// `nn.MultiheadAttention` (packed `in_proj_weight` / `in_proj_bias`, `out_proj`).
#[derive(Debug, Clone)]
struct MultiheadAttention {
    q: Linear,
    k: Linear,
    v: Linear,
    out_proj: Linear,
    heads: usize,
}

impl MultiheadAttention {
    fn load(vb: &WeightLoader, d: usize, heads: usize) -> Self {
        let w = vb.float("in_proj_weight", [3 * d, d]);
        let b = vb.float("in_proj_bias", [3 * d]);
        let part = |i: usize| Linear {
            weight: w.clone().narrow(0, i * d, d),
            bias: Some(b.clone().narrow(0, i * d, d)),
        };
        Self {
            q: part(0),
            k: part(1),
            v: part(2),
            out_proj: Linear::load(&vb.pp("out_proj"), d, d, true),
            heads,
        }
    }

    /// `q, k [B, N, C]`, `v [B, N, C]` → `[B, N, C]` (no mask).
    fn forward(&self, q: Tensor<3>, k: Tensor<3>, v: Tensor<3>) -> Tensor<3> {
        let [b, n, c] = q.dims();
        let hd = c / self.heads;
        let split = |x: Tensor<3>| x.reshape([b, n, self.heads, hd]).swap_dims(1, 2);
        let q = split(self.q.forward(q));
        let k = split(self.k.forward(k));
        let v = split(self.v.forward(v));
        let scores = q.matmul(k.transpose()) / (hd as f64).sqrt();
        let out = softmax(scores, 3).matmul(v).swap_dims(1, 2).reshape([b, n, c]);
        self.out_proj.forward(out)
    }
}

/// One decoder layer (`transformer.decoder.layers.{i}`): note the norm names — `norm2` after
/// self-attention, `norm1` after cross-attention, `norm3` after the FFN.
#[derive(Debug, Clone)]
pub struct DecoderLayer {
    self_attn: MultiheadAttention,
    norm2: LayerNorm,
    cross_attn: MultiScaleDeformableAttention,
    norm1: LayerNorm,
    linear1: Linear,
    linear2: Linear,
    norm3: LayerNorm,
}

/// Intermediate tensors of one decoder layer (for parity checks).
#[derive(Debug, Clone)]
pub struct DecoderLayerTrace {
    /// `[B, Q, 2C]` sine embedding of the layer's reference box, order (cy, cx, w, h).
    pub query_sine_embed: Tensor<3>,
    /// `[B, Q, C]` = `ref_point_head(query_sine_embed)`.
    pub query_pos: Tensor<3>,
    /// `[B, Q, C]` after self-attention and `norm2`.
    pub after_self_attn: Tensor<3>,
    /// `[B, Q, C]` after cross-attention and `norm1`.
    pub after_cross_attn: Tensor<3>,
    /// The cross-attention intermediates.
    pub cross_attn: MsdaParts,
    /// `[B, Q, C]` layer output (un-normed).
    pub out: Tensor<3>,
    /// `[B, Q, C]` `decoder.norm(out)`.
    pub out_normed: Tensor<3>,
    /// `[B, Q, 4]` reference box that entered the layer.
    pub reference_in: Tensor<3>,
    /// `[B, Q, 4]` refined reference after the layer.
    pub reference_out: Tensor<3>,
}

impl DecoderLayer {
    fn load(vb: &WeightLoader, s: LayerSizes) -> Self {
        Self {
            self_attn: MultiheadAttention::load(&vb.pp("self_attn"), s.d_model, s.n_heads),
            norm2: LayerNorm::load(&vb.pp("norm2"), s.d_model, LN_EPS),
            cross_attn: MultiScaleDeformableAttention::load(
                &vb.pp("cross_attn"),
                s.d_model,
                s.n_heads,
                s.n_levels,
                s.n_points,
            ),
            norm1: LayerNorm::load(&vb.pp("norm1"), s.d_model, LN_EPS),
            linear1: Linear::load(&vb.pp("linear1"), s.d_model, s.d_ffn, true),
            linear2: Linear::load(&vb.pp("linear2"), s.d_ffn, s.d_model, true),
            norm3: LayerNorm::load(&vb.pp("norm3"), s.d_model, LN_EPS),
        }
    }
}

/// The decoder (`transformer.decoder`) with the shared box head.
#[derive(Debug, Clone)]
pub struct Decoder {
    layers: Vec<DecoderLayer>,
    norm: LayerNorm,
    ref_point_head: Mlp,
    /// The box MLP shared by all layers and the final heads.
    pub bbox_embed: Mlp,
    n_levels: usize,
    d_model: usize,
}

/// What the decoder returns.
#[derive(Debug, Clone)]
pub struct DecoderOutput {
    /// Normed output of each layer `[B, Q, C]`.
    pub hs: Vec<Tensor<3>>,
    /// Reference boxes (sigmoid space): the initial one, then one after each layer `[B, Q, 4]`.
    pub references: Vec<Tensor<3>>,
    /// Per-layer intermediates when tracing was requested.
    pub traces: Vec<DecoderLayerTrace>,
}

impl Decoder {
    /// Loads the decoder under `transformer.decoder`; the box head is loaded from
    /// `bbox_embed.0` and its other names are accepted as aliases.
    pub fn load(vb: &WeightLoader, num_layers: usize, s: LayerSizes) -> Self {
        let d = s.d_model;
        let bbox = vb.pp("bbox_embed.0");
        let bbox_embed = Mlp::load_detr(&bbox, d, d, 4, 3, Activation::Relu);
        for i in 0..num_layers {
            for layer in 0..3 {
                for param in ["weight", "bias"] {
                    let leaf = format!("layers.{layer}.{param}");
                    let canonical = bbox.key(&leaf);
                    if i > 0 {
                        vb.pp(format!("bbox_embed.{i}")).alias(&leaf, &canonical);
                    }
                }
            }
        }
        // `ref_point_head_point` only ever multiplies zeros by 0.0 in the official decoder.
        for layer in 0..2 {
            for param in ["weight", "bias"] {
                vb.ignore(&format!("ref_point_head_point.layers.{layer}.{param}"));
            }
        }
        Self {
            layers: (0..num_layers)
                .map(|i| DecoderLayer::load(&vb.pp(format!("layers.{i}")), s))
                .collect(),
            norm: LayerNorm::load(&vb.pp("norm"), d, LN_EPS),
            ref_point_head: Mlp::load_detr(&vb.pp("ref_point_head"), 2 * d, d, d, 2, Activation::Relu),
            bbox_embed,
            n_levels: s.n_levels,
            d_model: d,
        }
    }

    /// Sine embedding of reference boxes `(cx, cy, w, h)` in the order (cy, cx, w, h),
    /// `d_model/2` features each → `[B, Q, 2·d_model]`.
    fn query_sine_embed(&self, reference: Tensor<3>) -> Tensor<3> {
        let device = reference.device();
        let order = Tensor::<1, Int>::from_data(TensorData::new(vec![1i64, 0, 2, 3], [4]), &device);
        let positions = reference.select(2, order) * std::f64::consts::TAU;
        sine_embedding(positions, self.d_model / 2, QUERY_TEMPERATURE)
    }

    /// `tgt [B, Q, C]`, `memory [B, S, C]`, initial references (sigmoid space) `[B, Q, 4]`,
    /// normalised to each image's own extent; `padding` describes a padded batch (`None`:
    /// every image fills the layout).
    pub fn forward(
        &self,
        tgt: Tensor<3>,
        memory: &Tensor<3>,
        reference: Tensor<3>,
        layout: &LevelLayout,
        padding: Option<&Padding>,
        trace: bool,
    ) -> DecoderOutput {
        let [b, q, _] = tgt.dims();
        let l = self.n_levels;
        let dtype = tgt.dtype();
        let mut output = tgt;
        let mut reference = reference;
        let mut hs = Vec::with_capacity(self.layers.len());
        let mut references = vec![reference.clone()];
        let mut traces = Vec::new();
        for layer in &self.layers {
            // The same box on every level: boxes are normalised to the image's own extent, and
            // so are the sampling locations in a padded batch (see `crate::padding`).
            let reference_input = reference.clone().reshape([b, q, 1, 4]).expand([b, q, l, 4]);
            let query_sine_embed = self.query_sine_embed(reference.clone());
            let query_pos = self.ref_point_head.forward(query_sine_embed.clone().cast(dtype));

            let qk = output.clone() + query_pos.clone();
            let attended = layer.self_attn.forward(qk.clone(), qk, output.clone());
            let after_self_attn = layer.norm2.forward(output + attended);

            let (cross, parts) = layer.cross_attn.forward_parts(
                after_self_attn.clone() + query_pos.clone(),
                &Reference::Boxes(reference_input),
                memory.clone(),
                layout,
                padding,
            );
            let after_cross_attn = layer.norm1.forward(after_self_attn.clone() + cross);
            let ffn = layer.linear2.forward(relu(layer.linear1.forward(after_cross_attn.clone())));
            output = layer.norm3.forward(after_cross_attn.clone() + ffn);

            let delta = self.bbox_embed.forward(output.clone()).cast(DType::F32);
            let new_reference = sigmoid(delta + inverse_sigmoid(reference.clone()));
            let normed = self.norm.forward(output.clone());
            if trace {
                traces.push(DecoderLayerTrace {
                    query_sine_embed,
                    query_pos,
                    after_self_attn,
                    after_cross_attn,
                    cross_attn: parts,
                    out: output.clone(),
                    out_normed: normed.clone(),
                    reference_in: reference.clone(),
                    reference_out: new_reference.clone(),
                });
            }
            hs.push(normed);
            references.push(new_reference.clone());
            reference = new_reference;
        }
        DecoderOutput {
            hs,
            references,
            traces,
        }
    }
}
