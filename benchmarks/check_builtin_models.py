"""Build (or find) built-in models and check each loads and generates in transformers AND vLLM.

Prints the build time, the model-card facts, and greedy outputs from both engines for a few
prompts (plain and chat). Usage:

    python benchmarks/check_builtin_models.py [NAME ...] [--rebuild] [--max-tokens N]

`--rebuild` times a fresh build into a temporary directory (the cache is left alone).
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from pathlib import Path

from ascendeval import builtin_models, models, paths

PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):",
    "中国的首都是",
    "12 + 7 =",
    "A large language model is",
]
CHAT = [{"role": "user", "content": "What is the capital of France?"}]


def _hf(path: Path, max_tokens: int) -> list[str]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16).eval()
    outs = []
    texts = PROMPTS + [tok.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True)]
    for text in texts:
        enc = tok(text, return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            ids = model.generate(**enc, max_new_tokens=max_tokens, do_sample=False)
        outs.append(tok.decode(ids[0, enc["input_ids"].shape[1]:], skip_special_tokens=True))
    del model
    gc.collect()
    return outs


def _vllm(path: Path, max_tokens: int) -> list[str]:
    from ascendeval.engines import vllm_compat

    llm = vllm_compat.make_llm(str(path), enforce_eager=True, kv_cache_memory_bytes=1 << 30, dtype="bfloat16",
                               max_model_len=2048, seed=0)
    sp = vllm_compat.sampling_params(temperature=0.0, max_tokens=max_tokens)
    outs = [o.outputs[0].text for o in llm.generate(PROMPTS, sp, use_tqdm=False)]
    outs += [o.outputs[0].text for o in llm.chat([CHAT], sp, use_tqdm=False)]
    del llm
    gc.collect()
    return outs


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="*", default=list(builtin_models.BUILTIN_NAMES))
    p.add_argument("--rebuild", action="store_true", help="time a fresh build into a temp dir")
    p.add_argument("--max-tokens", type=int, default=24)
    p.add_argument("--skip-vllm", action="store_true")
    args = p.parse_args()
    paths.set_engine_cache_env()
    for name in args.names:
        print(f"\n=== builtin:{name}", flush=True)
        t0 = time.perf_counter()
        if args.rebuild:
            path = Path(tempfile.mkdtemp(prefix=f"ascendeval-{name}-"))
            facts = builtin_models.build(name, path)
        else:
            path = builtin_models.ensure(name)
            facts = json.loads((path / builtin_models.MARKER).read_text())
        print(f"build/find: {time.perf_counter() - t0:.1f} s here; build facts: {json.dumps(facts, ensure_ascii=False)}")
        print("model card facts:", json.dumps(models.model_card_facts(path)))
        t0 = time.perf_counter()
        hf = _hf(path, args.max_tokens)
        print(f"transformers: loaded and generated in {time.perf_counter() - t0:.1f} s")
        vl = None
        if not args.skip_vllm:
            t0 = time.perf_counter()
            vl = _vllm(path, args.max_tokens)
            print(f"vllm: loaded and generated in {time.perf_counter() - t0:.1f} s")
        for i, prompt in enumerate(PROMPTS + ["<chat> " + CHAT[0]["content"]]):
            print(f"- prompt {prompt!r}\n    hf:   {hf[i]!r}")
            if vl is not None:
                same = "same" if vl[i] == hf[i] else "differs"
                print(f"    vllm: {vl[i]!r} ({same})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
