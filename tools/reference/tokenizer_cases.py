"""Tokenizer parity cases: the real Llama-2 and Qwen tokenizers (../shared/fixtures/tokenizers)
with the 104 ChatRex tokens added as special tokens, encoded by the Python `tokenizers`
library: plain strings (Chinese, emoji, code, whitespace runs, …) and chunk-wise multimodal
prompts exactly as RexSeek's `tokenizer_image_object_token` does it."""

import json
import re

from tokenizers import AddedToken, Tokenizer

from common import SHARED, out_dir, save_json

CHATREX_TOKENS = [f"<obj{i}>" for i in range(100)] + ["<ground>", "</ground>", "<objects>", "</objects>"]

PLAIN = [
    "Hello world",
    "hello world",
    " leading space",
    "trailing space ",
    "two  spaces   three    four",
    "tab\tseparated\tvalues",
    "new\nline",
    "\n",
    "\n\n\n",
    "   ",
    "",
    "a",
    "UPPER lower MiXeD",
    "Numbers 0123456789 and 3.14159 and 1,000,000",
    "Punctuation!?.,;:'\"()[]{}<>-_/\\|@#$%^&*~`",
    "我们在这里看到一只狗和一只猫。",
    "中文和English混合的句子",
    "日本語のテキスト、カタカナ、ひらがな",
    "한국어 문장입니다",
    "Привет, как дела?",
    "Ελληνικά γράμματα",
    "العربية",
    "emoji 🐶🐱🦜 and 👨‍👩‍👧‍👦 family",
    "flags 🇫🇷🇯🇵 and skin tones 👍🏽",
    "def f(x):\n    return x * 2  # comment\n",
    "fn main() { println!(\"{}\", 1 + 2); }",
    "for (int i = 0; i < n; ++i) { a[i] = b[i]; }",
    "<html><body class=\"x\">text</body></html>",
    "SELECT * FROM boxes WHERE score >= 0.3;",
    "https://huggingface.co/IDEA-Research/ChatRex-7B",
    "user@example.com",
    "café naïve résumé",
    "ﬁ ligature and Ω omega",
    "\u00a0non-breaking\u00a0space",
    "zero\u200bwidth",
    "<ground>person</ground><objects><obj10><obj14></objects>",
    "<ground>a dog</ground><objects><obj0></objects>\n<ground>bed</ground><objects><obj3><obj99></objects>",
    "describe <obj0>?",
    " describe <obj0> and <obj1>.",
    "<obj0><obj1><obj2>",
    "What is the category name of <obj3>? Answer the question with its category name in free format.",
    "Please detect person; pigeon in this image. Answer the question with object indexes.",
    "Please breifly describe this image in one sentence and detect all the mentioned objects. Answer the question with grounded answer.",
    "USER: hi ASSISTANT:",
    "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
    "<s> not a bos",
    "</s>",
    "a" * 200,
    "The quick brown fox jumps over the lazy dog. " * 4,
    "x = [1, 2, 3]\ny = {'k': (4, 5)}\n\n\tprint(x, y)",
    "  indented\n    more\n\tand tabs  \n",
    "mixed   \n  whitespace \t\n runs",
]

MULTIMODAL = [
    "<image>\n<obj0><objfeat>\nWhat is this?",
    "<image>\n<obj0><objfeat><obj1><objfeat><obj2><objfeat>\nPlease detect dog; bed in this image. Answer the question with object indexes.",
    "<|im_start|>user\n<image>\n<obj0><objfeat>\nCan you provide me with a short phrase to describe <obj0>? Answer the question with a short phrase.<|im_end|>\n<|im_start|>assistant\n",
    "USER: <image>\n<obj0><objfeat><obj1><objfeat>\nHow many dogs are there in this image? ASSISTANT:",
    "<objfeat><objfeat><image><image>",
    "no placeholders at all",
    "<image>",
    "中文<image>\n<obj0><objfeat>\n问题：这是什么？",
]


