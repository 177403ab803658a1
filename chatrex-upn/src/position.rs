//! UPN's image position embedding (`PositionEmbeddingSineHW`, normalised, temperature 20).
//!
//! For an unpadded `h × w` map, row `i` has position `(i+1)/(h+1e-6)·2π` and column `j` has
//! `(j+1)/(w+1e-6)·2π`; each gets `d_model/2` interleaved sine/cosine features, and the
//! embedding is `[y-part | x-part]`.

use burn::tensor::{Device, Tensor, TensorData};
use chatrex_common::sine::{sine_divisors, sine_embed_value};

/// Normalisation epsilon of the cumulative-sum positions.
const EPS: f32 = 1e-6;

/// The per-row (`[h, F]`) and per-column (`[w, F]`) halves of the embedding, F = `num_feats`.
pub fn position_halves(h: usize, w: usize, num_feats: usize, temperature: f32) -> (Vec<f32>, Vec<f32>) {
    let divisors = sine_divisors(num_feats, temperature);
    let axis = |n: usize| {
        let mut out = Vec::with_capacity(n * num_feats);
        for i in 0..n {
            // cumsum of the not-mask, divided by its last value (+eps), times 2π, in f32.
            let p = (i + 1) as f32 / (n as f32 + EPS) * std::f32::consts::TAU;
            sine_embed_value(&mut out, p, &divisors);
        }
        out
    };
    (axis(h), axis(w))
}

/// The embedding of an unpadded `h × w` level, flattened row-major: `[h·w, 2·num_feats]`.
pub fn image_position_embedding(
    h: usize,
    w: usize,
    num_feats: usize,
    temperature: f32,
    device: &Device,
) -> Tensor<2> {
    let (rows, cols) = position_halves(h, w, num_feats, temperature);
    let rows = Tensor::<3>::from_data(TensorData::new(rows, [h, 1, num_feats]), device)
        .expand([h, w, num_feats]);
    let cols = Tensor::<3>::from_data(TensorData::new(cols, [1, w, num_feats]), device)
        .expand([h, w, num_feats]);
    Tensor::cat(vec![rows, cols], 2).reshape([h * w, 2 * num_feats])
}

/// The embedding of an image filling the top-left `image_h × image_w` of an `h × w` padded
/// level, flattened row-major: `[h·w, 2·num_feats]`. Image tokens get the embedding of the
/// unpadded image; padded tokens get zeros (their outputs are never read).
pub fn padded_position_embedding(
    (h, w): (usize, usize),
    (image_h, image_w): (usize, usize),
    num_feats: usize,
    temperature: f32,
    device: &Device,
) -> Tensor<2> {
    let (rows, cols) = position_halves(image_h, image_w, num_feats, temperature);
    let d = 2 * num_feats;
    let mut out = vec![0f32; h * w * d];
    for y in 0..image_h.min(h) {
        for x in 0..image_w.min(w) {
            let token = &mut out[(y * w + x) * d..(y * w + x + 1) * d];
            token[..num_feats].copy_from_slice(&rows[y * num_feats..(y + 1) * num_feats]);
            token[num_feats..].copy_from_slice(&cols[x * num_feats..(x + 1) * num_feats]);
        }
    }
    Tensor::from_data(TensorData::new(out, [h * w, d]), device)
}
