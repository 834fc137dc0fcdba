"""Load & smoke section: does the model load and answer sensibly, the same way every time?

Measures load time and memory, a dummy-weights fast gate, varied prompts with per-prompt latency,
a chat-template prompt, the same prompts through a served model's OpenAI API, and determinism.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ... import device as device_mod
from ...context import SectionRun, SectionSkipped
from ...engines import Engine, Generation, Sampling
from ...metrics import first_difference
from .prompts import DEFAULT_PROMPTS, EXPECTED, as_expected

def _prompts(run: SectionRun) -> list[tuple[str, str]]:
    conf = run.conf
    return [("custom", p) for p in conf.prompts] if conf.prompts else DEFAULT_PROMPTS


def _greedy(run: SectionRun) -> Sampling:
    return Sampling(max_tokens=run.conf.max_tokens, temperature=0.0)


# ---------------------------------------------------------------------------- model


@dataclass
class ModelFacts:
    path: str
    source: str
    facts: dict[str, Any]

    def table(self) -> pd.DataFrame:
        rows = [("path", self.path), ("source", self.source)] + list(self.facts.items())
        return pd.DataFrame(rows, columns=["item", "value"]).set_index("item")


def resolve_model(run: SectionRun) -> ModelFacts:
    """Find (or build / download) the model before any engine starts, so a bad id fails here."""
    model = run.model()
    from ... import models

    facts_fn = getattr(models, "model_card_facts", None)
    facts = facts_fn(model.path) if facts_fn else {}
    run.add("model", {"path": str(model.path), "source": model.source, **facts})
    return ModelFacts(str(model.path), model.source, facts)


# ---------------------------------------------------------------------------- gates


@dataclass
class GateResult:
    gate: str
    load_s: float | None
    rss_bytes: int | None
    outputs: list[str]
    output_tokens: list[int]
    info: dict[str, Any] = field(default_factory=dict)

    def table(self) -> pd.DataFrame:
        rows = [("gate", self.gate), ("load_s", None if self.load_s is None else round(self.load_s, 2)),
                ("process RSS (GiB)", None if self.rss_bytes is None else round(self.rss_bytes / 2**30, 2))]
        rows += [(k, v) for k, v in self.info.items() if k not in ("engine",)]
        rows += [(f"output {i}", repr(o)) for i, o in enumerate(self.outputs)]
        return pd.DataFrame(rows, columns=["item", "value"]).set_index("item")


def shared_server_url(run: SectionRun) -> str | None:
    """The run's shared server when it is the load under test: a vllm target, target_via auto."""
    if run.cfg.target.engine != "vllm" or run.conf.target_via != "auto":
        return None
    return run.shared_server_url()


def dummy_gate(run: SectionRun) -> GateResult:
    """Random weights (load_format=dummy): checks engine, kernels and memory in seconds before the
    real weights are read. Output text is meaningless by design; only that tokens come out counts."""
    if run.cfg.target.engine != "vllm":
        raise SectionSkipped(f"dummy weights need the vllm engine (target engine is {run.cfg.target.engine})",
                             zh=f"dummy 权重需要 vllm 引擎（被测目标的引擎为 {run.cfg.target.engine}）")
    if not run.conf.dummy_gate:
        raise SectionSkipped("dummy_gate: false in params", zh="参数文件中设置了 dummy_gate: false")
    if shared_server_url(run):
        raise SectionSkipped("the run's shared server loaded the real weights before this section: a dummy-weights "
                             "gate would come after the load it is meant to guard",
                             zh="本次运行的共享服务已在本章节之前加载了真实权重：dummy 权重预检会排在它要把关的加载之后")
    eng = run.engine("dummy_gate", load_format="dummy")
    try:
        gens = eng.generate([p for _, p in DEFAULT_PROMPTS[:2]], Sampling(max_tokens=8, ignore_eos=True))
        rss = device_mod.process_tree_rss_bytes()
        res = GateResult("dummy", eng.info().get("load_s", 0.0), rss, [g.text for g in gens],
                         [g.num_output_tokens for g in gens])
    finally:
        eng.close()
    if not all(n == 8 for n in res.output_tokens):
        raise RuntimeError(f"dummy gate produced {res.output_tokens} tokens, expected 8 each")
    run.add("dummy_gate", {"load_s": res.load_s, "rss_bytes": res.rss_bytes, "output_tokens": res.output_tokens})
    return res


@dataclass
class Loaded:
    engine: Engine
    gate: GateResult

    def table(self) -> pd.DataFrame:
        return self.gate.table()


