//! A key/value cache updated in place.
//!
//! Each layer keeps a `[B, kv_heads, allocated, head_dim]` buffer that grows in steps (by
//! half its size, at least [`GROWTH_STEP`] positions) up to the capacity, so a short answer
//! does not hold memory for `max_new_tokens` it never writes. New keys and values are written
//! with `slice_assign` on the uniquely owned buffer, which Burn performs in place (a
//! `clone().slice_assign(..)` would copy the whole cache every step); attention reads a
//! `narrow` view of the filled part.
//!
//! The CPU backend's host path ([`KvCache::append_host`]) keeps each layer in host memory
//! instead, as `[kv_heads, allocated, head_dim]` f32 buffers growing the same way.

use burn::tensor::Tensor;

/// The least number of positions a layer buffer grows by.
pub const GROWTH_STEP: usize = 128;

#[derive(Debug, Clone)]
struct LayerCache {
    k: Tensor<4>,
    v: Tensor<4>,
}

/// One layer's keys and values in host memory: `[kv_heads, allocated, head_dim]` each.
#[derive(Debug, Clone, Default)]
struct HostLayerCache {
    k: Vec<f32>,
    v: Vec<f32>,
    allocated: usize,
    /// `(kv_heads, head_dim)` of the buffers.
    heads: (usize, usize),
}

/// The filled keys and values of one layer in host memory (see [`KvCache::append_host`]).
#[derive(Debug, Clone, Copy)]
pub struct HostKv<'a> {
    /// `[kv_heads, allocated, head_dim]`; positions `0..len` of each head are filled.
    pub keys: &'a [f32],
    /// Same layout as `keys`.
    pub values: &'a [f32],
    /// Positions allocated per head (the stride between heads is `allocated · head_dim`).
    pub allocated: usize,
    /// Filled positions, including the ones just appended.
    pub len: usize,
}

/// The cache of all layers of one sequence batch.
#[derive(Debug, Clone)]
pub struct KvCache {
    layers: Vec<Option<LayerCache>>,
    host_layers: Vec<HostLayerCache>,
    len: usize,
    capacity: usize,
}

