"""UPN module parity with our own PyTorch formulation of the SPEC (seeded weights, Rust key
names; only inputs and outputs are stored):

- a small Swin backbone on an odd-sized input: patch-embedding padding, window padding,
  shifted windows with the −100 mask, relative position bias, patch merging of odd maps;
- a deformable encoder layer (MSDA written with `grid_sample`, 2-d references);
- two-stage query selection (anchors, invalid tokens, top-k by the prompt);
- a 2-layer decoder with the shared box head (4-d references, DINO box refinement).
"""

import math

import torch
import torch.nn.functional as F

from common import out_dir, save_tensors, seeded_values

SEED = 21


class Weights:
    """Seeded parameters by Rust key name."""

    def __init__(self, prefix=""):
        self.prefix = prefix

    def __call__(self, name, *shape):
        return seeded_values(SEED, self.prefix + name, shape)

    def pp(self, name):
        return Weights(f"{self.prefix}{name}.")


def linear(w, name, x, d_in, d_out, bias=True):
    y = x @ w(f"{name}.weight", d_out, d_in).T
    return y + w(f"{name}.bias", d_out) if bias else y


def layer_norm(w, name, x, d, eps=1e-5):
    return F.layer_norm(x, (d,), w(f"{name}.weight", d), w(f"{name}.bias", d), eps)


