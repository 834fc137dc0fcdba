"""The files a vLLM-Ascend model-support pull request adds, written from one run's records.

Under `<run>/upstream/vllm-ascend/`, at the paths they have in a vLLM-Ascend checkout:

  tests/e2e/models/configs/<Model>.yaml   the accuracy config, values measured by lm-eval here
  tests/e2e/models/configs/accuracy.txt   the line to append to the upstream list
  benchmarks/accuracy/<Model>.md          the accuracy report in the layout of upstream's
                                          tests/e2e/models/report_template.md
  docs/source/tutorials/models/<Model>.md the tutorial page draft (introduction, supported features,
                                          environment, deployment, functional verification,
                                          accuracy, troubleshooting)
  README.md                               what to copy where, and where the values were measured

Every value comes from the run's records; what the run did not measure is written as not tested
(🟡), and a run that was not on an Ascend NPU says so at the top of every file.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import yaml

from .cells import get, human_params
from .deploy import is_hub_id
from .rundata import RunData, recorded_model_facts

KIT_DIR = "upstream/vllm-ascend"
# npu-smi chip names -> the hardware names vLLM-Ascend's configs and docs use
_HARDWARE = (("Ascend910B", "Atlas A2 Series"), ("Ascend910_93", "Atlas A3 Series"), ("Ascend910C", "Atlas A3 Series"),
             ("Ascend310P", "Atlas 300I DUO"), ("Ascend950", "Ascend 950 Series"))


def model_file_name(data: RunData) -> str:
    """`<Model>`: the last part of a hub id, as upstream names its configs and pages (Qwen/Qwen3-8B ->
    Qwen3-8B); for a built-in model or a local folder, the params' model name."""
    params = data.params() or {}
    mid = str(get(params, "model.id") or "")
    if is_hub_id(mid):
        return mid.rstrip("/").rsplit("/", 1)[-1]
    name = get(params, "model.name") or mid.split(":", 1)[-1].rstrip("/").rsplit("/", 1)[-1]
    return str(name or "model")


def _hardware(data: RunData) -> tuple[str, bool]:
    """(hardware as upstream writes it, whether it is an Ascend NPU)."""
    dev = get(data.rec("environment"), "metrics.target_device") or {}
    # without the environment section: the params' device, unnamed
    name, kind = str(dev.get("name") or ""), dev.get("kind") or get(data.params() or {}, "target.device")
    for prefix, series in _HARDWARE:
        if name.startswith(prefix):
            return series, True
    label = {"cpu": "CPU", "cuda": "NVIDIA GPU", "npu": "Ascend NPU"}.get(kind or "", str(kind or "unknown device"))
    return (f"{label}: {name}" if name else label), kind == "npu"


def _lm_eval(data: RunData) -> dict[str, Any] | None:
    lm = get(data.rec("quality"), "metrics.lm_eval")
    return lm if isinstance(lm, dict) and lm.get("results") else None


def _serve(params: dict[str, Any]) -> dict[str, Any]:
    t, m = params.get("target") or {}, params.get("model") or {}
    serve: dict[str, Any] = {"tensor_parallel_size": int(t.get("count") or 1), "dtype": m.get("dtype") or "auto",
                             "max_model_len": m.get("max_model_len") or 4096}
    if t.get("gpu_memory_utilization") is not None:
        serve["gpu_memory_utilization"] = t["gpu_memory_utilization"]
    if t.get("enforce_eager"):
        serve["enforce_eager"] = True
    serve["trust_remote_code"] = bool(m.get("trust_remote_code", False))
    return serve


def accuracy_config(data: RunData) -> dict[str, Any] | None:
    """The accuracy config of the evaluated model: the run's lm-eval settings and, per requested
    task, every `<metric>,<filter>` value it measured (rounded to 4 places as upstream compares)."""
    lm = _lm_eval(data)
    if lm is None:
        return None
    params = data.params() or {}
    st = get(lm, "harness.settings") or {}
    hardware, _ = _hardware(data)
    mid = str(get(params, "model.id") or "")
    tasks = []
    for name in st.get("tasks") or []:
        metrics = [{"name": r["key"], "value": round(float(r["value"]), 4)}
                   for r in lm["results"] if r.get("task") == name and r.get("value") is not None]
        if metrics:
            tasks.append({"name": name, "metrics": metrics})
    cfg: dict[str, Any] = {"model_name": mid if is_hub_id(mid) else model_file_name(data),
                           "model_type": "vllm", "hardware": hardware, "serve": _serve(params), "tasks": tasks}
    if st.get("num_fewshot") is not None:
        cfg["num_fewshot"] = st["num_fewshot"]
    if st.get("limit") is not None:
        cfg["limit"] = int(st["limit"]) if float(st["limit"]).is_integer() else st["limit"]
    cfg.update(apply_chat_template=bool(st.get("apply_chat_template")),
               fewshot_as_multiturn=bool(st.get("fewshot_as_multiturn")), batch_size=st.get("batch_size", "auto"))
    return cfg


