"""PyTorch reference timing of UPN-L on an 800×1333 input (CPU), with the same seeded random
weights as the Rust bench (`Upn::random(.., seed 1)`), built from our PyTorch formulation
in tools/reference/upn_modules.py (MSDA via grid_sample, as the official CPU fallback).

    python tools/bench/upn_torch.py [--threads N]
"""

import argparse
import json
import sys
import time
import resource
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reference"))
import upn_modules as U  # noqa: E402
from common import seeded_values  # noqa: E402


class Cached(U.Weights):
    """Seeded weights generated once and reused across runs."""

    cache = {}

    def __call__(self, name, *shape):
        key = self.prefix + name
        if key not in Cached.cache:
            Cached.cache[key] = seeded_values(1, key, shape)
        return Cached.cache[key]

    def pp(self, name):
        return Cached(f"{self.prefix}{name}.")


def upn_forward(images):
    d, heads, levels, points, ffn, queries = 256, 8, 5, 4, 2048, 900
    w = Cached("")
    feats = U.swin(w.pp("backbone.model.backbone"), images, 192, [2, 2, 18, 2], [6, 12, 24, 48], 12, 4)
    srcs = []
    for l in range(levels):
        inp = feats[l] if l < 4 else feats[-1]
        c_in = inp.shape[1]
        pw = w.pp(f"input_proj.{l}")
        k = 1 if l < 4 else 3
        x = F.conv2d(inp, pw("0.weight", d, c_in, k, k), pw("0.bias", d), stride=1 if l < 4 else 2, padding=0 if l < 4 else 1)
        srcs.append(F.group_norm(x, 32, pw("1.weight", d), pw("1.bias", d)))
    shapes = [tuple(s.shape[-2:]) for s in srcs]
    src = torch.cat([s.flatten(2).transpose(1, 2) for s in srcs], 1)
    pos = torch.zeros_like(src)
    s = {"d": d, "heads": heads, "points": points, "ffn": ffn}
    ref = U.encoder_reference(shapes)
    mem = src
    for i in range(6):
        mem = U.encoder_layer(w.pp(f"transformer.encoder.layers.{i}"), mem, pos, ref, shapes, s)
    anchor, valid = U.anchors(shapes)
    tw = w.pp("transformer")
    om = U.layer_norm(tw, "enc_output_norm", U.linear(tw, "enc_output", mem * valid[None, :, None], d, d), d)
    logits = (om @ tw("fine_grained_prompt.weight", 1, d).T)[..., 0]
    top = torch.topk(logits, queries, dim=1).indices[0]
    ref_unsig = U.mlp(tw.pp("enc_out_bbox_embed"), om[0, top], [d, d, d, 4]) + anchor[top]
    tgt = tw("tgt_embed.weight", queries, d)[None]
    hs, refs = U.decoder(tw.pp("decoder"), tgt, mem, torch.sigmoid(ref_unsig[None]), shapes, s, 6)
    return hs[-1]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    images = torch.randn(1, 3, 800, 1333)
    with torch.no_grad():
        upn_forward(images)  # generates the weights, warms up
        times = []
        for _ in range(args.runs):
            t = time.perf_counter()
            upn_forward(images)
            times.append(time.perf_counter() - t)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"name": "upn_forward", "seconds": min(times), "threads": args.threads, "max_rss_bytes": rss}))


if __name__ == "__main__":
    main()
