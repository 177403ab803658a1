//! Sine-cosine position embeddings of scalar coordinates (DETR / Deformable-DETR style).
//!
//! Used by UPN's image position embedding (temperature 20) and query embedding (temperature
//! 10000), and by the object tokenizer's box embedding (temperature 10000): one definition so
//! the interleaving convention cannot drift between crates.

use burn::tensor::{Device, Tensor, TensorData};

/// The divisors `temperature^(2·floor(j/2)/num_feats)` for `j in 0..num_feats`, in f32 as
/// PyTorch computes them (`temperature ** (2 * (arange // 2) / num_feats)`).
pub fn sine_divisors(num_feats: usize, temperature: f32) -> Vec<f32> {
    (0..num_feats)
        .map(|j| temperature.powf((2 * (j / 2)) as f32 / num_feats as f32))
        .collect()
}

/// Embeds each value `p` of `positions` (already multiplied by the caller's scale, e.g. 2π)
/// as `num_feats` features `[sin(p/t₀), cos(p/t₁), sin(p/t₂), …]` with `t_j` from
/// [`sine_divisors`].
///
/// Shapes: `[..., C]` → `[..., C·num_feats]` (the C coordinates' blocks concatenated in the
/// order they come in; callers order them, e.g. (y, x, w, h)).
pub fn sine_embedding<const D: usize>(
    positions: Tensor<D>,
    num_feats: usize,
    temperature: f32,
) -> Tensor<D> {
    let device = positions.device();
    let dims = positions.dims();
    let rows: usize = dims[..D - 1].iter().product();
    let coords = dims[D - 1];
    let divisors = Tensor::<3>::from_data(
        TensorData::new(sine_divisors(num_feats, temperature), [1, 1, num_feats]),
        &device,
    )
    .cast(positions.dtype());
    let scaled = positions.reshape([rows, coords, 1]) / divisors;
    let (even, odd) = parity_masks(num_feats, &device);
    let dtype = scaled.dtype();
    let embedded = scaled.clone().sin() * even.cast(dtype) + scaled.cos() * odd.cast(dtype);
    let mut out_dims = dims;
    out_dims[D - 1] = coords * num_feats;
    embedded.reshape(out_dims)
}

fn parity_masks(num_feats: usize, device: &Device) -> (Tensor<3>, Tensor<3>) {
    let even: Vec<f32> = (0..num_feats).map(|j| ((j + 1) % 2) as f32).collect();
    let odd: Vec<f32> = (0..num_feats).map(|j| (j % 2) as f32).collect();
    (
        Tensor::from_data(TensorData::new(even, [1, 1, num_feats]), device),
        Tensor::from_data(TensorData::new(odd, [1, 1, num_feats]), device),
    )
}

/// Host version of [`sine_embedding`] for one value: appends its `num_feats` features.
pub fn sine_embed_value(out: &mut Vec<f32>, p: f32, divisors: &[f32]) {
    out.extend(divisors.iter().enumerate().map(|(j, &t)| {
        let v = p / t;
        if j % 2 == 0 { v.sin() } else { v.cos() }
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_and_host_agree() {
        let device = Device::flex();
        let values = [0.1f32, 1.7, 3.0, 6.2];
        let t = Tensor::<2>::from_data(TensorData::new(values.to_vec(), [2, 2]), &device);
        let emb = sine_embedding(t, 6, 20.0).to_data().try_to_vec::<f32>().unwrap_or_default();
        let div = sine_divisors(6, 20.0);
        let mut host = Vec::new();
        for v in values {
            sine_embed_value(&mut host, v, &div);
        }
        assert_eq!(emb.len(), host.len());
        for (a, b) in emb.iter().zip(&host) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
        // sin at even, cos at odd, divisor shared by each pair.
        assert!((host[0] - 0.1f32.sin()).abs() < 1e-7);
        assert!((host[1] - 0.1f32.cos()).abs() < 1e-7);
        assert!((host[2] - (0.1 / 20f32.powf(2.0 / 6.0)).sin()).abs() < 1e-7);
    }
}