def _model_args(cfg: dict[str, Any]) -> str:
    """`pretrained=...,tensor_parallel_size=...`, as upstream's build_model_args joins them."""
    serve = cfg["serve"]
    args = {"pretrained": cfg["model_name"], "tensor_parallel_size": serve["tensor_parallel_size"],
            "dtype": serve["dtype"], "trust_remote_code": serve["trust_remote_code"],
            "max_model_len": serve["max_model_len"]}
    for k in ("gpu_memory_utilization", "enforce_eager"):
        if k in serve:
            args[k] = serve[k]
    return "'" + ",".join(f"{k}={v}" for k, v in args.items()) + "'"


def _marks(data: RunData) -> dict[tuple[str, str], bool | None]:
    rows = get(data.rec("quality"), "metrics.lm_eval_comparison.rows") or []
    return {(r.get("task"), r.get("metric")): r.get("passed") for r in rows}


def accuracy_report(data: RunData, cfg: dict[str, Any]) -> str:
    """The accuracy report in the layout of vLLM-Ascend's report_template.md. A ✅/❌ mark is the
    verdict of that metric against the accuracy config the run compared with (none without one)."""
    env = data.any_record().get("env") or {}
    lm = _lm_eval(data) or {}
    stderr = {(r["task"], r["key"]): r.get("stderr") for r in lm.get("results", [])}
    marks = _marks(data)
    serve = cfg["serve"]

    def v(x: Any) -> str:
        return "unknown" if x in (None, "") else str(x)

    lines = [f"# {cfg['model_name']}", "",
             f"- **vLLM Version**: vLLM: {v(env.get('vllm'))}, **vLLM Ascend Version**: {v(env.get('vllm_ascend'))}  ",
             f"- **Software Environment**: **CANN**: {v(env.get('cann'))}, **PyTorch**: {v(env.get('torch'))}, "
             f"**TorchNPU**: {v(env.get('torch_npu'))}  ",
             f"- **Hardware Environment**: {cfg['hardware']}",
             f"- **Parallel mode**: TP{serve['tensor_parallel_size']}",
             f"- **Execution mode**: {'Eager' if serve.get('enforce_eager') else 'ACLGraph'}", "",
             "**Command**:  ", "", "```bash", f"export MODEL_ARGS={_model_args(cfg)}",
             f"lm_eval --model {cfg['model_type']} --model_args $MODEL_ARGS \\",
             f"  --tasks {','.join(t['name'] for t in cfg['tasks'])} \\"]
    if cfg.get("apply_chat_template"):
        lines.append("  --apply_chat_template \\")
    if cfg.get("fewshot_as_multiturn"):
        lines.append("  --fewshot_as_multiturn \\")
    if cfg.get("num_fewshot") is not None:
        lines.append(f"  --num_fewshot {cfg['num_fewshot']} \\")
    if cfg.get("limit") is not None:
        lines.append(f"  --limit {cfg['limit']} \\")
    lines += [f"  --batch_size {cfg.get('batch_size', 'auto')}", "```", "",
              "| Task                  | Metric      | Value     | Stderr |",
              "|-----------------------|-------------|----------:|-------:|"]
    for t in cfg["tasks"]:
        for m in t["metrics"]:
            mark = {True: "✅", False: "❌"}.get(marks.get((t["name"], m["name"])), "")
            se = stderr.get((t["name"], m["name"]))
            lines.append(f"| {t['name']} | {m['name']} | {mark}{m['value']} | "
                         f"± {'%.4f' % se if se is not None else 'N/A'} |")
    h = lm.get("harness") or {}
    lines += ["", f"Measured by ascendeval in run `{data.run_id}` with lm-eval {h.get('lm_eval_version')} through "
              f"{h.get('model')}, data from local files (the run's `records/quality.json`, `lm_eval.tasks`); "
              "the command above is the one vLLM-Ascend's CI runs.", ""]
    return "\n".join(lines)


def _mark(ok: bool | None, ascend: bool) -> str:
    if ok is None:
        return "🟡"
    if not ascend:
        return "🟡"  # measured, but not on an Ascend NPU: not evidence for vLLM-Ascend
    return "✅" if ok else "❌"


