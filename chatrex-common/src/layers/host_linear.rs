//! `nn.Linear` with its weight in host memory, for the CPU backend's fast paths.

use crate::host_matmul::{HostData, HostMatrix, matmul_in_out_serial};
use crate::in_out_matrix::InOutMatrix;
use crate::weights::{WeightDType, WeightLoader};

/// Where a [`HostLinear`]'s weight lives.
#[derive(Debug, Clone)]
enum HostWeight {
    /// f32 or f16, transposed at load to `[in, out]` (the fastest `gemm` layout).
    InOut(InOutMatrix),
    /// bf16 without tiles, `[out, in]` (rows converted block-wise in the product).
    OutIn(HostMatrix),
    /// bf16 in AMX tile order (CPUs with tiles; see [`crate::amx::TileWeight`]).
    Tiles(crate::amx::TileWeight),
}

/// `y = x · Wᵀ (+ b)` with `W` kept in host memory — f32 and f16 weights transposed to
/// `[in, out]` in their own dtype, bf16 ones in AMX tile order where the CPU has tiles (and
/// the shapes are whole tiles), other bf16 ones as stored — and activations as f32 rows. The
/// bias is left to the caller's next fused pass (see `host_ops`).
#[derive(Debug, Clone)]
pub struct HostLinear {
    weight: HostWeight,
    d_in: usize,
    d_out: usize,
    /// `[out]` (zeros when the layer has no bias).
    pub bias: Vec<f32>,
}

impl HostLinear {
    /// Loads `weight` `[d_out, d_in]` (in the loader's dtype) and, with `bias`, `bias` `[d_out]`.
    pub fn load(vb: &WeightLoader, d_in: usize, d_out: usize, bias: bool) -> Self {
        let bias = if bias { vb.host_f32("bias", &[d_out]) } else { vec![0.0; d_out] };
        if vb.dtype() == WeightDType::F32 {
            let layer = Self::from_out_in_f32(&vb.host_f32("weight", &[d_out, d_in]), d_in, d_out, bias);
            if vb.split_f32_products() { layer.with_split_products() } else { layer }
        } else {
            let matrix = vb.host_matrix("weight", d_out, d_in, vb.dtype());
            let weight = match &matrix.data {
                HostData::BF16(w) => crate::amx::TileWeight::pack(w, d_out, d_in).map(HostWeight::Tiles),
                HostData::F16(w) => InOutMatrix::from_out_in_f16(w, d_in, d_out).map(HostWeight::InOut),
                HostData::F32(w) => InOutMatrix::from_out_in(w, d_in, d_out).map(HostWeight::InOut),
            };
            Self {
                weight: weight.unwrap_or(HostWeight::OutIn(matrix)),
                d_in,
                d_out,
                bias,
            }
        }
    }

    /// From a weight in PyTorch's `[out, in]` order given as f32 values (e.g. reordered from
    /// a convolution's) and a bias `[out]`, held as `dtype` would load it: bf16 weights in
    /// AMX tile order where they fit (the values are rounded to bf16 — exact for values read
    /// from a bf16 checkpoint), f32 otherwise.
    pub fn from_out_in(weight: &[f32], d_in: usize, d_out: usize, bias: Vec<f32>, dtype: WeightDType) -> Self {
        if dtype == WeightDType::BF16 && weight.len() >= d_in * d_out {
            let rounded: Vec<half::bf16> = weight[..d_in * d_out].iter().map(|&v| half::bf16::from_f32(v)).collect();
            if let Some(tiles) = crate::amx::TileWeight::pack(&rounded, d_out, d_in) {
                return Self { weight: HostWeight::Tiles(tiles), d_in, d_out, bias };
            }
        }
        Self::from_out_in_f32(weight, d_in, d_out, bias)
    }

    /// From an f32 weight in PyTorch's `[out, in]` order (transposed here) and a bias `[out]`.
    pub fn from_out_in_f32(weight: &[f32], d_in: usize, d_out: usize, bias: Vec<f32>) -> Self {
        let in_out = crate::in_out_matrix::transpose_out_in(weight, d_in, d_out);
        Self {
            weight: HostWeight::InOut(InOutMatrix::from_in_out_f32(in_out, d_in, d_out)),
            d_in,
            d_out,
            bias,
        }
    }

