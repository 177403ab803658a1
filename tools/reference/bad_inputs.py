"""Small input files for the reliability tests: unusual colour types (grey, CMYK, RGBA,
16-bit, palette), a truncated JPEG, a decompression bomb (a PNG header declaring
100 000 × 100 000 pixels), a text file with an image extension, and a PyTorch checkpoint whose
pickle tries to call `os.system` (it must never run). PIL's RGB conversion of each image is
stored for comparison."""

import io
import os
import struct
import zlib

import numpy as np
import torch
from PIL import Image

from common import out_dir, save_json


class Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/chatrex-pickle-was-executed",))


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def main():
    d = out_dir("images")
    rng = np.random.default_rng(4)
    rgb = Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8), "RGB")
    cases = {}
    rgb.convert("L").save(d / "gray.jpg", quality=90)
    rgb.convert("CMYK").save(d / "cmyk.jpg", quality=90)
    rgba = rgb.copy()
    rgba.putalpha(Image.fromarray(rng.integers(0, 256, (24, 32), dtype=np.uint8), "L"))
    rgba.save(d / "rgba.png")
    rgb.convert("P", palette=Image.ADAPTIVE, colors=16).save(d / "palette.png")
    Image.fromarray(rng.integers(0, 65536, (24, 32), dtype=np.uint16)).save(d / "gray16.png")
    rgb.save(d / "rgb.png")
    buf = io.BytesIO()
    rgb.resize((64, 48)).save(buf, "JPEG", quality=90)
    jpeg = buf.getvalue()
    (d / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (d / "png_named.jpg").write_bytes((d / "rgb.png").read_bytes())
    (d / "not_an_image.jpg").write_text("this is text, not an image\n")
    (d / "empty.jpg").write_bytes(b"")
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    (d / "bomb.png").write_bytes(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + png_chunk(b"IEND", b""))
    Image.new("RGB", (1, 1), (10, 200, 30)).save(d / "one_pixel.png")
    Image.fromarray(rng.integers(0, 256, (2000, 3, 3), dtype=np.uint8), "RGB").save(d / "tall_3x2000.png")
    for name in ["gray.jpg", "cmyk.jpg", "rgba.png", "palette.png", "gray16.png", "rgb.png", "png_named.jpg", "one_pixel.png"]:
        im = Image.open(d / name)
        conv = np.asarray(im.convert("RGB"), dtype=np.uint8)
        cases[name] = {"mode": im.mode, "size": list(im.size), "rgb_sum": int(conv.astype(np.int64).sum()), "rgb_first": conv.reshape(-1)[:12].tolist()}
    save_json(d / "pil.json", cases)
    torch.save({"model": {"w": torch.zeros(2)}, "evil": Evil()}, d / "evil.pth")
    torch.save({"model": Evil()}, d / "evil_only.pth")


if __name__ == "__main__":
    main()
