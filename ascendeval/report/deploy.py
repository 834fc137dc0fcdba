"""Quick-deploy commands (`vllm serve` / SGLang, Python, curl) rebuilt from the run's params: the
engine settings that were measured, not a generic example."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from .cells import get
from .rundata import RunData, recorded_model_facts


def deploy_commands(data: RunData) -> dict[str, str]:
    """`vllm serve`, Python and curl commands from the run's params (the engine settings measured)."""
    from .. import config as config_mod
    from ..engines.vllm_engine import engine_kwargs
    from ..server import vllm_cli_flags

    try:
        cfg = config_mod.parse(data.params(), str(data.run_dir / "params.yaml"))
    except config_mod.ConfigError:
        return {}
    facts, _ = recorded_model_facts(data)
    mid = cfg.model.id
    if mid.startswith("builtin:"):
        model = (facts or {}).get("path") or get(data.rec("smoke"), "metrics.model.path") or mid
    else:
        model = mid
    kw = engine_kwargs(cfg.target, cfg.model)
    kw.pop("disable_log_stats", None)
    served = cfg.server.served_model_name or cfg.model.short_name
    if cfg.server.kind == "sglang":
        # the command the measured server ran (server.sglang_command), on the usual port
        from ..server import sglang_command

        cmd = sglang_command(str(model), 8000, cfg, host="0.0.0.0")
        groups: list[list[str]] = []
        for tok in cmd[cmd.index("--model-path") + 2:]:  # one line per flag and its values
            if tok.startswith("--") or not groups:
                groups.append([tok])
            else:
                groups[-1].append(tok)
        flags = [shlex.join(g) for g in groups]
    else:
        flags = [shlex.join(group) for group in vllm_cli_flags(kw)]
        flags += [f"--served-model-name {shlex.quote(served)}", "--port 8000"]
        if cfg.server.extra_args:  # appended by server.for_config too: the card shows what ran
            flags.append(shlex.join(cfg.server.extra_args))
    from ..device import engine_process_env

    engine_env = engine_process_env(cfg.target.device, cfg.target.env)  # as the run's engines had it
    env_lines = [f"export {k}={shlex.quote(v)}" for k, v in engine_env.items()]
    visible = {"npu": "ASCEND_RT_VISIBLE_DEVICES", "cuda": "CUDA_VISIBLE_DEVICES"}.get(cfg.target.device)
    if visible and visible not in engine_env:  # the params' own choice is already exported above
        env_lines.insert(0, f"export {visible}=" + ",".join(str(i) for i in range(cfg.target.count)))
    modelscope = is_hub_id(mid)
    if modelscope:
        env_lines.append("export VLLM_USE_MODELSCOPE=True")
    if cfg.server.kind == "sglang":
        head = f"python -m sglang.launch_server --model-path {shlex.quote(str(model))}"
    elif cfg.target.device == "cpu":
        head = f"python -m vllm.entrypoints.openai.api_server --model {shlex.quote(str(model))}"
    else:
        head = f"vllm serve {shlex.quote(str(model))}"
    serve = "\n".join(env_lines + [head + " \\\n    " + " \\\n    ".join(flags)])
    py_kw = ",\n    ".join(f"{k}={v!r}" for k, v in kw.items() if not (k == "dtype" and v == "auto"))
    python = (("import os\n" + "".join(f"os.environ[{k!r}] = {v!r}\n" for k, v in engine_env.items())
               if engine_env else "")
              + "from vllm import LLM, SamplingParams\n\n"
              "if __name__ == \"__main__\":  # vLLM spawns workers: keep the guard\n"
              f"    llm = LLM(\n        model={str(model)!r},\n        " + py_kw.replace("\n", "\n    ") + ",\n    )\n"
              "    sp = SamplingParams(temperature=0, max_tokens=32)\n"
              "    out = llm.generate([\"The capital of France is\"], sp)\n"
              "    print(out[0].outputs[0].text)")
    body = json.dumps({"model": served, "prompt": "The capital of France is", "temperature": 0, "max_tokens": 16},
                      ensure_ascii=False, indent=2)
    curl = ("curl http://127.0.0.1:8000/v1/completions \\\n  -H \"Content-Type: application/json\" \\\n"
            f"  -d '{body}'")
    return {"serve": serve, "python": python, "curl": curl, "cpu": "1" if cfg.target.device == "cpu" else "",
            "modelscope": "1" if modelscope else ""}



def is_hub_id(mid: str) -> bool:
    """A ModelScope / Hugging Face id (org/name), not a local folder or a built-in model."""
    return "/" in mid and not mid.startswith(("/", ".", "~", "builtin:")) and not Path(mid).expanduser().exists()


def download_command(data: RunData) -> str:
    """How a reader gets the measured weights: ModelScope's CLI for a hub id (at the revision the
    run used), the ascendeval command for a built-in model; empty for a local folder."""
    model = (data.params().get("model") or {}) if isinstance(data.params(), dict) else {}
    mid, rev = str(model.get("id") or ""), model.get("revision")
    if mid.startswith("builtin:"):
        return f"ascendeval build-model {shlex.quote(mid.split(':', 1)[1])}"
    if is_hub_id(mid):
        name = mid.rsplit("/", 1)[-1]
        return (f"modelscope download --model {shlex.quote(mid)}" + (f" --revision {shlex.quote(rev)}" if rev else "")
                + f" --local_dir ./{shlex.quote(name)}")
    return ""
