"""Shared by every feature A/B: the "main" engine (prefix caching on) that serves every measurement
needing no other engine setting, counter deltas from vLLM's metrics, per-request timing, and the
result tables the notebook shows and the record keeps."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Iterator

import pandas as pd

from ... import paths
from ...context import SectionRun, SectionSkipped
from ...engines import Sampling, vllm_compat
from ...output_guard import OutputGuard
from ...token_prompts import TokenPrompts

CORPUS = paths.PACKAGE_DIR / "data" / "corpus" / "en.txt"


def _need_vllm(run: SectionRun) -> None:
    if run.cfg.target.engine != "vllm":
        raise SectionSkipped(f"needs the vllm engine (target engine is {run.cfg.target.engine}); "
                             "these features are engine settings of vLLM / vLLM-Ascend",
                             zh=f"需要 vllm 引擎（被测目标的引擎为 {run.cfg.target.engine}）；"
                             "这些特性是 vLLM / vLLM-Ascend 的引擎设置")


def counter_delta(before: dict[str, Any], after: dict[str, Any], prefix: str) -> dict[str, Any]:
    """after - before for every counter whose name starts with `prefix` (vectors element-wise).

    Offline engines keep counters for their whole life; deltas isolate one measurement."""
    out: dict[str, Any] = {}
    for key, value in after.items():
        if not key.startswith(prefix):
            continue
        prev = before.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = value - (prev if isinstance(prev, (int, float)) else 0)
        elif isinstance(value, list):
            prev_l = prev if isinstance(prev, list) else [0] * len(value)
            out[key] = [a - b for a, b in zip(value, prev_l + [0] * (len(value) - len(prev_l)))]
    return out


def _sum_by_name(counters: dict[str, Any], name: str) -> float | None:
    """Sum a counter over its label sets (keys look like `name` or `name{label=..}`)."""
    vals = [v for k, v in counters.items() if (k == name or k.startswith(name + "{")) and isinstance(v, (int, float))]
    return float(sum(vals)) if vals else None


def _vector_by_name(counters: dict[str, Any], name: str) -> list[float] | None:
    vecs = [v for k, v in counters.items() if (k == name or k.startswith(name + "{")) and isinstance(v, list)]
    if not vecs:
        return None
    return [float(sum(xs)) for xs in zip(*vecs)]


def safe_ratio(num: float | None, den: float | None) -> float | None:
    """num / den, None when either is unknown or den is 0 (never a made-up 0 or inf)."""
    if num is None or den is None or den == 0:
        return None
    return float(num) / float(den)


def request_timing(out: Any) -> dict[str, Any]:
    """Queue / prefill / decode seconds of one finished request from the engine's timestamps.

    vLLM stamps each request in the engine core (monotonic): queued, scheduled, first token,
    last token -- the same values its `vllm:request_prefill_time_seconds` /
    `vllm:request_decode_time_seconds` histograms are made from. first_token_latency is measured
    in the front end from arrival (what an offline caller sees as TTFT). Fields are read through
    `vllm_compat`: one this vLLM lacks (e.g. `num_preemptions` before 0.32) is None, and the row's
    `not_reported` says so, instead of failing the step."""
    n_out = len(out.outputs[0].token_ids)
    row: dict[str, Any] = {"prompt_tokens": len(out.prompt_token_ids or []), "output_tokens": n_out,
                           "num_cached_tokens": getattr(out, "num_cached_tokens", None)}
    m, missing = vllm_compat.request_stats(out)
    row["not_reported"] = "; ".join(missing.values()) or None
    if m is None or not m["first_token_ts"]:
        row.update(queue_ms=None, prefill_ms=None, decode_ms=None, ttft_ms=None, tpot_ms=None, preemptions=None)
        return row
    ms = 1000.0

    def span(start: str, end: str) -> float | None:
        if m[start] is None or m[end] is None:
            return None
        return max(m[end] - m[start], 0.0) * ms

    row["queue_ms"] = span("queued_ts", "scheduled_ts")
    row["prefill_ms"] = span("scheduled_ts", "first_token_ts")
    row["decode_ms"] = span("first_token_ts", "last_token_ts")
    row["ttft_ms"] = m["first_token_latency"] * ms if m["first_token_latency"] else None
    row["tpot_ms"] = row["decode_ms"] / (n_out - 1) if n_out > 1 and row["decode_ms"] is not None else None
    row["preemptions"] = m["num_preemptions"]
    return row


@dataclass
class Table:
    """A step result: rows (saved as a sidecar) and a summary (stored in the record)."""

    name: str
    rows: list[dict[str, Any]]
    summary: dict[str, Any] = field(default_factory=dict)
    columns: list[str] | None = None

    def table(self) -> pd.DataFrame:
        df = pd.DataFrame(self.rows)
        if self.columns:
            df = df[[c for c in self.columns if c in df.columns]]
        return df.round(2)


@dataclass
class Main:
    """The section's main engine (prefix caching on) and what it reports about itself."""

    engine: Any
    info: dict[str, Any]
    tokens: TokenPrompts
    guard: OutputGuard | None = None  # keeps the timed outputs of each feature (output_guard.py)

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(list(self.info.items()), columns=["item", "value"]).set_index("item")

    @property
    def llm(self) -> Any:
        return self.engine.llm

    def generate(self, prompts: list[list[int]], max_tokens: int, ignore_eos: bool = True,
                 figure: str | None = None) -> tuple[list[Any], float]:
        """Raw vllm RequestOutputs (they carry the per-request timestamps) and the wall time.
        `figure`: the record block these outputs are timed for; the output guard keeps them (greedy)."""
        sp = self.engine.sampling_params(Sampling(max_tokens=max_tokens, ignore_eos=ignore_eos))
        t0 = time.perf_counter()
        outs = self.llm.generate([{"prompt_token_ids": p} for p in prompts], sp, use_tqdm=False)
        wall = time.perf_counter() - t0
        keep(self.guard, figure, outs, ignore_eos=ignore_eos)
        return outs, wall


