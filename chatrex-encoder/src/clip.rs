//! The low-resolution tower: a CLIP ViT (Hugging Face `CLIPVisionModel` structure and key
//! names) returning the patch tokens of a selected hidden layer. On the CPU backend the
//! encoder layers run on host memory ([`crate::clip_host`]); elsewhere as Burn tensor ops.

use crate::clip_host::HostClipLayer;
use crate::config::{ClipVisionConfig, SelectFeature};
use crate::kernels::Kernels;
use crate::EncoderError;
use chatrex_common::device::read_f32;
use burn::tensor::activation::{gelu, sigmoid, softmax};
use burn::tensor::{Tensor, TensorData};
use chatrex_common::layers::{Conv2d, Conv2dSpec, LayerNorm, Linear};
use chatrex_common::weights::WeightLoader;

/// One pre-LN encoder layer (`encoder.layers.{i}`).
#[derive(Debug, Clone)]
struct ClipLayer {
    layer_norm1: LayerNorm,
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    out_proj: Linear,
    layer_norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    heads: usize,
    quick_gelu: bool,
}

impl ClipLayer {
    fn load(vb: &WeightLoader, c: &ClipVisionConfig) -> Self {
        let d = c.hidden_size;
        let attn = vb.pp("self_attn");
        Self {
            layer_norm1: LayerNorm::load(&vb.pp("layer_norm1"), d, c.layer_norm_eps),
            q_proj: Linear::load(&attn.pp("q_proj"), d, d, true),
            k_proj: Linear::load(&attn.pp("k_proj"), d, d, true),
            v_proj: Linear::load(&attn.pp("v_proj"), d, d, true),
            out_proj: Linear::load(&attn.pp("out_proj"), d, d, true),
            layer_norm2: LayerNorm::load(&vb.pp("layer_norm2"), d, c.layer_norm_eps),
            fc1: Linear::load(&vb.pp("mlp.fc1"), d, c.intermediate_size, true),
            fc2: Linear::load(&vb.pp("mlp.fc2"), c.intermediate_size, d, true),
            heads: c.num_attention_heads,
            quick_gelu: c.hidden_act == "quick_gelu",
        }
    }

    /// `[B, N, D]` → `[B, N, D]`.
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [b, n, d] = x.dims();
        let hd = d / self.heads;
        let h = self.layer_norm1.forward(x.clone());
        let split = |t: Tensor<3>| t.reshape([b, n, self.heads, hd]).swap_dims(1, 2);
        let q = split(self.q_proj.forward(h.clone()) * (hd as f64).powf(-0.5));
        let k = split(self.k_proj.forward(h.clone()));
        let v = split(self.v_proj.forward(h));
        let attn = softmax(q.matmul(k.transpose()), 3).matmul(v).swap_dims(1, 2).reshape([b, n, d]);
        let x = x + self.out_proj.forward(attn);
        let h = self.fc1.forward(self.layer_norm2.forward(x.clone()));
        let h = if self.quick_gelu {
            h.clone() * sigmoid(h * 1.702)
        } else {
            gelu(h)
        };
        x + self.fc2.forward(h)
    }
}

/// The encoder layers, as tensor ops or on host memory.
#[derive(Debug, Clone)]
enum Layers {
    Tensor(Vec<ClipLayer>),
    Host(Vec<HostClipLayer>),
}

/// The CLIP vision tower, truncated after the selected layer.
#[derive(Debug, Clone)]
pub struct ClipVisionTower {
    patch_embedding: Conv2d,
    class_embedding: Tensor<1>,
    position_embedding: Tensor<2>,
    pre_layrnorm: LayerNorm,
    layers: Layers,
    select_feature: SelectFeature,
}

impl ClipVisionTower {
    /// Loads `vision_model.*` keys under `vb`; only the first `layers_used` encoder layers are
    /// built, the later ones (and `post_layernorm`) are accounted for as unused. Uses the
    /// fastest kernels for the device.
    pub fn load(vb: &WeightLoader, c: &ClipVisionConfig, layers_used: usize, select_feature: SelectFeature) -> Self {
        Self::load_with(vb, c, layers_used, select_feature, Kernels::Auto)
    }

