"""PyTorch reference of one `detect` call end to end at full size on the CPU, the work of
benches/pipeline.rs: UPN-L on an 800×1333 image → CLIP-L@336 (23 layers) + ConvNeXt-L@768 →
object features of 100 boxes + both projectors → 7B Llama (Vicuna-7B shapes, 32 layers)
prefill of the same number of positions (808: 576 image rows, 100 object rows, text) with
last-position logits → 16 greedy tokens with the KV cache. Random weights; one run, no
warm-up, like the Rust bench (UPN's seeded weights are generated before the clock starts).
On this 23 GB machine the float16 LLM is killed for lack of memory (PyTorch's CPU f16 matmuls
convert the weights), so the comparison runs PyTorch's bfloat16 (AMX).

    python tools/bench/pipeline_torch.py [--threads N] [--llm-dtype float16|bfloat16|float32]
        [--vision-dtype float32|bfloat16]
"""

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import CLIPVisionConfig, CLIPVisionModel, LlamaConfig, LlamaForCausalLM
from timm.models.convnext import ConvNeXt

sys.path.insert(0, str(Path(__file__).resolve().parent))
from upn_torch import upn_forward  # noqa: E402
from encoder_torch import boxes, object_features  # noqa: E402
from llm_torch import random_model  # noqa: E402

POSITIONS, NEW_TOKENS, BOXES = 808, 16, 100


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--llm-dtype", default="float16")
    p.add_argument("--vision-dtype", default="float32", help="dtype of the two towers and both projectors")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    llm_dtype = getattr(torch, args.llm_dtype)
    vision_dtype = getattr(torch, args.vision_dtype)

    clip = CLIPVisionModel(CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=23,
                                            num_attention_heads=16, image_size=336, patch_size=14,
                                            hidden_act="quick_gelu", attn_implementation="sdpa")).eval()
    conv = ConvNeXt(depths=[3, 3, 27, 3], dims=[192, 384, 768, 1536], num_classes=0).eval()
    mm_projector = torch.nn.Sequential(torch.nn.Linear(2560, 4096), torch.nn.GELU(), torch.nn.Linear(4096, 4096))
    object_projector = torch.nn.Sequential(torch.nn.Linear(2880, 4096), torch.nn.GELU(), torch.nn.Linear(4096, 4096))
    clip, conv, mm_projector, object_projector = (m.to(vision_dtype) for m in (clip, conv, mm_projector, object_projector))
    config = LlamaConfig(vocab_size=32104, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                         num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096,
                         rms_norm_eps=1e-5, tie_word_embeddings=False)
    llm = random_model(LlamaForCausalLM, config, llm_dtype)

    with torch.no_grad():
        upn_forward(torch.randn(1, 3, 256, 256))  # generates UPN's seeded weights (not timed)
    image = torch.randn(1, 3, 800, 1333)
    low, high = torch.randn(1, 3, 336, 336, dtype=vision_dtype), torch.randn(1, 3, 768, 768, dtype=vision_dtype)
    times = {}
    with torch.no_grad():
        t = time.perf_counter()
        upn_forward(image)
        times["upn"] = time.perf_counter() - t

        t = time.perf_counter()
        clip_tokens = clip(low).last_hidden_state[:, 1:]
        stages, x = [], conv.stem(high)
        for s in conv.stages:
            x = s(x)
            stages.append(x)
        fused = torch.cat([clip_tokens[0], stages[-1][0].flatten(1).T], 1)
        image_rows = mm_projector(fused)
        objects = object_features(stages, boxes(BOXES))
        object_rows = object_projector(objects[:, :2880].to(vision_dtype))
        times["encoders"] = time.perf_counter() - t

        t = time.perf_counter()
        embeds = torch.randn(1, POSITIONS, 4096, dtype=llm_dtype)
        embeds[0, :576] = image_rows.to(llm_dtype)
        embeds[0, 576:576 + BOXES] = object_rows.to(llm_dtype)
        out = llm(inputs_embeds=embeds, use_cache=True, num_logits_to_keep=1)
        times["prefill"] = time.perf_counter() - t
        t = time.perf_counter()
        past, nxt = out.past_key_values, out.logits[:, -1:].argmax(-1)
        for _ in range(NEW_TOKENS):
            out = llm(nxt, past_key_values=past, use_cache=True)
            past, nxt = out.past_key_values, out.logits[:, -1:].argmax(-1)
        times["decode"] = time.perf_counter() - t
    total = sum(times.values())
    print(json.dumps({"name": f"detect_7b_llm_{args.llm_dtype}_vision_{args.vision_dtype}", "seconds": total, "stages": times,
                      "threads": args.threads,
                      "max_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6}), flush=True)


if __name__ == "__main__":
    main()
