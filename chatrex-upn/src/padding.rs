//! Padded batches: images of different sizes share one encoder/decoder pass.
//!
//! Each image goes through the backbone and the neck on its own (so Swin's windows, the
//! GroupNorms and the extra level's 3×3 conv never see padding); its level maps are then
//! placed at the top-left of zero maps of the largest size per level. The transformer masks
//! the padding: values of padded tokens are zeroed; in the query selection padded tokens get
//! zero memory and `+inf` anchors and never compete in the top-k; and every reference point,
//! box and sampling location is normalised to the image's own valid extent on each level, the
//! deformable sampler turning it into a pixel with that extent (`loc · valid − 0.5`). That is
//! the arithmetic of a single-image run, operation for operation: every sample lands on the
//! same pixel and reads the same values (zeros outside the image either way), and the result
//! per image equals the single-image result.
//!
//! The official Deformable-DETR formulation normalises locations to the padded maps and
//! scales references by the valid ratios `valid / padded` — equal in exact arithmetic, but its
//! rounding (and, in the official decoder, a query position embedding taken from the box
//! scaled by the level-0 valid ratio) makes each image's result depend on its batch. The
//! GPU path ([`crate::msda::msda_core_tensor_ops`], `grid_sample` on the padded maps) rescales
//! by [`Padding::valid_ratios`] and so matches to rounding only.

use crate::msda::LevelLayout;
use burn::tensor::{Device, Tensor, TensorData};

/// Where each image's tokens lie inside a padded multi-level batch.
#[derive(Debug, Clone)]
pub struct Padding {
    /// Valid `(h, w)` of every image at every level: `[B][L]`.
    pub valid: Vec<Vec<(usize, usize)>>,
    /// `[B, S, 1]`: 1.0 for an image token, 0.0 for padding (f32).
    pub keep: Tensor<3>,
    /// `[B, 1, L, 2]`: valid ratio `(w_valid / W, h_valid / H)` of every level (f32), which
    /// takes locations normalised to an image's extent to the padded maps' normalisation.
    pub valid_ratios: Tensor<4>,
}

impl Padding {
    /// The padding of images with valid level sizes `valid[b][l]` inside `layout` (the
    /// per-level maximum). Errors if a valid size exceeds the layout or the level counts differ.
    pub fn new(valid: Vec<Vec<(usize, usize)>>, layout: &LevelLayout, device: &Device) -> Result<Self, String> {
        let l = layout.shapes.len();
        for (b, levels) in valid.iter().enumerate() {
            if levels.len() != l {
                return Err(format!("image {b} has {} levels, the batch {l}", levels.len()));
            }
            for (&(h, w), &(ph, pw)) in levels.iter().zip(&layout.shapes) {
                if h == 0 || w == 0 || h > ph || w > pw {
                    return Err(format!("image {b}: level {h}x{w} does not fit the padded {ph}x{pw}"));
                }
            }
        }
        let b = valid.len();
        let s = layout.len();
        let mut keep = vec![0f32; b * s];
        let mut ratios = Vec::with_capacity(b * l * 2);
        for (i, levels) in valid.iter().enumerate() {
            for ((&(h, w), &(ph, pw)), start) in levels.iter().zip(&layout.shapes).zip(layout.starts()) {
                for y in 0..h {
                    let row = i * s + start + y * pw;
                    keep[row..row + w].fill(1.0);
                }
                ratios.push(w as f32 / pw as f32);
                ratios.push(h as f32 / ph as f32);
            }
        }
        Ok(Self {
            keep: Tensor::from_data(TensorData::new(keep, [b, s, 1]), device),
            valid_ratios: Tensor::from_data(TensorData::new(ratios, [b, 1, l, 2]), device),
            valid,
        })
    }

    /// Number of images.
    pub fn batch(&self) -> usize {
        self.valid.len()
    }

    /// Whether each token of `layout` belongs to image `b` (not padding): `[S]`.
    pub fn image_tokens(&self, b: usize, layout: &LevelLayout) -> Vec<bool> {
        let mut mask = vec![false; layout.len()];
        if let Some(valid) = self.valid.get(b) {
            for ((&(h, w), &(_, pw)), start) in valid.iter().zip(&layout.shapes).zip(layout.starts()) {
                for y in 0..h {
                    let row = start + y * pw;
                    mask[row..row + w].fill(true);
                }
            }
        }
        mask
    }
}

/// Level maps of several images gathered into one padded batch.
#[derive(Debug, Clone)]
pub struct PaddedLevels {
    /// `[B, C, H_l, W_l]` per level, each image's map at the top-left, zeros elsewhere.
    pub levels: Vec<Tensor<4>>,
    /// The padded size of each level (the maximum over the images).
    pub layout: LevelLayout,
    /// Valid `(h, w)` of every image at every level: `[B][L]`.
    pub valid: Vec<Vec<(usize, usize)>>,
}

impl PaddedLevels {
    /// Whether any image is smaller than the layout (otherwise no mask is needed).
    pub fn is_padded(&self) -> bool {
        self.valid.iter().any(|v| *v != self.layout.shapes)
    }
}

/// Places each image's level maps (`maps[b][l]`, `[1, C, h, w]`) at the top-left of zero maps
/// of the per-level maximum size.
pub fn pad_levels(maps: Vec<Vec<Tensor<4>>>) -> Result<PaddedLevels, String> {
    let first = maps.first().ok_or("no images to pad")?;
    let l = first.len();
    if maps.iter().any(|m| m.len() != l) {
        return Err("images with different numbers of levels".into());
    }
    let valid: Vec<Vec<(usize, usize)>> = maps
        .iter()
        .map(|levels| levels.iter().map(|t| (t.dims()[2], t.dims()[3])).collect())
        .collect();
    let shapes: Vec<(usize, usize)> = (0..l)
        .map(|level| {
            valid.iter().fold((0, 0), |(h, w), sizes| (h.max(sizes[level].0), w.max(sizes[level].1)))
        })
        .collect();
    let mut padded = Vec::with_capacity(l);
    for (level, &(ph, pw)) in shapes.iter().enumerate() {
        let per_image: Vec<Tensor<4>> = maps
            .iter()
            .map(|levels| {
                let map = levels[level].clone();
                let [_, c, h, w] = map.dims();
                if (h, w) == (ph, pw) {
                    return map;
                }
                Tensor::zeros([1, c, ph, pw], (&map.device(), map.dtype()))
                    .slice_assign([0..1, 0..c, 0..h, 0..w], map)
            })
            .collect();
        padded.push(Tensor::cat(per_image, 0));
    }
    Ok(PaddedLevels {
        levels: padded,
        layout: LevelLayout::new(shapes),
        valid,
    })
}
