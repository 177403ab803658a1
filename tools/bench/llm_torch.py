"""PyTorch/transformers reference timing of LLM prefill (700 tokens) and decode (32 tokens,
KV cache) on the CPU, for the shapes of benches/llm.rs: Qwen2.5-0.5B (24 layers) and
Llama-7B layers (4 of 32, full vocabulary), in f32, f16 and bf16, on the same seeded weights
and prompt as the Rust bench.

    python tools/bench/llm_torch.py [--threads N]
"""

import argparse
import json
import os
import sys
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference"))
from common import fill_seeded  # noqa: E402

PREFILL, DECODE = 700, 32
BENCH_SEED = 3  # benches/llm.rs: WeightLoader::random(3, ..)


def configs():
    qwen = Qwen2Config(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                       num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768,
                       rope_theta=1e6, rms_norm_eps=1e-6, tie_word_embeddings=True)
    llama = LlamaConfig(vocab_size=32104, hidden_size=4096, intermediate_size=11008, num_hidden_layers=4,
                        num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096,
                        rms_norm_eps=1e-5, tie_word_embeddings=False)
    return [("qwen2.5-0.5b", Qwen2ForCausalLM, qwen), ("llama-7b-4layers", LlamaForCausalLM, llama)]


def random_model(cls, config, dtype, fill=None):
    """The model in `dtype`, built without a float32 copy first, its parameters filled by
    `fill(model)` (default: N(0, 0.02)). `to_empty` unties a tied LM head and leaves the
    rotary inverse frequencies (a buffer) unset: both are restored."""
    config.torch_dtype = dtype
    with torch.device("meta"):
        model = cls(config).to(dtype)  # on the meta device: no memory yet
    model = model.to_empty(device="cpu")
    model.tie_weights()
    for m in model.modules():
        if hasattr(m, "inv_freq") and hasattr(m, "rope_init_fn"):
            inv_freq, _ = m.rope_init_fn(m.config, "cpu")
            m.inv_freq = inv_freq
            m.original_inv_freq = inv_freq
    with torch.no_grad():
        if fill is None:
            for p in model.parameters():
                p.normal_(0, 0.02)
        else:
            fill(model)
    return model.eval()


def bench(name, cls, config, dtype):
    # The weights and prompt of benches/llm.rs: its seeded generator (seed 3, HF key names)
    # and ids (7919 · i) mod vocab.
    model = random_model(cls, config, dtype, fill=lambda m: fill_seeded(m, BENCH_SEED))
    ids = torch.tensor([[(i * 7919) % config.vocab_size for i in range(PREFILL)]])
    with torch.no_grad():
        t = time.perf_counter()
        # Logits of the last position only, as benches/llm.rs computes (the default computes
        # all 700, e.g. 190 GFLOP of LM head for Qwen2.5-0.5B).
        out = model(ids, use_cache=True, num_logits_to_keep=1)
        prefill = time.perf_counter() - t
        past = out.past_key_values
        nxt = out.logits[:, -1:].argmax(-1)
        t = time.perf_counter()
        for _ in range(DECODE):
            out = model(nxt, past_key_values=past, use_cache=True)
            past, nxt = out.past_key_values, out.logits[:, -1:].argmax(-1)
        decode = (time.perf_counter() - t) / DECODE
    return {"name": f"{name}_{str(dtype).split('.')[-1]}", "prefill_tok_s": PREFILL / prefill, "decode_tok_s": 1 / decode}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    for name, cls, config in configs():
        for dtype in (torch.float32, torch.float16, torch.bfloat16):
            print(json.dumps(bench(name, cls, config, dtype)), flush=True)


if __name__ == "__main__":
    main()
