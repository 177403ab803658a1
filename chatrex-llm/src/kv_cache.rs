//! A key/value cache updated in place.
//!
//! Each layer keeps preallocated `[B, kv_heads, capacity, head_dim]` buffers. New keys and
//! values are written with `slice_assign` on the uniquely owned buffer, which Burn performs in
//! place (a `clone().slice_assign(..)` would copy the whole cache every step); attention reads
//! a `narrow` view of the filled part.

use burn::tensor::Tensor;

#[derive(Debug, Clone)]
struct LayerCache {
    k: Tensor<4>,
    v: Tensor<4>,
}

/// The cache of all layers of one sequence batch.
#[derive(Debug, Clone)]
pub struct KvCache {
    layers: Vec<Option<LayerCache>>,
    len: usize,
    capacity: usize,
}

impl KvCache {
    /// An empty cache for `num_layers` layers holding up to `capacity` positions (allocated
    /// on first use).
    pub fn new(num_layers: usize, capacity: usize) -> Self {
        Self {
            layers: vec![None; num_layers],
            len: 0,
            capacity,
        }
    }

    /// Positions already cached (the position of the next token).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Positions the cache can hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Forgets everything (keeps the buffers).
    pub fn reset(&mut self) {
        self.len = 0;
    }

    /// Appends `k, v [B, kv, L, D]` to layer `layer` at position `len()` and returns views of
    /// all cached keys and values `[B, kv, len()+L, D]`. Call [`advance`](Self::advance) once
    /// all layers have appended.
    ///
    /// Errors if the cache would overflow.
    pub fn append(&mut self, layer: usize, k: Tensor<4>, v: Tensor<4>) -> Result<(Tensor<4>, Tensor<4>), String> {
        let [b, h, l, d] = k.dims();
        let start = self.len;
        let end = start + l;
        if end > self.capacity {
            return Err(format!("KV cache overflow: {end} positions, capacity {}", self.capacity));
        }
        let slot = self
            .layers
            .get_mut(layer)
            .ok_or_else(|| format!("no cache for layer {layer}"))?;
        let cache = match slot.take() {
            Some(c) if c.k.dims() == [b, h, self.capacity, d] => c,
            _ => {
                let options = (&k.device(), k.dtype());
                LayerCache {
                    k: Tensor::zeros([b, h, self.capacity, d], options),
                    v: Tensor::zeros([b, h, self.capacity, d], options),
                }
            }
        };
        let ranges = [0..b, 0..h, start..end, 0..d];
        let updated = LayerCache {
            k: cache.k.slice_assign(ranges.clone(), k),
            v: cache.v.slice_assign(ranges, v),
        };
        let views = (updated.k.clone().narrow(2, 0, end), updated.v.clone().narrow(2, 0, end));
        *slot = Some(updated);
        Ok(views)
    }

    /// Marks `n` more positions as filled (after every layer appended them).
    pub fn advance(&mut self, n: usize) {
        self.len += n;
    }
}
