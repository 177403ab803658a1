"""Checks that the Python twin of the Rust weight generator gives the same numbers: a few
draws are stored so a Rust test can compare them exactly (to float32 rounding)."""

import torch
from common import out_dir, save_tensors, seeded_values


def main():
    d = out_dir("seeded")
    tensors = {
        "a.weight": seeded_values(7, "a.weight", (4, 6)),
        "layer_norm1.weight": seeded_values(7, "layer_norm1.weight", (5,)),
        "fc.bias": seeded_values(7, "fc.bias", (9,)),
        "big.weight": seeded_values(3, "big.weight", (257, 3)),
    }
    save_tensors(d / "draws.safetensors", tensors, {"seed_a": 7, "seed_big": 3})


if __name__ == "__main__":
    main()
