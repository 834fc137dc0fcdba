"""Built-in models, made here from local text with fixed seeds, so a run needs no model hub.

| name | what | build |
|---|---|---|
| `tiny-qwen2` | Qwen2ForCausalLM, hidden 256, 4 layers, own byte-level BPE (vocab >= 10240), ChatML, briefly trained on local text so greedy output is text-like | ~3 min on 2 cores |
| `tiny-qwen2-untrained` | same tokenizer and config, random init (what the tests use) | seconds |
| `qwen2-0.5b-shape` | random weights (std 0.02, seeded) with exactly Qwen2-0.5B's config, bf16, ~1 GB, tokenizer of tiny-qwen2 padded to Qwen2's ids | ~1 min |

Each is cached under `paths.cache_dir()/builtin/<name>-v<RECIPE_VERSION>`; bump RECIPE_VERSION
whenever anything that changes the built files changes (corpus, config, steps, seeds).
Builds go to a temporary directory that is renamed into place when complete, under an fcntl
lock, so two processes never build the same model at once and no half-built model is ever seen.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import json
import os
import random
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterator

from . import paths

RECIPE_VERSION = 3
SEED = 1234
CORPUS_DIR = paths.PACKAGE_DIR / "data" / "corpus"
MARKER = "ascendeval-builtin.json"  # written last: its presence means "complete"

# Special tokens and their order follow Qwen2 (<|endoftext|>, <|im_start|>, <|im_end|> right after
# the regular vocabulary), so prompts and chat templates written for Qwen2 behave the same here.
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
DEFAULT_SYSTEM = "You are a helpful assistant."
# Qwen2-Instruct's ChatML template, without the tool-calling branches.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if loop.first and message['role'] != 'system' %}"
    "{{- '<|im_start|>system\\n" + DEFAULT_SYSTEM + "<|im_end|>\\n' }}"
    "{%- endif %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
# Qwen2's pre-tokenizer split, verbatim: digits one by one (helps arithmetic), words with their
# leading space. Verbatim also because transformers 5 loads this directory as Qwen2Tokenizer and
# re-applies exactly this pattern whatever tokenizer.json says; any other split would silently
# tokenize differently under transformers/vLLM than under the `tokenizers` library.
SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# vllm bench draws random token ids below 10000: the tokenizer must know all of them.
TOKENIZER_TRAIN_VOCAB = 12000
MIN_TOKENIZER_VOCAB = 10240


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    config: dict[str, Any]
    train_steps: int = 0  # 0: random init only
    # Qwen2-0.5B puts <|endoftext|> at id 151643: pad the regular vocabulary up to that id with
    # never-produced filler tokens so the special ids (and len(tokenizer)) match the real model.
    pad_regular_vocab_to: int | None = None


_TINY_CONFIG: dict[str, Any] = dict(
    hidden_size=256,
    intermediate_size=1024,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    vocab_size=12288,  # tokenizer (~12003) padded up to a multiple of 256
    max_position_embeddings=32768,
    rope_theta=1_000_000.0,
    rms_norm_eps=1e-6,
    tie_word_embeddings=True,
    hidden_act="silu",
    initializer_range=0.02,
    attention_dropout=0.0,
    use_sliding_window=False,
    max_window_layers=4,
)
# Values from Qwen/Qwen2-0.5B config.json, as in the reference report.
_QWEN2_05B_CONFIG: dict[str, Any] = dict(
    hidden_size=896,
    intermediate_size=4864,
    num_hidden_layers=24,
    num_attention_heads=14,
    num_key_value_heads=2,
    vocab_size=151936,
    max_position_embeddings=131072,
    rope_theta=1_000_000.0,
    rms_norm_eps=1e-6,
    tie_word_embeddings=True,
    hidden_act="silu",
    initializer_range=0.02,
    attention_dropout=0.0,
    use_sliding_window=False,
    sliding_window=131072,
    max_window_layers=24,
)

RECIPES: dict[str, Recipe] = {
    "tiny-qwen2": Recipe(
        "tiny-qwen2",
        "tiny Qwen2 (4 layers, hidden 256), own BPE tokenizer, briefly trained on local English/Chinese/code/arithmetic text",
        _TINY_CONFIG,
        train_steps=330,  # ~167 s on 2 quiet cores (360 steps took 182 s: over the 3-min budget)
    ),
    "tiny-qwen2-untrained": Recipe(
        "tiny-qwen2-untrained", "tiny Qwen2 with random weights (fast, for tests)", _TINY_CONFIG
    ),
    "qwen2-0.5b-shape": Recipe(
        "qwen2-0.5b-shape",
        "random weights (std 0.02, seeded) with exactly Qwen2-0.5B's config; tokenizer of tiny-qwen2",
        _QWEN2_05B_CONFIG,
        pad_regular_vocab_to=151643,
    ),
}
BUILTIN_NAMES: tuple[str, ...] = tuple(RECIPES)


class UnknownBuiltin(ValueError):
    pass


def _recipe(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except KeyError:
        raise UnknownBuiltin(
            f"unknown built-in model {name!r}; allowed: {', '.join('builtin:' + n for n in BUILTIN_NAMES)}"
        ) from None


def cache_path(name: str) -> Path:
    """Where `ensure(name)` puts (or finds) the built model."""
    _recipe(name)
    return paths.cache_dir() / "builtin" / f"{name}-v{RECIPE_VERSION}"


def is_built(name: str) -> bool:
    return (cache_path(name) / MARKER).is_file()


def ensure(name: str, log: Callable[[str], None] | None = None) -> Path:
    """Return the directory of built-in `name`, building it first if it is not cached."""
    final = cache_path(name)
    if (final / MARKER).is_file():
        return final
    log = log or _stderr
    final.parent.mkdir(parents=True, exist_ok=True)
    with _locked(final.parent / f".{final.name}.lock"):
        if (final / MARKER).is_file():  # another process built it while we waited
            return final
        if final.exists():  # left over without marker: incomplete, never trusted
            shutil.rmtree(final)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
        try:
            build(name, tmp, log=log)
            # mkdtemp makes the dir 0700 (and some writers make files 0600): a shared cache is readable.
            for p in (tmp, *tmp.iterdir()):
                p.chmod(0o755 if p.is_dir() else 0o644)
            os.rename(tmp, final)  # atomic on one filesystem
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final


def build(name: str, dest: Path | str, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Build built-in `name` into `dest` (created if missing). Returns the build facts."""
    recipe = _recipe(name)
    log = log or _stderr
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    # CPU time next to wall time: on a shared machine the wall time mostly measures the neighbours.
    c0 = time.process_time()
    tok_fast = _tokenizer(recipe.pad_regular_vocab_to)
    vocab_len = tok_fast.get_vocab_size(with_added_tokens=True)
    if vocab_len > recipe.config["vocab_size"]:
        raise RuntimeError(f"tokenizer has {vocab_len} tokens, more than vocab_size {recipe.config['vocab_size']}")
    tokenizer = _hf_tokenizer(tok_fast)
    t_tok = time.perf_counter() - t0
    log(f"[builtin:{name}] tokenizer: {vocab_len} tokens in {t_tok:.1f} s")

    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    config = Qwen2Config(
        **recipe.config,
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
    )
    with _torch_threads():
        torch.manual_seed(SEED)
        # The model's own initialisation (normal, std=initializer_range) keeps logits sane.
        model = Qwen2ForCausalLM(config).float()
        t1 = time.perf_counter()
        stats: dict[str, Any] = {}
        if recipe.train_steps:
            stats = _train(model, tokenizer, recipe.train_steps, log=log, tag=name)
        t_train = time.perf_counter() - t1
        model = model.to(torch.bfloat16)
        model.config.dtype = torch.bfloat16
        model.save_pretrained(dest, safe_serialization=True)
    tokenizer.save_pretrained(dest)
    _make_portable(dest)
    gen = GenerationConfig(
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        pad_token_id=ids["<|endoftext|>"],
        do_sample=False,
    )
    gen.save_pretrained(dest)
    facts = {
        "name": name,
        "recipe_version": RECIPE_VERSION,
        "description": recipe.description,
        "seed": SEED,
        "train_steps": recipe.train_steps,
        "tokenizer_vocab": vocab_len,
        "build_s": round(time.perf_counter() - t0, 2),
        "build_cpu_s": round(time.process_time() - c0, 2),
        "train_s": round(t_train, 2),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        **stats,
    }
    # A README so a built model directory explains itself (model hubs show it as the model card).
    (dest / "README.md").write_text(
        f"# builtin:{name}\n\n{recipe.description}.\n\nBuilt by ascendeval.builtin_models "
        f"(recipe v{RECIPE_VERSION}, seed {SEED}) from local text only; see {MARKER} for build facts.\n",
        encoding="utf-8",
    )
    (dest / MARKER).write_text(json.dumps(facts, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    log(f"[builtin:{name}] built in {facts['build_s']:.1f} s wall, {facts['build_cpu_s']:.1f} s CPU "
        f"(training {t_train:.1f} s) -> {dest}")
    return facts


def _make_portable(dest: Path) -> None:
    """Let older transformers/vLLM (e.g. the 4.x in vllm-ascend images) read the files the same way.

    transformers 5 writes `rope_parameters`/`dtype` and a `TokenizersBackend` tokenizer class with
    the template in chat_template.jinja; 4.x would silently fall back to rope_theta=10000 and miss
    the chat template. The legacy keys are added alongside (5.x ignores or accepts them).
    """
    cfg_path = dest / "config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    rope = cfg.get("rope_parameters") or {}
    if "rope_theta" in rope:
        cfg.setdefault("rope_theta", rope["rope_theta"])
    if "dtype" in cfg:
        cfg.setdefault("torch_dtype", cfg["dtype"])
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tc_path = dest / "tokenizer_config.json"
    tc = json.loads(tc_path.read_text(encoding="utf-8"))
    tc["tokenizer_class"] = "PreTrainedTokenizerFast"
    tc["chat_template"] = CHAT_TEMPLATE
    tc["add_bos_token"] = False
    tc_path.write_text(json.dumps(tc, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------- corpus


def _read_gz_docs(name: str) -> list[str]:
    return gzip.decompress((CORPUS_DIR / name).read_bytes()).decode("utf-8").split("\n\x00\n")


def _paragraphs(name: str) -> list[str]:
    text = (CORPUS_DIR / name).read_text(encoding="utf-8")
    return [p.strip() for p in text.split("\n\n") if p.strip()]


def _chat_pairs() -> list[tuple[str, str]]:
    lines = (CORPUS_DIR / "chat.jsonl").read_text(encoding="utf-8").splitlines()
    return [(d["user"], d["assistant"]) for d in map(json.loads, filter(None, lines))]


def _arithmetic(rng: random.Random, n: int) -> list[str]:
    """Short arithmetic lines ("12 + 7 = 19") so prompts like "1+1=" continue with numbers."""
    out = []
    for _ in range(n):
        a, b = rng.randint(0, 99), rng.randint(0, 99)
        op = rng.choice("+-*")
        val = {"+": a + b, "-": a - b, "*": a * b}[op]
        out.append(rng.choice([f"{a} {op} {b} = {val}", f"{a}{op}{b}={val}"]))
    return out


def _chatml(user: str, assistant: str, system: str = DEFAULT_SYSTEM) -> str:
    # Same text the chat template renders, so chat prompts land on familiar ground.
    return (
        f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n"
        f"<|im_start|>assistant\n{assistant}<|im_end|>\n"
    )


@lru_cache(maxsize=1)
def corpus() -> dict[str, list[str]]:
    """The training documents by source. Deterministic: shipped files + seeded arithmetic."""
    rng = random.Random(SEED)
    arith = _arithmetic(rng, 3000)
    arith_docs = ["\n".join(arith[i : i + 20]) for i in range(0, len(arith), 20)]
    pairs = _chat_pairs()
    chat = [_chatml(u, a) for u, a in pairs]
    chat += [_chatml(f"What is {line.split(' = ')[0]}?", line) for line in arith[:300] if " = " in line]
    return {
        "prose": _read_gz_docs("stdlib_prose.txt.gz"),
        "en": _paragraphs("en.txt"),
        "code": _read_gz_docs("stdlib_code.txt.gz"),
        "code_en": (CORPUS_DIR / "code.txt").read_text(encoding="utf-8").split("\n\n\n"),
        "zh": _paragraphs("zh.txt") + [a for _, a in pairs if not a.isascii()],
        "arith": arith_docs,
        "chat": chat,
    }


# --------------------------------------------------------------------------- tokenizer


@lru_cache(maxsize=4)
def _trained_bpe_json() -> str:
    """Byte-level BPE trained on the corpus; returned as JSON so callers get fresh copies."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TOKENIZER_TRAIN_VOCAB,
        min_frequency=2,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],  # added after the regular vocabulary, as in Qwen2
    )
    docs = corpus()
    # Chinese text is used once: repeating it would make BPE merge whole memorised sentences
    # (a run of Han characters is a single pre-token under Qwen2's pattern).
    texts = docs["prose"] + docs["en"] + docs["code"] + docs["code_en"] + docs["zh"] + docs["arith"] + docs["chat"]
    tok.train_from_iterator(texts, trainer=trainer)
    n = tok.get_vocab_size()
    if n < MIN_TOKENIZER_VOCAB:
        raise RuntimeError(f"BPE training reached only {n} tokens (< {MIN_TOKENIZER_VOCAB}); corpus too small")
    return tok.to_str()


def _tokenizer(pad_regular_vocab_to: int | None):
    from tokenizers import AddedToken, Tokenizer

    data = json.loads(_trained_bpe_json())
    if pad_regular_vocab_to:
        vocab = data["model"]["vocab"]
        # Printable-ASCII filler: never produced by encoding (no merge leads to it), decodes to
        # its own text if a random-weights model emits it.
        for i in range(len(vocab), pad_regular_vocab_to):
            vocab[f"<|reserved_{i}|>"] = i
    tok = Tokenizer.from_str(json.dumps(data))
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    return tok


def _hf_tokenizer(tok):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token=None,
        unk_token=None,
        chat_template=CHAT_TEMPLATE,
        model_max_length=_TINY_CONFIG["max_position_embeddings"],
        clean_up_tokenization_spaces=False,
        add_bos_token=False,
    )


# --------------------------------------------------------------------------- training

# Mixture weights per source. The short hand-written texts are weighted far above their size: the
# build sees ~0.2 M tokens, far too few to learn the broad stdlib text (tried: 240 steps on a
# stdlib-heavy mix gave "the the the ..."), but enough to learn (largely memorise) those
# sentences, which is what makes greedy output on smoke prompts read like text.
_MIX = {"prose": 0.05, "en": 0.25, "code": 0.05, "code_en": 0.1, "zh": 0.2, "arith": 0.1, "chat": 0.25}
# Sized so the whole tiny-qwen2 build stays near 3 min on 2 cores (~0.5 s CPU per step; short
# sequences: for this little data, more optimizer steps beat longer context).
SEQ_LEN = 64
BATCH = 8
LR = 4e-3
WARMUP = 20


def _token_streams(tokenizer) -> dict[str, list[int]]:
    eot = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    out = {}
    for src, docs in corpus().items():
        stream: list[int] = []
        for enc in tokenizer(docs, add_special_tokens=False)["input_ids"]:
            stream.extend(enc)
            stream.append(eot)
        while len(stream) < SEQ_LEN + 1:  # tiny sources are repeated to fill one window
            stream = stream + stream
        out[src] = stream
    return out


def _batches(streams: dict[str, list[int]], steps: int) -> Iterator[Any]:
    import torch

    rng = random.Random(SEED + 1)
    tensors = {k: torch.tensor(v, dtype=torch.long) for k, v in streams.items()}
    srcs = list(_MIX)
    weights = [_MIX[s] for s in srcs]
    for _ in range(steps):
        rows = []
        for src in rng.choices(srcs, weights=weights, k=BATCH):
            t = tensors[src]
            start = rng.randrange(0, len(t) - SEQ_LEN)
            rows.append(t[start : start + SEQ_LEN])
        yield torch.stack(rows)


def _train(model, tokenizer, steps: int, log: Callable[[str], None], tag: str) -> dict[str, Any]:
    """A short next-token-prediction run (AdamW, warm-up then cosine decay)."""
    import math

    import torch

    streams = _token_streams(tokenizer)
    opt = torch.optim.AdamW(model.parameters(), lr=LR, betas=(0.9, 0.95), weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: (s + 1) / WARMUP if s < WARMUP else 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (s - WARMUP) / max(1, steps - WARMUP))),
    )
    model.train()
    first = last = None
    t0 = time.perf_counter()
    for step, batch in enumerate(_batches(streams, steps)):
        # Plain fp32: bf16 autocast made the backward pass ~10x slower on this CPU (measured).
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        val = loss.detach().item()
        first = val if first is None else first
        last = val
        if step % 50 == 0 or step == steps - 1:
            log(f"[builtin:{tag}] step {step + 1}/{steps} loss {val:.3f} ({time.perf_counter() - t0:.0f} s)")
    model.eval()
    return {"first_loss": round(first, 4), "final_loss": round(last, 4), "tokens_seen": steps * BATCH * SEQ_LEN}


# --------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    with open(lock_path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # blocks while another process builds
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextlib.contextmanager
def _torch_threads() -> Iterator[None]:
    # One thread, always: (1) a fixed thread count keeps the float reduction order, hence the
    # weights, identical from build to build; (2) with OpenMP's spin-waiting, 2 threads on a busy
    # 2-core machine were 6-10x SLOWER than 1 (measured 10-20 s vs 1.8 s per training step at
    # load 6), and these small matmuls gain little from more threads anyway.
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """`python -m ascendeval.builtin_models [NAME...]`: build (or find) built-ins, print dirs."""
    import argparse

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("names", nargs="*", default=["tiny-qwen2"], help=f"any of: {', '.join(BUILTIN_NAMES)}")
    p.add_argument("--force", action="store_true", help="rebuild even if cached")
    args = p.parse_args(argv)
    for name in args.names:
        try:
            _recipe(name)
        except UnknownBuiltin as e:
            p.error(str(e))
        if args.force and cache_path(name).exists():
            shutil.rmtree(cache_path(name))
        t0 = time.perf_counter()
        path = ensure(name)
        print(f"{name}: {path} ({time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
