"""Ours against PyTorch with the runs interleaved in time: on a machine whose speed swings by up
to 2x within minutes (a shared host), separate best-of-N runs minutes apart compare phases of
the machine, not implementations. This script holds the PyTorch models (built as in
encoder_torch.py and llm_torch.py) and drives examples/stage_timer.rs over a pipe, alternating one run of each
(the order flipped every round), and reports per stage: the best of each, the ratio of bests,
and the median of the per-round ratios (PyTorch time / ours: > 1 means ours is faster).

    cargo build --release --example stage_timer
    python tools/bench/interleaved.py --threads 2 --dtype bfloat16 --rounds 8 \
        [--stages clip,convnext,prefill-qwen,prefill-llama,decode-qwen,decode-llama]

Prefill: 700 tokens into a fresh KV cache, logits of the last position only (as llm_torch.py);
decode: 32 greedy steps after such a prefill (the prefill not timed).

Both sides run the same weights and inputs: the PyTorch models are filled from the Python twin
of our seeded weight generator (tools/reference/common.py) under the keys stage_timer loads
(`clip.`, `convnext.`, `qwen.`, `llama.`), the pixels are the same seeded draws and the prompt
the same ids. Each stage's first output (CLIP's patch tokens, ConvNeXt's last map, the last
prefill logits) is compared: `rel_error_vs_torch` = ||ours - torch|| / ||torch|| (both bf16
models, so ~1e-2 is expected: PyTorch keeps its residual stream in bf16, ours in f32).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference"))
from common import fill_seeded, seeded_normal  # noqa: E402
from encoder_torch import clip_model, convnext_model, convnext_stages  # noqa: E402
from llm_torch import DECODE, PREFILL, configs, random_model  # noqa: E402

OURS_DTYPE = {"float32": "f32", "bfloat16": "bf16", "float16": "f16"}


SEED = 5  # stage_timer's WeightLoader::random seed


def seeded_model(model, prefix, rename=lambda name: name, only=lambda name: True):
    """`model` with the seeded weights stage_timer loads (keys `prefix + rename(name)`)."""
    return fill_seeded(model, SEED, prefix, rename, only)


def seeded_pixels(name, side, dtype):
    """stage_timer's pixels: 50 · input.<name> (0.02 · N per value, as a vector)."""
    v = seeded_normal(SEED, f"input.{name}", 3 * side * side) * np.float32(0.02) * np.float32(50.0)
    return torch.from_numpy(v).reshape(1, 3, side, side).to(dtype)


def decode(model, ids):
    """DECODE greedy steps after an untimed prefill of `ids`: their time, as stage_timer's."""
    out = model(ids, use_cache=True, num_logits_to_keep=1)
    past, nxt = out.past_key_values, out.logits[:, -1:].argmax(-1)
    t = time.perf_counter()
    for _ in range(DECODE):
        out = model(nxt, past_key_values=past, use_cache=True)
        past, nxt = out.past_key_values, out.logits[:, -1:].argmax(-1)
    return time.perf_counter() - t


def start_ours(args):
    """stage_timer on the weights' dtype, dumping each stage's first output to a fresh directory."""
    dump_dir = tempfile.mkdtemp(prefix="stage_timer_")
    env = {"RAYON_NUM_THREADS": str(args.threads), "PATH": "/usr/bin:/bin"}
    ours = subprocess.Popen([args.binary, "--dtype", OURS_DTYPE[args.dtype], "--dump", dump_dir], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env)
    if ours.stdout.readline().strip() != "ready":
        raise SystemExit("stage_timer did not start")
    ours.dump_dir = dump_dir
    return ours


