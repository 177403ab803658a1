//! A key/value cache updated in place.
//!
//! Each layer keeps a `[B, kv_heads, allocated, head_dim]` buffer that grows in steps (by
//! half its size, at least [`GROWTH_STEP`] positions) up to the capacity, so a short answer
//! does not hold memory for `max_new_tokens` it never writes. New keys and values are written
//! with `slice_assign` on the uniquely owned buffer, which Burn performs in place (a
//! `clone().slice_assign(..)` would copy the whole cache every step); attention reads a
//! `narrow` view of the filled part.

use burn::tensor::Tensor;

/// The least number of positions a layer buffer grows by.
pub const GROWTH_STEP: usize = 128;

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
        let options = (&k.device(), k.dtype());
        let fresh = |size: usize| LayerCache {
            k: Tensor::zeros([b, h, size, d], options),
            v: Tensor::zeros([b, h, size, d], options),
        };
        let cache = match slot.take() {
            Some(c) if c.k.dims() == [b, h, c.k.dims()[2], d] => {
                let allocated = c.k.dims()[2];
                let size = (end + GROWTH_STEP).max(allocated + allocated / 2).min(self.capacity);
                if end <= allocated {
                    c
                } else if start == 0 {
                    // Nothing filled yet (after `reset`): a larger buffer, nothing to copy.
                    fresh(size)
                } else {
                    // Grow: a larger buffer with the filled part copied over.
                    let grown = fresh(size);
                    let filled = [0..b, 0..h, 0..start, 0..d];
                    LayerCache {
                        k: grown.k.slice_assign(filled.clone(), c.k.narrow(2, 0, start)),
                        v: grown.v.slice_assign(filled, c.v.narrow(2, 0, start)),
                    }
                }
            }
            _ => fresh((end + GROWTH_STEP).min(self.capacity)),
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

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    fn step(value: f32, device: &Device) -> Tensor<4> {
        Tensor::from_data(TensorData::new(vec![value; 2 * 3], [1, 2, 1, 3]), device)
    }

    /// Appending one position at a time across several growths keeps every earlier position.
    #[test]
    fn growth_keeps_every_position() {
        let device = Device::flex();
        let mut cache = KvCache::new(1, 1000);
        let n = 3 * GROWTH_STEP + 17;
        let mut views = None;
        for i in 0..n {
            views = Some(cache.append(0, step(i as f32, &device), step(-(i as f32), &device)).unwrap());
            cache.advance(1);
        }
        let (k, v) = views.unwrap();
        assert_eq!(k.dims(), [1, 2, n, 3]);
        let k = k.into_data().try_into_vec::<f32>().unwrap();
        let v = v.into_data().try_into_vec::<f32>().unwrap();
        for head in 0..2 {
            for pos in 0..n {
                for j in 0..3 {
                    let at = (head * n + pos) * 3 + j;
                    assert_eq!((k[at], v[at]), (pos as f32, -(pos as f32)));
                }
            }
        }
        assert!(cache.append(0, step(0.0, &device), step(0.0, &device)).is_ok());
        // After a reset, a longer first append than the buffer holds gets a fresh buffer.
        let mut reused = KvCache::new(1, 1000);
        reused.append(0, step(1.0, &device), step(1.0, &device)).unwrap();
        reused.reset();
        let long = Tensor::from_data(TensorData::new(vec![2.0f32; 2 * 300 * 3], [1, 2, 300, 3]), &device);
        let (k, _) = reused.append(0, long.clone(), long).unwrap();
        assert_eq!(k.dims(), [1, 2, 300, 3]);
        let mut full = KvCache::new(1, 2);
        full.append(0, step(0.0, &device), step(0.0, &device)).unwrap();
        full.advance(1);
        full.append(0, step(0.0, &device), step(0.0, &device)).unwrap();
        full.advance(1);
        assert!(full.append(0, step(0.0, &device), step(0.0, &device)).is_err());
    }
}
