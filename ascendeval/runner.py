"""papermill + nbconvert orchestration: one params file -> one run directory.

For each section: papermill executes `notebooks/NN_<section>.ipynb` with `{params_file, run_dir}`
into `<run_dir>/notebooks/`, nbconvert exports it to HTML and Markdown with inputs hidden, and
the section's record is checked. A failing notebook is saved all the same (papermill writes the
partial notebook) and recorded `failed` with the error, keeping whatever the notebook had already
checkpointed; the run goes on with the next section.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import config as config_mod
from . import paths, preflight, records
from . import sections as sections_mod
from . import context
from .context import new_run_id

log = logging.getLogger("ascendeval.runner")

SECTION_NOTEBOOKS = {s.name: f"{s.notebook}.ipynb" for s in sections_mod.SECTIONS}


@dataclass
class SectionOutcome:
    section: str
    status: str
    reason: str | None
    wall_s: float
    notebook: str | None = None
    html: str | None = None
    markdown: str | None = None


@dataclass
class RunSummary:
    params_file: str
    model: str
    run_dir: str
    status: str  # ok | failed | error (params/config problem before any section ran)
    sections: list[SectionOutcome] = field(default_factory=list)
    # from the start to the end of the last section: the run time the card reports
    wall_s: float = 0.0
    export_s: float | None = None  # writing the final card, report.html and the index after that
    error: str | None = None
    shared_server: dict[str, Any] | None = None  # one served model for the whole run (see SharedServer)
    report: str | None = None  # README.md of the run (model card)
    report_html: str | None = None  # report.html: card + every section, one file


def parse_sections(spec: str | list[str] | None) -> list[str] | None:
    """'smoke,performance' -> ['smoke', 'performance']; unknown names are a one-line error."""
    if spec is None:
        return None
    names = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    bad = [n for n in names if n not in SECTION_NOTEBOOKS]
    if bad:
        raise config_mod.ConfigError(f"--sections: unknown section(s) {', '.join(bad)}; "
                                     f"allowed: {', '.join(SECTION_NOTEBOOKS)}")
    return names


def export(notebook: Path, out_dir: Path) -> tuple[Path, Path]:
    """Executed notebook -> HTML (plots embedded) and Markdown (plots as files), inputs hidden."""
    import nbformat
    from nbconvert import HTMLExporter, MarkdownExporter
    from nbconvert.writers import FilesWriter

    nb = nbformat.read(notebook, as_version=4)
    stem = notebook.stem
    _move_stderr_to_log(nb, out_dir / "logs" / f"{stem}.stderr.txt", f"logs/{stem}.stderr.txt")
    writer = FilesWriter(build_directory=str(out_dir))
    html_exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    body, res = html_exporter.from_notebook_node(nb, resources={"metadata": {"name": stem}})
    writer.write(body, res, notebook_name=stem)
    md_exporter = MarkdownExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    body, res = md_exporter.from_notebook_node(nb, resources={"metadata": {"name": stem},
                                                              "output_files_dir": f"{stem}_files"})
    writer.write(body, res, notebook_name=stem)
    return out_dir / f"{stem}.html", out_dir / f"{stem}.md"


def _move_stderr_to_log(nb: Any, log_path: Path, rel: str) -> None:
    """The engines' stderr (vLLM's and torch's warnings, progress bars) goes to a log file; the
    exported page keeps one line linking it instead of a wall of warnings. The executed notebook
    under notebooks/ keeps everything."""
    import nbformat

    lines: list[str] = []
    for cell in nb.cells:
        if cell.get("cell_type") != "code":
            continue
        kept = []
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and out.get("name") == "stderr":
                lines.append(out.get("text", ""))
            else:
                kept.append(out)
        cell["outputs"] = kept
    if not lines:
        return
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_text("".join(lines), encoding="utf-8")
    n = sum(chunk.count("\n") for chunk in lines)
    nb.cells.append(nbformat.v4.new_markdown_cell(
        f"<sub>Engine and library messages (stderr, {n:,} lines) are in [{rel}]({rel}).</sub>"))


def _new_record(run_dir: Path, cfg: config_mod.RunConfig, section: str, status: str, reason: str,
                params_file: str, reason_zh: str | None = None) -> records.Record:
    """An envelope written by the runner itself (the notebook wrote none)."""
    return records.Record(
        section=section, status=status, reason=reason, reason_zh=reason_zh,  # type: ignore[arg-type]
        run_id=run_dir.name,
        model={"id": cfg.model.id, "name": cfg.model.short_name, "revision": cfg.model.revision,
               "dtype": cfg.model.dtype},
        target={"engine": cfg.target.engine, "device": cfg.target.device, "count": cfg.target.count},
        git_hash=paths.git_hash(), params={"file": params_file},
    )


def _mark_failed(run_dir: Path, cfg: config_mod.RunConfig, section: str, reason: str, params_file: str) -> None:
    """Record a section failure, keeping metrics the notebook had already checkpointed."""
    existing = records.load(run_dir, section)
    if existing is None:
        records.save(run_dir, _new_record(run_dir, cfg, section, "failed", reason, params_file))
        return
    existing["status"] = "failed"
    prior = existing.get("reason")
    existing["reason"] = reason if not prior or prior.startswith("section did not finish") else f"{prior}; {reason}"
    existing["reason_zh"] = None  # a failure's reason is the error's own text, in English
    records.save(run_dir, records.Record(**{k: v for k, v in existing.items()
                                            if k in records.Record.__dataclass_fields__}))


def _mark_skipped(run_dir: Path, cfg: config_mod.RunConfig, section: str, reason: str, params_file: str,
                  reason_zh: str | None = None) -> None:
    records.save(run_dir, _new_record(run_dir, cfg, section, "skipped", reason, params_file, reason_zh))


def run_section(section: str, cfg: config_mod.RunConfig, params_file: Path, run_dir: Path,
                progress: bool = True) -> SectionOutcome:
    import papermill
    from papermill.exceptions import PapermillExecutionError

    nb_in = paths.notebooks_dir() / SECTION_NOTEBOOKS[section]
    nb_dir = run_dir / "notebooks"
    nb_dir.mkdir(parents=True, exist_ok=True)
    nb_out = nb_dir / nb_in.name
    t0 = time.perf_counter()
    error: str | None = None
    if not nb_in.is_file():
        error = f"notebook {nb_in} not found"
    else:
        try:
            papermill.execute_notebook(
                str(nb_in), str(nb_out),
                parameters={"params_file": str(params_file), "run_dir": str(run_dir)},
                cwd=str(nb_in.parent), kernel_name="python3", progress_bar=progress,
                log_output=False, request_save_on_cell_execute=True,
            )
        except PapermillExecutionError as exc:
            error = f"cell {exc.exec_count}: {exc.ename}: {str(exc.evalue).splitlines()[0] if exc.evalue else ''}"
        except Exception as exc:  # noqa: BLE001 - kernel death, timeouts: record and go on
            error = f"{type(exc).__name__}: {exc}".splitlines()[0]
    html = md = None
    if nb_out.is_file():
        try:
            html_p, md_p = export(nb_out, run_dir)
            html, md = str(html_p), str(md_p)
        except Exception as exc:  # noqa: BLE001
            log.error("export of %s failed: %s", nb_out, exc)
            error = error or f"export failed: {exc}"
    rec = records.load(run_dir, section)
    if error:
        _mark_failed(run_dir, cfg, section, error, str(params_file))
    elif rec is None:
        error = "notebook finished without writing its record"
        _mark_failed(run_dir, cfg, section, error, str(params_file))
    rec = records.load(run_dir, section) or {}
    return SectionOutcome(section, rec.get("status", "failed"), rec.get("reason"), time.perf_counter() - t0,
                          str(nb_out) if nb_out.is_file() else None, html, md)


def _write_manifest(run_dir: Path, summary: RunSummary) -> None:
    data = records.to_jsonable(summary)
    data["updated_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    records._atomic_write(run_dir / "run.json", json.dumps(data, indent=2, ensure_ascii=False) + "\n")


# Sections that talk to a served model through SectionRun.served() without overrides: they can
# share one server per run instead of each starting the same engine configuration again.
SERVED_SECTIONS = {s.name: s.uses_shared_server for s in sections_mod.SECTIONS if s.uses_shared_server}


class SharedServer:
    """One `vllm serve` per run with the params' settings, started before the first section that
    needs a served model and stopped after the last one (and always on exit, errors, Ctrl-C).
    Its URL goes to the kernels as ASCENDEVAL_SHARED_SERVER_URL (SectionRun.served() uses it).

    Only when memory is bounded (kv_cache_memory_bytes set, as on CPU): on an accelerator sized by
    a memory fraction a resident server would starve the offline engines other sections start.
    """

    ENV = context.SHARED_SERVER_ENV
    INFO_ENV = context.SHARED_SERVER_INFO_ENV  # its start time and command, for smoke's load figures

    def __init__(self, cfg: config_mod.RunConfig, run_dir: Path, to_run: list[str]):
        self.cfg, self.run_dir = cfg, run_dir
        self.server: Any = None
        self.info: dict[str, Any] | None = None
        # a vllm target's served measurements, or a served (openai) target the params give no URL for
        shareable = (cfg.server.url is None and cfg.server.kind == "vllm" and cfg.target.engine in ("vllm", "openai")
                     and cfg.target.kv_cache_memory_bytes is not None)
        self.users = [s for s in to_run if shareable and s in SERVED_SECTIONS and SERVED_SECTIONS[s](cfg)]

    def before(self, section: str) -> None:
        if section not in self.users or self.server is not None or self.info is not None:
            return
        from . import models, server

        t0 = time.perf_counter()
        self.info = {"started_before": section, "users": list(self.users)}
        try:
            path = models.resolve(self.cfg.model).path
            srv = server.for_config(self.cfg, path, self.run_dir / "logs", **self.overrides(path))
            self.info.update(command=" ".join(srv.cmd), log=str(srv.log_path))
            print(f"[{self.cfg.model.short_name}] starting the shared server for {', '.join(self.users)} ...",
                  file=sys.stderr, flush=True)
            srv.start()
        except Exception as exc:  # noqa: BLE001 - sections then start their own server and record why
            self.info.update(status="failed", error=f"{type(exc).__name__}: {exc}".splitlines()[0][:500],
                             start_wall_s=time.perf_counter() - t0)
            log.error("shared server did not start: %s", self.info["error"])
            return
        self.server = srv
        self.info.update(status="ok", url=srv.base_url, start_wall_s=srv.startup_s)
        os.environ[self.ENV] = srv.base_url
        os.environ[self.INFO_ENV] = json.dumps({"url": srv.base_url, "start_wall_s": srv.startup_s,
                                                "command": self.info["command"]})
        print(f"[{self.cfg.model.short_name}] shared server ready at {srv.base_url} ({srv.startup_s:.1f} s)",
              file=sys.stderr, flush=True)

    def overrides(self, model_path: Any) -> dict[str, Any]:
        """The engine arguments its users need beyond the params' (Section.shared_server_overrides)."""
        out: dict[str, Any] = {}
        for s in sections_mod.SECTIONS:
            if s.name in self.users and s.shared_server_overrides is not None:
                out.update(s.shared_server_overrides(self.cfg, model_path))
        return out

    def after(self, section: str) -> None:
        if self.users and section == self.users[-1]:
            self.stop()

    def stop(self) -> None:
        os.environ.pop(self.ENV, None)
        os.environ.pop(self.INFO_ENV, None)
        if self.server is not None:
            t0 = time.perf_counter()
            self.server.stop()
            self.server = None
            if self.info is not None:
                self.info["stop_wall_s"] = time.perf_counter() - t0


