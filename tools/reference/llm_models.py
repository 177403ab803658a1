"""Small random Llama and Qwen2 models (transformers), saved sharded in the Hugging Face
layout, with the logits of a 40-token prompt, 32 greedy steps, and the same through the
inputs_embeds path."""

import json

import torch
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

from common import out_dir, save_tensors

PROMPT_LEN = 40
STEPS = 32


def build(kind):
    if kind == "llama_gqa_untied":
        config = LlamaConfig(
            vocab_size=384, hidden_size=64, intermediate_size=160, num_hidden_layers=3,
            num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=256,
            rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False,
            bos_token_id=1, eos_token_id=2, attn_implementation="eager",
        )
        model = LlamaForCausalLM(config)
    elif kind == "llama_mha_tied":
        config = LlamaConfig(
            vocab_size=320, hidden_size=48, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=128,
            rms_norm_eps=1e-6, rope_theta=500000.0, tie_word_embeddings=True,
            bos_token_id=1, eos_token_id=2, attn_implementation="eager",
        )
        model = LlamaForCausalLM(config)
    elif kind == "qwen2_gqa_tied":
        config = Qwen2Config(
            vocab_size=352, hidden_size=64, intermediate_size=144, num_hidden_layers=3,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
            rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=True,
            bos_token_id=None, eos_token_id=7, attn_implementation="eager",
        )
        model = Qwen2ForCausalLM(config)
    else:
        config = Qwen2Config(
            vocab_size=352, hidden_size=64, intermediate_size=144, num_hidden_layers=2,
            num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=512,
            rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=False,
            bos_token_id=None, eos_token_id=7, attn_implementation="eager",
        )
        model = Qwen2ForCausalLM(config)
    # Weights with a realistic scale (the default init is too flat to test much).
    g = torch.Generator().manual_seed(sum(map(ord, kind)))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=g) / p.shape[-1] ** 0.5 * (2.0 if "embed" in name else 1.0))
            elif "norm" in name:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
    return model.eval()


def greedy_loop(model, input_ids=None, inputs_embeds=None):
    """Plain greedy decoding with the KV cache (no generation-config defaults involved)."""
    out = model(input_ids=input_ids, inputs_embeds=inputs_embeds, use_cache=True)
    past, tokens = out.past_key_values, []
    nxt = out.logits[0, -1].argmax()
    for _ in range(STEPS):
        tokens.append(int(nxt))
        out = model(input_ids=nxt.view(1, 1), past_key_values=past, use_cache=True)
        past, nxt = out.past_key_values, out.logits[0, -1].argmax()
    return torch.tensor(tokens)


def main():
    torch.manual_seed(0)
    for kind in ["llama_gqa_untied", "llama_mha_tied", "qwen2_gqa_tied", "qwen2_gqa_untied"]:
        d = out_dir(f"llm/{kind}")
        for f in d.glob("*"):
            f.unlink()
        model = build(kind)
        # Sharded save: several files + model.safetensors.index.json.
        model.save_pretrained(d, max_shard_size="150KB", safe_serialization=True)
        (d / "generation_config.json").unlink(missing_ok=True)
        g = torch.Generator().manual_seed(1)
        vocab = model.config.vocab_size
        ids = torch.randint(3, vocab, (1, PROMPT_LEN), generator=g)
        with torch.no_grad():
            logits = model(ids).logits[0]
            greedy = greedy_loop(model, input_ids=ids)
            via_embeds = greedy_loop(model, inputs_embeds=model.get_input_embeddings()(ids))
        assert torch.equal(greedy, via_embeds), "the ids and embeddings paths disagree"
        save_tensors(d.parent / f"{kind}.ref.safetensors", {
            "input_ids": ids[0].to(torch.int64),
            "logits": logits.float(),
            "greedy_ids": greedy.to(torch.int64),
        })


if __name__ == "__main__":
    main()
