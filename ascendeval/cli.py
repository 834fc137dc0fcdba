"""The `ascendeval` command.

    ascendeval run PARAMS... [--sections a,b] [--run-id ID | --resume ID]
    ascendeval validate PARAMS...
    ascendeval verify RUN_DIR...
    ascendeval index [OUTPUTS_DIR] [--lang en|zh]
    ascendeval build-model NAME
    ascendeval weights scan DIR | dequant SRC DST [--dtype float16]
"""

from __future__ import annotations

import argparse
import sys

from . import config as config_mod


def _cmd_run(args: argparse.Namespace) -> int:
    from . import runner

    try:
        sections = runner.parse_sections(args.sections)
        # strict params first: every file is validated before any engine starts
        for pf in args.params:
            config_mod.load(pf)
    except config_mod.ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    runner.env_for_kernels()
    summaries = runner.run_many(args.params, sections=sections, run_id=args.resume or args.run_id,
                                resume=bool(args.resume), progress=not args.no_progress)
    print(runner.summary_table(summaries))
    if any(s.error and s.error.startswith("preflight: ") for s in summaries):
        for s in summaries:
            if s.error:
                print(f"error: {s.params_file}: {s.error}", file=sys.stderr)
        return 2
    for s in summaries:
        if s.run_dir:
            print(f"run directory: {s.run_dir}")
        if s.report:
            print(f"report: {s.report}")
        if s.report_html:
            print(f"report (single-file HTML): {s.report_html}")
    from . import paths

    index = paths.outputs_dir() / "index.html"
    if any(s.report for s in summaries) and index.is_file():
        print(f"index of all runs: {index}")
    return 0 if all(s.status == "ok" for s in summaries) else 1


def _cmd_validate(args: argparse.Namespace) -> int:
    rc = 0
    for pf in args.params:
        try:
            cfg = config_mod.load(pf)
        except config_mod.ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            rc = 2
        else:
            print(f"ok: {pf}: model {cfg.model.id} on {cfg.target.engine}/{cfg.target.device} "
                  f"x{cfg.target.count}; sections {', '.join(cfg.enabled_sections())}")
            from .sections.environment.probe import params_advisories

            for line in params_advisories(cfg):
                print(f"warning: {pf}: {line}", file=sys.stderr)
            if args.preflight:
                from . import preflight

                try:
                    for note in preflight.run(cfg).notes:
                        print(f"ok: {pf}: {note}")
                except preflight.PreflightError as exc:
                    print(f"error: {pf}: preflight: {exc}", file=sys.stderr)
                    rc = 2
    return rc


def _cmd_verify(args: argparse.Namespace) -> int:
    from pathlib import Path

    from . import verify

    rc = 0
    for d in args.run_dirs:
        if not (Path(d) / "records").is_dir():
            print(f"error: {d}: not a run directory (no records/ inside); give outputs/<model>/<run_id>",
                  file=sys.stderr)
            rc = 2
            continue
        res = verify.verify_run(d)
        print(res.summary())
        if not res.ok:
            rc = max(rc, 1)
    return rc