def split_special(prompt):
    parts = re.split("(<image>|<objfeat>)", prompt)
    return [p for p in parts if p]


def load(name):
    tok = Tokenizer.from_file(str(SHARED / "tokenizers" / name / "tokenizer.json"))
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in CHATREX_TOKENS])
    cfg = json.loads((SHARED / "tokenizers" / name / "tokenizer_config.json").read_text())
    bos = cfg.get("bos_token")
    if isinstance(bos, dict):
        bos = bos.get("content")
    bos_id = tok.token_to_id(bos) if bos else None
    return tok, bos_id, bool(cfg.get("add_bos_token", False))


def main():
    out = {}
    for name in ["llama2", "qwen"]:
        tok, bos_id, add_bos = load(name)
        plain = [{"text": t, "ids": tok.encode(t, add_special_tokens=False).ids} for t in PLAIN]
        prompts = []
        for p in MULTIMODAL:
            ids = [bos_id] if bos_id is not None else []
            for chunk in split_special(p):
                if chunk == "<image>":
                    ids.append(-200)
                elif chunk == "<objfeat>":
                    ids.append(-300)
                else:
                    ids.extend(tok.encode(chunk, add_special_tokens=False).ids)
            prompts.append({"prompt": p, "ids": ids})
        decode = [{"ids": c["ids"], "text": tok.decode(c["ids"], skip_special_tokens=False)} for c in plain[:30]]
        out[name] = {
            "bos_id": bos_id,
            "add_bos": add_bos,
            "chatrex_ids": {t: tok.token_to_id(t) for t in ["<obj0>", "<obj99>", "<ground>", "</ground>", "<objects>", "</objects>"]},
            "plain": plain,
            "multimodal": prompts,
            "decode": decode,
        }
    save_json(out_dir("tokenizers") / "cases.json", out)


if __name__ == "__main__":
    main()


# --- Task prompts: the exact text and ids ChatRex sends for each official task (SPEC §4.3-4.4),
# for 3 proposals, with the Qwen template of the RexSeek-layout fixture and its tokenizer.
TASKS = {
    "detect": "Please detect person; pigeon in this image. Answer the question with object indexes.",
    "refer": "Please detect the man in a red coat in this image. Answer the question with object indexes.",
    "count": "How many pigeon are there in this image? Answer the question with the number of objects and locate them with object indexes.",
    "caption_brief": "Please breifly describe this image in one sentence and detect all the mentioned objects. Answer the question with grounded answer.",
    "caption_detailed": "Please provide a detailed description of the image and detect all the mentioned objects. Answer the question with grounded object indexes.",
    "region_category": "What is the category name of <obj0>; <obj1>; <obj2>? Answer the question with its category name in free format.",
    "region_phrase": "Can you provide me with a short phrase to describe <obj0>; <obj1>; <obj2>? Answer the question with a short phrase.",
    "region_brief": "Can you provide me with a brief description of <obj0>; <obj1>; <obj2>? Answer the question with brief description.",
    "region_sentence": "Can you provide a one sentence description of <obj0>; <obj1>; <obj2> in the image? Answer the question with a one sentence description.",
    "ask": "what might be the species of <obj1>?",
    "chat": "Answer the question in grounded format. What is the person holding?",
}


def task_prompts():
    tok = Tokenizer.from_file(str(SHARED / "mllm" / "tiny" / "tokenizer.json"))
    out = {}
    block = "".join(f"<obj{i}><objfeat>" for i in range(3))
    for name, question in TASKS.items():
        prompt = f"<|im_start|>user\n<image>\n{block}\n{question}<|im_end|>\n<|im_start|>assistant\n"
        ids = []
        for chunk in split_special(prompt):
            ids += [-200] if chunk == "<image>" else [-300] if chunk == "<objfeat>" else tok.encode(chunk, add_special_tokens=False).ids
        out[name] = {"question": question, "prompt": prompt, "ids": ids}
    save_json(out_dir("tokenizers") / "task_prompts.json", out)


_main = main


def main():  # noqa: F811
    _main()
    task_prompts()
