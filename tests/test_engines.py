"""VLLMEngine lifecycle on the real engine: close() leaves no engine-core or worker process behind.

Sections start several engines one after another in one kernel; a process left over after
close() (alive, or a zombie nobody reaped) holds memory or a PID slot for the rest of the run.
The engine runs in a fresh interpreter so the only children are the ones this engine made.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, time
import psutil
from ascendeval import config, models, paths
from ascendeval.engines import Sampling
from ascendeval.engines.vllm_engine import VLLMEngine

def tree():
    out = []
    for p in psutil.Process().children(recursive=True):
        try:
            cmd = " ".join(p.cmdline())
            # the stdlib's multiprocessing resource tracker lives as long as this interpreter,
            # whatever engines come and go: not an engine process
            if "resource_tracker" in cmd:
                continue
            out.append({"pid": p.pid, "name": p.name(), "status": p.status()})
        except psutil.NoSuchProcess:
            pass
    return out

if __name__ == "__main__":
    paths.set_engine_cache_env()
    cfg = config.load(sys.argv[1])
    eng = VLLMEngine(models.resolve(cfg.model).path, dtype="bfloat16", enforce_eager=True,
                     kv_cache_memory_bytes=1 << 30, max_model_len=256)
    gen = eng.generate([[5, 6, 7, 8]], Sampling(max_tokens=4, ignore_eos=True))
    before = tree()
    t0 = time.perf_counter()
    eng.close()
    close_s = time.perf_counter() - t0
    print("RESULT " + json.dumps({"tokens": len(gen[0].token_ids), "before": before, "after": tree(),
                                  "close_s": close_s, "llm": eng.llm is None}))
"""


@pytest.mark.e2e
def test_vllm_close_leaves_no_child_process(tmp_path):
    params = tmp_path / "p.yaml"
    params.write_text("model: {id: 'builtin:tiny-qwen2-untrained', name: tiny}\n"
                      "target: {engine: vllm, device: cpu, enforce_eager: true, kv_cache_memory_bytes: 1073741824}\n")
    proc = subprocess.run([sys.executable, "-c", CHILD, str(params)], cwd=ROOT, capture_output=True, text=True,
                          timeout=900)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-2000:] + proc.stderr[-4000:]
    res = json.loads(lines[-1][len("RESULT "):])
    assert res["tokens"] == 4
    # the engine really had an engine-core process (so "none after" is not vacuous); psutil
    # names are cut at 15 characters: "VLLM::EngineCor"
    assert any("EngineCor" in p["name"] for p in res["before"]), res["before"]
    assert res["after"] == [], f"left after close() ({res['close_s']:.1f} s): {res['after']}"
    assert res["llm"] is True


CHILD_IN_PROCESS = r"""
import json, os, sys
import psutil
from ascendeval import open_section
from ascendeval.engines import Sampling

def engine_children():
    return [p.name() for p in psutil.Process().children(recursive=True) if "resource_tracker" not in " ".join(p.cmdline())]

def tokens(eng):
    return len(eng.generate([[5, 6, 7, 8]], Sampling(max_tokens=4, ignore_eos=True))[0].token_ids)

if __name__ == "__main__":
    run = open_section("features", sys.argv[1], sys.argv[2])
    out = {}
    a = run.engine("a")
    out["env"] = os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING")
    out["children"] = engine_children()
    out["tokens_a"] = tokens(a)
    try:
        run.engine("b")
        out["refused"] = None
    except RuntimeError as exc:
        out["refused"] = str(exc)
    a.close()
    for label in ("b", "c"):  # each closed engine tears vLLM's global state down; the next must still work
        eng = run.engine(label)
        out["tokens_" + label] = tokens(eng)
        eng.close()
    out["starts"] = [s["label"] for s in run.engine_starts]
    print("RESULT " + json.dumps(out))
"""


@pytest.mark.e2e
def test_in_process_engines_one_at_a_time(tmp_path):
    """target.env reaches offline engines; in-process vLLM engines (the demo's CPU setting) start
    one after another in one kernel, and a second one while the first is open is refused with a
    clear error instead of breaking the first (closing either tears down shared global state)."""
    params = tmp_path / "p.yaml"
    params.write_text("model: {id: 'builtin:tiny-qwen2-untrained', name: tiny, max_model_len: 256}\n"
                      "target: {engine: vllm, device: cpu, enforce_eager: true, kv_cache_memory_bytes: 1073741824,\n"
                      "  env: {VLLM_ENABLE_V1_MULTIPROCESSING: '0'}, engine_args: {distributed_executor_backend: uni}}\n")
    proc = subprocess.run([sys.executable, "-c", CHILD_IN_PROCESS, str(params), str(tmp_path / "run")], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-2000:] + proc.stderr[-4000:]
    res = json.loads(lines[-1][len("RESULT "):])
    assert res["env"] == "0"
    assert res["children"] == [], "in-process engine still spawned processes"
    assert res["tokens_a"] == res["tokens_b"] == res["tokens_c"] == 4
    assert res["refused"] and "'b' cannot start while vLLM engine 'a' is open" in res["refused"]
    assert res["starts"] == ["a", "b", "c"]


