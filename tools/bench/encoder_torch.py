"""PyTorch reference timing of the dual vision encoder on the CPU, for the shapes of
benches/encoder.rs: CLIP ViT-L/14@336 (transformers, SDPA attention, 23 layers as ours; the
official code runs all 24 and drops the last), ConvNeXt-L@768 (timm, four stage maps) and the
object tokenizer for 100 boxes in the official formulation (every stage map upsampled to the
first's 192×192, concatenated, torchvision RoIAlign 7×7, mean, + sine box embedding).
Random weights (timing only). One warm-up, then the best of --repeat runs.

    python tools/bench/encoder_torch.py [--threads N] [--dtypes float32,bfloat16]
"""

import argparse
import json
import math
import resource
import time

import torch
import torch.nn.functional as F
from timm.models.convnext import ConvNeXt
from torchvision.ops import roi_align
from transformers import CLIPVisionConfig, CLIPVisionModel


def boxes(n):
    out = []
    for i in range(n):
        x, y = (i * 37.0) % 700.0, (i * 53.0) % 700.0
        out.append([x, y, min(x + 20.0 + (i * 13.0) % 300.0, 768.0), min(y + 15.0 + (i * 29.0) % 300.0, 768.0)])
    return torch.tensor(out)


def sine(v, feats):
    dim_t = 10000 ** (2 * (torch.arange(feats) // 2) / feats)
    x = v[:, None] * 2 * math.pi / dim_t
    return torch.stack([x[:, 0::2].sin(), x[:, 1::2].cos()], -1).flatten(1)


def object_features(stages, b):
    up = [stages[0]] + [F.interpolate(s, size=stages[0].shape[-2:], mode="bilinear", align_corners=False) for s in stages[1:]]
    grid = torch.cat(up, 1).float()  # torchvision's CPU RoIAlign has no bf16 kernel
    roi = roi_align(grid, [b], output_size=7, spatial_scale=0.25, sampling_ratio=-1, aligned=False)
    n = b / 768.0
    bw, bh = n[:, 2] - n[:, 0], n[:, 3] - n[:, 1]
    cx, cy = n[:, 0] + bw / 2, n[:, 1] + bh / 2
    feats = roi.shape[1] // 4
    pos = torch.cat([sine(cy, feats), sine(cx, feats), sine(bw, feats), sine(bh, feats)], -1)
    return roi.mean(dim=(2, 3)) + pos.to(roi.dtype)


def clip_model(dtype):
    """CLIP ViT-L/14@336 with 23 layers (as ours), random weights, SDPA attention."""
    return CLIPVisionModel(CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=23,
                                            num_attention_heads=16, image_size=336, patch_size=14,
                                            hidden_act="quick_gelu", attn_implementation="sdpa")).eval().to(dtype)


def convnext_model(dtype):
    """timm ConvNeXt-L trunk, random weights."""
    return ConvNeXt(depths=[3, 3, 27, 3], dims=[192, 384, 768, 1536], num_classes=0).eval().to(dtype)


def convnext_stages(conv, pixels):
    """The four stage maps, as the MLLM reads them."""
    stages, x = [], conv.stem(pixels)
    for s in conv.stages:
        x = s(x)
        stages.append(x)
    return stages


def best(f, repeat):
    f()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return min(times)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--dtypes", default="float32,bfloat16")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    for dtype_name in args.dtypes.split(","):
        dtype = getattr(torch, dtype_name)
        clip = clip_model(dtype)
        conv = convnext_model(dtype)
        low = torch.randn(1, 3, 336, 336, dtype=dtype)
        high = torch.randn(1, 3, 768, 768, dtype=dtype)
        b = boxes(100)

        def conv_stages():
            return convnext_stages(conv, high)

        with torch.no_grad():
            results = {
                "clip_l336": best(lambda: clip(low).last_hidden_state, args.repeat),
                "convnext_l768": best(conv_stages, args.repeat),
            }
            stages = conv_stages()
            results["object_tokenizer_100"] = best(lambda: object_features(stages, b), args.repeat)
        for name, seconds in results.items():
            print(json.dumps({"name": f"{name}_{dtype_name}", "seconds": seconds, "threads": args.threads,
                              "max_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6}), flush=True)


if __name__ == "__main__":
    main()