def run_stage(ours, stage):
    """One run of `stage` in stage_timer: its wall time in seconds."""
    ours.stdin.write(stage + "\n")
    ours.stdin.flush()
    return float(ours.stdout.readline())


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--stages", default="clip,convnext")
    p.add_argument("--binary", default="target/release/examples/stage_timer")
    p.add_argument("--ours-first", action="store_true",
                   help="start and warm up stage_timer before PyTorch builds its models (the default starts it after; "
                        "swapping the order checks that neither side gains from it)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dtype = getattr(torch, args.dtype)
    stages = args.stages.split(",")
    ours = start_ours(args) if args.ours_first else None
    if ours is not None:
        for s in stages:  # builds our models before PyTorch's
            run_stage(ours, s)
    torch_runs = {}
    outputs = {}  # each stage's first PyTorch output, to compare with ours
    if "clip" in stages:
        # stage_timer loads the tower at `clip.` (the keys under `vision_model.`).
        clip = seeded_model(clip_model(dtype), "clip.", lambda n: n.removeprefix("vision_model."), lambda n: "post_layernorm" not in n)
        low = seeded_pixels("clip_pixels", 336, dtype)
        torch_runs["clip"] = lambda: clip(low).last_hidden_state[0, 1:]
    if "convnext" in stages:
        rename = lambda n: n.replace("stem.", "vision_stem.", 1).replace("stages.", "vision_stages.", 1)  # noqa: E731
        conv = seeded_model(convnext_model(dtype), "convnext.", rename, lambda n: n.startswith(("stem", "stages")))
        high = seeded_pixels("convnext_pixels", 768, dtype)
        torch_runs["convnext"] = lambda: convnext_stages(conv, high)[-1]
    for (name, cls, config), which in zip(configs(), ("qwen", "llama")):
        if f"prefill-{which}" in stages or f"decode-{which}" in stages:
            model = random_model(cls, config, dtype, fill=lambda m, p=f"{which}.": seeded_model(m, p))
            ids = torch.tensor([[(i * 7919) % config.vocab_size for i in range(PREFILL)]])
            torch_runs[f"prefill-{which}"] = (lambda m, i: lambda: m(i, use_cache=True, num_logits_to_keep=1).logits[0, -1])(model, ids)
            torch_runs[f"decode-{which}"] = (lambda m, i: lambda: decode(m, i))(model, ids)
    if ours is None:
        ours = start_ours(args)
    dump_dir = ours.dump_dir

    def run_ours(stage):
        return run_stage(ours, stage)

    def run_torch(stage):
        t = time.perf_counter()
        with torch.no_grad():
            timed = torch_runs[stage]()
        seconds = time.perf_counter() - t
        if not stage.startswith("decode"):
            outputs.setdefault(stage, timed.float().reshape(-1))
        return timed if stage.startswith("decode") else seconds

    times = {s: {"ours": [], "torch": []} for s in stages}
    for s in stages:  # warm-up
        run_ours(s)
        run_torch(s)
    for r in range(args.rounds):
        for s in stages:
            pair = [("ours", run_ours), ("torch", run_torch)]
            for who, run in (pair if r % 2 == 0 else pair[::-1]):
                times[s][who].append(run(s))
    ours.stdin.write("quit\n")
    ours.stdin.flush()
    ours.wait()
    for s in stages:
        o, t = times[s]["ours"], times[s]["torch"]
        tokens = PREFILL if s.startswith("prefill") else DECODE if s.startswith("decode") else 0
        extra = {"ours_best_tok_s": tokens / min(o), "torch_best_tok_s": tokens / min(t)} if tokens else {}
        dumped = os.path.join(dump_dir, f"{s}.f32")
        if s in outputs and os.path.exists(dumped):
            ours_out = torch.from_numpy(np.fromfile(dumped, dtype="<f4"))
            want = outputs[s]
            if ours_out.numel() != want.numel():
                raise SystemExit(f"{s}: ours has {ours_out.numel()} values, PyTorch {want.numel()}")
            extra["rel_error_vs_torch"] = float((ours_out.double() - want.double()).norm() / want.double().norm())
        print(json.dumps({**extra,
            "stage": s, "dtype": args.dtype, "threads": args.threads, "rounds": args.rounds, "ours_first": args.ours_first,
            "ours_best": min(o), "torch_best": min(t), "ratio_of_bests": min(t) / min(o),
            "median_round_ratio": statistics.median(tt / oo for tt, oo in zip(t, o)),
            "ours": [round(v, 3) for v in o], "torch": [round(v, 3) for v in t],
        }), flush=True)


if __name__ == "__main__":
    main()
