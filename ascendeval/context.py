"""One section's run: config, run directory, step bookkeeping and the record it writes.

A notebook opens a `SectionRun`, calls measurements through `run.step(...)` (a failing step is
recorded as failed with its reason and the notebook goes on), adds metrics, and ends with
`run.finish()`. After every step the record is checkpointed as `failed` ("did not finish"), so a
kernel crash or an interrupted run keeps what was already measured; `finish()` rewrites it with
the final status.
"""

from __future__ import annotations

import contextlib
import logging
import json
import os
import time
import traceback
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

from . import catalog
from . import config as config_mod
from .errors import SectionSkipped  # noqa: F401 - re-exported: sections import it from here
from . import paths, records

log = logging.getLogger("ascendeval")
T = TypeVar("T")
# the run's shared server (runner.SharedServer): its URL, and its start time and command as JSON
SHARED_SERVER_ENV = "ASCENDEVAL_SHARED_SERVER_URL"
SHARED_SERVER_INFO_ENV = "ASCENDEVAL_SHARED_SERVER_INFO"


def new_run_id(cfg: config_mod.RunConfig) -> str:
    return f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{cfg.target.engine}-{cfg.target.device}"


def resolve_run_dir(cfg: config_mod.RunConfig, run_dir: str | Path | None) -> Path:
    """An explicit run_dir is used as is; empty means a fresh run under outputs/<model>/<run_id>."""
    path = Path(run_dir) if run_dir else paths.outputs_dir() / cfg.model.short_name / new_run_id(cfg)
    (path / "records").mkdir(parents=True, exist_ok=True)
    return path.resolve()