def _load_shared(run: SectionRun, url: str) -> Loaded:
    """The run's shared server is the load under test: its start time (timed by the runner) and
    its process tree's memory are the load's figures, and the next steps ask it over its API."""
    from ... import engines

    stack = contextlib.ExitStack()
    stack.enter_context(run.served("real"))  # records the use of the shared server in engine_starts
    eng = engines.create(run.cfg, run._local_model_path(), engine="openai", base_url=url)  # a client: no start
    eng.owned_server = stack
    info = eng.info()
    gens = eng.generate([DEFAULT_PROMPTS[0][1]], Sampling(max_tokens=8))
    if not gens or gens[0].num_output_tokens == 0:
        eng.close()
        raise RuntimeError("the shared server's model produced no tokens")
    pid = device_mod.listening_pid(url)
    rss = device_mod.process_tree_memory(pid)["rss_bytes"] if pid else None
    start = run.shared_server_info()
    served_by = f"the run's shared server ({url}, pid {pid})"
    gate = GateResult("real (shared server)", start.get("start_wall_s"), rss, [g.text for g in gens],
                      [g.num_output_tokens for g in gens], info={**info, "served_by": served_by})
    run.add("load", {"load_s": gate.load_s, "rss_bytes": rss, "rss_delta_bytes": None, "engine_info": info,
                     "served_by": served_by})
    return Loaded(eng, gate)


def load(run: SectionRun) -> Loaded:
    """The real-weights gate: load the target engine and keep it for the next steps. A served
    target (openai) was loaded by its server: no load time or memory of ours is its figure. With
    the run's shared server up (target_via auto), that server is the load (see _load_shared)."""
    url = shared_server_url(run)
    if url:
        return _load_shared(run, url)
    served = run.cfg.target.engine == "openai"
    before = None if served else device_mod.process_tree_rss_bytes()
    eng = run.engine("real")
    info = eng.info()
    gens = eng.generate([DEFAULT_PROMPTS[0][1]], Sampling(max_tokens=8))
    rss = None if served else device_mod.process_tree_rss_bytes()
    if not gens or gens[0].num_output_tokens == 0:
        raise RuntimeError("the loaded model produced no tokens")
    gate = GateResult("real", info.get("load_s"), rss, [g.text for g in gens],
                      [g.num_output_tokens for g in gens], info=info)
    run.add("load", {"load_s": gate.load_s, "rss_bytes": rss,
                     "rss_delta_bytes": None if rss is None or before is None else max(rss - before, 0),
                     "engine_info": info})
    return Loaded(eng, gate)


# ---------------------------------------------------------------------------- prompts


@dataclass
class PromptRows:
    rows: list[dict[str, Any]]

    def table(self) -> pd.DataFrame:
        df = pd.DataFrame(self.rows)
        cols = [c for c in ("kind", "prompt", "output", "output_tokens", "latency_s", "ttft_ms", "tok_per_s",
                            "finish_reason") if c in df.columns]
        return df[cols].round({"latency_s": 4, "ttft_ms": 2, "tok_per_s": 2})


def _row(kind: str, prompt: str, g: Generation) -> dict[str, Any]:
    e2e = g.timing.e2e_s
    n = g.num_output_tokens if g.token_ids else (g.usage or {}).get("completion_tokens")
    # raw values, unrounded: `ascendeval verify` recomputes tok_per_s from latency_s; tables round
    return {"kind": kind, "prompt": prompt, "output": g.text, "output_tokens": n, "latency_s": e2e,
            "ttft_ms": g.timing.ttft_s * 1000 if g.timing.ttft_s is not None else None,
            "tok_per_s": n / e2e if n and e2e > 0 else None, "finish_reason": g.finish_reason,
            "expected": " / ".join(EXPECTED.get(prompt, ())) or None, "as_expected": as_expected(prompt, g.text),
            "token_ids": g.token_ids}


def _need(loaded: Loaded | None) -> Engine:
    if loaded is None:
        raise SectionSkipped("the engine did not load (see step 'load')", zh="引擎未能加载（见步骤 'load'）")
    return loaded.engine


def run_prompts(run: SectionRun, loaded: Loaded | None) -> PromptRows:
    """Each prompt alone (so its latency is its own), greedy."""
    eng = _need(loaded)
    rows = [_row(kind, p, eng.generate([p], _greedy(run))[0]) for kind, p in _prompts(run)]
    run.save_rows("prompts", rows)
    lat = [r["latency_s"] for r in rows]
    judged = [r["as_expected"] for r in rows if r["as_expected"] is not None]
    run.add("prompts", {"count": len(rows), "mean_latency_s": sum(lat) / len(lat), "max_latency_s": max(lat),
                        "min_latency_s": min(lat), "empty_outputs": sum(1 for r in rows if not r["output"].strip()),
                        "expected_count": len(judged), "as_expected_count": sum(judged)})
    return PromptRows(rows)


def run_chat(run: SectionRun, loaded: Loaded | None) -> PromptRows:
    """One conversation through the model's chat template."""
    eng = _need(loaded)
    tok = eng.tokenizer()
    if tok is not None and not getattr(tok, "chat_template", None):
        raise SectionSkipped("the tokenizer has no chat template (base model)",
                             zh="分词器没有对话模板 chat template（基座模型）")
    conv = [{"role": "user", "content": run.conf.chat_prompt}]
    g = eng.chat([conv], _greedy(run))[0]
    row = _row("chat", run.conf.chat_prompt, g)
    run.add("chat", {"output_tokens": row["output_tokens"], "latency_s": row["latency_s"], "output": g.text})
    return PromptRows([row])


@dataclass
class Determinism:
    identical: bool
    rows: list[dict[str, Any]]

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows)


