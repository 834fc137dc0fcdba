"""Built-in models: the untrained tiny build (config, tokenizer, chat template, determinism), the
cache/lock behaviour of ensure(), the exact Qwen2-0.5B shape recipe, and (e2e) the real builds of
qwen2-0.5b-shape and the trained tiny-qwen2."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ascendeval import builtin_models, models

ROOT = Path(__file__).resolve().parents[1]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def two_builds(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("builds")
    a, b = base / "a", base / "b"
    builtin_models.build("tiny-qwen2-untrained", a)
    builtin_models._trained_bpe_json.cache_clear()  # the second build retrains the tokenizer too
    builtin_models.build("tiny-qwen2-untrained", b)
    return a, b


def test_untrained_build_is_deterministic(two_builds):
    a, b = two_builds
    for name in ("model.safetensors", "tokenizer.json", "config.json", "generation_config.json", "tokenizer_config.json"):
        assert _sha(a / name) == _sha(b / name), name
    from safetensors.torch import load_file

    ta, tb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert ta.keys() == tb.keys() and len(ta) == 4 * 12 + 2  # 12 tensors per layer + embed + final norm
    assert all(ta[k].equal(tb[k]) for k in ta)


def test_untrained_config(two_builds):
    cfg = json.loads((two_builds[0] / "config.json").read_text())
    expected = dict(architectures=["Qwen2ForCausalLM"], model_type="qwen2", hidden_size=256, num_hidden_layers=4,
                    num_attention_heads=4, num_key_value_heads=2, intermediate_size=1024, vocab_size=12288,
                    max_position_embeddings=32768, tie_word_embeddings=True, rope_theta=1e6, torch_dtype="bfloat16")
    assert {k: cfg[k] for k in expected} == expected
    # Ids of the special tokens sit right after the regular vocabulary, as in Qwen2.
    assert (cfg["bos_token_id"], cfg["eos_token_id"], cfg["pad_token_id"]) == (12000, 12002, 12000)
    gen = json.loads((two_builds[0] / "generation_config.json").read_text())
    assert gen["eos_token_id"] == [12002, 12000] and gen["do_sample"] is False


def test_tokenizer_vocab_and_chat_template(two_builds):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(two_builds[0])
    assert len(tok) == 12003 >= builtin_models.MIN_TOKENIZER_VOCAB
    assert (tok.eos_token, tok.pad_token) == ("<|im_end|>", "<|endoftext|>")
    # vllm bench draws random ids below 10000: each must be a real token that decodes.
    pieces = tok.convert_ids_to_tokens(list(range(10000)))
    assert None not in pieces and len(set(pieces)) == 10000
    msgs = [{"role": "user", "content": "你好"}]
    text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert text == ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                    "<|im_start|>user\n你好<|im_end|>\n<|im_start|>assistant\n")
    sys_msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert tok.apply_chat_template(sys_msgs, tokenize=False).startswith("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi")
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert ids[0] == tok.convert_tokens_to_ids("<|im_start|>") and ids.count(12002) == 2
    for s in ["The capital of France is Paris.", "def add(a, b):\n    return a + b", "中国的首都是北京。", "12+7=19"]:
        assert tok.decode(tok(s, add_special_tokens=False)["input_ids"]) == s
    # Digits are split one by one (Qwen2's pre-tokenizer), which arithmetic prompts rely on.
    assert tok.tokenize("2024") == ["2", "0", "2", "4"]


def test_untrained_generates_in_transformers(two_builds):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(two_builds[0])
    model = AutoModelForCausalLM.from_pretrained(two_builds[0]).eval()
    assert model.dtype == torch.bfloat16
    enc = tok("Hello", return_tensors="pt")
    out = model.generate(**enc, max_new_tokens=5, do_sample=False)
    assert out.shape == (1, enc["input_ids"].shape[1] + 5)
    logits = model(**enc).logits.float()
    # std-0.02 init keeps logits small and finite (not a saturated softmax).
    assert torch.isfinite(logits).all() and logits.abs().max() < 5


def test_ensure_caches_and_locks(tmp_path):
    """Two processes ask for the same built-in at once: one builds, both get the same complete dir."""
    env = {**os.environ, "ASCENDEVAL_CACHE_DIR": str(tmp_path)}
    code = ("import json,sys; from ascendeval import builtin_models as b; p=b.ensure('tiny-qwen2-untrained', log=lambda m: None);"
            "print(json.dumps({'path': str(p), 'build_s': json.loads((p/b.MARKER).read_text())['build_s']}))")
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [json.loads(p.communicate(timeout=600)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    final = tmp_path / "builtin" / f"tiny-qwen2-untrained-v{builtin_models.RECIPE_VERSION}"
    assert [o["path"] for o in outs] == [str(final)] * 2
    assert outs[0]["build_s"] == outs[1]["build_s"]  # one build's marker, seen by both
    leftovers = [p.name for p in final.parent.iterdir() if ".tmp-" in p.name]
    assert leftovers == []
    # A directory without the completion marker is never trusted: it is rebuilt.
    (final / builtin_models.MARKER).unlink()
    (final / "model.safetensors").write_bytes(b"truncated")
    os.environ["ASCENDEVAL_CACHE_DIR"], saved = str(tmp_path), os.environ.get("ASCENDEVAL_CACHE_DIR")
    try:
        assert builtin_models.ensure("tiny-qwen2-untrained", log=lambda m: None) == final
    finally:
        if saved is None:
            os.environ.pop("ASCENDEVAL_CACHE_DIR")
        else:
            os.environ["ASCENDEVAL_CACHE_DIR"] = saved
    assert (final / builtin_models.MARKER).is_file() and (final / "model.safetensors").stat().st_size > 1_000_000


def test_unknown_builtin_name():
    with pytest.raises(ValueError, match="unknown built-in model 'qwen9'; allowed: builtin:tiny-qwen2, "):
        builtin_models.ensure("qwen9")


def test_qwen2_05b_shape_recipe_matches_reference():
    """The exact Qwen2-0.5B config (reference report), checked without building (~1 GB)."""
    from transformers import Qwen2Config

    r = builtin_models.RECIPES["qwen2-0.5b-shape"]
    cfg = Qwen2Config(**r.config)
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.intermediate_size, cfg.num_attention_heads,
            cfg.num_key_value_heads, cfg.vocab_size) == (24, 896, 4864, 14, 2, 151936)
    assert (cfg.rms_norm_eps, cfg.tie_word_embeddings, cfg.max_position_embeddings) == (1e-6, True, 131072)
    assert cfg.rope_parameters["rope_theta"] == 1e6
    assert r.train_steps == 0 and r.pad_regular_vocab_to == 151643


def _qwen2_05b_param_count() -> int:
    h, inter, layers, vocab, kv = 896, 4864, 24, 151936, 2 * 64
    attn = h * h + h + 2 * (h * kv + kv) + h * h  # q (+bias), k/v (+bias), o
    per_layer = attn + 3 * h * inter + 2 * h
    return vocab * h + layers * per_layer + h  # tied lm_head stored once, + final norm


@pytest.mark.e2e
def test_qwen2_05b_shape_build(tmp_path):
    dest = tmp_path / "qwen2-0.5b-shape"
    builtin_models.build("qwen2-0.5b-shape", dest)
    facts = models.model_card_facts(dest)
    assert facts["param_count"] == _qwen2_05b_param_count() == 494_032_768
    assert (facts["num_layers"], facts["hidden_size"], facts["num_attention_heads"], facts["num_key_value_heads"],
            facts["vocab_size"], facts["weight_dtype"]) == (24, 896, 14, 2, 151936, "bfloat16")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(dest)
    # Special ids where Qwen2-0.5B has them; the filler tokens pad the regular vocabulary.
    assert [tok.convert_tokens_to_ids(t) for t in builtin_models.SPECIAL_TOKENS] == [151643, 151644, 151645]
    assert len(tok) == 151646
    from safetensors import safe_open

    with safe_open(dest / "model.safetensors", "pt") as f:
        w = f.get_tensor("model.layers.0.mlp.up_proj.weight").float()
    assert abs(w.std().item() - 0.02) < 0.001  # the model's own init, std = initializer_range


@pytest.mark.e2e
def test_trained_tiny_build_learned(tmp_path):
    """The trained tiny model: loss fell, and greedy continuations are words, not noise."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = builtin_models.ensure("tiny-qwen2")
    facts = json.loads((path / builtin_models.MARKER).read_text())
    assert facts["final_loss"] < facts["first_loss"] - 4, facts
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    enc = tok("A large language model is", return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=16, do_sample=False)
    text = tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    words = text.split()
    assert len(words) >= 3 and sum(w.strip(".,;:()'\"").isalpha() for w in words) >= len(words) // 2, text