    /// [`load`](Self::load) with the given kernels.
    pub fn load_with(
        vb: &WeightLoader,
        c: &ClipVisionConfig,
        layers_used: usize,
        select_feature: SelectFeature,
        kernels: Kernels,
    ) -> Self {
        let d = c.hidden_size;
        let positions = c.grid() * c.grid() + 1;
        let emb = vb.pp("embeddings");
        let layer_vb = |i: usize| vb.pp(format!("encoder.layers.{i}"));
        let layers = if kernels.host(vb.device()) {
            Layers::Host((0..layers_used).map(|i| HostClipLayer::load(&layer_vb(i), c)).collect())
        } else {
            Layers::Tensor((0..layers_used).map(|i| ClipLayer::load(&layer_vb(i), c)).collect())
        };
        for i in layers_used..c.num_hidden_layers {
            let layer = vb.pp(format!("encoder.layers.{i}"));
            for name in [
                "layer_norm1.weight", "layer_norm1.bias", "layer_norm2.weight", "layer_norm2.bias",
                "self_attn.q_proj.weight", "self_attn.q_proj.bias", "self_attn.k_proj.weight",
                "self_attn.k_proj.bias", "self_attn.v_proj.weight", "self_attn.v_proj.bias",
                "self_attn.out_proj.weight", "self_attn.out_proj.bias", "mlp.fc1.weight",
                "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias",
            ] {
                layer.ignore(name);
            }
        }
        vb.ignore("post_layernorm.weight");
        vb.ignore("post_layernorm.bias");
        vb.ignore("embeddings.position_ids");
        Self {
            patch_embedding: Conv2d::load(
                &emb.pp("patch_embedding"),
                Conv2dSpec {
                    d_in: c.num_channels,
                    d_out: d,
                    kernel: c.patch_size,
                    stride: c.patch_size,
                    padding: 0,
                    groups: 1,
                    bias: false,
                },
            ),
            class_embedding: emb.float("class_embedding", [d]),
            position_embedding: emb.float("position_embedding.weight", [positions, d]),
            pre_layrnorm: LayerNorm::load(&vb.pp("pre_layrnorm"), d, c.layer_norm_eps),
            layers,
            select_feature,
        }
    }

    /// `[B, 3, S, S]` → selected tokens `[B, grid², D]` (patch tokens; CLS dropped), in the
    /// input's dtype. Errors only if a backend fails to read data back.
    pub fn forward(&self, pixels: Tensor<4>) -> Result<Tensor<3>, EncoderError> {
        let patches = self.patch_embedding.forward(pixels);
        let [b, d, gh, gw] = patches.dims();
        let tokens = patches.reshape([b, d, gh * gw]).swap_dims(1, 2);
        let cls = self.class_embedding.clone().reshape([1, 1, d]).expand([b, 1, d]);
        let x = Tensor::cat(vec![cls, tokens], 1) + self.position_embedding.clone().unsqueeze::<3>();
        let mut x = self.pre_layrnorm.forward(x);
        match &self.layers {
            Layers::Tensor(layers) => {
                for layer in layers {
                    x = layer.forward(x);
                }
            }
            Layers::Host(layers) => x = Self::forward_host(layers, x)?,
        }
        Ok(match self.select_feature {
            SelectFeature::Patch => x.narrow(1, 1, gh * gw),
            SelectFeature::ClsPatch => x,
        })
    }

    /// The host layers over each image's `[N, D]` token rows.
    fn forward_host(layers: &[HostClipLayer], x: Tensor<3>) -> Result<Tensor<3>, EncoderError> {
        let [b, n, d] = x.dims();
        let (device, dtype) = (x.device(), x.dtype());
        let mut values = read_f32(x).map_err(EncoderError::Backend)?;
        for image in values.chunks_exact_mut(n * d) {
            for layer in layers {
                layer.forward(image, n).map_err(EncoderError::Backend)?;
            }
        }
        Ok(Tensor::<3>::from_data(TensorData::new(values, [b, n, d]), &device).cast(dtype))
    }
}
