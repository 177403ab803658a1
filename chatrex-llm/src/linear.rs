//! The LLM's weight matrices: Burn tensors on GPU backends, host matrices with
//! weight-stationary SIMD kernels on the CPU backend (see `chatrex_common::host_matmul`).

use burn::tensor::{Device, Tensor, TensorData};
use chatrex_common::amx::{RoundedRows, TileWeight};
use chatrex_common::host_matmul::{HostData, HostMatrix};
use chatrex_common::host_ops::{Activation, add_assign, bias_activation};
use chatrex_common::in_out_matrix::InOutMatrix;
use chatrex_common::layers::Linear;
use chatrex_common::weights::WeightLoader;
use std::sync::Arc;

/// Whether weights live in host memory for the CPU kernels.
pub fn host_weights(device: &Device) -> bool {
    #[cfg(feature = "flex")]
    {
        *device == Device::flex()
    }
    #[cfg(not(feature = "flex"))]
    {
        let _ = device;
        false
    }
}

/// A weight in host memory: f32 and f16 transposed once at load to `[in, out]` in their own
/// dtype ([`InOutMatrix`]: the layout `gemm` packs fastest), bf16 without tiles as stored
/// (`[out, in]`), or — bf16 on a CPU with AMX tiles, both widths multiples of 32 —
/// rearranged once at load into tile order
/// ([`TileWeight`]; the stored copy is dropped, one tensor at a time, so a model is never held
/// twice). In tile order every product runs on the tiles, decode steps too: the inputs are
/// rounded to bf16 (as PyTorch's bf16 layers do) and the sums land in the output's own layout,
/// with no repacking of the inputs or the weight and no transposition of the outputs.
#[derive(Debug, Clone)]
pub enum HostWeight {
    /// As stored (`[out, in]`).
    Matrix(Arc<HostMatrix>),
    /// f32 or f16, `[in, out]`.
    InOut(Arc<InOutMatrix>),
    /// bf16 in tile order.
    Tiles(Arc<TileWeight>),
}

impl HostWeight {
    /// Output features.
    pub fn rows(&self) -> usize {
        match self {
            Self::Matrix(m) => m.rows,
            Self::InOut(m) => m.d_out(),
            Self::Tiles(t) => t.rows(),
        }
    }

    /// Input features.
    pub fn cols(&self) -> usize {
        match self {
            Self::Matrix(m) => m.cols,
            Self::InOut(m) => m.d_in(),
            Self::Tiles(t) => t.cols(),
        }
    }

    /// `y [m, rows] = x [m, cols] · Wᵀ` on all threads (`x`, `y` of exactly those lengths).
    fn matmul_t(&self, x: &[f32], m: usize, y: &mut [f32]) {
        match self {
            Self::Matrix(matrix) => matrix.matmul_t(x, m, y),
            Self::InOut(matrix) => {
                if matrix.matmul(x, m, y).is_err() {
                    y.fill(f32::NAN);
                }
            }
            Self::Tiles(tiles) => {
                if !tiles.matmul_t(x, m, y) {
                    // Only on lengths other than the shapes (callers check them): NaN, never
                    // stale values.
                    y.fill(f32::NAN);
                }
            }
        }
    }
}

/// A linear layer `y = x·Wᵀ + b` whose weight lives where it runs fastest.
#[derive(Debug, Clone)]
pub enum LlmLinear {
    /// On the device, as a Burn tensor.
    Tensor(Box<Linear>),
    /// In host memory (CPU backend); activations are f32.
    Host {
        /// `[out, in]`.
        weight: HostWeight,
        /// `[out]`.
        bias: Option<Vec<f32>>,
    },
}

