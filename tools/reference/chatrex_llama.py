"""A tiny random-weight ChatRex in the official layout with a Llama (Vicuna-style) LLM, and
its end-to-end reference run written from the SPEC with PyTorch parts (transformers CLIP and
Llama, timm ConvNeXt, torchvision RoIAlign, PIL preprocessing): image file → ids with
placeholders → embeddings → greedy ids → text → groundings. (The Qwen family is covered by
the official RexSeek fixture in ../shared/fixtures/mllm.)

The weights are stored in f16 to keep the fixture small; the reference runs in f32 on those
same values. The tokenizer (the shared Llama-2 tokenizer + the 104 ChatRex tokens) is rebuilt
by the test, not stored."""

import json
import math
import re

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import save_file
from timm.models.convnext import ConvNeXt
from tokenizers import AddedToken, Tokenizer
from torchvision.ops import roi_align
from transformers import CLIPVisionConfig, CLIPVisionModel, LlamaConfig, LlamaForCausalLM

from common import SHARED, out_dir, save_json, save_tensors
from tokenizer_cases import CHATREX_TOKENS, split_special

MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)
DIMS, DEPTHS = [8, 16, 32, 64], [1, 1, 1, 1]
HIDDEN = 16
QUESTION = "Please detect dog; bed in this image. Answer the question with object indexes."
BOXES = [[73.88417, 56.62228, 227.69223, 216.34338], [189.5, 147.25, 529.75, 413.5], [0.0, 38.0, 640.0, 426.0]]
STEPS = 24


def build():
    g = torch.Generator().manual_seed(17)
    clip = CLIPVisionModel(CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                            image_size=336, patch_size=14, hidden_act="quick_gelu", attn_implementation="eager")).eval()
    conv = ConvNeXt(depths=DEPTHS, dims=DIMS, num_classes=0, ls_init_value=1.0).eval()
    llm = LlamaForCausalLM(LlamaConfig(vocab_size=32104, hidden_size=HIDDEN, intermediate_size=32, num_hidden_layers=2,
                                       num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=4096,
                                       rms_norm_eps=1e-5, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2,
                                       attn_implementation="eager")).eval()
    mm = torch.nn.Sequential(torch.nn.Linear(32 + DIMS[-1], HIDDEN), torch.nn.GELU(), torch.nn.Linear(HIDDEN, HIDDEN))
    obj = torch.nn.Sequential(torch.nn.Linear(sum(DIMS), HIDDEN), torch.nn.GELU(), torch.nn.Linear(HIDDEN, HIDDEN))
    with torch.no_grad():
        for module in (clip, conv, llm, mm, obj):
            for name, p in module.named_parameters():
                if p.dim() >= 2:
                    v = torch.randn(p.shape, generator=g) / math.sqrt(max(p[0].numel(), 1))
                    if "embed" in name:
                        v = v * 3.0
                elif "norm" in name or "ln" in name:
                    v = 1.0 + 0.1 * torch.randn(p.shape, generator=g)
                elif name.endswith("gamma"):
                    v = 0.5 + 0.1 * torch.randn(p.shape, generator=g)
                else:
                    v = 0.05 * torch.randn(p.shape, generator=g)
                # Round through f16: the fixture stores f16, the reference runs on these values.
                p.copy_(v.half().float())
    return clip, conv, llm, mm, obj


def state_dict(clip, conv, llm, mm, obj):
    sd = {}
    for k, v in llm.state_dict().items():
        sd[k] = v
    for k, v in clip.state_dict().items():
        if k.endswith("position_ids"):
            continue
        sd["vision_tower.vision_tower." + k] = v
    for k, v in conv.state_dict().items():
        if k.startswith("stem."):
            sd["vision_tower_aux.vision_stem." + k[5:]] = v
        elif k.startswith("stages."):
            sd["vision_tower_aux.vision_stages." + k[7:]] = v
    for k, v in mm.state_dict().items():
        sd["mm_projector." + k] = v
    for k, v in obj.state_dict().items():
        sd["mm_object_projector." + k] = v
    return {k: v.half().contiguous() for k, v in sd.items()}


def tokenizer():
    tok = Tokenizer.from_file(str(SHARED / "tokenizers" / "llama2" / "tokenizer.json"))
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in CHATREX_TOKENS])
    return tok


