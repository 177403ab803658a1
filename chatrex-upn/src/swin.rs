//! Swin Transformer backbone (Liu et al. 2021) as UPN uses it: patch embedding, four stages of
//! (shifted) window attention with relative position bias, patch merging, and a LayerNorm on
//! each stage's output.

use crate::UpnError;
use crate::config::SwinConfig;
use crate::swin_host::HostWindowAttention;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::ops::PadMode;
use burn::tensor::{Bool, Tensor, TensorData};
use chatrex_common::layers::{Activation, Conv2d, Conv2dSpec, FeedForward, HostLayerNorm, HostLinear, LayerNorm, Linear, NormPlacement};
use chatrex_common::weights::WeightLoader;

/// LayerNorm epsilon of every Swin norm (PyTorch default).
const LN_EPS: f64 = 1e-5;

/// The Swin backbone. Keys under `backbone.model.backbone`.
#[derive(Debug, Clone)]
pub struct SwinTransformer {
    patch_embed: PatchEmbed,
    stages: Vec<SwinStage>,
    out_norms: Vec<LayerNorm>,
}

#[derive(Debug, Clone)]
struct PatchEmbed {
    proj: Conv2d,
    norm: LayerNorm,
    patch: usize,
}

#[derive(Debug, Clone)]
struct SwinStage {
    blocks: Vec<SwinBlock>,
    downsample: Option<PatchMerging>,
    window: usize,
}

#[derive(Debug, Clone)]
struct SwinBlock {
    /// `x + attn(norm1(x))`, as Burn tensors or in host memory.
    attention: BlockAttention,
    /// `x + mlp.fc2(GELU(mlp.fc1(norm2(x))))`.
    mlp: FeedForward,
    window: usize,
    shift: usize,
}

/// A block's attention half on whichever path the device runs fastest.
#[derive(Debug, Clone)]
enum BlockAttention {
    Tensor(Box<(LayerNorm, WindowAttention)>),
    /// The CPU backend: the map as host rows (`swin_host.rs`).
    Host(Box<HostWindowAttention>),
}

#[derive(Debug, Clone)]
struct WindowAttention {
    qkv: Linear,
    proj: Linear,
    heads: usize,
    /// Relative position bias gathered from the table: `[heads, N, N]`, N = window².
    relative_bias: Tensor<3>,
}

#[derive(Debug, Clone)]
struct PatchMerging {
    norm: LayerNorm,
    reduction: Linear,
}

/// `relative_position_index[i][j]` of the standard Swin window of side `w`.
fn relative_position_index(w: usize) -> Vec<usize> {
    let n = w * w;
    let mut index = Vec::with_capacity(n * n);
    for i in 0..n {
        let (yi, xi) = (i / w, i % w);
        for j in 0..n {
            let (yj, xj) = (j / w, j % w);
            let dy = yi + w - 1 - yj;
            let dx = xi + w - 1 - xj;
            index.push(dy * (2 * w - 1) + dx);
        }
    }
    index
}

/// The relative position bias of `vb`'s table gathered for every query/key pair of a window:
/// `[heads, N, N]`, N = window².
fn relative_bias(vb: &WeightLoader, heads: usize, window: usize) -> Vec<f32> {
    let n = window * window;
    let table_rows = (2 * window - 1) * (2 * window - 1);
    let table = vb.host_f32("relative_position_bias_table", &[table_rows, heads]);
    // The stored index buffer is the standard one; we derive it from the window size.
    vb.ignore("relative_position_index");
    let index = relative_position_index(window);
    let mut bias = vec![0f32; heads * n * n];
    for (ij, &row) in index.iter().enumerate() {
        for h in 0..heads {
            bias[h * n * n + ij] = table[row * heads + h];
        }
    }
    bias
}

impl WindowAttention {
    fn load(vb: &WeightLoader, dim: usize, heads: usize, window: usize) -> Self {
        let n = window * window;
        let bias = relative_bias(vb, heads, window);
        let relative_bias = Tensor::from_data(
            TensorData::new(bias, [heads, n, n]),
            (vb.device(), vb.dtype().dtype()),
        );
        Self {
            qkv: Linear::load(&vb.pp("qkv"), dim, 3 * dim, true),
            proj: Linear::load(&vb.pp("proj"), dim, dim, true),
            heads,
            relative_bias,
        }
    }

