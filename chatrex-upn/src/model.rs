//! [`Upn`]: the whole proposal network — backbone, neck, encoder, two-stage selection,
//! decoder, heads — and its use as a proposal generator.

use crate::config::UpnConfig;
use crate::decoder::{Decoder, DecoderOutput, inverse_sigmoid};
use crate::encoder::{Encoder, LayerSizes};
use crate::msda::LevelLayout;
use crate::neck::Neck;
use crate::padding::{Padding, pad_levels};
use crate::position::{image_position_embedding, padded_position_embedding};
use crate::preprocess::preprocess;
use crate::prompt::PromptType;
use crate::proposals::{ImageSize, Proposals};
use crate::swin::SwinTransformer;
use crate::two_stage::{QuerySelection, Selection};
use crate::UpnError;
use burn::tensor::activation::sigmoid;
use burn::tensor::{DType, Device, Tensor};
use chatrex_common::image::RgbImage;
use chatrex_common::weights::{LoadReport, TensorSource, WeightDType, WeightLoader, open_checkpoint};
use std::collections::BTreeMap;
use std::path::Path;

/// The Universal Proposal Network.
///
/// Thread-safe (`Send + Sync`): one loaded model can serve concurrent requests.
#[derive(Debug, Clone)]
pub struct Upn {
    config: UpnConfig,
    backbone: SwinTransformer,
    neck: Neck,
    /// `[n_levels, d_model]`, added to each level's position embedding.
    level_embed: Tensor<2>,
    encoder: Encoder,
    selection: QuerySelection,
    /// `[num_queries, d_model]` learned decoder targets.
    tgt_embed: Tensor<2>,
    decoder: Decoder,
    fine_prompt: Tensor<2>,
    coarse_prompt: Tensor<2>,
    dtype: WeightDType,
    device: Device,
}

/// Raw network output for a batch.
#[derive(Debug, Clone)]
pub struct UpnOutput {
    /// `[B, Q, 4]` normalised (cx, cy, w, h) per query slot.
    pub boxes: Tensor<3>,
    /// `[B, Q]` prompt logits (score = sigmoid).
    pub logits: Tensor<2>,
}

/// Intermediate tensors of one forward pass (for parity checks and debugging).
#[derive(Debug, Clone)]
pub struct UpnTrace {
    /// Normed backbone stage maps `[B, C_i, H_i, W_i]`.
    pub backbone: Vec<Tensor<4>>,
    /// Projected levels `[B, d, h_l, w_l]`.
    pub projected: Vec<Tensor<4>>,
    /// Position embedding + level embedding `[1, S, d]`.
    pub pos: Tensor<3>,
    /// Output of every encoder layer `[B, S, d]` (the last is the memory).
    pub encoder_layers: Vec<Tensor<3>>,
    /// The level layout of the memory.
    pub layout: LevelLayout,
    /// Two-stage selection.
    pub selection: Selection,
    /// Decoder outputs and per-layer intermediates.
    pub decoder: DecoderOutput,
    /// Boxes predicted from each decoder layer `[B, Q, 4]`.
    pub layer_boxes: Vec<Tensor<3>>,
    /// Logits predicted from each decoder layer `[B, Q]`.
    pub layer_logits: Vec<Tensor<2>>,
}

impl Upn {
    /// Loads the official `upn_large.pth` (or a `.safetensors` with the same keys) in f32.
    pub fn load(path: &Path, config: &UpnConfig, device: &Device) -> Result<Self, UpnError> {
        Self::load_with_dtype(path, config, device, WeightDType::F32)
    }

    /// Loads a checkpoint with weights converted to `dtype` (deformable attention stays f32).
    pub fn load_with_dtype(
        path: &Path,
        config: &UpnConfig,
        device: &Device,
        dtype: WeightDType,
    ) -> Result<Self, UpnError> {
        Self::from_loader(&Self::checkpoint_loader(path, device, dtype)?, config).map(|(upn, _)| upn)
    }

    /// A loader over the official checkpoint at `path` (its `model` state dict), converting
    /// float weights to `dtype` on `device`, with a progress bar: for
    /// [`from_loader`](Self::from_loader) after options such as
    /// [`with_split_f32_products`](WeightLoader::with_split_f32_products).
    pub fn checkpoint_loader(path: &Path, device: &Device, dtype: WeightDType) -> Result<WeightLoader, UpnError> {
        Ok(WeightLoader::new(open_checkpoint(path, Some("model"))?, device, dtype).with_progress("loading UPN"))
    }

    /// Builds the model from any tensor source, strictly: every key must be used (shared
    /// box-head aliases and `relative_position_index` buffers are accepted), and every
    /// missing or mis-shaped key is reported by name.
    pub fn from_source(
        source: Box<dyn TensorSource>,
        config: &UpnConfig,
        device: &Device,
        dtype: WeightDType,
    ) -> Result<(Self, LoadReport), UpnError> {
        Self::from_loader(&WeightLoader::new(source, device, dtype).with_progress("loading UPN"), config)
    }

