"""lm-evaluation-harness as a quality backend (notebook 04_quality, steps `lm_eval_start`, `lm_eval`).

lm-eval runs in this process: its tasks, prompt templates, few-shot sampling, filters, metrics and
aggregation, on data from local files (`ascendeval.lm_eval_tasks`). The model it talks to is the
target: lm-eval's own `local-completions` / `local-chat-completions` against the served target,
or the section's open offline engine (`ascendeval.lm_eval_engine.EngineLM`). Every score becomes a
record row with its stderr, lm-eval and task versions, n-shot and sample count, and every logged
sample goes to `records/quality.lm_eval_samples.jsonl`, from which `verify` recomputes the scores.

With `accuracy_config` (a vLLM-Ascend accuracy config), its tasks run with its settings and each
metric is compared as vLLM-Ascend's CI does (`vllm_ascend_kit.compare`).
"""

from __future__ import annotations

import json
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import metadata as md
from pathlib import Path
from typing import Any

from ... import vllm_ascend_kit as kit
from ...errors import SectionSkipped

SETTINGS = ("tasks", "num_fewshot", "limit", "apply_chat_template", "fewshot_as_multiturn", "batch_size")
AUTO_BATCH = 64  # requests per offline engine call for batch_size "auto"


@dataclass
class LmEvalResult:
    record: dict[str, Any]
    samples: list[dict[str, Any]] = field(default_factory=list)
    comparison: list[dict[str, Any]] | None = None


def settings(conf: Any) -> tuple[dict[str, Any], kit.AccuracyConfig | None, list[str]]:
    """The evaluation settings: the accuracy config's where one is given, the params' where they
    were set explicitly (those are listed as overrides), else the params' defaults."""
    own = {k: getattr(conf, k) for k in SETTINGS}
    if not conf.accuracy_config:
        return own, None, []
    acc = kit.read_accuracy_config(conf.accuracy_config)
    theirs = {"tasks": [t.name for t in acc.tasks], "num_fewshot": acc.num_fewshot, "limit": acc.limit,
              "apply_chat_template": acc.apply_chat_template, "fewshot_as_multiturn": acc.fewshot_as_multiturn,
              "batch_size": acc.batch_size}
    overridden = [k for k in SETTINGS if k in conf.model_fields_set and k != "tasks"]
    return {**theirs, **{k: own[k] for k in overridden}}, acc, overridden


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def _model(run: Any, target: Any, conf: Any, batch: int) -> tuple[Any, dict[str, Any], Any]:
    """(model for simple_evaluate, model_args or {}, context to close) for the configured backend."""
    import contextlib

    backend = conf.backend
    if backend == "auto":
        backend = "server" if target.name == "openai" else "engine"
    if backend == "engine":
        if target.name == "openai":
            raise ValueError("lm_eval.backend engine: the target is asked through a server (a served target, or a "
                             "vllm target through the run's shared server); use backend server, or "
                             "sections.quality.target_via: offline for an offline engine")
        from ...lm_eval_engine import EngineLM

        lm = EngineLM(target.engine, name=target.name, max_length=run.cfg.model.max_model_len,
                      max_gen_toks=conf.max_gen_toks, batch_size=batch)
        return lm, {"model": f"ascendeval-engine ({target.name} offline)"}, contextlib.nullcontext()
    stack = contextlib.ExitStack()
    url = target.engine.base_url if target.name == "openai" else stack.enter_context(run.served("lm_eval"))
    try:
        path = run.model().path
    except Exception as exc:  # noqa: BLE001 - a model only the server holds: no tokenizer files here
        path = None
        if conf.api == "completions":
            stack.close()
            raise ValueError("lm-eval's local-completions needs the model's tokenizer files here "
                             f"({type(exc).__name__}: {exc}); api: chat needs none") from None
    name = getattr(target.engine, "model", None) or run.cfg.server.served_model_name or run.cfg.model.short_name
    chat = conf.api == "chat"
    args = {"model": name, "base_url": f"{url}/v1/{'chat/completions' if chat else 'completions'}",
            "num_concurrent": getattr(target.engine, "concurrency", 1), "max_retries": 3, "max_length": run.cfg.model.max_model_len,
            "max_gen_toks": conf.max_gen_toks, "timeout": 600}
    if not chat:
        # token ids, left-truncated to max_length - max_gen_toks by lm-eval (text is sent unchecked)
        args.update(tokenizer=str(path), tokenizer_backend="huggingface", tokenized_requests=True)
    return ("local-chat-completions" if chat else "local-completions"), args, stack


