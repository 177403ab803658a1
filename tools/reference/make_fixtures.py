"""Regenerates every fixture under `fixtures/` (run from anywhere):

    python tools/reference/make_fixtures.py

Each generator is deterministic (fixed seeds); CI never runs Python, it reads the committed
outputs."""

import importlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

GENERATORS = ["seeded_weights", "bad_inputs", "tokenizer_cases", "llm_models", "roi_align_cases", "vision_towers", "upn_modules", "chatrex_llama"]

if __name__ == "__main__":
    only = sys.argv[1:] or GENERATORS
    for name in only:
        t = time.time()
        importlib.import_module(name).main()
        print(f"{name}: done in {time.time() - t:.1f}s")
