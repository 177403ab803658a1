//! [`DualEncoder`]: both towers, the fused image tokens and the object tokens, behind one API.

use crate::clip::ClipVisionTower;
use crate::config::DualEncoderConfig;
use crate::convnext::ConvNext;
use crate::object_tokenizer::pooled_object_features;
use crate::preprocess::{SquareFrame, TowerInputs, tower_inputs};
use crate::roi_align::RoiAlignParams;
use crate::EncoderError;
use burn::tensor::{DType, Device, Tensor, TensorData};
use chatrex_common::image::RgbImage;
use chatrex_common::layers::{Activation, Mlp};
use chatrex_common::weights::{WeightDType, WeightLoader};

/// Where each part sits in a checkpoint (the defaults are RexSeek's / ChatRex's layout).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncoderKeys {
    /// Prefix of CLIP's `vision_model` (`vision_tower.vision_tower.vision_model`).
    pub clip: String,
    /// Prefix of the ConvNeXt trunk (`vision_tower_aux`).
    pub convnext: String,
    /// Image projector (`mm_projector`).
    pub mm_projector: String,
    /// Object projector (`mm_object_projector`).
    pub mm_object_projector: String,
}

impl Default for EncoderKeys {
    fn default() -> Self {
        Self {
            clip: "vision_tower.vision_tower.vision_model".into(),
            convnext: "vision_tower_aux".into(),
            mm_projector: "mm_projector".into(),
            mm_object_projector: "mm_object_projector".into(),
        }
    }
}

/// A box in original-image pixels, `[x1, y1, x2, y2]`.
pub type BoxXyxy = [f32; 4];

/// Everything computed from one image that image and object tokens are made from.
#[derive(Debug, Clone)]
pub struct ImageFeatures {
    /// Where the image sits in the padded square (maps boxes into it).
    pub frame: SquareFrame,
    /// Selected CLIP tokens `[576, D_clip]`.
    pub clip_tokens: Tensor<2>,
    /// ConvNeXt stage maps `[1, C_s, h_s, w_s]`.
    pub stages: Vec<Tensor<4>>,
}

/// The CLIP + ConvNeXt dual encoder with both projectors.
#[derive(Debug, Clone)]
pub struct DualEncoder {
    config: DualEncoderConfig,
    clip: ClipVisionTower,
    convnext: ConvNext,
    mm_projector: Mlp,
    mm_object_projector: Mlp,
    dtype: WeightDType,
    device: Device,
}