def cli_command(run: Any, s: dict[str, Any], model: Any, model_args: dict[str, Any], tasks_dir: Path) -> str:
    """The same evaluation with lm-eval's own command line, offline, on the task files this run
    wrote (`--include_path` overrides the hub-backed tasks by name, as here). A served target keeps
    its model and arguments; an offline engine becomes lm-eval's own `vllm` model with the params'
    engine settings (what vLLM-Ascend's CI runs; a separate engine)."""
    import shlex

    if isinstance(model, str):
        name, args = model, dict(model_args)
    else:
        cfg = run.cfg
        name = "vllm"
        args = {"pretrained": str(run.model().path), "dtype": cfg.model.dtype, "max_model_len": cfg.model.max_model_len,
                "tensor_parallel_size": cfg.target.count, "trust_remote_code": cfg.model.trust_remote_code}
        if cfg.target.enforce_eager:
            args["enforce_eager"] = True
    parts = ["HF_DATASETS_OFFLINE=1", "lm-eval", "run", "--model", name,
             "--model_args", ",".join(f"{k}={v}" for k, v in args.items()), "--tasks", ",".join(s["tasks"]),
             "--include_path", str(tasks_dir)]
    for flag in ("num_fewshot", "limit"):
        if s[flag] is not None:
            v = s[flag]
            parts += [f"--{flag}", str(int(v) if float(v).is_integer() else v)]
    parts += [f"--{f}" for f in ("apply_chat_template", "fewshot_as_multiturn") if s[f]]
    parts += ["--batch_size", str(s["batch_size"]), "--log_samples", "--output_path", "lm_eval_out"]
    return " ".join(p if p.startswith("HF_") else shlex.quote(p) for p in parts)


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None  # lm-eval writes "N/A" for a stderr it cannot compute (one sample)
    return f if math.isfinite(f) else None


def result_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per task (and group) and `<metric>,<filter>` key of lm-eval's results."""
    rows = []
    groups = set(results.get("groups", {}))
    for task, res in results.get("results", {}).items():
        for key, value in res.items():
            if "," not in key or "_stderr," in key:
                continue
            metric, _, filt = key.partition(",")
            n = results.get("n-samples", {}).get(task, {}).get("effective")
            rows.append({"task": task, "key": key, "metric": metric, "filter": filt, "value": _num(value),
                         "stderr": _num(res.get(f"{metric}_stderr,{filt}")), "num_scored": n,
                         "is_group": task in groups,
                         "higher_is_better": results.get("higher_is_better", {}).get(task, {}).get(metric)})
    return rows