    /// `[BW, N, C]` windows (+ optional `[BW, 1, N, N]` shift mask, `true` = masked) →
    /// `[BW, N, C]`, through Burn's fused attention with the relative position bias
    /// broadcast over windows.
    ///
    /// The official code adds −100 between tokens of different shifted regions; masking them
    /// out instead differs by `exp(−100) ≈ 4e−44` of a softmax weight, far below f32
    /// resolution of the other weights.
    fn forward(&self, x: Tensor<3>, mask: Option<&Tensor<4, Bool>>) -> Tensor<3> {
        let [bw, n, c] = x.dims();
        let hd = c / self.heads;
        let qkv = self.qkv.forward(x).reshape([bw, n, 3, self.heads, hd]);
        let part = |i: usize| {
            qkv.clone()
                .narrow(2, i, 1)
                .reshape([bw, n, self.heads, hd])
                .swap_dims(1, 2)
        };
        let options = AttentionModuleOptions {
            scale: Some((hd as f64).powf(-0.5)),
            softcap: None,
            is_causal: false,
        };
        let bias = self.relative_bias.clone().unsqueeze::<4>();
        let out = attention(part(0), part(1), part(2), mask.cloned(), Some(bias), options)
            .swap_dims(1, 2)
            .reshape([bw, n, c]);
        self.proj.forward(out)
    }
}

/// `[B, Hp, Wp, C]` → `[B·nW, w², C]`, windows in row-major order.
fn window_partition(x: Tensor<4>, w: usize) -> Tensor<3> {
    let [b, hp, wp, c] = x.dims();
    x.reshape([b, hp / w, w, wp / w, w, c])
        .permute([0, 1, 3, 2, 4, 5])
        .reshape([b * (hp / w) * (wp / w), w * w, c])
}

/// Inverse of [`window_partition`].
fn window_reverse(windows: Tensor<3>, w: usize, b: usize, hp: usize, wp: usize) -> Tensor<4> {
    let c = windows.dims()[2];
    windows
        .reshape([b, hp / w, wp / w, w, w, c])
        .permute([0, 1, 3, 2, 4, 5])
        .reshape([b, hp, wp, c])
}

/// The attention mask of shifted windows on a padded `hp × wp` map: `[nW, w², w²]`, `true`
/// between tokens from different regions of the cyclically shifted map.
fn shift_mask(hp: usize, wp: usize, w: usize, shift: usize) -> Vec<bool> {
    let region = |i: usize, size: usize| -> usize {
        if i < size - w {
            0
        } else if i < size - shift {
            1
        } else {
            2
        }
    };
    let (nh, nw) = (hp / w, wp / w);
    let n = w * w;
    let mut mask = Vec::with_capacity(nh * nw * n * n);
    for wy in 0..nh {
        for wx in 0..nw {
            let label = |t: usize| {
                let (y, x) = (wy * w + t / w, wx * w + t % w);
                region(y, hp) * 3 + region(x, wp)
            };
            let labels: Vec<usize> = (0..n).map(label).collect();
            for i in 0..n {
                for j in 0..n {
                    mask.push(labels[i] != labels[j]);
                }
            }
        }
    }
    mask
}

/// `map [B, H, W, C]` read back into host rows, changed in place by `f`, and uploaded again in
/// its dtype.
fn on_host_rows(map: Tensor<4>, f: impl FnOnce(&mut [f32], [usize; 4]) -> Result<(), UpnError>) -> Result<Tensor<4>, UpnError> {
    let shape = map.dims();
    let (device, dtype) = (map.device(), map.dtype());
    let mut rows = chatrex_common::device::read_f32(map).map_err(UpnError::Backend)?;
    f(&mut rows, shape)?;
    Ok(Tensor::<4>::from_data(TensorData::new(rows, shape), &device).cast(dtype))
}

