"""models.resolve: builtin / local / ModelScope ids, offline cache hits, bounded network failure,
and model_card_facts read from real safetensors headers."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pytest

from ascendeval import builtin_models, config, models


def _cfg(mid: str, revision: str | None = None) -> config.ModelConfig:
    return config.ModelConfig(id=mid, revision=revision)


# --------------------------------------------------------------------------- bad ids


@pytest.mark.parametrize(
    "mid, expected",
    [
        ("Qwen2-0.5B", "allowed: a local directory with config.json, a ModelScope id (org/name) or builtin:<name>"),
        ("builtin:nope", "unknown built-in model; allowed: builtin:tiny-qwen2, builtin:tiny-qwen2-untrained, builtin:qwen2-0.5b-shape"),
        ("./no/such/model", "no such directory"),
        ("/definitely/not/here", "no such directory"),
        ("org/name with space", "is not a local directory, a ModelScope id or a builtin"),
    ],
)
def test_bad_ids_give_one_line_error(mid, expected):
    with pytest.raises(models.ModelResolveError) as exc:
        models.resolve(_cfg(mid))
    msg = str(exc.value)
    assert expected in msg
    assert "\n" not in msg
    assert repr(mid) in msg


def test_local_dir_without_config_json(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(models.ModelResolveError, match="has no config.json"):
        models.resolve(_cfg(str(tmp_path)))
    with pytest.raises(models.ModelResolveError, match="is a file"):
        models.resolve(_cfg(str(tmp_path / "weights.bin")))


def test_local_dir_resolves(tmp_path, monkeypatch):
    model_dir = tmp_path / "my-model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text("{}")
    got = models.resolve(_cfg(str(model_dir)))
    assert got == models.ResolvedModel(model_dir.resolve(), str(model_dir), None, "local")
    # Relative paths resolve against the working directory; an existing org/name-looking
    # directory is taken as local rather than downloaded.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "org" / "name").mkdir(parents=True)
    (tmp_path / "org" / "name" / "config.json").write_text("{}")
    assert models.resolve(_cfg("./my-model")).path == model_dir.resolve()
    rel = models.resolve(_cfg("org/name"))
    assert (rel.source, rel.path) == ("local", (tmp_path / "org" / "name").resolve())


# --------------------------------------------------------------------------- ModelScope


@pytest.fixture
def ms_cache(tmp_path, monkeypatch):
    """An empty ModelScope cache; the real endpoint is replaced by a closed local port."""
    cache = tmp_path / "modelscope"
    cache.mkdir()
    monkeypatch.setenv("MODELSCOPE_CACHE", str(cache))
    monkeypatch.setenv("MODELSCOPE_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.delenv("ASCENDEVAL_OFFLINE", raising=False)
    monkeypatch.delenv("MODELSCOPE_OFFLINE", raising=False)
    return cache


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_modelscope_cache_hit_legacy_layout(ms_cache):
    # modelscope <= 1.37 layout (still read by newer versions): models/<org>/<name with . -> ___>
    snap = ms_cache / "models" / "Qwen" / "Qwen2-0___5B"
    snap.mkdir(parents=True)
    (snap / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    t0 = time.perf_counter()
    got = models.resolve(_cfg("Qwen/Qwen2-0.5B"))
    assert got.source == "modelscope" and got.path == snap.resolve() and got.id == "Qwen/Qwen2-0.5B"
    assert time.perf_counter() - t0 < 30  # no network attempt: the endpoint is a closed port


def test_modelscope_cache_hit_snapshot_layout_with_revision(ms_cache):
    # modelscope >= 1.38 layout: models/<org>--<name>/snapshots/<revision>
    for rev in ("v1.0", "v2.0"):
        snap = ms_cache / "models" / "org--tiny" / "snapshots" / rev
        snap.mkdir(parents=True)
        (snap / "config.json").write_text(json.dumps({"rev": rev}))
    got = models.resolve(_cfg("org/tiny", revision="v2.0"))
    assert got.path.name == "v2.0" and got.revision == "v2.0" and got.source == "modelscope"
    assert json.loads((got.path / "config.json").read_text()) == {"rev": "v2.0"}


def test_modelscope_not_cached_endpoint_refused_is_quick_error(ms_cache):
    t0 = time.perf_counter()
    with pytest.raises(models.ModelResolveError) as exc:
        models.resolve(_cfg("org/absent", revision="v9"))
    elapsed = time.perf_counter() - t0
    msg = str(exc.value)
    assert "'org/absent'@v9: not in the local ModelScope cache" in msg and "unreachable" in msg
    assert "ConnectError" in msg and "\n" not in msg
    assert elapsed < 30, elapsed


def test_modelscope_silent_endpoint_times_out(ms_cache, monkeypatch):
    """An endpoint that accepts connections but never answers (a black hole) is bounded too."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def _accept() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(srv.accept()[0])  # hold the connection open, say nothing
            except OSError:
                pass

    th = threading.Thread(target=_accept, daemon=True)
    th.start()
    monkeypatch.setenv("MODELSCOPE_ENDPOINT", f"http://127.0.0.1:{srv.getsockname()[1]}")
    monkeypatch.setattr(models, "PROBE_TIMEOUT_S", 2.0)
    try:
        t0 = time.perf_counter()
        with pytest.raises(models.ModelResolveError, match="unreachable .*Timeout"):
            models.resolve(_cfg("org/absent"))
        elapsed = time.perf_counter() - t0
    finally:
        stop.set()
        th.join()
        for c in accepted:
            c.close()
        srv.close()
    assert accepted, "the probe never connected"
    assert 1.5 < elapsed < 15, elapsed