def sine(v, feats):
    dim_t = 10000 ** (2 * (torch.arange(feats, dtype=torch.float32) // 2) / feats)
    p = (v * 2 * math.pi)[..., None] / dim_t
    return torch.stack((p[..., 0::2].sin(), p[..., 1::2].cos()), -1).flatten(-2)


def run(clip, conv, llm, mm, obj, tok):
    image = Image.open(SHARED / "mllm" / "test_chatrex_install.jpg").convert("RGB")
    w, h = image.size
    side = max(w, h)
    canvas = Image.new("RGB", (side, side), tuple(int(x * 255) for x in MEAN))
    canvas.paste(image, ((side - w) // 2, (side - h) // 2))
    resized = np.asarray(canvas.resize((768, 768), Image.BICUBIC), dtype=np.float64) * (1 / 255)
    aux = torch.from_numpy(((resized.astype(np.float32) - np.float32(MEAN)) / np.float32(STD)).transpose(2, 0, 1).copy())[None]
    low = F.interpolate(aux, size=(336, 336), mode="bilinear", align_corners=False)
    with torch.no_grad():
        clip_feats = clip(low, output_hidden_states=True).hidden_states[-2][:, 1:]
        stages, x = [], conv.stem(aux)
        for s in conv.stages:
            x = s(x)
            stages.append(x)
        b, c, hh, ww = stages[-1].shape
        image_embeds = mm(torch.cat([clip_feats, stages[-1].view(b, c, hh * ww).transpose(1, 2)], -1))[0]
        # Boxes into the 768 frame (SPEC §3.1 step 5, float32).
        bx = np.array(BOXES, dtype=np.float32)
        wh = bx[:, 2:] - bx[:, :2]
        off = np.array([(side - w) // 2, (side - h) // 2], dtype=np.float32)
        scale = np.float32(768 / side)
        xy = (bx[:, :2] + off) * scale
        boxes768 = torch.from_numpy(np.concatenate([xy, xy + wh * scale], 1))
        up = [stages[0]] + [F.interpolate(s, size=stages[0].shape[-2:], mode="bilinear", align_corners=False) for s in stages[1:]]
        roi = roi_align(torch.cat(up, 1), [boxes768], output_size=7, spatial_scale=0.25, sampling_ratio=-1, aligned=False)
        n = boxes768 / 768.0
        cxcywh = torch.stack([(n[:, 0] + n[:, 2]) / 2, (n[:, 1] + n[:, 3]) / 2, n[:, 2] - n[:, 0], n[:, 3] - n[:, 1]], -1)
        x1, y1 = n[:, 0], n[:, 1]
        bw, bh = n[:, 2] - n[:, 0], n[:, 3] - n[:, 1]
        cx, cy = x1 + bw / 2, y1 + bh / 2
        feats = sum(DIMS) // 4
        pos = torch.cat([sine(cy, feats), sine(cx, feats), sine(bw, feats), sine(bh, feats)], -1)
        object_embeds = obj(roi.mean(dim=(2, 3)) + pos)
        block = "".join(f"<obj{i}><objfeat>" for i in range(len(BOXES)))
        prompt = f"USER: <image>\n{block}\n{QUESTION} ASSISTANT:"
        ids = [1]
        for chunk in split_special(prompt):
            ids += [-200] if chunk == "<image>" else [-300] if chunk == "<objfeat>" else tok.encode(chunk, add_special_tokens=False).ids
        parts, text, k = [], [], 0
        emb = llm.get_input_embeddings()
        for i in ids + [None]:
            if i is None or i < 0:
                if text:
                    parts.append(emb(torch.tensor(text)))
                    text = []
                if i == -200:
                    parts.append(image_embeds)
                elif i == -300:
                    parts.append(object_embeds[k:k + 1])
                    k += 1
            else:
                text.append(i)
        embeds = torch.cat(parts)[None]
        out = llm(inputs_embeds=embeds, use_cache=True)
        first_logits = out.logits[0, -1]
        past, nxt, gen = out.past_key_values, out.logits[0, -1].argmax(), []
        for _ in range(STEPS):
            gen.append(int(nxt))
            if int(nxt) == 2:
                break
            out = llm(input_ids=nxt.view(1, 1), past_key_values=past, use_cache=True)
            past, nxt = out.past_key_values, out.logits[0, -1].argmax()
    return {
        "prompt": prompt, "ids": ids, "pixel_values": low, "boxes_768": boxes768, "image_embeds": image_embeds,
        "object_embeds": object_embeds, "first_step_logits": first_logits, "output_ids": gen,
        "text": tok.decode([g for g in gen if g != 2], skip_special_tokens=False),
    }


def main():
    d = out_dir("chatrex_llama")
    for f in d.rglob("*"):
        if f.is_file():
            f.unlink()
    clip, conv, llm, mm, obj = build()
    (d / "vision_tower").mkdir(exist_ok=True)
    cfg = clip.config.to_dict()
    save_json(d / "vision_tower" / "config.json", {k: cfg[k] for k in ["hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "image_size", "patch_size", "hidden_act", "layer_norm_eps", "num_channels"]} | {"model_type": "clip_vision_model"})
    config = llm.config.to_dict()
    keep = ["vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
            "max_position_embeddings", "rms_norm_eps", "rope_theta", "tie_word_embeddings", "bos_token_id", "eos_token_id", "hidden_act"]
    config = {k: config[k] for k in keep} | {
        "model_type": "chatrex", "architectures": ["ChatRexAuxForCausalLM"], "mm_vision_tower": "vision_tower",
        "mm_vision_select_layer": -2, "mm_vision_select_feature": "patch", "mm_projector_type": "mlp2x_gelu",
        "mm_hidden_size": 32 + DIMS[-1], "object_hidden_size": sum(DIMS), "vision_tower_aux_depths": DEPTHS,
        "vision_tower_aux_dims": DIMS, "tokenizer_model_max_length": 4096, "torch_dtype": "float16",
    }
    save_json(d / "config.json", config)
    save_file(state_dict(clip, conv, llm, mm, obj), str(d / "model.safetensors"))
    r = run(clip, conv, llm, mm, obj, tokenizer())
    groundings = re.findall(r"<ground>(.*?)</ground><objects>(.*?)</objects>", r["text"])
    pv = r["pixel_values"].double()
    save_json(d / "ref.json", {"question": QUESTION, "boxes": BOXES, "prompt": r["prompt"], "input_ids": r["ids"],
                               "pixel_values": {"sum": float(pv.sum()), "first": r["pixel_values"].flatten()[:64].tolist()},
                               "output_ids": r["output_ids"], "text": r["text"],
                               "groundings": [[p.strip(), [int(i) for i in re.findall(r"<obj(\d+)>", o)]] for p, o in groundings]})
    save_tensors(d / "ref.safetensors", {k: r[k].float() for k in ["boxes_768", "image_embeds", "object_embeds", "first_step_logits"]})


if __name__ == "__main__":
    main()