def _cmd_index(args: argparse.Namespace) -> int:
    from pathlib import Path

    from . import paths, report

    out = Path(args.outputs) if args.outputs else paths.outputs_dir()
    if not out.is_dir():
        print(f"error: {out}: no such directory (the outputs folder holding <model>/<run_id>/ runs)", file=sys.stderr)
        return 2
    res = report.build_index(out, args.lang)
    print(f"{res['runs']} run(s)\nindex: {res['html']}\nindex (Markdown): {res['markdown']}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    """Re-render README.md/.html and report.html of a run from its records; measures nothing."""
    from pathlib import Path

    from . import report

    run_dir = Path(args.run_dir)
    if not (run_dir / "records").is_dir():
        print(f"error: {run_dir}: not a run directory (no records/ folder); expected outputs/<model>/<run_id>",
              file=sys.stderr)
        return 2
    lang = args.lang or report.get(report.load_run(run_dir).params(), "sections.report.language") or "en"
    if lang not in ("en", "zh"):
        lang = "en"
    paths_ = report.write_card(report.load_run(run_dir), lang)
    print(f"model page: {paths_['markdown']}\nmodel page (HTML): {paths_['html']}\n"
          f"full report: {report.write_run_html(run_dir, lang)}\nfull report (Markdown): {paths_['report_markdown']}")
    return 0


def _cmd_schema(args: argparse.Namespace) -> int:
    """Print (or write) the JSON Schema of a record file."""
    import json

    from . import records, sections
    from .schema import record_json_schema

    text = json.dumps(record_json_schema({s.name: s.metrics for s in sections.SECTIONS if s.metrics},
                                         records.SCHEMA_VERSION), indent=1, ensure_ascii=False) + "\n"
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text)
        print(args.out)
    else:
        sys.stdout.write(text)
    return 0


def _cmd_build_model(args: argparse.Namespace) -> int:
    from . import builtin_models

    path = builtin_models.ensure(args.name)
    print(path)
    return 0


def _cmd_weights(args: argparse.Namespace) -> int:
    from . import weights

    if args.action == "scan":
        return weights.scan_weights_cli(args.rest)
    return weights.dequantize_cli(args.rest)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ascendeval", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="execute the workbook for one or more params files")
    r.add_argument("params", nargs="+", help="params/<model>.yaml files, run one after another")
    r.add_argument("--sections", help="comma-separated subset, e.g. environment,smoke")
    g = r.add_mutually_exclusive_group()
    g.add_argument("--run-id", help="name of the run directory (default: timestamp-engine-device)")
    g.add_argument("--resume", metavar="RUN_ID", help="continue RUN_ID, skipping sections already ok")
    r.add_argument("--no-progress", action="store_true", help="no per-cell progress bars")
    r.set_defaults(func=_cmd_run)
    v = sub.add_parser("validate", help="check params files without running anything")
    v.add_argument("params", nargs="+")
    v.add_argument("--preflight", action="store_true",
                   help="also check what a run would hit: the model resolves, its weight files are intact, "
                        "the endpoint answers, the device exists")
    v.set_defaults(func=_cmd_validate)
    vf = sub.add_parser("verify", help="recompute summaries from raw rows and check every record of a run")
    vf.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="outputs/<model>/<run_id>")
    vf.set_defaults(func=_cmd_verify)
    ix = sub.add_parser("index", help="regenerate outputs/index.html and index.md over every run")
    ix.add_argument("outputs", nargs="?", help="outputs directory (default: ASCENDEVAL_OUTPUTS or ./outputs)")
    ix.add_argument("--lang", choices=["en", "zh"], default="en")
    ix.set_defaults(func=_cmd_index)
    rp = sub.add_parser("report", help="re-render a run's model card and report.html from its records (no measuring)")
    rp.add_argument("run_dir", metavar="RUN_DIR", help="outputs/<model>/<run_id>")
    rp.add_argument("--lang", choices=["en", "zh"], help="default: the run's sections.report.language")
    rp.set_defaults(func=_cmd_report)
    sc = sub.add_parser("schema", help="the JSON Schema of a record file (records/<section>.json)")
    sc.add_argument("--out", help="write it to this file instead of stdout")
    sc.set_defaults(func=_cmd_schema)
    b = sub.add_parser("build-model", help="build (or find in the cache) a builtin model and print its path")
    b.add_argument("name")
    b.set_defaults(func=_cmd_build_model)
    w = sub.add_parser("weights", help="weight tools: 'scan DIR' (NaN/Inf, stats, outliers) or "
                                       "'dequant SRC DST' (GPTQ -> fp16/bf16); add --help after the action")
    w.add_argument("action", choices=["scan", "dequant"])
    w.add_argument("rest", nargs=argparse.REMAINDER, help="arguments of the action")
    w.set_defaults(func=_cmd_weights)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - bad input is one line; --debug shows where it came from
        if args.debug:
            raise
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(f"error: {type(exc).__name__}: {msg} (--debug shows the traceback)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
