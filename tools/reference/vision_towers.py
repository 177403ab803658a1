"""Vision tower parity with seeded weights (the Rust `RandomWeights` generator, mirrored in
`common.py`), so only inputs and outputs are stored:

- CLIP (transformers `CLIPVisionModel`): a small 3-layer model and a full-width ViT-L layer
  stack (hidden 1024, 16 heads, MLP 4096) on a 56-pixel input; `hidden_states[-2]`, CLS
  dropped, as ChatRex selects it.
- ConvNeXt (timm): a small trunk and a full-width one (ConvNeXt-L dims, one block per stage)
  on a 64-pixel input; all four stage maps. The layer scale keeps timm's name `gamma`.
"""

import torch
from timm.models.convnext import ConvNeXt
from transformers import CLIPVisionConfig, CLIPVisionModel

from common import fill_seeded, out_dir, save_tensors, seeded_values

SEED = 12


def clip_case(name, hidden, inter, layers, heads, image):
    config = CLIPVisionConfig(hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
                              num_attention_heads=heads, image_size=image, patch_size=14,
                              hidden_act="quick_gelu", layer_norm_eps=1e-5, attn_implementation="eager")
    model = CLIPVisionModel(config).eval()
    fill_seeded(model, SEED)
    g = torch.Generator().manual_seed(5)
    pixels = torch.randn(1, 3, image, image, generator=g)
    with torch.no_grad():
        out = model(pixels, output_hidden_states=True)
    return {
        f"{name}.pixels": pixels,
        f"{name}.selected": out.hidden_states[-2][:, 1:],
        f"{name}.last": out.hidden_states[-1][:, 1:],
    }


def convnext_case(name, depths, dims, size):
    model = ConvNeXt(depths=depths, dims=dims, num_classes=0, ls_init_value=1.0).eval()
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if not (pname.startswith("stem") or pname.startswith("stages")):
                continue
            key = pname.replace("stem.", "vision_stem.", 1).replace("stages.", "vision_stages.", 1)
            p.copy_(seeded_values(SEED, key, p.shape))
    g = torch.Generator().manual_seed(6)
    x = torch.randn(1, 3, size, size, generator=g)
    tensors = {f"{name}.pixels": x}
    with torch.no_grad():
        y = model.stem(x)
        for s, stage in enumerate(model.stages):
            y = stage(y)
            tensors[f"{name}.stage{s}"] = y
    return tensors


def main():
    d = out_dir("vision")
    tensors = {}
    tensors.update(clip_case("clip_small", 48, 96, 3, 4, 56))
    tensors.update(clip_case("clip_full_width", 1024, 4096, 2, 16, 56))
    tensors.update(convnext_case("convnext_small", [1, 1, 2, 1], [8, 16, 24, 32], 64))
    tensors.update(convnext_case("convnext_full_width", [1, 1, 1, 1], [192, 384, 768, 1536], 64))
    save_tensors(d / "towers.safetensors", tensors, {"seed": SEED})


if __name__ == "__main__":
    main()