    /// The layers `parts` (one input width) stacked along their outputs into one layer
    /// `[Σ out_i, in]` with their biases concatenated — e.g. q, k and v projections run as one
    /// product — when every weight is held in AMX tile order (stacking is a copy of the
    /// tiles) or every one in f32 (`[in, out]`: each input row's outputs side by side);
    /// otherwise `parts` back unchanged.
    pub fn concat_outputs<const N: usize>(parts: [HostLinear; N]) -> Result<Self, [HostLinear; N]> {
        let d_in = parts.first().map_or(0, |p| p.d_in);
        let d_out = parts.iter().map(|p| p.d_out).sum();
        if parts.iter().any(|p| p.d_in != d_in) {
            return Err(parts);
        }
        let bias = || parts.iter().flat_map(|p| p.bias.iter().copied()).collect();
        let tiles: Option<Vec<&crate::amx::TileWeight>> = parts.iter().map(HostLinear::tile_weight).collect();
        if let Some(stacked) = tiles.and_then(|t| crate::amx::TileWeight::concat_outputs(&t)) {
            return Ok(Self { d_in, d_out, bias: bias(), weight: HostWeight::Tiles(stacked) });
        }
        let in_out: Option<Vec<&[f32]>> = parts
            .iter()
            .map(|p| match &p.weight {
                HostWeight::InOut(w) => w.values_f32().filter(|v| v.len() == d_in * p.d_out),
                _ => None,
            })
            .collect();
        let (Some(in_out), true) = (in_out, N > 0) else {
            return Err(parts);
        };
        let mut stacked = vec![0f32; d_in * d_out];
        for (i, row) in stacked.chunks_exact_mut(d_out).enumerate() {
            let mut column = 0;
            for (part, w) in parts.iter().zip(&in_out) {
                row[column..column + part.d_out].copy_from_slice(&w[i * part.d_out..(i + 1) * part.d_out]);
                column += part.d_out;
            }
        }
        Ok(Self { d_in, d_out, bias: bias(), weight: HostWeight::InOut(InOutMatrix::from_in_out_f32(stacked, d_in, d_out)) })
    }

    /// The same layer, its f32 weight (if it holds one) multiplying on split bf16 tiles
    /// ([`InOutMatrix::with_split_products`]); other weights as they are.
    pub fn with_split_products(mut self) -> Self {
        if let HostWeight::InOut(w) = self.weight {
            self.weight = HostWeight::InOut(w.with_split_products());
        }
        self
    }

    /// Whether the weight is held in f32 (`[in, out]`), so that a product on one thread
    /// reads it directly; f16/bf16 weights are converted block-wise on every product, which is
    /// best done once for all rows.
    pub fn is_f32(&self) -> bool {
        matches!(&self.weight, HostWeight::InOut(w) if w.values_f32().is_some())
    }

    /// The weight in AMX tile order, when it is held so (bf16 weights on a CPU with tiles),
    /// for callers that chain tile products without an f32 round trip.
    pub fn tile_weight(&self) -> Option<&crate::amx::TileWeight> {
        match &self.weight {
            HostWeight::Tiles(tiles) => Some(tiles),
            _ => None,
        }
    }

    /// Input width.
    pub fn d_in(&self) -> usize {
        self.d_in
    }

    /// Output width.
    pub fn d_out(&self) -> usize {
        self.d_out
    }

    /// `x [rows, in]` → `x · Wᵀ` `[rows, out]`, without the bias.
    pub fn matmul(&self, x: &[f32], rows: usize) -> Vec<f32> {
        let mut y = vec![0f32; rows * self.d_out];
        self.matmul_into(x, rows, &mut y);
        y
    }