def supported_features(data: RunData) -> list[tuple[str, str, str]]:
    """(feature, mark, what the run measured) for the tutorial's Supported Features table."""
    _, ascend = _hardware(data)
    dev = get(data.rec("environment"), "metrics.target_device.kind") or get(data.params() or {}, "target.device")
    facts, _ = recorded_model_facts(data)
    facts = facts or {}
    params = data.params() or {}
    rows: list[tuple[str, str, str]] = []
    arch = str(facts.get("architecture") or "unknown")
    moe = any(facts.get(k) for k in ("num_experts", "num_local_experts", "n_routed_experts")) or "moe" in arch.lower()
    rows.append(("Model architecture", "MoE" if moe else "Dense", f"{arch}, {human_params(facts.get('param_count'))} parameters"))

    def step(section: str, name: str) -> str | None:
        return get(data.rec(section), f"metrics.steps.{name}.status")

    def arm(name: str) -> dict[str, Any]:
        arms = get(data.rec("precision"), "metrics.deployment.arms") or []
        return next((a for a in arms if a.get("arm") == name), {})

    dtype = str(get(params, "model.dtype") or "auto")
    smoke = (data.rec("smoke") or {}).get("status")
    if dtype != "bfloat16":
        rows.append(("BF16", "🟡", f"not tested: the run used {dtype}"))
    else:
        rows.append(("BF16", _mark({"ok": True, "failed": False}.get(smoke or ""), ascend),
                     f"smoke section {smoke} on {dev} in bfloat16" if smoke else "not tested: no smoke section"))
    # graph mode ran in the performance section (graph vs eager) and/or the deployment matrix's arm
    graph = [s for s in (step("performance", "graph_vs_eager"), arm("graph").get("status")) if s in ("ok", "failed")]
    graph_ok = True if "ok" in graph else (False if graph else None)
    rows.append(("ACLGraph (graph mode)", _mark(graph_ok, ascend),
                 f"graph mode {'ran' if graph_ok else 'failed'} on {dev} (performance graph vs eager, deployment arm)"
                 if graph_ok is not None else "not tested"))
    pc = step("features", "prefix_caching")
    rows.append(("Prefix caching", _mark({"ok": True, "failed": False}.get(pc or ""), ascend),
                 f"features/prefix_caching {pc} on {dev}" if pc else "not tested"))
    cp = arm("chunked_prefill").get("status")
    rows.append(("Chunked prefill", _mark({"ok": True, "failed": False}.get(cp or ""), ascend),
                 f"precision deployment arm chunked_prefill {cp} on {dev}" if cp else "not tested"))
    spec = get(data.rec("features"), "metrics.speculative") or {}
    methods = {k: v.get("status") for k, v in spec.items() if isinstance(v, dict) and "status" in v}
    spec_ok = True if any(s == "ok" for s in methods.values()) else (False if methods else None)
    rows.append(("Speculative decoding", _mark(spec_ok, ascend),
                 ", ".join(f"{k} {s}" for k, s in methods.items()) + f" on {dev}" if methods else "not tested"))
    trc = bool(get(params, "model.trust_remote_code"))
    rows.append(("Trust remote code", "required" if trc else "not required", "model.trust_remote_code in the params"))
    return rows


def _failures(data: RunData) -> list[str]:
    out = []
    for section in sorted(data.records):
        for name, info in (get(data.rec(section), "metrics.steps") or {}).items():
            if isinstance(info, dict) and info.get("status") == "failed":
                out.append(f"- **{section} / {name}** failed: {info.get('reason')}")
    return out


