"""Prints the markdown table stage | dtype | ours best | PyTorch best | median ratio | ratio of
bests | output error from the JSON lines `tools/bench/interleaved.py` prints (one per stage),
for BENCHMARKS.md. Ratio = PyTorch time / our time (> 1: we are faster).

    for d in bfloat16 float16 float32; do
        python tools/bench/interleaved.py --dtype $d --rounds 5 \\
            --stages clip,convnext,prefill-qwen,prefill-llama,decode-qwen,decode-llama
    done | tee interleaved.jsonl
    python tools/bench/interleaved_table.py interleaved.jsonl
"""

import json
import sys

LABELS = {
    "clip": "CLIP-L@336",
    "convnext": "ConvNeXt-L@768",
    "prefill-qwen": "Qwen2.5-0.5B prefill 700",
    "prefill-llama": "Llama-7B (4 layers) prefill 700",
    "decode-qwen": "Qwen2.5-0.5B decode, 32 steps",
    "decode-llama": "Llama-7B (4 layers) decode, 32 steps",
}
DTYPES = {"bfloat16": "bf16", "float16": "f16", "float32": "f32"}


def cell(record, side):
    seconds = f"{record[f'{side}_best']:.3f} s"
    rate = record.get(f"{side}_best_tok_s")
    return f"{seconds} ({rate:.0f} tok/s)" if rate else seconds


def main():
    lines = open(sys.argv[1]) if len(sys.argv) > 1 else sys.stdin
    records = [json.loads(line) for line in lines if line.startswith("{")]
    print("| stage | dtype | ours best | PyTorch best | median ratio | ratio of bests | ours vs PyTorch output |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for r in records:
        error = r.get("rel_error_vs_torch")
        print(
            f"| {LABELS.get(r['stage'], r['stage'])} | {DTYPES.get(r['dtype'], r['dtype'])} | {cell(r, 'ours')} | "
            f"{cell(r, 'torch')} | **{r['median_round_ratio']:.2f}** | {r['ratio_of_bests']:.2f} | "
            f"{'—' if error is None else f'{error:.1e}'} |"
        )


if __name__ == "__main__":
    main()
