//! The (shifted) window attention of a Swin block on the CPU backend's host path: the map
//! stays one `[B, H, W, C]` buffer of host rows, and each window's tokens are gathered
//! straight from it (padding and the cyclic shift folded into the gather's indices) and
//! scattered back into it with the residual added — where the tensor path pads, rolls,
//! partitions, splits q/k/v, merges the heads, reverses the partition, rolls back and crops,
//! each a strided copy of the whole map.

use chatrex_common::host_matmul::{StridedMatrix, matmul_strided};
use chatrex_common::host_ops::softmax_row_biased;
use chatrex_common::layers::{HostLayerNorm, HostLinear};
use rayon::prelude::*;

/// `x + proj(window_attention(norm1(x)))` with the weights in host memory.
#[derive(Debug, Clone)]
pub(crate) struct HostWindowAttention {
    pub(crate) norm1: HostLayerNorm,
    pub(crate) qkv: HostLinear,
    pub(crate) proj: HostLinear,
    pub(crate) heads: usize,
    /// `[heads, N, N]`, N = window².
    pub(crate) relative_bias: Vec<f32>,
    pub(crate) window: usize,
    pub(crate) shift: usize,
}

/// Where window `window`'s token `token` sits in the unpadded map of `h × w` (`None`:
/// padding). Windows tile the padded `hp × wp` map cyclically shifted up and left by `shift`,
/// as the tensor path's pad-then-roll does.
fn token_position(window: usize, token: usize, ws: usize, (h, w): (usize, usize), (hp, wp): (usize, usize), shift: usize) -> Option<(usize, usize)> {
    let windows_per_row = wp / ws;
    let (wy, wx) = (window / windows_per_row, window % windows_per_row);
    let y = (wy * ws + token / ws + shift) % hp;
    let x = (wx * ws + token % ws + shift) % wp;
    (y < h && x < w).then_some((y, x))
}

impl HostWindowAttention {
    /// `x [B, H, W, C]` (row-major host values) ← `x + attention(x)`. `mask` is the shift mask
    /// `[nW, N, N]` of one image (`true`: masked) for the padded map, used when the block
    /// shifts. Errors when a length disagrees with the shape.
    pub(crate) fn add_forward(&self, x: &mut [f32], (b, h, w, c): (usize, usize, usize, usize), mask: Option<&[bool]>) -> Result<(), String> {
        let ws = self.window;
        let (hp, wp) = (h.div_ceil(ws) * ws, w.div_ceil(ws) * ws);
        let (n, windows) = (ws * ws, (hp / ws) * (wp / ws));
        let shift = self.shift;
        let mask = mask.filter(|_| shift > 0);
        let heads = self.heads.max(1);
        if x.len() != b * h * w * c
            || self.qkv.d_in() != c
            || self.qkv.d_out() != 3 * c
            || self.proj.d_in() != c
            || self.proj.d_out() != c
            || !c.is_multiple_of(heads)
            || self.relative_bias.len() != heads * n * n
            || mask.is_some_and(|m| m.len() != windows * n * n)
        {
            return Err(format!("Swin window attention: a {b}×{h}×{w}×{c} map does not match the block's shapes"));
        }
        // The normed tokens of every window, padding zero, `[B·nW·N, C]`.
        let rows = b * windows * n;
        let mut gathered = vec![0f32; rows * c];
        gathered.par_chunks_mut(n * c).enumerate().for_each(|(bw, tokens)| {
            let (image, window) = (bw / windows, bw % windows);
            for (token, row) in tokens.chunks_exact_mut(c).enumerate() {
                if let Some((y, xx)) = token_position(window, token, ws, (h, w), (hp, wp), shift) {
                    let at = ((image * h + y) * w + xx) * c;
                    chatrex_common::host_ops::layer_norm_row(&x[at..at + c], &self.norm1.weight, &self.norm1.bias, self.norm1.eps, row);
                }
            }
        });
        let mut qkv = self.qkv.matmul(&gathered, rows);
        chatrex_common::host_ops::bias_activation(&mut qkv, &self.qkv.bias, chatrex_common::host_ops::Activation::Identity);
        // Each window's heads: softmax(q·kᵀ·scale + bias (+ mask)) · v into its rows of
        // `gathered` (reused: every value is overwritten).
        let hd = c / heads;
        let scale = (hd as f32).powf(-0.5);
        let attended = &mut gathered;
        attended.par_chunks_mut(n * c).enumerate().try_for_each_init(
            || (vec![0f32; n * n], vec![0f32; n * hd]),
            |(scores, out), (bw, rows_out)| -> Result<(), String> {
                let window = bw % windows;
                let rows_in = &qkv[bw * n * 3 * c..(bw + 1) * n * 3 * c];
                for head in 0..heads {
                    let view = StridedMatrix::new;
                    let (q, k, v) = (&rows_in[head * hd..], &rows_in[c + head * hd..], &rows_in[2 * c + head * hd..]);
                    matmul_strided(view(q, n, hd, 3 * c, 1), view(k, hd, n, 1, 3 * c), scale, scores, n)?;
                    let bias = &self.relative_bias[head * n * n..(head + 1) * n * n];
                    let masked = mask.map(|m| &m[window * n * n..(window + 1) * n * n]);
                    for (i, row) in scores.chunks_exact_mut(n).enumerate() {
                        softmax_row_biased(row, &bias[i * n..(i + 1) * n], masked.map(|m| &m[i * n..(i + 1) * n]));
                    }
                    matmul_strided(view(scores, n, n, n, 1), view(v, n, hd, 3 * c, 1), 1.0, out, hd)?;
                    for (dst, src) in rows_out.chunks_exact_mut(c).zip(out.chunks_exact(hd)) {
                        dst[head * hd..(head + 1) * hd].copy_from_slice(src);
                    }
                }
                Ok(())
            },
        )?;
        drop(qkv);
        let mut projected = self.proj.matmul(attended, rows);
        chatrex_common::host_ops::bias_activation(&mut projected, &self.proj.bias, chatrex_common::host_ops::Activation::Identity);
        // Back into the map with the residual: each image's tokens in parallel (a token of
        // the unpadded map belongs to exactly one window).
        x.par_chunks_mut(h * w * c).enumerate().for_each(|(image, map)| {
            for window in 0..windows {
                for token in 0..n {
                    if let Some((y, xx)) = token_position(window, token, ws, (h, w), (hp, wp), shift) {
                        let src = ((image * windows + window) * n + token) * c;
                        let dst = (y * w + xx) * c;
                        for (o, a) in map[dst..dst + c].iter_mut().zip(&projected[src..src + c]) {
                            *o += a;
                        }
                    }
                }
            }
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every token of the unpadded map lies in exactly one window, shifted or not, and the
    /// rest of the windows' tokens are padding.
    #[test]
    fn windows_cover_the_map_once() {
        for (h, w, ws, shift) in [(7usize, 10usize, 3usize, 0usize), (7, 10, 3, 1), (6, 6, 3, 1), (5, 13, 4, 2)] {
            let (hp, wp) = (h.div_ceil(ws) * ws, w.div_ceil(ws) * ws);
            let mut seen = vec![0usize; h * w];
            let mut padding = 0;
            for window in 0..(hp / ws) * (wp / ws) {
                for token in 0..ws * ws {
                    match token_position(window, token, ws, (h, w), (hp, wp), shift) {
                        Some((y, x)) => seen[y * w + x] += 1,
                        None => padding += 1,
                    }
                }
            }
            assert!(seen.iter().all(|&s| s == 1), "{h}×{w} window {ws} shift {shift}");
            assert_eq!(padding, hp * wp - h * w);
        }
    }
}
