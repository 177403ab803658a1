//! Stacks of linear layers with an activation between them.

use super::Linear;
use crate::weights::WeightLoader;
use burn::tensor::Tensor;
use burn::tensor::activation::{gelu, relu};

/// Activation between the layers of an [`Mlp`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `max(x, 0)`.
    Relu,
    /// Exact (erf) GELU.
    Gelu,
}

impl Activation {
    /// Applies the activation.
    pub fn forward<const D: usize>(self, x: Tensor<D>) -> Tensor<D> {
        match self {
            Activation::Relu => relu(x),
            Activation::Gelu => gelu(x),
        }
    }
}

/// Linear layers with an activation after each but the last.
///
/// `DETR`'s `MLP` names them `layers.{i}`; `nn.Sequential(Linear, GELU, Linear)` names them
/// `0` and `2` — the caller gives the key of each layer.
#[derive(Debug, Clone)]
pub struct Mlp {
    /// The layers, in order.
    pub layers: Vec<Linear>,
    /// The activation between layers.
    pub activation: Activation,
}

impl Mlp {
    /// Loads layers `keys[i]` with widths `dims[i] → dims[i+1]` (all with bias).
    pub fn load(vb: &WeightLoader, keys: &[String], dims: &[usize], activation: Activation) -> Self {
        let layers = keys
            .iter()
            .zip(dims.windows(2))
            .map(|(key, d)| Linear::load(&vb.pp(key), d[0], d[1], true))
            .collect();
        Self { layers, activation }
    }

    /// DETR-style `MLP(input, hidden, output, num_layers)` with keys `layers.{i}`.
    pub fn load_detr(
        vb: &WeightLoader,
        d_in: usize,
        hidden: usize,
        d_out: usize,
        num_layers: usize,
        activation: Activation,
    ) -> Self {
        let mut dims = vec![d_in];
        dims.extend(std::iter::repeat_n(hidden, num_layers.saturating_sub(1)));
        dims.push(d_out);
        let keys: Vec<String> = (0..num_layers).map(|i| format!("layers.{i}")).collect();
        Self::load(vb, &keys, &dims, activation)
    }

    /// `nn.Sequential(Linear, act, Linear)` with keys `0` and `2` (LLaVA's `mlp2x_gelu`).
    pub fn load_sequential2(vb: &WeightLoader, d_in: usize, hidden: usize, d_out: usize, activation: Activation) -> Self {
        Self::load(vb, &["0".to_string(), "2".to_string()], &[d_in, hidden, d_out], activation)
    }

    /// `[..., in]` → `[..., out]`.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let last = self.layers.len().saturating_sub(1);
        self.layers.iter().enumerate().fold(x, |x, (i, layer)| {
            let y = layer.forward(x);
            if i < last { self.activation.forward(y) } else { y }
        })
    }
}