    /// Builds the model from a prepared loader, as strictly as [`from_source`](Self::from_source)
    /// (for a checkpoint: every key used, every missing or mis-shaped one reported) — e.g. one
    /// made [`with_split_f32_products`](WeightLoader::with_split_f32_products), whose f32 host
    /// linear layers (Swin blocks, feed-forward blocks) then multiply on split bf16 tiles
    /// where the CPU has AMX (about 1e-6 of the f32 products; measured 1.6× on the Swin-L
    /// backbone).
    pub fn from_loader(vb: &WeightLoader, config: &UpnConfig) -> Result<(Self, LoadReport), UpnError> {
        config.validate()?;
        let upn = Self::build(vb, config);
        let report = vb.finish("UPN")?;
        tracing::info!(tensors = report.tensors, bytes = report.bytes, "UPN loaded from {}", report.source);
        Ok((upn, report))
    }

    /// A model with deterministic random weights (benchmarks and tests).
    pub fn random(config: &UpnConfig, device: &Device, dtype: WeightDType, seed: u64) -> Result<Self, UpnError> {
        Self::from_loader(&WeightLoader::random(seed, device, dtype), config).map(|(upn, _)| upn)
    }

    fn build(vb: &WeightLoader, config: &UpnConfig) -> Self {
        let d = config.d_model;
        let sizes = LayerSizes {
            d_model: d,
            d_ffn: config.d_ffn,
            n_heads: config.n_heads,
            n_levels: config.n_levels,
            n_points: config.n_points,
        };
        let tf = vb.pp("transformer");
        let decoder = Decoder::load(&tf.pp("decoder"), config.dec_layers, sizes);
        // The top-level `bbox_embed.{i}` are further names of the shared box head.
        let canonical = tf.pp("decoder.bbox_embed.0");
        for i in 0..config.dec_layers {
            for layer in 0..3 {
                for param in ["weight", "bias"] {
                    let leaf = format!("layers.{layer}.{param}");
                    vb.pp(format!("bbox_embed.{i}")).alias(&leaf, &canonical.key(&leaf));
                }
            }
        }
        Self {
            backbone: SwinTransformer::load(&vb.pp("backbone.model.backbone"), &config.backbone),
            neck: Neck::load(vb, &config.stage_dims(), config.n_levels, d),
            level_embed: tf.float("level_embed", [config.n_levels, d]),
            encoder: Encoder::load(&tf.pp("encoder"), config.enc_layers, sizes),
            selection: QuerySelection::load(&tf, d),
            tgt_embed: tf.float("tgt_embed.weight", [config.num_queries, d]),
            decoder,
            fine_prompt: tf.float("fine_grained_prompt.weight", [1, d]),
            coarse_prompt: tf.float("coarse_grained_prompt.weight", [1, d]),
            dtype: vb.dtype(),
            device: vb.device().clone(),
            config: config.clone(),
        }
    }

    /// The sizes this model was built with.
    pub fn config(&self) -> &UpnConfig {
        &self.config
    }