def tutorial(data: RunData, cfg: dict[str, Any] | None) -> str:
    from .deploy import deploy_commands, download_command

    name = model_file_name(data)
    hardware, ascend = _hardware(data)
    facts, _ = recorded_model_facts(data)
    facts = facts or {}
    cmds = deploy_commands(data)
    served = (data.rows("smoke", "served") or [{}])[0]
    env = data.any_record().get("env") or {}
    out = [f"# {name}", ""]
    if not ascend:
        out += [f"> Draft written by ascendeval from run `{data.run_id}` on {hardware}, not on an Ascend NPU: rerun on "
                "an Ascend host before proposing it upstream.", ""]
    out += ["## Introduction", "",
            f"`{name}` ({facts.get('architecture', 'unknown architecture')}, {human_params(facts.get('param_count'))} "
            f"parameters, {facts.get('num_layers') or '?'} layers) served with vLLM"
            + (" and vLLM-Ascend" if ascend else "") + ". This page lists what was verified, how to deploy it and "
            "its accuracy, all from one ascendeval run.", "",
            "## Supported Features", "",
            "| Feature | Support | Description |", "|---|---|---|"]
    out += [f"| {f} | {mark} | {desc} |" for f, mark, desc in supported_features(data)]
    out += ["", "✅ verified on Ascend in this run, ❌ failed there, 🟡 not tested on Ascend in this run.", "",
            "## Environment Preparation", "", "### Model Weight", ""]
    dl = download_command(data)
    out += ([f"```bash\n{dl}\n```", ""] if dl else ["The weights are a local folder (see the params).", ""])
    out += ["### Installation", "",
            f"Verified with vLLM {env.get('vllm') or 'unknown'}, vLLM-Ascend {env.get('vllm_ascend') or 'not installed'}, "
            f"CANN {env.get('cann') or 'not installed'}, PyTorch {env.get('torch') or 'unknown'}, torch_npu "
            f"{env.get('torch_npu') or 'not installed'}.", "",
            "## Deployment", ""]
    out += ([f"```bash\n{cmds['serve']}\n```", ""] if cmds.get("serve") else ["No deployment command (params not readable).", ""])
    out += ["## Functional Verification", ""]
    if cmds.get("curl"):
        out += [f"```bash\n{cmds['curl']}\n```", ""]
    if served.get("prompt") is not None:
        out += [f"In the run, the served model answered {json.dumps(served.get('prompt'), ensure_ascii=False)} with "
                f"{json.dumps(served.get('output'), ensure_ascii=False)} ({served.get('output_tokens')} tokens, "
                f"finish reason {served.get('finish_reason')}).", ""]
    out += ["## Accuracy Evaluation", ""]
    if cfg:
        out += [f"- `{k}`: `{cfg[k]}`" for k in ("num_fewshot", "limit", "apply_chat_template", "fewshot_as_multiturn")
                if k in cfg]
        out += ["", "| Dataset | Metric | Result |", "|---|---|---|"]
        out += [f"| {t['name']} | {m['name']} | {m['value']} |" for t in cfg["tasks"] for m in t["metrics"]]
        out += ["", f"The accuracy config: `tests/e2e/models/configs/{name}.yaml`.", ""]
    else:
        out += ["lm-eval did not run in this run: no accuracy values.", ""]
    fails = _failures(data)
    out += ["## Troubleshooting", ""] + (fails or ["No step failed in this run."]) + [""]
    return "\n".join(out)


def write(data: RunData, out_root: Path | None = None) -> dict[str, Any]:
    """Write the kit under `<run>/upstream/vllm-ascend/`; returns the files written and why any
    was not."""
    root = out_root or (data.run_dir / KIT_DIR)
    name = model_file_name(data)
    hardware, ascend = _hardware(data)
    cfg = accuracy_config(data)
    files: dict[str, Path] = {}
    head = "" if ascend else f"# Measured on {hardware} by ascendeval run {data.run_id}, not on an Ascend NPU.\n"

    def put(rel: str, text: str) -> None:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")
        files[rel] = p

    if cfg is not None:
        put(f"tests/e2e/models/configs/{name}.yaml",
            head + yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True, default_flow_style=False))
        put("tests/e2e/models/configs/accuracy.txt", f"{name}.yaml\n")
        put(f"benchmarks/accuracy/{name}.md", accuracy_report(data, cfg))
    put(f"docs/source/tutorials/models/{name}.md", tutorial(data, cfg))
    readme = [f"# vLLM-Ascend model-support kit: {name}", "",
              f"Written by ascendeval from run `{data.run_id}` ({hardware}).", ""]
    if not ascend:
        readme += ["**Not measured on an Ascend NPU**: the values are this host's; rerun the workbook on an Ascend "
                   "host before proposing them.", ""]
    readme += ["Copy into a vLLM-Ascend checkout:", "", "```bash",
               f"cp -r {shlex.quote(str(root))}/tests {shlex.quote(str(root))}/docs <vllm-ascend>/",
               f"# append the line of tests/e2e/models/configs/accuracy.txt ({name}.yaml) to the upstream list",
               f"pytest -sv tests/e2e/models/test_lm_eval_correctness.py --config tests/e2e/models/configs/{name}.yaml",
               "```", ""]
    if cfg is None:
        readme += ["No accuracy config: lm-eval did not run (see the quality section).", ""]
    put("README.md", "\n".join(readme))
    return {"root": str(root.relative_to(data.run_dir)) if root.is_relative_to(data.run_dir) else str(root),
            "files": sorted(files), "config_written": cfg is not None, "ascend": ascend}