class SectionRun:
    def __init__(self, section: str, params_file: str | Path, run_dir: str | Path | None = None):
        self.section = section
        self.params_file = str(params_file)
        self.cfg = config_mod.load(params_file)
        self.conf = self.cfg.section(section)
        self.run_dir = resolve_run_dir(self.cfg, run_dir)
        self.run_id = self.run_dir.name
        self.metrics: dict[str, Any] = {}
        self.steps: dict[str, dict[str, Any]] = {}
        self.artifacts: list[str] = []
        self._env_summary: dict[str, Any] | None = None
        self._model: Any = None
        self.engine_starts: list[dict[str, Any]] = []
        self._vllm_engines: list[tuple[str, Any]] = []  # (label, engine) started by engine(); see there
        paths.set_engine_cache_env()
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    # ------------------------------------------------------------------ steps

    def step(self, name: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
        """Run one measurement. Exceptions are recorded (status failed + reason), not raised."""
        t0 = time.perf_counter()
        try:
            result = fn(*args, **kwargs)
        except SectionSkipped as exc:
            self.steps[name] = {"status": "skipped", "reason": str(exc), "wall_s": time.perf_counter() - t0}
            if exc.zh:
                self.steps[name]["reason_zh"] = exc.zh
            log.info("step %s skipped: %s", name, exc)
            result = None
        except Exception as exc:  # noqa: BLE001 - any failure of a measurement is a result to record
            reason = f"{type(exc).__name__}: {exc}".strip()
            self.steps[name] = {
                "status": "failed",
                "reason": reason.splitlines()[0][:500] if reason else type(exc).__name__,
                "wall_s": time.perf_counter() - t0,
                "traceback": traceback.format_exc(limit=8)[-4000:],
            }
            log.error("step %s failed: %s", name, reason)
            result = None
        else:
            self.steps[name] = {"status": "ok", "reason": None, "wall_s": time.perf_counter() - t0}
        self._checkpoint()
        return result

    def step_status(self, name: str) -> str | None:
        return self.steps.get(name, {}).get("status")

    def needs(self, step: str, value: T | None) -> T:
        """The result of an earlier step, or SectionSkipped when it has none.

        A step that depends on one that did not produce its result is skipped, not failed, with
        the reason: a skipped dependency means it does not apply here (e.g. no offline engine on a
        served-only target); a failed one is already recorded as the section's failure."""
        if value is not None:
            return value
        info = self.steps.get(step)
        if info is None:
            raise SectionSkipped(f"needs step '{step}', which has not run", zh=f"依赖的步骤 {step} 尚未运行")
        zh_status = {"skipped": "已跳过", "failed": "失败"}.get(info["status"], info["status"])
        raise SectionSkipped(f"needs step '{step}', which {info['status']}: {info['reason']}",
                             zh=f"依赖的步骤 {step} {zh_status}：{info.get('reason_zh') or info['reason']}")

    def add(self, key: str, value: Any) -> Any:
        """Store a metric (dataclasses and numpy values are converted) and checkpoint.

        An impossible value (cosine above 1, negative time, ...) or one its section's metrics model
        does not declare (an unknown key, a wrong type) is not stored: it is recorded as a failed
        entry naming the value, so the section ends `failed` and the notebook goes on."""
        converted = records.to_jsonable(value)
        problems = records.validate_metrics({key: converted}) or [
            p for p in records.model_problems(self.section, {**self.metrics, key: converted})
            if p.startswith((f"metrics.{key}.", f"metrics.{key}[", f"metrics.{key}:"))]
        if problems:
            log.error("metric %s refused: %s", key, "; ".join(problems))
            self.steps[f"add:{key}"] = {"status": "failed", "reason": "value refused: "
                                        + "; ".join(problems)[:500], "wall_s": 0.0}
        else:
            self.metrics[key] = converted
        self._checkpoint()
        return value

    def save_rows(self, kind: str, rows: list[Any]) -> Path:
        path = records.save_rows(self.run_dir, self.section, kind, rows)
        self.artifact(path)
        return path

    def artifact(self, path: str | Path) -> Path:
        p = Path(path)
        rel = str(p.resolve().relative_to(self.run_dir)) if p.resolve().is_relative_to(self.run_dir) else str(p)
        if rel not in self.artifacts:
            self.artifacts.append(rel)
        return p

    def artifact_path(self, name: str) -> Path:
        """A path for a plot or file under <run_dir>/artifacts/ (registered as an artifact)."""
        p = self.run_dir / "artifacts" / name
        p.parent.mkdir(parents=True, exist_ok=True)
        self.artifact(p)
        return p

    # ------------------------------------------------------------------ model, engines, servers

    def model(self) -> Any:
        """Resolve the params' model (building a builtin on first use); cached for the section."""
        if self._model is None:
            from . import models
            from .preflight import RESOLVED_MODEL_ENV

            # the runner's preflight resolved it once for the whole run (same model id only)
            handed = json.loads(os.environ.get(RESOLVED_MODEL_ENV) or "null")
            if handed and handed["id"] == self.cfg.model.id and Path(handed["path"]).is_dir():
                self._model = models.ResolvedModel(Path(handed["path"]), handed["id"], handed["revision"],
                                                   handed["source"])
            else:
                self._model = models.resolve(self.cfg.model)
        return self._model

    def _local_model_path(self) -> Path | None:
        try:
            return self.model().path
        except Exception as exc:  # noqa: BLE001 - any resolve failure means "no local files"
            log.info("no local files for the served model (%s): no tokenizer on this side", exc)
            return None

    def engine(self, label: str = "main", **overrides: Any) -> Any:
        """Create an engine from params (+ overrides); its start time is recorded under engine_starts."""
        from . import engines

        kind = overrides.get("engine") or self.cfg.target.engine
        if kind == "vllm":
            # One vLLM engine open at a time: on a device the first engine claims most of the
            # memory (gpu_memory_utilization), and in-process engines (VLLM_ENABLE_V1_MULTIPROCESSING=0)
            # share vLLM's global parallel state, which closing either one tears down.
            still_open = [lbl for lbl, e in self._vllm_engines if getattr(e, "llm", None) is not None]
            if still_open:
                raise RuntimeError(f"engine '{label}' cannot start while vLLM engine '{still_open[0]}' is open "
                                   "in this process: close it first (one vLLM engine at a time)")
        # resolving (or building) is not the start; a served target needs the files only for its
        # tokenizer (log-likelihood scoring), and may have none here (a model only the server holds)
        # `model_path`: another weights folder for this engine only (a quantized copy compared with
        # the params' model); default: the params' model
        custom_path = overrides.pop("model_path", None)
        model_path = custom_path or (self._local_model_path() if kind == "openai" else self.model().path)
        owned = contextlib.ExitStack()
        if kind == "openai" and not overrides.get("base_url") and not self.cfg.server.url:
            # a served target with no URL in the params: the run's shared server, else one started
            # here for this engine and stopped when the engine closes
            overrides["base_url"] = owned.enter_context(self.served(label))
        t0 = time.perf_counter()
        try:
            eng = engines.create(self.cfg, model_path, **overrides)
        except BaseException:
            owned.close()
            raise
        if kind == "openai":
            eng.owned_server = owned
        if kind == "vllm":
            self._vllm_engines.append((label, eng))
        self.engine_starts.append({"label": label, "engine": eng.name, "wall_s": time.perf_counter() - t0,
                                   "overrides": {**overrides, **({"model_path": str(custom_path)} if custom_path else {})}})
        self.add("engine_starts", self.engine_starts)
        return eng

    def reference(self, label: str = "reference", *, device: str, dtype: str, max_tokens: int = 2048,
                  alongside_target: bool = False, target_bytes: int = 0) -> Any:
        """The float32 (or fallback) transformers reference, planned against the memory it may use
        before it loads (reference_model.plan; ReferenceDoesNotFit is one line). The engine carries
        its plan as `.plan`, and the plan is in this start's engine_starts entry."""
        from . import reference_model

        rc = self.cfg.reference
        p = reference_model.plan(self.model().path, dtype=dtype, device=device, target_device=self.cfg.target.device,
                                 fallbacks=list(rc.fallback), budget_gb=rc.memory_budget_gb, max_tokens=max_tokens,
                                 alongside_target=alongside_target, target_bytes=target_bytes)
        offload: dict[str, Any] = {}
        if p.fallback == "offload":  # accelerate's disk offload, in a folder of this engine's own
            import tempfile

            offload = {"device_map": "auto", "max_memory": {"cpu": p.offload_memory_bytes},
                       "offload_folder": tempfile.mkdtemp(prefix=f"{label}-", dir=p.offload_folder)}
        try:
            eng = self.engine(label, engine="hf", device=p.device, dtype=p.dtype, **offload)
        except BaseException:
            if offload:  # the engine removes it at close; one that never loaded cannot
                import shutil

                shutil.rmtree(offload["offload_folder"], ignore_errors=True)
            raise
        eng.plan = p
        self.engine_starts[-1]["reference_plan"] = p.info()
        self.add("engine_starts", self.engine_starts)
        return eng

    @staticmethod
    def shared_server_url() -> str | None:
        """The run's shared server (started by the runner for the whole run), None without one."""
        return os.environ.get(SHARED_SERVER_ENV) or None

    @staticmethod
    def shared_server_info() -> dict[str, Any]:
        """Its start time (`start_wall_s`, timed by the runner), URL and command; {} without one."""
        return json.loads(os.environ.get(SHARED_SERVER_INFO_ENV) or "{}")

    @contextlib.contextmanager
    def served(self, label: str = "server", fresh: bool = False, **overrides: Any) -> Iterator[str]:
        """Base URL of a served model: params' server.url, the run's shared server, or one started
        here with the params' settings (+ overrides) and stopped when the block ends. `fresh`:
        always start one here (a baseline that must start and run like the servers it is
        compared with)."""
        from . import server

        if self.cfg.server.url and not overrides:
            yield self.cfg.server.url.rstrip("/")
            return
        shared = self.shared_server_url()
        if shared and not overrides and not fresh:
            # started once by the runner for the whole run; its start time is in run.json
            self.engine_starts.append({"label": label, "engine": "server", "shared": True, "wall_s": None,
                                       "url": shared})
            self.add("engine_starts", self.engine_starts)
            yield shared
            return
        srv = server.for_config(self.cfg, self.model().path, self.run_dir / "logs", **overrides)
        with srv:
            self.engine_starts.append({"label": label, "engine": "server", "wall_s": srv.startup_s,
                                       "overrides": dict(overrides), "log": str(srv.log_path)})
            self.add("engine_starts", self.engine_starts)
            yield srv.base_url

    # ------------------------------------------------------------------ display

    def show(self, name: str, result: Any = None) -> None:
        """Display a step's result table, or why the step failed / was skipped.

        Returns None so a cell ending in run.show(...) does not display the table twice."""
        from IPython.display import Markdown, display

        info = self.steps.get(name)
        if info and info["status"] != "ok":
            display(Markdown(f"**{name}: {info['status']}** — {info['reason']}"))
        elif result is not None and hasattr(result, "table"):
            # metric keys shown with their catalog labels, in the report's language
            display(catalog.label_frame(result.table(), self.cfg.sections.report.language))
        elif result is not None and hasattr(result, "columns") and hasattr(result, "rename"):
            display(catalog.label_frame(result, self.cfg.sections.report.language))
        elif isinstance(result, (dict, list)):  # a table, never a raw dict dump on the page
            display(catalog.label_frame(as_frame(result), self.cfg.sections.report.language))
        elif result is not None:
            display(result)

    # ------------------------------------------------------------------ record

    def env_summary(self) -> dict[str, Any]:
        if self._env_summary is None:
            from .sections.environment import probe as env

            self._env_summary = env.versions()
        return self._env_summary

    def _record(self, status: str, reason: str | None, reason_zh: str | None = None) -> records.Record:
        cfg = self.cfg
        metrics = dict(self.metrics)
        if self.steps:
            metrics["steps"] = {k: {kk: vv for kk, vv in v.items() if kk != "traceback"} for k, v in self.steps.items()}
        return records.Record(
            section=self.section,
            status=status,  # type: ignore[arg-type]
            reason=reason,
            reason_zh=reason_zh,
            run_id=self.run_id,
            model={"id": cfg.model.id, "name": cfg.model.short_name, "revision": cfg.model.revision,
                   "dtype": cfg.model.dtype},
            target={"engine": cfg.target.engine, "device": cfg.target.device, "count": cfg.target.count},
            env=self.env_summary(),
            git_hash=paths.git_hash(),
            params={"file": self.params_file, self.section: self.conf.model_dump(mode="json"),
                    # the profile and the keys of this section it decided (the rest: params or defaults)
                    "profile": {"name": cfg.profile,
                                "keys": [k for k in cfg.profile_keys if k.split(".")[0] == self.section]},
                    "model": cfg.model.model_dump(mode="json"), "target": cfg.target.model_dump(mode="json")},
            metrics=metrics,
            # a path handed out for a plot that was then skipped is not an artifact
            artifacts=[a for a in self.artifacts if (self.run_dir / a).exists()],
        )

    def _checkpoint(self) -> None:
        last = next(reversed(self.steps)) if self.steps else None
        rec = self._record("failed", f"section did not finish (last step: {last})",
                           f"章节未运行完成（最后一步：{last}）")
        try:
            records.save(self.run_dir, rec)
        except records.RecordError as exc:
            # An impossible value must never be published; keep the step result but say why.
            log.error("checkpoint refused: %s", exc)
            raise

    def finish(self) -> dict[str, Any]:
        """Write the final record and return it. Status: skipped / failed (any failed step) / ok."""
        failed = {k: v["reason"] for k, v in self.steps.items() if v["status"] == "failed"}
        if failed:
            status, reason = "failed", "; ".join(f"{k}: {r}" for k, r in failed.items())
        else:
            status, reason = "ok", None
        rec = self._record(status, reason)
        records.save(self.run_dir, rec)
        print(f"{self.section}: {status}" + (f" - {reason}" if reason else ""))
        print(f"record: {records.record_path(self.run_dir, self.section)}")
        return records.load(self.run_dir, self.section)  # type: ignore[return-value]


def as_frame(obj: dict[str, Any] | list[Any]) -> Any:
    """A dict as an item/value table (nested values as compact JSON), a list of dicts as rows."""
    import json

    import pandas as pd

    def cell(v: Any) -> Any:
        return json.dumps(v, ensure_ascii=False, default=str) if isinstance(v, (dict, list)) else v

    if isinstance(obj, list):
        if obj and all(isinstance(r, dict) for r in obj):
            return pd.DataFrame([{k: cell(v) for k, v in r.items()} for r in obj])
        return pd.DataFrame({"value": [cell(v) for v in obj]})
    return pd.DataFrame([(k, cell(v)) for k, v in obj.items()], columns=["item", "value"]).set_index("item")


def open_section(section: str, params_file: str | Path, run_dir: str | Path | None = None) -> SectionRun:
    return SectionRun(section, params_file, run_dir)
