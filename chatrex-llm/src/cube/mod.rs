//! Fused kernels of one decode step on the CubeCL backends (CUDA, wgpu).
//!
//! Decoding one position with Burn's tensor ops launches about sixty kernels per layer (the
//! norms, rotary embedding, cache writes and softmax are chains of small element-wise ops, and
//! every projection is a general matrix product over a single row); on a GPU the launches, not
//! the weight reads, then set the pace. These kernels do the same step in seven launches per
//! layer, each reading its weights once at full width:
//!
//! - [`rms_norm`](rms_norm::rms_norm): one cube reduces `x [H]` and writes the normed row (the
//!   model's final norm);
//! - [`matvec`](matvec::matvec): `y [rows] = W [rows, cols] · x [cols]` (+ bias, + residual),
//!   32 units per output row, `W` read in 16-byte vectors;
//! - [`normed_qkv`] and [`normed_gated_matvec`]: the same products of the RMS-normed row
//!   (each cube norms `x` itself: a few kB read from cache, and one launch less), the query,
//!   key and value projections in one launch, `silu(W_gate·x̂) · (W_up·x̂)` in one pass;
//! - [`rope_append`](rope_append::rope_append): rotary embedding of the query and key heads,
//!   the key and value rows written into the cache in place;
//! - [`decode_attention`](decode_attention::decode_attention): attention of one query per head
//!   over the cache, in chunks of positions whose partial softmax sums are merged by a second
//!   kernel (any cache length, shared memory of fixed size).
//!
//! Numerics follow the Hugging Face model in the weight dtype: every product is accumulated in
//! f32 and rounded to the weight dtype where PyTorch writes a tensor (projection outputs, the
//! normed row, the rotated heads, the gated activation, the residual sums).

mod decode_attention;
mod matvec;
mod reduce;
mod rms_norm;
mod rope_append;

pub use decode_attention::decode_attention;
pub use matvec::{matvec, normed_gated_matvec, normed_qkv};
pub use rms_norm::rms_norm;
pub use rope_append::rope_append;

use burn::backend::Cube;
use burn::tensor::{DType, Device, Shape, Tensor};
use burn_cubecl::tensor::CubeTensor;

/// Why a fused kernel could not run.
pub type CubeResult<T> = Result<T, String>;

/// Whether the fused decode step can run on `device` with activations in `dtype` and heads of
/// width `head_dim`: a CubeCL device whose cubes hold the attention kernel's chunk of units, a
/// float dtype the kernels are built for, and heads that the chunk covers.
pub fn supported(device: &Device, dtype: DType, head_dim: usize) -> bool {
    if !matches!(dtype, DType::F32 | DType::F16 | DType::BF16) || head_dim == 0 || !head_dim.is_multiple_of(2) {
        return false;
    }
    if head_dim > decode_attention::CHUNK {
        return false;
    }
    let probe = Tensor::<1>::zeros([1], (device, dtype));
    let Some(t) = primitive(&probe) else {
        return false;
    };
    t.client.properties().hardware.max_units_per_cube as usize >= decode_attention::CHUNK
}

/// The CubeCL primitive of a device tensor, or `None` off the CubeCL backends.
fn primitive<const D: usize>(t: &Tensor<D>) -> Option<CubeTensor> {
    t.clone().try_into_primitive::<Cube>().ok()
}

/// The CubeCL primitive of `t`, of `dtype`, whose last dimension is contiguous (stride 1).
/// Other strides are whatever the backend chose (CUDA pads matrix rows to an aligned pitch):
/// kernels read them with [`strides`].
fn operand<const D: usize>(t: &Tensor<D>, dtype: DType, what: &str) -> CubeResult<CubeTensor> {
    let p = primitive(t).ok_or_else(|| format!("{what}: not on a CubeCL device"))?;
    if p.dtype != dtype {
        return Err(format!("{what}: dtype {:?}, expected {dtype:?}", p.dtype));
    }
    let shape = p.meta.shape();
    let strides = p.meta.strides();
    if shape.iter().last().is_some_and(|&d| d > 1) && strides.iter().last() != Some(&1) {
        return Err(format!("{what}: last dimension not contiguous (shape {shape:?}, strides {strides:?})"));
    }
    Ok(p)
}

/// The element strides of a primitive.
fn strides(t: &CubeTensor) -> Vec<usize> {
    t.meta.strides().iter().copied().collect()
}

/// `(head, row)` element strides of the key and value caches `[1, kv, allocated, D]`, which
/// must agree.
fn cache_strides(k: &CubeTensor, v: &CubeTensor) -> CubeResult<(usize, usize)> {
    let (ks, vs) = (strides(k), strides(v));
    match (ks.as_slice(), vs.as_slice()) {
        ([_, h, r, _], [_, vh, vr, _]) if (h, r) == (vh, vr) => Ok((*h, *r)),
        _ => Err(format!("key and value caches with strides {ks:?} and {vs:?}")),
    }
}

/// A new contiguous tensor on `like`'s device.
fn empty(like: &CubeTensor, shape: &[usize], dtype: DType) -> CubeTensor {
    let elems: usize = shape.iter().product();
    let handle = like.client.empty(elems.max(1) * dtype.size());
    CubeTensor::new_contiguous(like.client.clone(), like.device.clone(), Shape::from(shape.to_vec()), handle, dtype)
}

/// Wraps a primitive back into a tensor.
fn wrap<const D: usize>(t: CubeTensor) -> Tensor<D> {
    Tensor::from_primitive::<Cube>(t)
}

/// Runs `$body` with `$F` bound to the Rust type of a float `DType`.
macro_rules! with_float {
    ($dtype:expr, $F:ident => $body:expr) => {
        match $dtype {
            burn::tensor::DType::F32 => {
                type $F = f32;
                $body
            }
            burn::tensor::DType::F16 => {
                type $F = half::f16;
                $body
            }
            burn::tensor::DType::BF16 => {
                type $F = half::bf16;
                $body
            }
            other => return Err(format!("fused decode kernels: unsupported dtype {other:?}")),
        }
    };
}
pub(crate) use with_float;
