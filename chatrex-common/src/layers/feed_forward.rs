//! A transformer's per-token feed-forward block with its residual and LayerNorm, on whichever
//! path the device runs fastest.

use super::{Activation, HostLayerNorm, HostLinear, LayerNorm, Linear, residual_mlp};
use crate::host_ops;
use crate::weights::WeightLoader;
use burn::tensor::{Tensor, TensorData};

/// Where the LayerNorm sits around the residual MLP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormPlacement {
    /// `x + fc2(act(fc1(LN(x))))` (Swin, ViT).
    Pre,
    /// `LN(x + fc2(act(fc1(x))))` (DETR-style encoders).
    Post,
}

/// The layers, as Burn tensors or in host memory.
#[derive(Debug, Clone)]
enum Layers {
    Tensor(Box<TensorLayers>),
    Host(Box<HostLayers>),
}

#[derive(Debug, Clone)]
struct HostLayers {
    norm: HostLayerNorm,
    fc1: HostLinear,
    fc2: HostLinear,
}

#[derive(Debug, Clone)]
struct TensorLayers {
    norm: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

/// `fc1 [d → hidden]`, an activation, `fc2 [hidden → d]`, the residual and a LayerNorm placed
/// per [`NormPlacement`]. On the CPU backend the weights live in host memory and tokens run
/// in blocks through fused kernels (`layers::residual_mlp`: each block's hidden activation
/// stays in cache, exact GELU vectorised; bf16 weights multiply on AMX tiles where the CPU
/// has them); on other devices through Burn tensor ops.
#[derive(Debug, Clone)]
pub struct FeedForward {
    layers: Layers,
    activation: Activation,
    placement: NormPlacement,
}

impl FeedForward {
    /// Loads `fc1` (`[hidden, d]` + bias) and `fc2` (`[d, hidden]` + bias) and the LayerNorm
    /// (`[d]` weight and bias, `eps`) from their own loaders.
    #[allow(clippy::too_many_arguments)]
    pub fn load(
        norm: &WeightLoader,
        fc1: &WeightLoader,
        fc2: &WeightLoader,
        d: usize,
        hidden: usize,
        eps: f64,
        activation: Activation,
        placement: NormPlacement,
    ) -> Self {
        let layers = if crate::device::is_host_cpu(fc1.device()) {
            Layers::Host(Box::new(HostLayers {
                norm: HostLayerNorm::load(norm, d, eps),
                fc1: HostLinear::load(fc1, d, hidden, true),
                fc2: HostLinear::load(fc2, hidden, d, true),
            }))
        } else {
            Layers::Tensor(Box::new(TensorLayers {
                norm: LayerNorm::load(norm, d, eps),
                fc1: Linear::load(fc1, d, hidden, true),
                fc2: Linear::load(fc2, hidden, d, true),
            }))
        };
        Self { layers, activation, placement }
    }

    /// Whether the weights live in host memory (the CPU backend's path).
    pub fn is_host(&self) -> bool {
        matches!(self.layers, Layers::Host(_))
    }

    /// `x [..., d]` → `[..., d]`. On the host path a tensor that cannot be read back gives NaN
    /// values (and an error in the log), never a panic.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        match &self.layers {
            Layers::Tensor(layers) => {
                let TensorLayers { norm, fc1, fc2 } = layers.as_ref();
                let mlp = |input: Tensor<D>| fc2.forward(self.activation.forward(fc1.forward(input)));
                match self.placement {
                    NormPlacement::Pre => x.clone() + mlp(norm.forward(x)),
                    NormPlacement::Post => norm.forward(x.clone() + mlp(x)),
                }
            }
            Layers::Host(layers) => {
                let HostLayers { norm, fc1, fc2 } = layers.as_ref();
                let shape = x.dims();
                let (device, dtype) = (x.device(), x.dtype());
                let values = match crate::device::read_f32(x) {
                    Ok(mut rows) => {
                        self.forward_rows(norm, fc1, fc2, &mut rows);
                        rows
                    }
                    Err(e) => {
                        tracing::error!("feed-forward block: reading the input back failed: {e}");
                        vec![f32::NAN; shape.iter().product()]
                    }
                };
                Tensor::<D>::from_data(TensorData::new(values, shape), &device).cast(dtype)
            }
        }
    }

    /// The block on host rows `x [N, d]`, in place, for callers that keep their activations in
    /// host memory; `false` (nothing computed) when the weights are tensors or `x` is not a
    /// whole number of rows.
    pub fn forward_host_rows(&self, x: &mut [f32]) -> bool {
        let Layers::Host(layers) = &self.layers else {
            return false;
        };
        let HostLayers { norm, fc1, fc2 } = layers.as_ref();
        let d = fc1.d_in();
        if d == 0 || !x.len().is_multiple_of(d) {
            return false;
        }
        self.forward_rows(norm, fc1, fc2, x);
        true
    }

    /// The host path over rows `x [N, d]`, in place.
    fn forward_rows(&self, norm: &HostLayerNorm, fc1: &HostLinear, fc2: &HostLinear, x: &mut [f32]) {
        let activation = match self.activation {
            Activation::Gelu => host_ops::Activation::Gelu,
            Activation::Relu => host_ops::Activation::Relu,
        };
        match self.placement {
            NormPlacement::Pre => {
                let mut input = vec![0f32; x.len()];
                norm.forward(x, &mut input);
                residual_mlp(x, &input, fc1, activation, fc2, None);
            }
            NormPlacement::Post => {
                let input = x.to_vec();
                residual_mlp(x, &input, fc1, activation, fc2, None);
                norm.forward_in_place(x);
            }
        }
    }
}