impl SwinBlock {
    fn load(vb: &WeightLoader, dim: usize, heads: usize, window: usize, shift: usize, mlp_ratio: f64) -> Self {
        let hidden = (dim as f64 * mlp_ratio) as usize;
        let attention = if chatrex_common::device::is_host_cpu(vb.device()) {
            let attn = vb.pp("attn");
            BlockAttention::Host(Box::new(HostWindowAttention {
                norm1: HostLayerNorm::load(&vb.pp("norm1"), dim, LN_EPS),
                qkv: HostLinear::load(&attn.pp("qkv"), dim, 3 * dim, true),
                proj: HostLinear::load(&attn.pp("proj"), dim, dim, true),
                heads,
                relative_bias: relative_bias(&attn, heads, window),
                window,
                shift,
            }))
        } else {
            BlockAttention::Tensor(Box::new((
                LayerNorm::load(&vb.pp("norm1"), dim, LN_EPS),
                WindowAttention::load(&vb.pp("attn"), dim, heads, window),
            )))
        };
        Self {
            attention,
            mlp: FeedForward::load(
                &vb.pp("norm2"),
                &vb.pp("mlp.fc1"),
                &vb.pp("mlp.fc2"),
                dim,
                hidden,
                LN_EPS,
                Activation::Gelu,
                NormPlacement::Pre,
            ),
            window,
            shift,
        }
    }

    /// The block on the map's host rows `x [B, H, W, C]`, in place (`host_mask`: the shift mask
    /// `[nW, N, N]` of one image). Errors for a block whose weights are tensors.
    fn forward_host(&self, x: &mut [f32], [b, h, w, c]: [usize; 4], host_mask: Option<&[bool]>) -> Result<(), UpnError> {
        let BlockAttention::Host(attention) = &self.attention else {
            return Err(UpnError::Backend("Swin block: the attention's weights are not in host memory".into()));
        };
        attention.add_forward(x, (b, h, w, c), host_mask).map_err(UpnError::Backend)?;
        if !self.mlp.forward_host_rows(x) {
            return Err(UpnError::Backend("Swin block: the MLP's weights are not in host memory".into()));
        }
        Ok(())
    }

    /// `[B, H, W, C]` → `[B, H, W, C]`; `mask` is the shift mask for the padded size, as a
    /// tensor `[B·nW, 1, N, N]` and as one image's host values `[nW, N, N]`.
    fn forward(&self, x: Tensor<4>, mask: Option<&Tensor<4, Bool>>, host_mask: Option<&[bool]>) -> Result<Tensor<4>, UpnError> {
        let (norm1, attn) = match &self.attention {
            BlockAttention::Tensor(layers) => (&layers.0, &layers.1),
            BlockAttention::Host(_) => return on_host_rows(x, |rows, shape| self.forward_host(rows, shape, host_mask)),
        };
        let [b, h, w, c] = x.dims();
        let ws = self.window;
        let (pad_b, pad_r) = ((ws - h % ws) % ws, (ws - w % ws) % ws);
        let (hp, wp) = (h + pad_b, w + pad_r);
        let shortcut = x.clone();
        let mut y = norm1.forward(x);
        if pad_b > 0 || pad_r > 0 {
            y = y.pad([(0, 0), (0, pad_b), (0, pad_r), (0, 0)], PadMode::Constant(0.0));
        }
        let s = self.shift as i64;
        if self.shift > 0 {
            y = y.roll(&[-s, -s], &[1, 2]);
        }
        let windows = attn.forward(window_partition(y, ws), mask.filter(|_| self.shift > 0));
        let mut y = window_reverse(windows, ws, b, hp, wp);
        if self.shift > 0 {
            y = y.roll(&[s, s], &[1, 2]);
        }
        if pad_b > 0 || pad_r > 0 {
            y = y.slice([0..b, 0..h, 0..w, 0..c]);
        }
        Ok(self.mlp.forward(shortcut + y))
    }
}

impl PatchMerging {
    fn load(vb: &WeightLoader, dim: usize) -> Self {
        Self {
            norm: LayerNorm::load(&vb.pp("norm"), 4 * dim, LN_EPS),
            reduction: Linear::load(&vb.pp("reduction"), 4 * dim, 2 * dim, false),
        }
    }