def test_modelscope_offline_mode(ms_cache, monkeypatch):
    monkeypatch.setenv("ASCENDEVAL_OFFLINE", "1")
    with pytest.raises(models.ModelResolveError, match="offline mode is on"):
        models.resolve(_cfg("org/absent"))


# --------------------------------------------------------------------------- builtin + facts


@pytest.fixture(scope="module")
def untrained(tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("builtin") / "tiny-qwen2-untrained"
    builtin_models.build("tiny-qwen2-untrained", dest)
    return dest


def test_builtin_resolves_through_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ASCENDEVAL_CACHE_DIR", str(tmp_path))
    got = models.resolve(_cfg("builtin:tiny-qwen2-untrained"))
    assert got.source == "builtin"
    assert got.path == tmp_path / "builtin" / f"tiny-qwen2-untrained-v{builtin_models.RECIPE_VERSION}"
    assert (got.path / "config.json").is_file() and (got.path / builtin_models.MARKER).is_file()
    assert got.revision == f"recipe-v{builtin_models.RECIPE_VERSION}"


def test_model_card_facts_match_loaded_model(untrained):
    import torch
    from transformers import AutoModelForCausalLM

    facts = models.model_card_facts(untrained)
    model = AutoModelForCausalLM.from_pretrained(untrained, dtype=torch.bfloat16)
    # Tied lm_head is stored once, and counted once by transformers' own counter.
    assert facts["param_count"] == model.num_parameters()
    assert facts["weight_bytes"] == 2 * facts["param_count"]  # bf16
    assert {k: facts[k] for k in ("architecture", "num_layers", "hidden_size", "num_attention_heads",
                                  "num_key_value_heads", "head_dim", "vocab_size", "max_context",
                                  "weight_dtype", "config_dtype", "tie_word_embeddings", "rope_theta")} == {
        "architecture": "Qwen2ForCausalLM", "num_layers": 4, "hidden_size": 256, "num_attention_heads": 4,
        "num_key_value_heads": 2, "head_dim": 64, "vocab_size": 12288, "max_context": 32768,
        "weight_dtype": "bfloat16", "config_dtype": "bfloat16", "tie_word_embeddings": True, "rope_theta": 1e6,
    }