    /// The device it runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    fn prompt(&self, prompt: PromptType) -> &Tensor<2> {
        match prompt {
            PromptType::Fine => &self.fine_prompt,
            PromptType::Coarse => &self.coarse_prompt,
        }
    }

    /// Runs the network on a batch of equally sized, preprocessed images `[B, 3, H, W]`.
    pub fn forward(&self, images: Tensor<4>, prompt: PromptType) -> Result<UpnOutput, UpnError> {
        self.run(images, prompt, false).map(|(out, _)| out)
    }

    /// Like [`forward`](Self::forward), also returning every intermediate tensor.
    pub fn forward_traced(&self, images: Tensor<4>, prompt: PromptType) -> Result<(UpnOutput, UpnTrace), UpnError> {
        let (out, trace) = self.run(images, prompt, true)?;
        let trace = trace.ok_or_else(|| UpnError::Backend("trace missing".into()))?;
        Ok((out, trace))
    }

    fn run(&self, images: Tensor<4>, prompt: PromptType, trace: bool) -> Result<(UpnOutput, Option<UpnTrace>), UpnError> {
        let images = images.cast(self.dtype.dtype());
        let features = self.backbone.forward(images)?;
        let levels = self.neck.forward(&features);
        let layout = LevelLayout::new(levels.iter().map(|t| (t.dims()[2], t.dims()[3])).collect());
        self.transform(levels, layout, None, prompt, trace.then_some(features))
    }

    /// Backbone and neck of one batch of equally sized images `[B, 3, H, W]` → the `n_levels`
    /// maps of each image, `[1, d_model, h_l, w_l]` each.
    fn image_levels(&self, images: Tensor<4>) -> Result<Vec<Vec<Tensor<4>>>, UpnError> {
        let b = images.dims()[0];
        let levels = self.neck.forward(&self.backbone.forward(images.cast(self.dtype.dtype()))?);
        Ok((0..b)
            .map(|i| levels.iter().map(|t| t.clone().narrow(0, i, 1)).collect())
            .collect())
    }

    /// Number of decoder queries for an image with `tokens` memory tokens.
    fn queries_for(&self, tokens: usize) -> usize {
        self.config.num_queries.min(tokens)
    }

    /// The transformer on the level maps of several images (`maps[b][l]`, `[1, d, h, w]`):
    /// one batch, padded if their sizes differ. Every image must give the same number of
    /// queries (`min(num_queries, its tokens)`).
    fn transform_images(&self, maps: Vec<Vec<Tensor<4>>>, prompt: PromptType) -> Result<UpnOutput, UpnError> {
        let padded = pad_levels(maps).map_err(UpnError::Request)?;
        let queries: Vec<usize> = padded
            .valid
            .iter()
            .map(|v| self.queries_for(v.iter().map(|(h, w)| h * w).sum()))
            .collect();
        if queries.iter().any(|&k| k != queries[0]) {
            return Err(UpnError::Request(format!(
                "a padded batch needs images with the same number of queries, got {queries:?} (an image \
                 with fewer than num_queries tokens must run alone)"
            )));
        }
        let padding = if padded.is_padded() {
            Some(Padding::new(padded.valid, &padded.layout, &self.device).map_err(UpnError::Request)?)
        } else {
            None
        };
        self.transform(padded.levels, padded.layout, padding, prompt, None)
            .map(|(out, _)| out)
    }

    /// Runs images of different sizes (each preprocessed, `[3, H_i, W_i]`) as one padded batch:
    /// backbone and neck per image, encoder and decoder batched with padding masks (see
    /// [`crate::padding`]). Boxes are normalised to each image's own extent; the result per
    /// image equals [`forward`](Self::forward) on that image alone, up to float rounding.
    ///
    /// Errors if the images give different numbers of queries (only images with fewer memory
    /// tokens than `num_queries`, i.e. extreme aspect ratios, do).
    pub fn forward_padded(&self, images: &[Tensor<3>], prompt: PromptType) -> Result<UpnOutput, UpnError> {
        if images.is_empty() {
            return Err(UpnError::Request("no images given".into()));
        }
        let mut maps = Vec::with_capacity(images.len());
        for image in images {
            maps.extend(self.image_levels(image.clone().unsqueeze::<4>())?);
        }
        self.transform_images(maps, prompt)
    }

    /// Encoder, query selection, decoder and heads on the neck's levels `[B, d, h_l, w_l]`
    /// (padded per `padding` when the images' sizes differ). `features` are the backbone maps,
    /// kept for the trace.
    fn transform(
        &self,
        levels: Vec<Tensor<4>>,
        layout: LevelLayout,
        padding: Option<Padding>,
        prompt: PromptType,
        features: Option<Vec<Tensor<4>>>,
    ) -> Result<(UpnOutput, Option<UpnTrace>), UpnError> {
        let d = self.config.d_model;
        let trace = features.is_some();
        let b = levels.first().map(|t| t.dims()[0]).unwrap_or(0);
        let temperature = self.config.pos_temperature as f32;
        let dtype = self.dtype.dtype();
        // Position embedding + level embedding: [1, S, d], or [B, S, d] for a padded batch.
        let level_pos = |l: usize, image: (usize, usize)| {
            let shape = layout.shapes[l];
            let pos = if image == shape {
                image_position_embedding(shape.0, shape.1, d / 2, temperature, &self.device)
            } else {
                padded_position_embedding(shape, image, d / 2, temperature, &self.device)
            };
            pos.cast(dtype) + self.level_embed.clone().narrow(0, l, 1)
        };
        let image_pos = |sizes: &[(usize, usize)]| {
            Tensor::cat((0..layout.shapes.len()).map(|l| level_pos(l, sizes[l])).collect(), 0).unsqueeze::<3>()
        };
        let pos = match &padding {
            Some(padding) => Tensor::cat(padding.valid.iter().map(|v| image_pos(v)).collect(), 0),
            None => image_pos(&layout.shapes),
        };
        let src = Tensor::cat(
            levels
                .iter()
                .map(|t| {
                    let [b, c, h, w] = t.dims();
                    t.clone().reshape([b, c, h * w]).swap_dims(1, 2)
                })
                .collect(),
            1,
        );
        let mut encoder_layers = Vec::new();
        let memory = self.encoder.forward(src, &pos, &layout, padding.as_ref(), |_, x| {
            if trace {
                encoder_layers.push(x.clone());
            }
        });

        let k = match &padding {
            Some(padding) => padding
                .valid
                .iter()
                .map(|v| self.queries_for(v.iter().map(|(h, w)| h * w).sum()))
                .min()
                .unwrap_or(0),
            None => self.queries_for(layout.len()),
        };
        let prompt = self.prompt(prompt);
        let selection = self
            .selection
            .select(memory.clone(), prompt, &layout, padding.as_ref(), k)
            .map_err(UpnError::Backend)?;
        let tgt = self.tgt_embed.clone().narrow(0, 0, k).unsqueeze::<3>().expand([b, k, d]);
        let reference = sigmoid(selection.reference_unsigmoid.clone());
        let decoded = self
            .decoder
            .forward(tgt, &memory, reference, &layout, padding.as_ref(), trace);

        let head = |layer: usize| {
            let hs = decoded.hs[layer].clone();
            let delta = self.decoder.bbox_embed.forward(hs.clone()).cast(DType::F32);
            let boxes = sigmoid(delta + inverse_sigmoid(decoded.references[layer].clone()));
            let logits = hs
                .matmul(prompt.clone().transpose().unsqueeze::<3>())
                .reshape([b, k])
                .cast(DType::F32);
            (boxes, logits)
        };
        let last = decoded.hs.len() - 1;
        let (boxes, logits) = head(last);
        let output = UpnOutput { boxes, logits };
        let per_layer: Option<(Vec<_>, Vec<_>)> = trace.then(|| (0..=last).map(head).unzip());
        let trace = per_layer.zip(features).map(|((layer_boxes, layer_logits), features)| UpnTrace {
            backbone: features,
            projected: levels,
            pos,
            encoder_layers,
            layout,
            selection,
            decoder: decoded,
            layer_boxes,
            layer_logits,
        });
        Ok((output, trace))
    }

    /// Proposals for each image (any size; RGB): all queries, sorted by score. Images of the
    /// same preprocessed size share the backbone as one batch; images of different sizes then
    /// share the encoder and decoder as one padded batch (see
    /// [`forward_padded`](Self::forward_padded)). The result for each image is the same as
    /// running it alone, up to float rounding. Use [`Proposals::filter`] for the official
    /// score/NMS filtering.
    pub fn propose(&self, images: &[RgbImage], prompt: PromptType) -> Result<Vec<Proposals>, UpnError> {
        if images.is_empty() {
            return Err(UpnError::Request("no images given".into()));
        }
        let inputs: Vec<Tensor<3>> = images.iter().map(|img| preprocess(img, &self.device)).collect();
        let mut sizes: BTreeMap<(usize, usize), Vec<usize>> = BTreeMap::new();
        for (i, t) in inputs.iter().enumerate() {
            let [_, h, w] = t.dims();
            sizes.entry((h, w)).or_default().push(i);
        }
        // Backbone + neck per size; the transformer per query count (almost always one batch).
        let mut maps: Vec<Vec<Tensor<4>>> = vec![Vec::new(); images.len()];
        let mut batches: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for members in sizes.values() {
            let batch = Tensor::stack(members.iter().map(|&i| inputs[i].clone()).collect(), 0);
            for (&i, levels) in members.iter().zip(self.image_levels(batch)?) {
                let tokens = levels.iter().map(|t| t.dims()[2] * t.dims()[3]).sum();
                batches.entry(self.queries_for(tokens)).or_default().push(i);
                maps[i] = levels;
            }
        }
        let mut results: Vec<Option<Proposals>> = vec![None; images.len()];
        for members in batches.values() {
            let out = self.transform_images(members.iter().map(|&i| std::mem::take(&mut maps[i])).collect(), prompt)?;
            let boxes = host_f32(out.boxes)?;
            let logits = host_f32(out.logits)?;
            let q = logits.len() / members.len();
            for (slot, &i) in members.iter().enumerate() {
                let b: Vec<[f32; 4]> = boxes[slot * q * 4..(slot + 1) * q * 4]
                    .chunks_exact(4)
                    .map(|c| [c[0], c[1], c[2], c[3]])
                    .collect();
                let scores: Vec<f32> = logits[slot * q..(slot + 1) * q]
                    .iter()
                    .map(|&x| 1.0 / (1.0 + (-x).exp()))
                    .collect();
                let size = ImageSize {
                    width: images[i].width(),
                    height: images[i].height(),
                };
                results[i] = Some(Proposals::from_normalized(size, &b, &scores));
            }
        }
        results
            .into_iter()
            .map(|r| r.ok_or_else(|| UpnError::Backend("an image produced no output".into())))
            .collect()
    }
}

/// Reads a float tensor back as f32 values.
pub(crate) fn host_f32<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>, UpnError> {
    chatrex_common::device::read_f32(t).map_err(UpnError::Backend)
}