    /// `[B, H, W, C]` → `[B, ⌈H/2⌉, ⌈W/2⌉, 2C]`: concatenates `x[0::2,0::2]`, `x[1::2,0::2]`,
    /// `x[0::2,1::2]`, `x[1::2,1::2]` (zero-padding odd sizes), LayerNorm, linear reduction.
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, h, w, c] = x.dims();
        let x = if h % 2 == 1 || w % 2 == 1 {
            x.pad([(0, 0), (0, h % 2), (0, w % 2), (0, 0)], PadMode::Constant(0.0))
        } else {
            x
        };
        let (h2, w2) = (h.div_ceil(2), w.div_ceil(2));
        let merged = x
            .reshape([b, h2, 2, w2, 2, c])
            .permute([0, 1, 3, 4, 2, 5])
            .reshape([b, h2, w2, 4 * c]);
        self.reduction.forward(self.norm.forward(merged))
    }
}

impl SwinStage {
    /// `[B, H, W, C]` → (stage output `[B, H, W, C]`, next stage input).
    fn forward(&self, mut x: Tensor<4>) -> Result<(Tensor<4>, Option<Tensor<4>>), UpnError> {
        let [b, h, w, _] = x.dims();
        let ws = self.window;
        let (hp, wp) = (h.div_ceil(ws) * ws, w.div_ceil(ws) * ws);
        let needs_mask = self.blocks.iter().any(|b| b.shift > 0);
        let host_mask = needs_mask.then(|| shift_mask(hp, wp, ws, ws / 2));
        let tensor_blocks = self.blocks.iter().any(|b| matches!(b.attention, BlockAttention::Tensor(_)));
        let mask = host_mask.as_ref().filter(|_| tensor_blocks).map(|one| {
            let nw = (hp / ws) * (wp / ws);
            let n = ws * ws;
            let all: Vec<bool> = (0..b).flat_map(|_| one.iter().copied()).collect();
            Tensor::<4, Bool>::from_data(TensorData::new(all, [b * nw, 1, n, n]), &x.device())
        });
        if tensor_blocks {
            for block in &self.blocks {
                x = block.forward(x, mask.as_ref(), host_mask.as_deref())?;
            }
        } else {
            // The CPU backend: the map stays host rows from the first block to the last.
            x = on_host_rows(x, |rows, shape| {
                self.blocks.iter().try_for_each(|block| block.forward_host(rows, shape, host_mask.as_deref()))
            })?;
        }
        let down = self.downsample.as_ref().map(|d| d.forward(x.clone()));
        Ok((x, down))
    }
}

impl SwinTransformer {
    /// Loads the backbone from `vb` (prefix `backbone.model.backbone`).
    pub fn load(vb: &WeightLoader, config: &SwinConfig) -> Self {
        let dims: Vec<usize> = (0..config.depths.len()).map(|i| config.embed_dim << i).collect();
        let patch_embed = PatchEmbed {
            proj: Conv2d::load(
                &vb.pp("patch_embed.proj"),
                Conv2dSpec {
                    d_in: 3,
                    d_out: config.embed_dim,
                    kernel: config.patch_size,
                    stride: config.patch_size,
                    padding: 0,
                    groups: 1,
                    bias: true,
                },
            ),
            norm: LayerNorm::load(&vb.pp("patch_embed.norm"), config.embed_dim, LN_EPS),
            patch: config.patch_size,
        };
        let last = config.depths.len() - 1;
        let stages = (0..config.depths.len())
            .map(|i| {
                let vs = vb.pp(format!("layers.{i}"));
                let blocks = (0..config.depths[i])
                    .map(|j| {
                        let shift = if j % 2 == 0 { 0 } else { config.window_size / 2 };
                        SwinBlock::load(
                            &vs.pp(format!("blocks.{j}")),
                            dims[i],
                            config.num_heads[i],
                            config.window_size,
                            shift,
                            config.mlp_ratio,
                        )
                    })
                    .collect();
                SwinStage {
                    blocks,
                    downsample: (i < last).then(|| PatchMerging::load(&vs.pp("downsample"), dims[i])),
                    window: config.window_size,
                }
            })
            .collect();
        let out_norms = dims
            .iter()
            .enumerate()
            .map(|(i, &d)| LayerNorm::load(&vb.pp(format!("norm{i}")), d, LN_EPS))
            .collect();
        Self {
            patch_embed,
            stages,
            out_norms,
        }
    }