def finalize_report(run_dir: Path, cfg: config_mod.RunConfig, summary: RunSummary) -> None:
    """After the last section: the card again (now with every section's wall time), the
    single-file HTML of the whole run, and the cross-run index next to it."""
    from . import report

    lang = cfg.sections.report.language
    try:
        data = report.load_run(run_dir)
        if data.rec("report") is None:
            return
        paths_ = report.write_card(data, lang)
        summary.report = paths_["markdown"]
        summary.report_html = str(report.write_run_html(run_dir, lang))
        if cfg.sections.report.index:
            report.build_index(run_dir.parent.parent, lang)
    except Exception as exc:  # noqa: BLE001 - the records are the result; a broken page is logged
        log.error("report export of %s failed: %s", run_dir, exc)


def run_one(params_file: str | Path, sections: list[str] | None = None, run_id: str | None = None,
            resume: bool = False, progress: bool = True) -> RunSummary:
    """Run the workbook for one params file. Config errors are reported before anything starts."""
    params_path = Path(params_file).resolve()
    t0 = time.perf_counter()
    try:
        cfg = config_mod.load(params_path)
    except config_mod.ConfigError as exc:
        return RunSummary(str(params_file), "?", "", "error", error=str(exc))
    # what every section would hit, once, before a run directory or an index entry exists
    try:
        checked = preflight.run(cfg)
    except preflight.PreflightError as exc:
        return RunSummary(str(params_file), cfg.model.short_name, "", "error", error=f"preflight: {exc}")
    for note in checked.notes:
        print(f"[{cfg.model.short_name}] preflight: {note}", file=sys.stderr, flush=True)
    # resolved once here; every section's kernel inherits it instead of resolving again
    os.environ.pop(preflight.RESOLVED_MODEL_ENV, None)
    if checked.env_value():
        os.environ[preflight.RESOLVED_MODEL_ENV] = checked.env_value()  # type: ignore[assignment]
    run_dir = (paths.outputs_dir() / cfg.model.short_name / (run_id or new_run_id(cfg))).resolve()
    (run_dir / "records").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(params_path, run_dir / "params.yaml")  # provenance: the exact params used
    summary = RunSummary(str(params_file), cfg.model.short_name, str(run_dir), "ok")
    wanted = sections or list(config_mod.SECTION_NAMES)
    # the report reads every record, so it always goes last
    wanted = [s for s in wanted if s != "report"] + (["report"] if "report" in wanted else [])
    def kept(section: str) -> bool:
        prior = records.load(run_dir, section)
        return resume and prior is not None and prior.get("status") == "ok" and section != "report"

    plan = {s: "kept" if kept(s) else "disabled" if not cfg.section(s).enabled else "run"  # type: ignore[attr-defined]
            for s in wanted}
    shared = SharedServer(cfg, run_dir, [s for s in wanted if plan[s] == "run"])
    try:
        for i, section in enumerate(wanted, 1):
            if plan[section] == "kept":
                outcome = SectionOutcome(section, "ok", "kept from the earlier run (--resume)", 0.0)
            elif plan[section] == "disabled":
                _mark_skipped(run_dir, cfg, section, "disabled in params", str(params_path), "参数中已关闭")
                outcome = SectionOutcome(section, "skipped", "disabled in params", 0.0)
            else:
                print(f"[{cfg.model.short_name}] ({i}/{len(wanted)}) {section} ... "
                      f"(run {time.perf_counter() - t0:.0f} s so far)", file=sys.stderr, flush=True)
                shared.before(section)
                summary.shared_server = shared.info
                outcome = run_section(section, cfg, params_path, run_dir, progress=progress)
                shared.after(section)
            print(f"[{cfg.model.short_name}] ({i}/{len(wanted)}) {section}: {outcome.status} "
                  f"({outcome.wall_s:.1f} s){' - ' + outcome.reason if outcome.reason else ''}",
                  file=sys.stderr, flush=True)
            summary.sections.append(outcome)
            summary.wall_s = time.perf_counter() - t0
            _write_manifest(run_dir, summary)
    finally:
        shared.stop()  # also on exceptions and Ctrl-C (KeyboardInterrupt passes through here)
        summary.shared_server = shared.info
    summary.wall_s = time.perf_counter() - t0
    _write_manifest(run_dir, summary)  # the card reads this total: card, report.html and run.json agree
    if "report" in wanted and plan.get("report") == "run":
        finalize_report(run_dir, cfg, summary)
    if any(s.status == "failed" for s in summary.sections):
        summary.status = "failed"
    summary.export_s = time.perf_counter() - t0 - summary.wall_s
    _write_manifest(run_dir, summary)
    return summary


