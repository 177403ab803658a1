"""RoIAlign parity: torchvision.ops.roi_align (aligned=False, sampling_ratio=-1, scale 0.25,
7×7) on a random map with 240 boxes — sub-pixel, degenerate, out-of-image, partly outside,
full-image, huge and reversed."""

import torch
from torchvision.ops import roi_align

from common import out_dir, save_tensors


def main():
    g = torch.Generator().manual_seed(3)
    c, h, w = 5, 24, 30  # feature map; boxes live in a 4× larger frame (96 × 120)
    feat = torch.randn(1, c, h, w, generator=g)
    boxes = []
    W, H = w * 4, h * 4
    for _ in range(120):  # ordinary boxes inside
        x1, y1 = torch.rand(2, generator=g) * torch.tensor([W - 4, H - 4])
        bw, bh = 1 + torch.rand(2, generator=g) * torch.tensor([W - x1 - 1, H - y1 - 1])
        boxes.append([x1, y1, x1 + bw, y1 + bh])
    for _ in range(40):  # sub-pixel boxes (smaller than one feature pixel = 4 input px)
        x1, y1 = torch.rand(2, generator=g) * torch.tensor([W, H])
        boxes.append([x1, y1, x1 + torch.rand(1, generator=g).item() * 3, y1 + torch.rand(1, generator=g).item() * 3])
    for _ in range(40):  # partly or fully outside
        x1, y1 = torch.rand(2, generator=g) * torch.tensor([2 * W, 2 * H]) - torch.tensor([W / 2, H / 2])
        bw, bh = torch.rand(2, generator=g) * torch.tensor([W, H])
        boxes.append([x1, y1, x1 + bw, y1 + bh])
    special = [
        [0, 0, W, H], [-10, -10, W + 10, H + 10], [5, 5, 5, 5], [10, 20, 10, 60], [10, 20, 60, 20],
        [W - 1, H - 1, W + 50, H + 50], [-100, -100, -50, -50], [W + 10, 0, W + 40, 30],
        [0.5, 0.5, 1.5, 1.5], [3.99, 3.99, 4.01, 4.01], [-4, -4, 0, 0], [-3.9, -3.9, 0.1, 0.1],
        [0, 0, 4 * w - 0.001, 4 * h - 0.001], [30, 30, 20, 25], [60, 50, 10, 40],
    ]
    boxes += [[float(v) for v in b] for b in special]
    while len(boxes) < 240:
        x1, y1 = torch.rand(2, generator=g) * torch.tensor([W, H])
        boxes.append([x1, y1, x1 + 16.0, y1 + 8.0])
    boxes = torch.tensor([[float(v) for v in b] for b in boxes], dtype=torch.float32)
    out = roi_align(feat, [boxes], output_size=7, spatial_scale=0.25, sampling_ratio=-1, aligned=False)
    save_tensors(out_dir("roi_align") / "cases.safetensors", {
        "features": feat[0],
        "boxes": boxes,
        "output": out,
        "mean": out.mean(dim=(2, 3)),
    })


if __name__ == "__main__":
    main()
