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
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from encoder_torch import clip_model, convnext_model, convnext_stages  # noqa: E402
from llm_torch import DECODE, PREFILL, configs, random_model  # noqa: E402

OURS_DTYPE = {"float32": "f32", "bfloat16": "bf16", "float16": "f16"}


def decode(model, ids):
    """DECODE greedy steps after an untimed prefill of `ids`: their time, as stage_timer's."""
    out = model(ids, use_cache=True, num_logits_to_keep=1)
    past, nxt = out.past_key_values, out.logits[:, -1:].argmax(-1)
    t = time.perf_counter()
    for _ in range(DECODE):
        out = model(nxt, past_key_values=past, use_cache=True)
        past, nxt = out.past_key_values, out.logits[:, -1:].argmax(-1)
    return time.perf_counter() - t


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--stages", default="clip,convnext")
    p.add_argument("--binary", default="target/release/examples/stage_timer")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dtype = getattr(torch, args.dtype)
    stages = args.stages.split(",")
    torch_runs = {}
    if "clip" in stages:
        clip = clip_model(dtype)
        low = torch.randn(1, 3, 336, 336, dtype=dtype)
        torch_runs["clip"] = lambda: clip(low).last_hidden_state
    if "convnext" in stages:
        conv = convnext_model(dtype)
        high = torch.randn(1, 3, 768, 768, dtype=dtype)
        torch_runs["convnext"] = lambda: convnext_stages(conv, high)
    for (name, cls, config), which in zip(configs(), ("qwen", "llama")):
        if f"prefill-{which}" in stages or f"decode-{which}" in stages:
            model = random_model(cls, config, dtype)
            ids = torch.randint(0, config.vocab_size, (1, PREFILL))
            torch_runs[f"prefill-{which}"] = (lambda m, i: lambda: m(i, use_cache=True, num_logits_to_keep=1))(model, ids)
            torch_runs[f"decode-{which}"] = (lambda m, i: lambda: decode(m, i))(model, ids)
    env = {"RAYON_NUM_THREADS": str(args.threads), "PATH": "/usr/bin:/bin"}
    ours = subprocess.Popen([args.binary, "--dtype", OURS_DTYPE[args.dtype]], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env)
    if ours.stdout.readline().strip() != "ready":
        raise SystemExit("stage_timer did not start")

    def run_ours(stage):
        ours.stdin.write(stage + "\n")
        ours.stdin.flush()
        return float(ours.stdout.readline())

    def run_torch(stage):
        t = time.perf_counter()
        with torch.no_grad():
            timed = torch_runs[stage]()
        return timed if stage.startswith("decode") else time.perf_counter() - t

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
        print(json.dumps({**extra,
            "stage": s, "dtype": args.dtype, "threads": args.threads, "rounds": args.rounds,
            "ours_best": min(o), "torch_best": min(t), "ratio_of_bests": min(t) / min(o),
            "median_round_ratio": statistics.median(tt / oo for tt, oo in zip(t, o)),
            "ours": [round(v, 3) for v in o], "torch": [round(v, 3) for v in t],
        }), flush=True)


if __name__ == "__main__":
    main()