def keep(guard: OutputGuard | None, figure: str | None, outs: list[Any], ignore_eos: bool = True) -> None:
    """Hand greedy outputs of a timed measurement to the output guard (nothing without a guard)."""
    if guard is not None and figure is not None:
        guard.keep(figure, outs, sampled=False, ignore_eos=ignore_eos)


def keep_served(run: SectionRun, guard: OutputGuard | None, figure: str, results: list[Any], prompts: list[Any],
                ignore_eos: bool = True) -> None:
    """`keep` for streamed requests (loadgen rows): ids the server returned, else re-tokenized."""
    if guard is None:
        return
    from ... import loadgen

    guard.keep(figure, loadgen.guard_outputs(results, prompts, guard_tokenizer(run)), sampled=False,
               ignore_eos=ignore_eos)


def guard_tokenizer(run: SectionRun) -> Any:
    """The served model's tokenizer (re-tokenizes streamed text for the guard); None if unavailable."""
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(run.model().path, trust_remote_code=run.cfg.model.trust_remote_code)
    except Exception:  # noqa: BLE001 - without it the outputs are counted, not compared
        return None


def start_main(run: SectionRun, guard: OutputGuard | None = None) -> Main:
    """Start the main engine with prefix caching on (the A/Bs below toggle what they compare).
    `guard`: the section's output guard, lent to every measurement on this engine."""
    _need_vllm(run)
    over: dict[str, Any] = {"enable_prefix_caching": True}
    if run.conf.chunk_tokens:
        over["max_num_batched_tokens"] = run.conf.chunk_tokens
    eng = run.engine("features-main", **over)
    info = eng.info()  # includes the scheduler's resolved limits (vllm_compat.scheduler_facts)
    run.add("main_engine", info)
    return Main(eng, info, TokenPrompts(eng.tokenizer(), run.conf.seed), guard)


def close(main: Main | None) -> None:
    if main is not None:
        main.engine.close()


def _need(main: Main | None) -> Main:
    if main is None:
        raise SectionSkipped("the main engine did not start (see step 'main_engine')",
                             zh="主引擎未能启动（见步骤 'main_engine'）")
    return main


def scrape_metrics(base_url: str) -> dict[str, Any]:
    """Counters of a served vLLM from its Prometheus /metrics (same names as get_metrics())."""
    import httpx

    return metrics_counters(httpx.get(base_url.rstrip("/") + "/metrics", timeout=10).text)


def metrics_counters(text: str) -> dict[str, Any]:
    """The `_total` counters of a Prometheus /metrics page as {name{labels}: value}; the model and
    engine labels dropped, spec-decode acceptance per position as a list."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, Any] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if not s.name.endswith("_total"):
                continue
            name = s.name[: -len("_total")]
            labels = {k: v for k, v in s.labels.items() if k not in ("model_name", "engine")}
            if name == "vllm:spec_decode_num_accepted_tokens_per_pos" and "position" in labels:
                vec = out.setdefault(name, [])
                pos = int(labels["position"])
                vec.extend([0.0] * (pos + 1 - len(vec)))
                vec[pos] += s.value
                continue
            key = name + ("" if not labels else "{" + ",".join(f"{k}={v}" for k, v in sorted(labels.items())) + "}")
            out[key] = out.get(key, 0.0) + s.value
    return out


def _ms(seconds: float | None) -> float | None:
    return seconds * 1000 if seconds is not None else None


def _mean(df: pd.DataFrame, col: str) -> float | None:
    """Mean of the measured values of a column; None when none was measured (never 0)."""
    if col not in df or df[col].dropna().empty:
        return None
    return float(df[col].dropna().astype(float).mean())


@dataclass
class Plot:
    path: str

    def table(self) -> Any:
        from IPython.display import Image

        return Image(filename=self.path)


def steps_table(run: SectionRun) -> pd.DataFrame:
    """Each feature's status (ok / failed / skipped) and why: the section's verdict at a glance."""
    return pd.DataFrame([{"feature": k, "status": v["status"], "reason": v["reason"], "wall_s": round(v["wall_s"], 1)}
                         for k, v in run.steps.items()])


def iter_tables(*tables: Table | None) -> Iterator[Table]:
    return (t for t in tables if t is not None)