    /// `[B, 3, H, W]` → one normed map per stage, `[B, C_i, H_i, W_i]` (strides 4, 8, 16, 32).
    /// Errors when the CPU backend cannot read a map back into host memory.
    pub fn forward(&self, images: Tensor<4>) -> Result<Vec<Tensor<4>>, UpnError> {
        let [_, _, h, w] = images.dims();
        let p = self.patch_embed.patch;
        let (pad_b, pad_r) = ((p - h % p) % p, (p - w % p) % p);
        let images = if pad_b > 0 || pad_r > 0 {
            images.pad([(0, 0), (0, 0), (0, pad_b), (0, pad_r)], PadMode::Constant(0.0))
        } else {
            images
        };
        let x = self.patch_embed.proj.forward(images).permute([0, 2, 3, 1]);
        let mut x = Some(self.patch_embed.norm.forward(x));
        let mut outs = Vec::with_capacity(self.stages.len());
        for (stage, norm) in self.stages.iter().zip(&self.out_norms) {
            let Some(input) = x.take() else { break };
            let (out, next) = stage.forward(input)?;
            outs.push(norm.forward(out).permute([0, 3, 1, 2]));
            x = next;
        }
        Ok(outs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_index_matches_the_reference_formula() {
        // Window 2: index[i][j] = (yi - yj + 1) * 3 + (xi - xj + 1).
        assert_eq!(
            relative_position_index(2),
            vec![4, 3, 1, 0, 5, 4, 2, 1, 7, 6, 4, 3, 8, 7, 5, 4]
        );
    }

    /// The host path of a block (windows gathered from the map, padding and shift folded into
    /// the indices) against the tensor path (pad, roll, partition, Burn's attention, reverse)
    /// on the same weights: two images whose map is no multiple of the window, shifted and
    /// not. Both compute in f32 (measured 1.5e-7 apart); the shift mask left out gives 0.19.
    #[cfg(feature = "flex")]
    #[test]
    fn host_block_matches_the_tensor_block() {
        let device = burn::tensor::Device::flex();
        let (dim, heads, window) = (32, 2, 4);
        let (b, h, w) = (2, 9, 11);
        let x = Tensor::<4>::random([b, h, w, dim], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
        for shift in [0, window / 2] {
            let vb = WeightLoader::random(3, &device, chatrex_common::weights::WeightDType::F32);
            let host = SwinBlock::load(&vb, dim, heads, window, shift, 4.0);
            assert!(matches!(host.attention, BlockAttention::Host(_)));
            let vb = WeightLoader::random(3, &device, chatrex_common::weights::WeightDType::F32);
            let mut tensor = SwinBlock::load(&vb, dim, heads, window, shift, 4.0);
            tensor.attention = BlockAttention::Tensor(Box::new((
                LayerNorm::load(&vb.pp("norm1"), dim, LN_EPS),
                WindowAttention::load(&vb.pp("attn"), dim, heads, window),
            )));
            let (hp, wp) = (h.div_ceil(window) * window, w.div_ceil(window) * window);
            let one = shift_mask(hp, wp, window, window / 2);
            let (nw, n) = ((hp / window) * (wp / window), window * window);
            let all: Vec<bool> = (0..b).flat_map(|_| one.iter().copied()).collect();
            let mask = Tensor::<4, Bool>::from_data(TensorData::new(all, [b * nw, 1, n, n]), &device);
            let ours = host.forward(x.clone(), None, Some(&one)).unwrap();
            let theirs = tensor.forward(x.clone(), Some(&mask), None).unwrap();
            let values = |t: Tensor<4>| t.into_data().try_to_vec::<f32>().unwrap();
            let between = chatrex_common::parity::compare(&values(ours), &values(theirs));
            println!("shift {shift}: host vs tensor block {between}");
            assert!(between.rel < 1e-5, "shift {shift}: {between}");
        }
    }

    #[test]
    fn shift_mask_separates_regions() {
        // 4×4 map, window 2, shift 1: the last window holds 4 different regions.
        let m = shift_mask(4, 4, 2, 1);
        let last = &m[3 * 16..4 * 16];
        let attended = last.iter().filter(|v| !**v).count();
        assert_eq!(attended, 4);
        // The first window lies in one region.
        assert!(m[..16].iter().all(|v| !*v));
    }
}