# ------------------------------------------------------------------------------- Swin
def rel_index(ws):
    coords = torch.stack(torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")).flatten(1)
    rel = coords[:, :, None] - coords[:, None, :]
    return (rel[0] + ws - 1) * (2 * ws - 1) + (rel[1] + ws - 1)


def partition(x, ws):
    b, h, w, c = x.shape
    return x.view(b, h // ws, ws, w // ws, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, ws * ws, c)


def reverse(x, ws, b, h, w):
    c = x.shape[-1]
    return x.view(b, h // ws, w // ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, c)


def shift_mask(hp, wp, ws, s):
    img = torch.zeros(1, hp, wp, 1)
    cnt = 0
    for hs in (slice(0, -ws), slice(-ws, -s), slice(-s, None)):
        for wsl in (slice(0, -ws), slice(-ws, -s), slice(-s, None)):
            img[:, hs, wsl, :] = cnt
            cnt += 1
    mw = partition(img, ws).squeeze(-1)
    m = mw[:, None, :] - mw[:, :, None]
    return m.masked_fill(m != 0, -100.0).masked_fill(m == 0, 0.0)


def swin_block(w, x, heads, ws, shift, mlp_ratio=4.0):
    b, h, wd, c = x.shape
    shortcut = x
    y = layer_norm(w, "norm1", x, c)
    pb, pr = (ws - h % ws) % ws, (ws - wd % ws) % ws
    y = F.pad(y, (0, 0, 0, pr, 0, pb))
    hp, wp = h + pb, wd + pr
    if shift:
        y = torch.roll(y, (-shift, -shift), (1, 2))
    win = partition(y, ws)
    n = ws * ws
    hd = c // heads
    qkv = linear(w, "attn.qkv", win, c, 3 * c).view(-1, n, 3, heads, hd).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0] * hd ** -0.5, qkv[1], qkv[2]
    attn = q @ k.transpose(-2, -1)
    table = w("attn.relative_position_bias_table", (2 * ws - 1) ** 2, heads)
    attn = attn + table[rel_index(ws).view(-1)].view(n, n, heads).permute(2, 0, 1)[None]
    if shift:
        m = shift_mask(hp, wp, ws, shift)
        nw = m.shape[0]
        attn = (attn.view(-1, nw, heads, n, n) + m[None, :, None]).view(-1, heads, n, n)
    out = (attn.softmax(-1) @ v).transpose(1, 2).reshape(-1, n, c)
    out = linear(w, "attn.proj", out, c, c)
    y = reverse(out, ws, b, hp, wp)
    if shift:
        y = torch.roll(y, (shift, shift), (1, 2))
    x = shortcut + y[:, :h, :wd]
    hidden = int(c * mlp_ratio)
    return x + linear(w, "mlp.fc2", F.gelu(linear(w, "mlp.fc1", layer_norm(w, "norm2", x, c), c, hidden)), hidden, c)


def patch_merge(w, x):
    b, h, wd, c = x.shape
    x = F.pad(x, (0, 0, 0, wd % 2, 0, h % 2))
    x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
    return linear(w, "reduction", layer_norm(w, "norm", x, 4 * c), 4 * c, 2 * c, bias=False)


def swin(w, images, embed, depths, heads, ws, patch):
    _, _, h, wd = images.shape
    x = F.pad(images, (0, (patch - wd % patch) % patch, 0, (patch - h % patch) % patch))
    x = F.conv2d(x, w("patch_embed.proj.weight", embed, 3, patch, patch), w("patch_embed.proj.bias", embed), stride=patch)
    x = layer_norm(w, "patch_embed.norm", x.permute(0, 2, 3, 1), embed)
    outs = []
    for i, depth in enumerate(depths):
        c = embed << i
        ls = w.pp(f"layers.{i}")
        for j in range(depth):
            x = swin_block(ls.pp(f"blocks.{j}"), x, heads[i], ws, 0 if j % 2 == 0 else ws // 2)
        outs.append(layer_norm(w, f"norm{i}", x, c).permute(0, 3, 1, 2))
        if i < len(depths) - 1:
            x = patch_merge(ls.pp("downsample"), x)
    return outs


# ------------------------------------------------------------------------------- MSDA
def msda(w, query, reference, value_in, shapes, heads, levels, points):
    b, lq, c = query.shape
    value = linear(w, "value_proj", value_in, c, c).view(b, -1, heads, c // heads)
    off = linear(w, "sampling_offsets", query, c, heads * levels * points * 2).view(b, lq, heads, levels, points, 2)
    aw = linear(w, "attention_weights", query, c, heads * levels * points).view(b, lq, heads, levels * points)
    aw = aw.softmax(-1).view(b, lq, heads, levels, points)
    if reference.shape[-1] == 2:
        norm = torch.tensor([[ww, hh] for hh, ww in shapes], dtype=torch.float32)
        loc = reference[:, :, None, :, None, :] + off / norm[None, None, None, :, None, :]
    else:
        loc = reference[:, :, None, :, None, :2] + off / points * reference[:, :, None, :, None, 2:] * 0.5
    grids = 2 * loc - 1
    out = 0
    start = 0
    for l, (hh, ww) in enumerate(shapes):
        v = value[:, start:start + hh * ww].flatten(2).transpose(1, 2).reshape(b * heads, c // heads, hh, ww)
        start += hh * ww
        g = grids[:, :, :, l].transpose(1, 2).flatten(0, 1)
        s = F.grid_sample(v, g, mode="bilinear", padding_mode="zeros", align_corners=False)
        out = out + (s * aw[:, :, :, l].transpose(1, 2).reshape(b * heads, 1, lq, points)).sum(-1)
    out = out.view(b, c, lq).transpose(1, 2)
    return linear(w, "output_proj", out, c, c)


def encoder_layer(w, src, pos, reference, shapes, s):
    c = s["d"]
    src = layer_norm(w, "norm1", src + msda(w.pp("self_attn"), src + pos, reference, src, shapes, s["heads"], len(shapes), s["points"]), c)
    ffn = linear(w, "linear2", F.relu(linear(w, "linear1", src, c, s["ffn"])), s["ffn"], c)
    return layer_norm(w, "norm2", src + ffn, c)


def encoder_reference(shapes):
    refs = []
    for hh, ww in shapes:
        y, x = torch.meshgrid(torch.linspace(0.5, hh - 0.5, hh), torch.linspace(0.5, ww - 0.5, ww), indexing="ij")
        refs.append(torch.stack((x.reshape(-1) / ww, y.reshape(-1) / hh), -1))
    r = torch.cat(refs, 0)
    return r[None, :, None].expand(1, r.shape[0], len(shapes), 2)


def mlp(w, x, dims):
    for i in range(len(dims) - 1):
        x = linear(w, f"layers.{i}", x, dims[i], dims[i + 1])
        if i < len(dims) - 2:
            x = F.relu(x)
    return x


def anchors(shapes):
    props = []
    for lvl, (hh, ww) in enumerate(shapes):
        y, x = torch.meshgrid(torch.arange(hh, dtype=torch.float32), torch.arange(ww, dtype=torch.float32), indexing="ij")
        grid = torch.stack(((x + 0.5) / ww, (y + 0.5) / hh), -1).view(-1, 2)
        props.append(torch.cat((grid, torch.full_like(grid, 0.05 * 2.0 ** lvl)), -1))
    p = torch.cat(props, 0)
    valid = ((p > 0.01) & (p < 0.99)).all(-1)
    return torch.log(p / (1 - p)).masked_fill(~valid[:, None], float("inf")), valid


def inverse_sigmoid(x, eps=1e-3):
    x = x.clamp(0, 1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))


def sine(pos, feats, temperature=10000):
    dim_t = temperature ** (2 * (torch.arange(feats, dtype=torch.float32) // 2) / feats)
    p = pos[..., None] * (2 * math.pi) / dim_t
    return torch.stack((p[..., 0::2].sin(), p[..., 1::2].cos()), -1).flatten(-2)


def decoder(w, tgt, memory, ref, shapes, s, layers):
    c, heads = s["d"], s["heads"]
    outs, refs = [], [ref]
    for i in range(layers):
        lw = w.pp(f"layers.{i}")
        ref_in = ref[:, :, None].expand(-1, -1, len(shapes), -1)
        se = torch.cat([sine(ref[..., k], c // 2) for k in (1, 0, 2, 3)], -1)
        qpos = mlp(w.pp("ref_point_head"), se, [2 * c, c, c])
        ipw, ipb = lw(f"self_attn.in_proj_weight", 3 * c, c), lw("self_attn.in_proj_bias", 3 * c)
        q = (tgt + qpos) @ ipw[:c].T + ipb[:c]
        k = (tgt + qpos) @ ipw[c:2 * c].T + ipb[c:2 * c]
        v = tgt @ ipw[2 * c:].T + ipb[2 * c:]
        b, n, _ = q.shape
        split = lambda t: t.view(b, n, heads, c // heads).transpose(1, 2)
        a = ((split(q) @ split(k).transpose(-2, -1)) / math.sqrt(c // heads)).softmax(-1) @ split(v)
        a = linear(lw, "self_attn.out_proj", a.transpose(1, 2).reshape(b, n, c), c, c)
        tgt = layer_norm(lw, "norm2", tgt + a, c)
        ca = msda(lw.pp("cross_attn"), tgt + qpos, ref_in, memory, shapes, heads, len(shapes), s["points"])
        tgt = layer_norm(lw, "norm1", tgt + ca, c)
        tgt = layer_norm(lw, "norm3", tgt + linear(lw, "linear2", F.relu(linear(lw, "linear1", tgt, c, s["ffn"])), s["ffn"], c), c)
        ref = torch.sigmoid(mlp(w.pp("bbox_embed.0"), tgt, [c, c, c, 4]) + inverse_sigmoid(ref))
        refs.append(ref)
        outs.append(layer_norm(w, "norm", tgt, c))
    return outs, refs


def main():
    t = {}
    g = torch.Generator().manual_seed(9)
    # Swin: 3 × 54 × 70 input, patch 4 → 14 × 18 (padded), window 7 (14×18 → padded 14×21),
    # merged to 7 × 9 (odd: merged with padding to 4 × 5).
    images = torch.randn(1, 3, 54, 70, generator=g)
    t["swin.images"] = images
    for i, o in enumerate(swin(Weights("swin."), images, 16, [2, 2, 2], [2, 4, 4], 7, 4)):
        t[f"swin.level{i}"] = o

    s = {"d": 32, "heads": 4, "points": 3, "ffn": 48}
    shapes = [(5, 7), (3, 4), (2, 2)]
    n = sum(h * w for h, w in shapes)
    src = torch.randn(1, n, 32, generator=g)
    pos = torch.randn(1, n, 32, generator=g)
    t["enc.src"], t["enc.pos"] = src, pos
    t["enc.out"] = encoder_layer(Weights("enc."), src, pos, encoder_reference(shapes), shapes, s)

    # Two-stage selection on the encoder output, k = 12 of 48 tokens (some anchors invalid).
    memory = t["enc.out"]
    anchor, valid = anchors(shapes)
    w = Weights("sel.")
    om = layer_norm(w, "enc_output_norm", linear(w, "enc_output", memory * valid[None, :, None], 32, 32), 32)
    prompt = w("fine_grained_prompt.weight", 1, 32)
    logits = (om @ prompt.T)[..., 0]
    k = 12
    top = torch.topk(logits, k, dim=1).indices
    ref_unsig = mlp(w.pp("enc_out_bbox_embed"), om[0, top[0]], [32, 32, 32, 4]) + anchor[top[0]]
    t["sel.logits"], t["sel.topk"], t["sel.reference_unsigmoid"] = logits, top[0].to(torch.int64), ref_unsig[None]

    tgt = Weights("dec.")("tgt_embed.weight", k, 32)[None]
    hs, refs = decoder(Weights("dec.decoder."), tgt, memory, torch.sigmoid(ref_unsig[None]), shapes, s, 2)
    for i, h in enumerate(hs):
        t[f"dec.hs{i}"] = h
    for i, r in enumerate(refs):
        t[f"dec.ref{i}"] = r
    save_tensors(out_dir("upn_modules") / "cases.safetensors", t, {"seed": SEED})


if __name__ == "__main__":
    main()