impl KvCache {
    /// An empty cache for `num_layers` layers holding up to `capacity` positions (allocated
    /// on first use).
    pub fn new(num_layers: usize, capacity: usize) -> Self {
        Self {
            layers: vec![None; num_layers],
            host_layers: vec![HostLayerCache::default(); num_layers],
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
        let cache = self.reserve(layer, [b, h, d], l, (&k.device(), k.dtype()))?;
        let ranges = [0..b, 0..h, start..end, 0..d];
        let updated = LayerCache {
            k: cache.k.slice_assign(ranges.clone(), k),
            v: cache.v.slice_assign(ranges, v),
        };
        let views = (updated.k.clone().narrow(2, 0, end), updated.v.clone().narrow(2, 0, end));
        self.layers[layer] = Some(updated);
        Ok(views)
    }

    /// The whole buffers `[B, kv, allocated, D]` of layer `layer`, grown (the filled part kept)
    /// to hold `new` more positions after `len()`: for kernels that write the new rows in place
    /// (the buffers are shared with the cache, not copied).
    ///
    /// Errors if the cache would overflow.
    pub fn device_buffers(
        &mut self,
        layer: usize,
        [b, h, d]: [usize; 3],
        new: usize,
        options: (&burn::tensor::Device, burn::tensor::DType),
    ) -> Result<(Tensor<4>, Tensor<4>), String> {
        let cache = self.reserve(layer, [b, h, d], new, options)?;
        let buffers = (cache.k.clone(), cache.v.clone());
        self.layers[layer] = Some(cache);
        Ok(buffers)
    }

    /// Takes layer `layer`'s buffers out of the cache, grown to hold positions up to
    /// `len() + new` (the caller puts them back).
    fn reserve(
        &mut self,
        layer: usize,
        [b, h, d]: [usize; 3],
        new: usize,
        options: (&burn::tensor::Device, burn::tensor::DType),
    ) -> Result<LayerCache, String> {
        let start = self.len;
        let end = start + new;
        if end > self.capacity {
            return Err(format!("KV cache overflow: {end} positions, capacity {}", self.capacity));
        }
        let slot = self
            .layers
            .get_mut(layer)
            .ok_or_else(|| format!("no cache for layer {layer}"))?;
        let fresh = |size: usize| LayerCache {
            k: Tensor::zeros([b, h, size, d], options),
            v: Tensor::zeros([b, h, size, d], options),
        };
        Ok(match slot.take() {
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
        })
    }

    /// Host-memory variant of [`append`](Self::append) for one sequence: `k, v [L, kv, D]`
    /// (token-major, as the projections produce them) are written at positions
    /// `len()..len()+L` of layer `layer`; returns all filled keys and values.
    ///
    /// Errors if the cache would overflow or the sizes disagree with earlier appends.
    pub fn append_host(
        &mut self,
        layer: usize,
        k: &[f32],
        v: &[f32],
        (l, kv_heads, head_dim): (usize, usize, usize),
    ) -> Result<HostKv<'_>, String> {
        let start = self.len;
        let end = start + l;
        if end > self.capacity {
            return Err(format!("KV cache overflow: {end} positions, capacity {}", self.capacity));
        }
        if k.len() != l * kv_heads * head_dim || v.len() != k.len() {
            return Err(format!("{} key and {} value numbers for {l}×{kv_heads}×{head_dim}", k.len(), v.len()));
        }
        let slot = self
            .host_layers
            .get_mut(layer)
            .ok_or_else(|| format!("no cache for layer {layer}"))?;
        let head_size = |allocated: usize| allocated * head_dim;
        if slot.allocated > 0 && slot.heads != (kv_heads, head_dim) {
            return Err(format!(
                "layer {layer}: cache built for {:?} (kv heads, head dim), not {:?}",
                slot.heads,
                (kv_heads, head_dim)
            ));
        }
        if end > slot.allocated {
            // A larger buffer written head by head, each value once: the filled part of the
            // head (nothing after a `reset`), this call's rows, zeros for the rest.
            let size = (end + GROWTH_STEP)
                .max(slot.allocated + slot.allocated / 2)
                .min(self.capacity);
            let kept = start.min(slot.allocated);
            let grow = |old: &[f32], new: &[f32]| {
                let mut grown = Vec::with_capacity(kv_heads * head_size(size));
                for h in 0..kv_heads {
                    grown.extend_from_slice(&old[h * head_size(slot.allocated)..][..kept * head_dim]);
                    for row in new.chunks_exact((kv_heads * head_dim).max(1)) {
                        grown.extend_from_slice(&row[h * head_dim..(h + 1) * head_dim]);
                    }
                    grown.resize((h + 1) * head_size(size), 0.0);
                }
                grown
            };
            let (grown_k, grown_v) = (grow(&slot.k, k), grow(&slot.v, v));
            *slot = HostLayerCache {
                k: grown_k,
                v: grown_v,
                allocated: size,
                heads: (kv_heads, head_dim),
            };
        } else {
            let stride = head_size(slot.allocated);
            for t in 0..l {
                for h in 0..kv_heads {
                    let src = (t * kv_heads + h) * head_dim..(t * kv_heads + h + 1) * head_dim;
                    let dst = h * stride + (start + t) * head_dim;
                    slot.k[dst..dst + head_dim].copy_from_slice(&k[src.clone()]);
                    slot.v[dst..dst + head_dim].copy_from_slice(&v[src]);
                }
            }
        }
        Ok(HostKv {
            keys: &slot.k,
            values: &slot.v,
            allocated: slot.allocated,
            len: end,
        })
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

    /// The host variant keeps every position across growths and a reset.
    #[test]
    fn host_growth_keeps_every_position() {
        let mut cache = KvCache::new(1, 1000);
        let n = 3 * GROWTH_STEP + 17;
        for round in 0..2 {
            for i in 0..n {
                let value = (i + round) as f32;
                let kv = cache.append_host(0, &[value; 6], &[-value; 6], (1, 2, 3)).unwrap();
                assert_eq!(kv.len, i + 1);
                cache.advance(1);
            }
            let kv = cache.append_host(0, &[0.0; 6], &[0.0; 6], (1, 2, 3)).unwrap();
            for h in 0..2 {
                for p in 0..n {
                    let at = h * kv.allocated * 3 + p * 3;
                    assert_eq!(kv.keys[at..at + 3], [(p + round) as f32; 3]);
                    assert_eq!(kv.values[at..at + 3], [-((p + round) as f32); 3]);
                }
            }
            cache.reset();
        }
        assert!(cache.append_host(0, &[0.0; 6], &[0.0; 6], (1, 3, 2)).is_err());
    }

    /// Appends of many rows at once (a prefill into an empty cache, one that grows it, one that
    /// fits) put every head's value of every position where the attention reads it.
    #[test]
    fn host_multi_row_appends_place_each_head_and_position() {
        let (kv_heads, head_dim) = (3, 4);
        let value = |p: usize, h: usize, i: usize| (p * 100 + h * 10 + i) as f32;
        let rows = |from: usize, l: usize| -> Vec<f32> {
            (from..from + l).flat_map(|p| (0..kv_heads).flat_map(move |h| (0..head_dim).map(move |i| value(p, h, i)))).collect()
        };
        let mut cache = KvCache::new(1, 1000);
        let mut filled = 0;
        for l in [200, 150, 5, 300] {
            let keys = rows(filled, l);
            let values: Vec<f32> = keys.iter().map(|x| -x).collect();
            let kv = cache.append_host(0, &keys, &values, (l, kv_heads, head_dim)).unwrap();
            assert_eq!(kv.len, filled + l);
            for p in 0..filled + l {
                for h in 0..kv_heads {
                    for i in 0..head_dim {
                        let at = h * kv.allocated * head_dim + p * head_dim + i;
                        assert_eq!((kv.keys[at], kv.values[at]), (value(p, h, i), -value(p, h, i)), "position {p} head {h}");
                    }
                }
            }
            cache.advance(l);
            filled += l;
        }
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
