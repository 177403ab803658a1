//! `nn.Linear` with the PyTorch weight layout `[out, in]`.

use crate::weights::WeightLoader;
use burn::tensor::Tensor;

/// `y = x · Wᵀ + b`, weight stored as PyTorch does (`[out, in]`); the transpose is a strided
/// view, not a copy.
#[derive(Debug, Clone)]
pub struct Linear {
    /// `[out, in]`.
    pub weight: Tensor<2>,
    /// `[out]`.
    pub bias: Option<Tensor<1>>,
}

impl Linear {
    /// Loads `weight` `[d_out, d_in]` and, with `bias`, `bias` `[d_out]`.
    pub fn load(vb: &WeightLoader, d_in: usize, d_out: usize, bias: bool) -> Self {
        Self {
            weight: vb.float("weight", [d_out, d_in]),
            bias: bias.then(|| vb.float("bias", [d_out])),
        }
    }

    /// Input width.
    pub fn d_in(&self) -> usize {
        self.weight.dims()[1]
    }

    /// Output width.
    pub fn d_out(&self) -> usize {
        self.weight.dims()[0]
    }

    /// `[..., in]` → `[..., out]`.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let dims = x.dims();
        let rows: usize = dims[..D - 1].iter().product();
        let d_out = self.d_out();
        let y = x
            .reshape([rows, dims[D - 1]])
            .matmul(self.weight.clone().transpose());
        let y = match &self.bias {
            Some(b) => y + b.clone().unsqueeze::<2>(),
            None => y,
        };
        let mut out = dims;
        out[D - 1] = d_out;
        y.reshape(out)
    }
}