impl DualEncoder {
    /// Builds the encoder from a loader (the caller closes the loader's books, since the
    /// encoder usually shares its checkpoint with the LLM).
    pub fn from_loader(vb: &WeightLoader, config: &DualEncoderConfig, keys: &EncoderKeys) -> Result<Self, EncoderError> {
        config.validate()?;
        let h = config.llm_hidden_size;
        Ok(Self {
            clip: ClipVisionTower::load(
                &vb.pp(&keys.clip),
                &config.clip,
                config.clip_layers_used(),
                config.select_feature,
            ),
            convnext: ConvNext::load(&vb.pp(&keys.convnext), &config.convnext),
            mm_projector: Mlp::load_sequential2(&vb.pp(&keys.mm_projector), config.mm_hidden_size(), h, h, Activation::Gelu),
            mm_object_projector: Mlp::load_sequential2(
                &vb.pp(&keys.mm_object_projector),
                config.object_hidden_size(),
                h,
                h,
                Activation::Gelu,
            ),
            dtype: vb.dtype(),
            device: vb.device().clone(),
            config: config.clone(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &DualEncoderConfig {
        &self.config
    }

    /// Runs both towers on an RGB image (any size).
    pub fn encode_image(&self, image: &RgbImage) -> Result<ImageFeatures, EncoderError> {
        let inputs = tower_inputs(image, self.config.high_res, self.config.clip.image_size);
        self.encode_inputs(&inputs)
    }

    /// Runs both towers on already preprocessed inputs.
    pub fn encode_inputs(&self, inputs: &TowerInputs) -> Result<ImageFeatures, EncoderError> {
        let (high, low) = (self.config.high_res, self.config.clip.image_size);
        let options = (&self.device, self.dtype.dtype());
        let low_res = Tensor::<4>::from_data(TensorData::new(inputs.low_res.clone(), [1, 3, low, low]), options);
        let high_res = Tensor::<4>::from_data(TensorData::new(inputs.high_res.clone(), [1, 3, high, high]), options);
        let clip_tokens = self.clip.forward(low_res)?;
        let [_, n, d] = clip_tokens.dims();
        Ok(ImageFeatures {
            frame: inputs.frame,
            clip_tokens: clip_tokens.reshape([n, d]),
            stages: self.convnext.forward(high_res)?,
        })
    }

    /// Concatenated CLIP and last-stage ConvNeXt tokens before the projector:
    /// `[576, D_clip + C_3]` (low-res first, then high-res flattened row-major).
    pub fn fused_features(&self, features: &ImageFeatures) -> Tensor<2> {
        let last = &features.stages[features.stages.len() - 1];
        let [_, c, h, w] = last.dims();
        let high = last.clone().reshape([c, h * w]).transpose();
        Tensor::cat(vec![features.clip_tokens.clone(), high], 1)
    }

    /// The image tokens fed to the LLM: `mm_projector(fused)` → `[576, H]`.
    pub fn image_tokens(&self, features: &ImageFeatures) -> Tensor<2> {
        self.mm_projector.forward(self.fused_features(features))
    }

    fn validate_boxes(&self, boxes: &[BoxXyxy]) -> Result<(), EncoderError> {
        if boxes.len() > self.config.max_objects {
            return Err(EncoderError::TooManyBoxes {
                given: boxes.len(),
                max: self.config.max_objects,
            });
        }
        for (index, b) in boxes.iter().enumerate() {
            let reason = if b.iter().any(|v| !v.is_finite()) {
                Some("coordinates must be finite")
            } else if b[2] < b[0] || b[3] < b[1] {
                Some("x2 < x1 or y2 < y1 (boxes are [x1, y1, x2, y2])")
            } else {
                None
            };
            if let Some(reason) = reason {
                return Err(EncoderError::InvalidBox {
                    index,
                    bbox: *b,
                    reason: reason.into(),
                });
            }
        }
        Ok(())
    }

    fn roi_params(&self) -> RoiAlignParams {
        RoiAlignParams {
            output_size: self.config.roi_output_size,
            spatial_scale: 0.25,
            sampling_ratio: -1,
            aligned: false,
        }
    }

    /// Object features before the projector, for boxes already in the padded frame:
    /// `[K, ΣC]` f32 (RoI mean + box position embedding).
    pub fn object_features_in_frame(&self, features: &ImageFeatures, boxes_frame: &[BoxXyxy]) -> Tensor<2> {
        pooled_object_features(&features.stages, boxes_frame, &self.roi_params())
    }

    /// Object features before the projector for boxes in original-image pixels.
    pub fn object_features(&self, features: &ImageFeatures, boxes: &[BoxXyxy]) -> Result<Tensor<2>, EncoderError> {
        self.validate_boxes(boxes)?;
        let mapped: Vec<BoxXyxy> = boxes.iter().map(|b| features.frame.map_box(*b)).collect();
        Ok(self.object_features_in_frame(features, &mapped))
    }

    /// One LLM embedding per box (original-image pixels): `[K, H]`. At most
    /// `max_objects` boxes; boxes must be finite with x1 ≤ x2, y1 ≤ y2 (they may extend
    /// beyond the image, as RoIAlign allows).
    pub fn object_tokens(&self, features: &ImageFeatures, boxes: &[BoxXyxy]) -> Result<Tensor<2>, EncoderError> {
        if boxes.is_empty() {
            return Ok(Tensor::empty([0, self.config.llm_hidden_size], (&self.device, self.dtype.dtype())));
        }
        let pooled = self.object_features(features, boxes)?;
        Ok(self.project_objects(pooled))
    }

    /// `mm_object_projector` on pooled object features.
    pub fn project_objects(&self, pooled: Tensor<2>) -> Tensor<2> {
        self.mm_object_projector.forward(pooled.cast(self.dtype.dtype()))
    }

    /// The model dtype of the towers.
    pub fn dtype(&self) -> DType {
        self.dtype.dtype()
    }
}