def sample_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Every logged sample, one row per (task, doc, filter), with the per-sample metric values."""
    rows = []
    for task, samples in (results.get("samples") or {}).items():
        for s in samples:
            args = s.get("arguments") or []
            prompt = args[0][0] if args and isinstance(args[0], (list, tuple)) else None
            rows.append({"task": task, "doc_id": s.get("doc_id"), "filter": s.get("filter"),
                         "prompt": prompt if isinstance(prompt, str) else json.dumps(prompt, default=str),
                         "gold": str(s.get("target")), "response": json.dumps(s.get("filtered_resps"), default=str),
                         "metric_values": {m: _num(s.get(m)) for m in s.get("metrics", [])},
                         "doc_hash": s.get("doc_hash"), "prompt_hash": s.get("prompt_hash")})
    return rows


@dataclass
class LmEvalStarted:
    """An evaluation started by `start_lm_eval`: running in a thread against a served target (the
    server batches its requests with the benchmarks' meanwhile), or ready to run in
    `finish_lm_eval` on an offline engine; `error` is why it could not start (raised by finish)."""

    error: BaseException | None = None
    future: Any = None
    call: Any = None  # simple_evaluate with its arguments, for an offline engine (run in finish)
    closing: Any = None
    settings: dict[str, Any] = field(default_factory=dict)
    accuracy: kit.AccuracyConfig | None = None
    overridden: list[str] = field(default_factory=list)
    local: list[Any] = field(default_factory=list)
    model: Any = None
    model_args: dict[str, Any] = field(default_factory=dict)
    out_dir: Path | None = None
    prepare_s: float = 0.0
    t1: float = 0.0  # when the evaluation started
    t2: float = 0.0  # when it ended


def start_lm_eval(run: Any, target: Any) -> LmEvalStarted:
    """Prepare lm-eval's tasks and start the evaluation. Against a served target it runs in a
    thread while the notebook's next steps send their own requests (the server batches both, as it
    does any concurrent clients); an offline engine is not shared between threads, so there it
    runs in `finish_lm_eval`. Never raises: a reason not to run is raised by `finish_lm_eval`,
    the step that records the evaluation."""
    try:
        return _start(run, target)
    except BaseException as exc:  # noqa: BLE001 - reported by the lm_eval step itself
        return LmEvalStarted(error=exc)


def _start(run: Any, target: Any) -> LmEvalStarted:
    conf = run.conf.lm_eval
    if not conf.enabled:
        raise SectionSkipped("lm-eval disabled in params (sections.quality.lm_eval.enabled: false)",
                             zh="参数文件中已关闭 lm-eval（sections.quality.lm_eval.enabled: false）")
    if target is None:
        raise SectionSkipped("needs the target engine (step 'target' did not open one)",
                             zh="需要被测目标的引擎（步骤 'target' 未打开引擎）")
    # tasks read local files only: no dataset hub, no metric download (set before datasets imports)
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from lm_eval import evaluator
    except ImportError as exc:
        raise SectionSkipped(f"lm-eval is not installed ({exc}): pip install -e '.[lm-eval]'",
                             zh=f"未安装 lm-eval（{exc}）：pip install -e '.[lm-eval]'") from None
    from ... import lm_eval_tasks

    s, acc, overridden = settings(conf)
    served = conf.backend == "server" or (conf.backend == "auto" and target.name == "openai")
    # auto: one engine call per 64 requests offline; one prompt per HTTP request to a server, as
    # lm-eval's API models default to (not every OpenAI-compatible server takes a list of prompts)
    batch = (1 if served else AUTO_BATCH) if s["batch_size"] == "auto" else int(s["batch_size"])
    out_dir = run.run_dir / "artifacts" / "lm_eval"
    t0 = time.perf_counter()
    tm, local = lm_eval_tasks.prepare(s["tasks"], out_dir, num_fewshot=s["num_fewshot"],
                                      fewshot_pool=conf.fewshot_pool, data_paths=dict(conf.data_paths))
    prepare_s = time.perf_counter() - t0
    scored = [t.task for t in local if t.output_type != "generate_until"]
    if conf.api == "chat" and served and scored:
        raise ValueError(f"lm_eval.api chat (local-chat-completions) returns no log-likelihoods, which "
                         f"{', '.join(scored[:3])}{' ...' if len(scored) > 3 else ''} need: use api completions")
    model, model_args, closing = _model(run, target, conf, batch)
    limit = s["limit"]
    if limit is not None and float(limit).is_integer():
        limit = int(limit)  # lm-eval reads a float as a fraction of the task
    kwargs = dict(model=model, model_args=model_args if isinstance(model, str) else None, tasks=s["tasks"],
                  num_fewshot=s["num_fewshot"], limit=limit, batch_size=batch,
                  apply_chat_template=s["apply_chat_template"], fewshot_as_multiturn=s["fewshot_as_multiturn"],
                  log_samples=True, task_manager=tm, fewshot_random_seed=conf.fewshot_seed)
    started = LmEvalStarted(closing=closing, settings=s, accuracy=acc, overridden=overridden, local=local,
                            model=model, model_args=model_args, out_dir=out_dir, prepare_s=prepare_s,
                            t1=time.perf_counter())

    def evaluate() -> dict[str, Any]:
        out = evaluator.simple_evaluate(**kwargs)
        started.t2 = time.perf_counter()  # its own end, not when the notebook came back for it
        return out

    if isinstance(model, str):
        # lm-eval's API models send concurrent requests with asyncio.run(), which refuses to start
        # inside a notebook kernel's running event loop: a thread of its own has none
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lm-eval")
        started.future = pool.submit(evaluate)
        pool.shutdown(wait=False)
    else:
        started.call = evaluate
    return started


def run_lm_eval(run: Any, target: Any) -> LmEvalResult:
    """Run lm-eval's tasks on the target from local data; record scores, samples and comparison
    (start_lm_eval, then finish_lm_eval)."""
    return finish_lm_eval(run, start_lm_eval(run, target))


def finish_lm_eval(run: Any, started: LmEvalStarted | None) -> LmEvalResult:
    """Wait for (or run) the evaluation `start_lm_eval` began; record scores, samples and the
    accuracy-config comparison."""
    if started is None:
        raise SectionSkipped("lm-eval was not started (step 'lm_eval_start')", zh="lm-eval 未启动（步骤 'lm_eval_start'）")
    if started.error is not None:
        raise started.error
    conf = run.conf.lm_eval
    s, acc, overridden, local = started.settings, started.accuracy, started.overridden, started.local
    model, model_args, out_dir, prepare_s, t1 = (started.model, started.model_args, started.out_dir,
                                                 started.prepare_s, started.t1)
    with started.closing:
        res = started.future.result() if started.future is not None else started.call()
    eval_s = started.t2 - t1
    if not res:
        raise RuntimeError("lm-eval returned no results")
    samples = sample_rows(res)
    kept = {k: v for k, v in res.items() if k != "samples"}
    results_file = run.artifact_path("lm_eval/results.json")
    results_file.write_text(json.dumps(kept, indent=1, ensure_ascii=False, default=str), encoding="utf-8")
    by_task = {t.task: t for t in local}
    tasks = []
    for name, version in res.get("versions", {}).items():
        info = {"task": name, "version": str(version),
                "num_fewshot": res.get("n-shot", {}).get(name), "is_group": name in res.get("groups", {}),
                "num_scored": res.get("n-samples", {}).get(name, {}).get("effective"),
                "num_docs": res.get("n-samples", {}).get(name, {}).get("original")}
        if name in by_task:
            info.update(by_task[name].describe())
            for f in info["data_files"]:  # recorded relative to the run directory, like every artifact
                f["path"] = str(run.artifact(f["path"]).resolve().relative_to(run.run_dir.resolve()))
            run.artifact(by_task[name].yaml_path)
        tasks.append(info)
    rows = result_rows(res)
    record = {
        "harness": {"lm_eval_version": _version("lm-eval") or _version("lm_eval"),
                    "model": model if isinstance(model, str) else model_args["model"],
                    # as lm-eval's --model_args takes them
                    "model_args": ",".join(f"{k}={v}" for k, v in model_args.items()) if isinstance(model, str) else "",
                    "settings": dict(s), "overridden_settings": overridden,
                    "accuracy_config": conf.accuracy_config, "fewshot_seed": conf.fewshot_seed,
                    "engine_calls": getattr(model, "forwards", None), "prepare_s": round(prepare_s, 3),
                    "eval_s": round(eval_s, 3), "results_file": str(results_file.relative_to(run.run_dir)),
                    "datasets_version": _version("datasets"),
                    "cli_command": cli_command(run, s, model, model_args, out_dir / "tasks")},
        "tasks": tasks, "results": rows,
    }
    run.add("lm_eval", record)
    run.save_rows("lm_eval_samples", samples)
    comparison = None
    if acc is not None:
        measured = {(r["task"], r["key"]): r["value"] for r in rows if r["value"] is not None}
        comparison = kit.compare(acc, measured, conf.rtol)
        run.add("lm_eval_comparison", {"config": str(conf.accuracy_config), "model_name": acc.model_name,
                                       "rtol": conf.rtol, "overridden_settings": overridden, "rows": comparison})
    return LmEvalResult(record, samples, comparison)


def table(result: LmEvalResult | None) -> Any:
    """Task, metric, filter, value ± stderr, samples, n-shot and data source."""
    import pandas as pd

    if result is None:
        return None
    tasks = {t["task"]: t for t in result.record["tasks"]}
    return pd.DataFrame([{"task": r["task"], "metric": r["key"], "value": r["value"], "stderr": r["stderr"],
                          "num_scored": r["num_scored"], "num_fewshot": tasks.get(r["task"], {}).get("num_fewshot"),
                          "data_source": tasks.get(r["task"], {}).get("data_source", "group")}
                         for r in result.record["results"]])


def comparison_table(result: LmEvalResult | None) -> Any:
    import pandas as pd

    if result is None or result.comparison is None:
        return None
    return pd.DataFrame(result.comparison)