def determinism(run: SectionRun, loaded: Loaded | None, earlier: PromptRows | None = None) -> Determinism:
    """The same greedy prompts twice must give the same tokens. An offline engine runs them as one
    batch, twice. A served engine answers each prompt alone (as in `run_prompts`, whose outputs
    are the first run when given): requests sent together would be batched by arrival order, which
    can differ between the two runs, and that would be a batch effect, not nondeterminism
    (quality's batch_invariance measures that)."""
    from types import SimpleNamespace

    if not run.conf.determinism:
        raise SectionSkipped("determinism: false in params", zh="参数文件中设置了 determinism: false")
    eng = _need(loaded)
    prompts = [p for _, p in _prompts(run)]
    served = getattr(eng, "concurrency", None) is not None
    if served:
        before = {r["prompt"]: r for r in (earlier.rows if earlier else []) if r.get("token_ids")}
        if all(p in before for p in prompts):  # run_prompts' outputs are the first run
            first = [SimpleNamespace(token_ids=before[p]["token_ids"], text=before[p]["output"]) for p in prompts]
        else:
            first = [eng.generate([p], _greedy(run))[0] for p in prompts]
        second = [eng.generate([p], _greedy(run))[0] for p in prompts]
    else:
        first = eng.generate(prompts, _greedy(run))
        second = eng.generate(prompts, _greedy(run))
    rows = []
    for p, a, b in zip(prompts, first, second):
        pos = first_difference(a.token_ids, b.token_ids)
        rows.append({"prompt": p, "identical": pos is None, "first_diff_position": pos,
                     "run1_from_diff": a.text if pos is None else eng.tokenizer().decode(a.token_ids[pos:]),
                     "run2_from_diff": "" if pos is None else eng.tokenizer().decode(b.token_ids[pos:])})
    same = sum(r["identical"] for r in rows)
    run.add("determinism", {"prompts": len(rows), "identical_prompts": same,
                            "identical_rate": same / len(rows)})
    return Determinism(same == len(rows), rows)


def close(loaded: Loaded | None) -> None:
    if loaded is not None:
        loaded.engine.close()


# ---------------------------------------------------------------------------- served


@dataclass
class Served:
    base_url: str
    rows: list[dict[str, Any]]

    def table(self) -> pd.DataFrame:
        df = pd.DataFrame(self.rows)
        return df[[c for c in ("api", "prompt", "output", "output_tokens", "latency_s", "ttft_ms", "same_as_offline")
                   if c in df.columns]].round({"latency_s": 4, "ttft_ms": 2})


def served(run: SectionRun, offline: PromptRows | None) -> Served:
    """The same prompts through /v1/completions, and the chat prompt through /v1/chat/completions,
    of a served model (started here with the same settings, or the run's shared server)."""
    if not run.conf.serve:
        raise SectionSkipped("serve: false in params", zh="参数文件中设置了 serve: false")
    if run.cfg.target.engine == "openai":
        raise SectionSkipped("the target is itself served: the prompts above already went through its API",
                             zh="被测目标本身就是服务化部署：上面的提示词已经通过其 API 发送")
    if shared_server_url(run):
        raise SectionSkipped("the prompts above already went through the run's shared server's API (no offline engine "
                             "of the same configuration was started to compare with; sections.smoke.target_via: "
                             "offline does)",
                             zh="上面的提示词已经通过本次运行共享服务的 API 发送（未再启动同配置的离线引擎作对比；"
                                "设置 sections.smoke.target_via: offline 可对比）")
    from ...engines.openai_engine import OpenAIEngine

    offline_ids = {r["prompt"]: r["token_ids"] for r in (offline.rows if offline else [])}
    with run.served("smoke") as url:
        client = OpenAIEngine(url, model=run.cfg.server.served_model_name, api_key=run.cfg.server.api_key,
                              vllm_extensions=run.cfg.server.kind == "vllm")
        try:
            rows = []
            for kind, p in _prompts(run):
                row = _row(kind, p, client.generate([p], _greedy(run))[0])
                row["api"] = "/v1/completions"
                if p in offline_ids and row["token_ids"]:
                    row["same_as_offline"] = row["token_ids"] == offline_ids[p]
                rows.append(row)
            conv = [{"role": "user", "content": run.conf.chat_prompt}]
            chat_row = _row("chat", run.conf.chat_prompt, client.chat([conv], _greedy(run))[0])
            chat_row["api"] = "/v1/chat/completions"
            rows.append(chat_row)
        finally:
            client.close()
    run.save_rows("served", rows)
    compared = [r["same_as_offline"] for r in rows if "same_as_offline" in r]
    ttfts = [r["ttft_ms"] for r in rows if r["ttft_ms"] is not None]
    run.add("served", {
        "requests": len(rows),
        "empty_outputs": sum(1 for r in rows if not r["output"].strip()),
        "mean_latency_s": sum(r["latency_s"] for r in rows) / len(rows),
        "mean_ttft_ms": sum(ttfts) / len(ttfts) if ttfts else None,
        "same_as_offline_rate": (sum(compared) / len(compared)) if compared else None,
    })
    return Served(url, rows)