def test_hf_stop_strings_follow_vllm_convention():
    """transformers keeps a matched stop string in the text; vLLM cuts before it and reports
    finish_reason "stop". The hf engine follows vLLM, so the two engines' outputs compare equal."""
    from ascendeval import builtin_models, config, engines
    from ascendeval.engines import Sampling

    path = builtin_models.ensure("tiny-qwen2-untrained")
    cfg = config.parse({"model": {"id": "builtin:tiny-qwen2-untrained", "dtype": "float32"}, "target": {"engine": "hf"}})
    eng = engines.create(cfg, path)
    try:
        free = eng.generate(["The capital of France is"], Sampling(max_tokens=24, temperature=0.0))[0]
        assert len(free.text) > 12, free.text
        stop = free.text[8:11]  # a piece of what greedy decoding produces anyway
        cut = free.text.find(stop)
        stopped = eng.generate(["The capital of France is"], Sampling(max_tokens=24, temperature=0.0, stop=[stop]))[0]
    finally:
        eng.close()
    assert stopped.finish_reason == "stop"
    assert stopped.text == free.text[:cut] and stop not in stopped.text


def test_openai_engine_sends_a_list_concurrently_and_keeps_its_order():
    """`concurrency`: a list of prompts is sent with that many requests in flight (the server
    batches them as an offline engine batches a list), answers in the prompts' order; 1 (the
    default) sends them one after another, so each request's latency is its own."""
    from ascendeval.engines import Sampling
    from ascendeval.engines.openai_engine import OpenAIEngine
    from ascendeval.simserver import SimServer, SimSpec

    srv = SimServer(SimSpec(ttft_s=0.2, tpot_s=0.01)).start()
    try:
        for conc, overlap in ((1, False), (4, True)):
            eng = OpenAIEngine(srv.url, concurrency=conc)
            try:
                prompts = [f"prompt {i}" for i in range(4)]
                gens = eng.generate(prompts, Sampling(max_tokens=3, temperature=0.0))
                assert [g.prompt for g in gens] == prompts and all(g.num_output_tokens == 3 for g in gens)
                assert eng.info()["concurrency"] == conc
                events = sorted(srv.events[-4:], key=lambda e: e["received"])
                # overlapping: each later request arrived before the first one finished
                ends = [e["writes"][-1] for e in events]
                overlapped = all(e["received"] < ends[0] for e in events[1:])
                assert overlapped is overlap, (conc, events)
                chats = eng.chat([[{"role": "user", "content": p}] for p in prompts], Sampling(max_tokens=2))
                assert len(chats) == 4 and all(g.num_output_tokens == 2 for g in chats)
            finally:
                eng.close()
    finally:
        srv.stop()


def test_openai_engine_applies_the_stops_a_server_refuses_itself(tmp_path):
    """A server that takes at most 4 stop strings (the OpenAI API, vLLM's default) answers 400 to
    a base model's 7 HumanEval stops: the engine asks again with 4 and cuts at the others itself,
    text and token ids alike."""
    from ascendeval import builtin_models
    from ascendeval.engines import Sampling
    from ascendeval.engines.openai_engine import OpenAIEngine
    from ascendeval.simserver import SimServer, SimSpec

    srv = SimServer(SimSpec(ttft_s=0.01, tpot_s=0.001, max_stops=4, token_text=" ab")).start()
    try:
        eng = OpenAIEngine(srv.url, tokenizer_path=str(builtin_models.ensure("tiny-qwen2-untrained")))
        stops = ["\nx1", "\nx2", "\nx3", "\nx4", "\nx5", "\nx6", "b a"]  # only the 7th occurs
        g = eng.generate(["p"], Sampling(max_tokens=6, stop=stops))[0]
        assert g.text == " a" and g.finish_reason == "stop"  # " ab ab ab ..." cut before "b a"
        assert g.extra["stops_applied_by_client"] == stops[4:]
        assert len(g.token_ids) <= 6
        ok = eng.generate(["p"], Sampling(max_tokens=3, stop=stops[:4]))[0]  # 4 stops: sent as they are
        assert ok.text == " ab ab ab" and "stops_applied_by_client" not in ok.extra
        eng.close()
    finally:
        srv.stop()
