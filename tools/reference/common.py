"""Shared helpers of the reference scripts: output paths, saving, and the deterministic
weight generator that `chatrex_common::weights::RandomWeights` implements in Rust (so that
full-width layers can be checked without committing their weights)."""

import json
import os
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "fixtures"
SHARED = ROOT.parent / "shared" / "fixtures"

MASK64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15


def out_dir(name: str) -> Path:
    d = FIXTURES / name
    d.mkdir(parents=True, exist_ok=True)
    return d


def save_tensors(path: Path, tensors: dict, meta: dict | None = None):
    """Saves contiguous CPU tensors (float64 → float32 unless asked otherwise)."""
    clean = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    save_file(clean, str(path), metadata={k: str(v) for k, v in (meta or {}).items()})


def save_json(path: Path, obj):
    path.write_text(json.dumps(obj, indent=1, ensure_ascii=False) + "\n")


def fnv1a(text: str) -> int:
    h = 0xCBF29CE484222325
    for b in text.encode():
        h = ((h ^ b) * 0x00000100000001B3) & MASK64
    return h


def _mix(z: np.ndarray) -> np.ndarray:
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _seeded_pairs(state: int, first_pair: int, pairs: int) -> np.ndarray:
    """Normals `2·first_pair ..` `2·(first_pair + pairs)` of the stream with state `state`."""
    with np.errstate(over="ignore"):
        idx = np.arange(2 * first_pair + 1, 2 * (first_pair + pairs) + 1, dtype=np.uint64)
        z = _mix(np.uint64(state) + idx * np.uint64(GOLDEN))
    u = ((z >> np.uint64(40)).astype(np.float32) + np.float32(1.0)) * np.float32(1.0 / (1 << 24))
    u1, u2 = u[0::2], u[1::2]
    r = np.sqrt(np.float32(-2.0) * np.log(u1))
    theta = np.float32(2 * np.pi) * u2
    out = np.empty(2 * pairs, dtype=np.float32)
    out[0::2] = r * np.cos(theta)
    out[1::2] = r * np.sin(theta)
    return out


def seeded_normal(seed: int, key: str, n: int) -> np.ndarray:
    """Standard normals exactly as `RandomWeights::normal` draws them (SplitMix64 stream,
    24-bit uniforms in (0, 1], Box–Muller in float32)."""
    return _seeded_pairs((seed ^ fnv1a(key)) & MASK64, 0, (n + 1) // 2)[:n]


def _seeded_scale(key: str, shape):
    """`RandomWeights::values`' scaling of its normals: (factor, offset)."""
    if len(shape) >= 2:
        fan_in = max(int(np.prod(shape[1:])), 1)
        return np.float32(1.0 / np.sqrt(np.float32(fan_in))), None
    leaf = key.rsplit(".", 1)[-1]
    if leaf == "weight" and ("norm" in key or "ln" in key):
        return np.float32(0.1), np.float32(1.0)
    return np.float32(0.02), None


def fill_seeded_large(param: torch.Tensor, seed: int, key: str, chunk_pairs: int = 1 << 23):
    """`param.copy_(seeded_values(seed, key, param.shape))` in chunks of the stream (the same
    values; for tensors of hundreds of millions of values, e.g. a full vocabulary's
    embeddings, whose one-shot draw would need several GB of temporaries)."""
    shape, flat = tuple(param.shape), param.view(-1)
    n = flat.numel()
    factor, offset = _seeded_scale(key, shape)
    state = (seed ^ fnv1a(key)) & MASK64
    with torch.no_grad():
        for first in range(0, (n + 1) // 2, chunk_pairs):
            pairs = min(chunk_pairs, (n + 1) // 2 - first)
            v = _seeded_pairs(state, first, pairs)[: min(2 * pairs, n - 2 * first)] * factor
            if offset is not None:
                v = offset + v
            flat[2 * first: 2 * first + v.size].copy_(torch.from_numpy(v))


def seeded_values(seed: int, key: str, shape) -> torch.Tensor:
    """`RandomWeights::values`: matrices N(0, 1/fan_in), norm weights 1 + 0.1·N, other
    vectors 0.02·N."""
    shape = tuple(shape)
    n = int(np.prod(shape)) if shape else 1
    factor, offset = _seeded_scale(key, shape)
    v = seeded_normal(seed, key, n) * factor
    if offset is not None:
        v = offset + v
    return torch.from_numpy(v.reshape(shape).copy())


def fill_seeded(module: torch.nn.Module, seed: int, prefix: str = "", rename=lambda name: name, only=lambda name: True):
    """Overwrites every parameter `name` of `module` (those `only` keeps) with
    `seeded_values(seed, prefix + rename(name))`, drawn in chunks (models of a billion values)."""
    for name, p in module.named_parameters():
        if only(name):
            fill_seeded_large(p.data, seed, prefix + rename(name))
    return module


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))