def run_many(params_files: list[str], sections: list[str] | None = None, run_id: str | None = None,
             resume: bool = False, progress: bool = True) -> list[RunSummary]:
    """Models one after another; one failing model does not stop the others."""
    out = []
    for k, pf in enumerate(params_files, 1):
        if len(params_files) > 1:
            print(f"=== ({k}/{len(params_files)}) {pf}", file=sys.stderr, flush=True)
        try:
            out.append(run_one(pf, sections, run_id, resume, progress))
        except Exception as exc:  # noqa: BLE001 - keep going with the next model
            out.append(RunSummary(str(pf), "?", "", "error", error=f"{type(exc).__name__}: {exc}"))
    return out


def summary_table(summaries: list[RunSummary]) -> str:
    """A plain-text table of every run and section status."""
    rows = [("params", "section", "status", "wall_s", "reason")]
    for s in summaries:
        if s.error:
            rows.append((s.params_file, "-", s.status, "-", s.error))
        sh = s.shared_server
        if sh:
            rows.append((s.params_file, "(shared server)", sh.get("status", "?"),
                         f"{sh['start_wall_s']:.1f}" if isinstance(sh.get("start_wall_s"), float) else "-",
                         sh.get("error") or f"start for {', '.join(sh.get('users', []))}"))
        for sec in s.sections:
            rows.append((s.params_file, sec.section, sec.status, f"{sec.wall_s:.1f}", (sec.reason or "")[:100]))
        if s.sections:
            rows.append((s.params_file, "(total)", s.status, f"{s.wall_s:.1f}", s.report or ""))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(r[i].ljust(widths[i]) for i in range(4)) + "  " + r[4] for r in rows]
    return "\n".join(lines)


def env_for_kernels() -> None:
    """Notebook kernels inherit the runner's environment: keep caches in the project cache."""
    paths.set_engine_cache_env()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    # vLLM's INFO lines (and their colour codes) would land in the exported pages; what they say
    # that matters (KV cache size, start-up time) is measured into the records instead.
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("NO_COLOR", "1")
