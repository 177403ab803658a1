"""Prints the table stage | ours | PyTorch | ratio from the Rust bench records
(target/bench-results/*.json, written by `cargo bench`) and the PyTorch timing scripts'
JSON lines (target/bench-results/torch/*.jsonl, written by tools/bench/run_torch.sh).
Ratio = PyTorch time / our time (> 1: we are faster). Markdown output for BENCHMARKS.md.

    python tools/bench/compare.py [--results target/bench-results]
"""

import argparse
import json
from pathlib import Path

# (label, our record, our unit, torch record, torch field, how to turn the torch field into seconds)
STAGES = [
    ("UPN-L 800×1333 f32", "upn_forward", "upn_forward", "seconds"),
    ("CLIP-L@336 f32", "clip_l336_f32", "clip_l336_float32", "seconds"),
    ("ConvNeXt-L@768 f32", "convnext_l768_f32", "convnext_l768_float32", "seconds"),
    ("object tokenizer, 100 boxes f32", "object_tokenizer_100_f32", "object_tokenizer_100_float32", "seconds"),
    ("Qwen2.5-0.5B prefill 700 f32", "qwen2.5-0.5b_f32_prefill700", "qwen2.5-0.5b_float32", "prefill"),
    ("Qwen2.5-0.5B decode/token f32", "qwen2.5-0.5b_f32_decode", "qwen2.5-0.5b_float32", "decode"),
    ("Qwen2.5-0.5B prefill 700 f16", "qwen2.5-0.5b_f16_prefill700", "qwen2.5-0.5b_float16", "prefill"),
    ("Qwen2.5-0.5B decode/token f16", "qwen2.5-0.5b_f16_decode", "qwen2.5-0.5b_float16", "decode"),
    ("Llama-7B (4 layers) prefill 700 f32", "llama-7b-4layers_f32_prefill700", "llama-7b-4layers_float32", "prefill"),
    ("Llama-7B (4 layers) decode/token f32", "llama-7b-4layers_f32_decode", "llama-7b-4layers_float32", "decode"),
    ("Llama-7B (4 layers) prefill 700 f16", "llama-7b-4layers_f16_prefill700", "llama-7b-4layers_float16", "prefill"),
    ("Llama-7B (4 layers) decode/token f16", "llama-7b-4layers_f16_decode", "llama-7b-4layers_float16", "decode"),
]
# The best PyTorch dtype for each LLM row as well (bf16 uses AMX where the CPU has it).
BEST_TORCH = {"qwen2.5-0.5b": "qwen2.5-0.5b_bfloat16", "llama-7b-4layers": "llama-7b-4layers_bfloat16"}


def torch_seconds(rec, field):
    if field == "seconds":
        return rec["seconds"]
    if field == "prefill":
        return 700 / rec["prefill_tok_s"]
    return 1 / rec["decode_tok_s"]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--results", default="target/bench-results")
    args = p.parse_args()
    root = Path(args.results)
    ours = {f.stem: json.loads(f.read_text()) for f in root.glob("*.json")}
    torch = {}
    for f in sorted((root / "torch").glob("*.jsonl")):
        for line in f.read_text().splitlines():
            if line.strip().startswith("{"):
                rec = json.loads(line)
                torch[rec["name"]] = rec
    print("| stage | ours (s) | PyTorch (s) | ratio | PyTorch bf16 (s) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for label, mine, theirs, field in STAGES:
        a, b = ours.get(mine), torch.get(theirs)
        sa = f"{a['seconds']:.4g}" if a else "—"
        sb = f"{torch_seconds(b, field):.4g}" if b else "—"
        ratio = f"{torch_seconds(b, field) / a['seconds']:.2f}×" if a and b else "—"
        family = theirs.rsplit("_", 1)[0]
        bf = torch.get(BEST_TORCH.get(family, ""))
        sbf = f"{torch_seconds(bf, field):.4g}" if bf and field != "seconds" else ""
        print(f"| {label} | {sa} | {sb} | {ratio} | {sbf} |")
    for name in ("detect_7b_f16_vision_f32", "detect_7b_f16_vision_f16"):
        detect = ours.get(name)
        if detect:
            print(f"\n{name}: {detect['seconds']:.1f} s — {detect['note']}")


if __name__ == "__main__":
    main()