impl LlmLinear {
    /// Loads `weight` `[d_out, d_in]` (+ `bias`).
    pub fn load(vb: &WeightLoader, d_in: usize, d_out: usize, bias: bool) -> Self {
        if host_weights(vb.device()) {
            let matrix = vb.host_matrix("weight", d_out, d_in, vb.dtype());
            let weight = match &matrix.data {
                HostData::BF16(w) => TileWeight::pack(w, d_out, d_in).map(|t| HostWeight::Tiles(Arc::new(t))),
                HostData::F32(w) => InOutMatrix::from_out_in(w, d_in, d_out).map(|m| HostWeight::InOut(Arc::new(m))),
                HostData::F16(w) => InOutMatrix::from_out_in_f16(w, d_in, d_out).map(|m| HostWeight::InOut(Arc::new(m))),
            };
            Self::Host {
                weight: weight.unwrap_or_else(|| HostWeight::Matrix(Arc::new(matrix))),
                bias: bias.then(|| vb.host_f32("bias", &[d_out])),
            }
        } else {
            Self::Tensor(Box::new(Linear::load(vb, d_in, d_out, bias)))
        }
    }

    /// A host-side linear over an existing matrix (tied LM head).
    pub fn shared(matrix: Arc<HostMatrix>) -> Self {
        Self::Host { weight: HostWeight::Matrix(matrix), bias: None }
    }