    /// `residual ← residual + (x · Wᵀ + b) · scale` for `x [rows, in]`, `residual [rows, out]`
    /// (`scale [out]`, a layer scale; `None`: 1). With the weight in tile order, the bias,
    /// scale and sum run on the product's blocks of sums (no `[rows, out]` product is
    /// written); an f32 or f16 weight without a scale adds its product into `residual`
    /// directly and the bias after it; otherwise the product is followed by one fused pass.
    /// Short slices compute nothing (callers pass their layer's own shapes).
    pub fn add_to_residual(&self, x: &[f32], rows: usize, residual: &mut [f32], scale: Option<&[f32]>) {
        if let HostWeight::Tiles(tiles) = &self.weight
            && x.len() >= rows * self.d_in
            && tiles.matmul_t_residual(&crate::amx::RoundedRows::from_f32(x, rows, self.d_in), residual, Some(&self.bias), scale)
        {
            return;
        }
        if let (HostWeight::InOut(w), None) = (&self.weight, scale)
            && x.len() >= rows * self.d_in
            && residual.len() >= rows * self.d_out
            && w.matmul_add(&x[..rows * self.d_in], rows, &mut residual[..rows * self.d_out]).is_ok()
        {
            crate::host_ops::bias_activation(&mut residual[..rows * self.d_out], &self.bias, crate::host_ops::Activation::Identity);
            return;
        }
        let y = self.matmul(x, rows);
        crate::host_ops::add_scaled_residual(residual, &y, &self.bias, scale);
    }

    /// [`matmul`](Self::matmul) into `y [rows, out]` (every value overwritten), so that a
    /// caller can reuse one buffer across layers.
    pub fn matmul_into(&self, x: &[f32], rows: usize, y: &mut [f32]) {
        self.matmul_into_with(x, rows, y, true);
    }

    /// [`matmul_into`](Self::matmul_into) on the calling thread only, for callers that
    /// parallelise over blocks of rows (f32 weights; other dtypes use all threads).
    pub fn matmul_into_serial(&self, x: &[f32], rows: usize, y: &mut [f32]) {
        self.matmul_into_with(x, rows, y, false);
    }

    fn matmul_into_with(&self, x: &[f32], rows: usize, y: &mut [f32], parallel: bool) {
        let len = (rows * self.d_out).min(y.len());
        let y = &mut y[..len];
        match &self.weight {
            HostWeight::InOut(w) => {
                // The shapes are this layer's own; on a short slice nothing is computed
                // (callers pass `rows · d_in` and `rows · d_out` values).
                let x = &x[..(rows * self.d_in).min(x.len())];
                let _ = match w.values_f32() {
                    Some(values) if !parallel => matmul_in_out_serial(x, rows, values, self.d_in, self.d_out, y),
                    _ => w.matmul(x, rows, y),
                };
            }
            HostWeight::OutIn(matrix) => {
                if y.len() == rows * self.d_out && x.len() >= rows * self.d_in {
                    matrix.matmul_t(&x[..rows * self.d_in], rows, y);
                }
            }
            HostWeight::Tiles(tiles) => {
                // Computes nothing on a short slice, as above.
                let _ = tiles.matmul_t(x, rows, y);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    /// A bf16 layer (in tile order where the CPU has AMX, else as stored) computes the
    /// product of its bf16 weight with the inputs, whatever the number of rows.
    #[test]
    fn bf16_layer_matches_the_f32_product_of_its_weight() {
        let (d_in, d_out) = (96, 64);
        let device = Device::flex();
        let layer = HostLinear::load(&WeightLoader::random(3, &device, WeightDType::BF16), d_in, d_out, false);
        assert_eq!(matches!(layer.weight, HostWeight::Tiles(_)), crate::amx::available());
        let w = WeightLoader::random(3, &device, WeightDType::BF16).host_matrix("weight", d_out, d_in, WeightDType::BF16);
        let mut row = vec![0f32; d_in];
        for m in [1, 5, 33, 70] {
            let x: Vec<f32> = (0..m * d_in).map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0).collect();
            let y = layer.matmul(&x, m);
            let mut expected = vec![0f32; m * d_out];
            for o in 0..d_out {
                w.row_f32(o, &mut row);
                for i in 0..m {
                    // Inputs rounded to bf16 on the tiles, kept in f32 otherwise.
                    let xi = &x[i * d_in..(i + 1) * d_in];
                    expected[i * d_out + o] = row
                        .iter()
                        .zip(xi)
                        .map(|(a, b)| {
                            let b = if crate::amx::available() { half::bf16::from_f32(*b).to_f32() } else { *b };
                            f64::from(*a) * f64::from(b)
                        })
                        .sum::<f64>() as f32;
                }
            }
            let err = crate::parity::compare(&y, &expected).rel;
            assert!(err < 1e-6, "m={m}: rel. error {err}");
        }
    }
}