    /// `[B, L, in]` → `[B, L, out]` (f32 on the host path).
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        match self {
            Self::Tensor(linear) => linear.forward(x),
            Self::Host { weight, bias } => {
                let [b, l, _] = x.dims();
                let device = x.device();
                let y = host_matmul(weight, bias.as_deref(), x.reshape([b * l, weight.cols()]));
                Tensor::from_data(TensorData::new(y, [b, l, weight.rows()]), &device)
            }
        }
    }

    /// Host rows `x [rows, in]` → `[rows, out]` (with the bias), or `None` for a tensor
    /// layer (the host path is only taken when every layer lives in host memory).
    pub fn forward_rows(&self, x: &[f32], rows: usize) -> Option<Vec<f32>> {
        let Self::Host { weight, .. } = self else {
            return None;
        };
        let mut y = vec![0f32; rows * weight.rows()];
        self.forward_rows_into(x, rows, &mut y)?;
        Some(y)
    }

    /// [`forward_rows`](Self::forward_rows) into `y [rows, out]` (every value overwritten), so
    /// that a caller can keep one buffer across layers; `None` for a tensor layer or other
    /// lengths.
    pub fn forward_rows_into(&self, x: &[f32], rows: usize, y: &mut [f32]) -> Option<()> {
        let Self::Host { weight, bias } = self else {
            return None;
        };
        if x.len() != rows * weight.cols() || y.len() != rows * weight.rows() {
            return None;
        }
        weight.matmul_t(x, rows, y);
        if let Some(bias) = bias {
            bias_activation(y, bias, Activation::Identity);
        }
        Some(())
    }

    /// `y [rows, out] = x · Wᵀ + b` for rows already rounded to bf16 (`x [rows, in]`, e.g. one
    /// rounding shared by the q, k and v projections); `None` unless the weight is in tile
    /// order and the lengths match.
    pub fn forward_rounded_into(&self, x: &RoundedRows, y: &mut [f32]) -> Option<()> {
        let Self::Host { weight: HostWeight::Tiles(tiles), bias } = self else {
            return None;
        };
        if x.cols() != tiles.cols() || y.len() != x.rows() * tiles.rows() || !tiles.matmul_t_rounded(x, y) {
            return None;
        }
        if let Some(bias) = bias {
            bias_activation(y, bias, Activation::Identity);
        }
        Some(())
    }

    /// `residual [rows, out] += x · Wᵀ + b` for rows already rounded to bf16 (`x [rows, in]`,
    /// e.g. attention's output rows); `None` unless the weight is in tile order and the lengths
    /// match.
    pub fn add_forward_rounded(&self, x: &RoundedRows, residual: &mut [f32]) -> Option<()> {
        let Self::Host { weight: HostWeight::Tiles(tiles), bias } = self else {
            return None;
        };
        let lengths = x.cols() == tiles.cols() && residual.len() == x.rows() * tiles.rows();
        (lengths && tiles.matmul_t_residual(x, residual, bias.as_deref(), None)).then_some(())
    }

    /// `residual [rows, out] += x · Wᵀ + b` for host rows `x [rows, in]`; `None` for a tensor
    /// layer or other lengths. With the weight in tile order and more than one row, the sums
    /// are added into `residual` from the product's blocks, and an f32 or f16 weight's
    /// product (held `[in, out]`) adds into it directly (no `[rows, out]` product is written);
    /// a bf16 decode step and a weight as stored add [`forward_rows`](Self::forward_rows)'
    /// product.
    pub fn add_forward_rows(&self, x: &[f32], rows: usize, residual: &mut [f32]) -> Option<()> {
        let Self::Host { weight, bias } = self else {
            return None;
        };
        if x.len() != rows * weight.cols() || residual.len() != rows * weight.rows() {
            return None;
        }
        match weight {
            HostWeight::Tiles(tiles) if rows > 1 => {
                let added = tiles.matmul_t_residual(&RoundedRows::from_f32(x, rows, weight.cols()), residual, bias.as_deref(), None);
                added.then_some(())
            }
            HostWeight::InOut(matrix) => {
                matrix.matmul_add(x, rows, residual).ok()?;
                if let Some(bias) = bias {
                    bias_activation(residual, bias, Activation::Identity);
                }
                Some(())
            }
            _ => {
                let y = self.forward_rows(x, rows)?;
                add_assign(residual, &y);
                Some(())
            }
        }
    }

    /// Whether the weight is held in tile order (a bf16 weight on a CPU with AMX), whose
    /// products take [`RoundedRows`].
    pub fn in_tile_order(&self) -> bool {
        matches!(self, Self::Host { weight: HostWeight::Tiles(_), .. })
    }

    /// Output features of a host layer (`None` for a tensor layer).
    pub fn host_out_features(&self) -> Option<usize> {
        match self {
            Self::Host { weight, .. } => Some(weight.rows()),
            Self::Tensor(_) => None,
        }
    }

    /// Whether the weight lives in host memory.
    pub fn is_host(&self) -> bool {
        matches!(self, Self::Host { .. })
    }

    /// Whether the weight lives in host memory in bf16 (the model runs in bf16 on the CPU).
    pub fn is_host_bf16(&self) -> bool {
        match self {
            Self::Host { weight: HostWeight::Tiles(_), .. } => true,
            Self::Host { weight: HostWeight::Matrix(matrix), .. } => matches!(matrix.data, HostData::BF16(_)),
            Self::Host { weight: HostWeight::InOut(_), .. } | Self::Tensor(_) => false,
        }
    }

    /// The weight in tile order, when it is held so and the layer has no bias (for callers
    /// that chain tile products without an f32 round trip).
    pub fn tile_weight(&self) -> Option<&TileWeight> {
        match self {
            Self::Host { weight: HostWeight::Tiles(tiles), bias: None } => Some(tiles),
            _ => None,
        }
    }

    /// `[N, in]` → host values `[N, out]`.
    pub fn forward_host(&self, x: Tensor<2>) -> Vec<f32> {
        match self {
            // A failed read-back gives no values, which callers report as an error.
            Self::Tensor(linear) => read_f32(linear.forward(x)),
            Self::Host { weight, bias } => host_matmul(weight, bias.as_deref(), x),
        }
    }
}

fn host_matmul(weight: &HostWeight, bias: Option<&[f32]>, x: Tensor<2>) -> Vec<f32> {
    let [m, _] = x.dims();
    let input = read_f32(x);
    if input.len() != m * weight.cols() {
        // The backend could not read the input back: NaN outputs, never out-of-bounds reads.
        return vec![f32::NAN; m * weight.rows()];
    }
    let mut y = vec![0f32; m * weight.rows()];
    weight.matmul_t(&input, m, &mut y);
    if let Some(bias) = bias {
        for row in y.chunks_mut(weight.rows()) {
            for (v, b) in row.iter_mut().zip(bias) {
                *v += b;
            }
        }
    }
    y
}

/// The values of a tensor as f32 on the host (none if the backend cannot read them back).
fn read_f32(t: Tensor<2>) -> Vec<f32> {
    chatrex_common::device::read_f32(t).unwrap_or_default()
}
