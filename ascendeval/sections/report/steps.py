"""The report section's steps (notebook 06_report): model facts into a record, verdicts, the list
of what was not measured, `verify`, the model card and report pages, and the cross-run index."""

from __future__ import annotations

from typing import Any

from ... import sections as sections_mod
from ...errors import SectionSkipped
from ...report.builder import Card
from ...report.page import build_page
from ...report.html import write_card
from ...report.index import build_index
from ...report.rundata import (
    RunData,
    facts_from_model_dir,
    load_run,
    recorded_model_facts,
)
from ...report.text import verdict_label
from ...report.verdicts import not_measured, section_verdict


def model_facts_step(run: Any, data: RunData) -> dict[str, Any]:
    """Report step: make sure the model facts are in a record of this run (store them in the report
    record when the smoke section did not), so the card's model table is traceable."""
    facts, where = recorded_model_facts(data)
    if facts is None:

        try:
            path = run.model().path
        except Exception as exc:  # noqa: BLE001 - e.g. a served-only model without local weights
            raise SectionSkipped(f"model config not available: {type(exc).__name__}: {exc}",
                                 zh=f"模型配置不可用：{type(exc).__name__}: {exc}") from exc
        facts = {"path": str(path), **facts_from_model_dir(path)}
        where = "report"
    run.add("model", facts)
    run.add("model_facts_from", where)
    data.records.setdefault("report", {}).setdefault("metrics", {})["model"] = facts
    return facts


def facts_table(facts: dict[str, Any] | None) -> Any:
    import pandas as pd

    return pd.DataFrame([(k, v) for k, v in (facts or {}).items()], columns=["item", "value"]).set_index("item")


def upstream_kit_step(run: Any, data: RunData) -> dict[str, Any]:
    """Report step: the files a vLLM-Ascend model-support pull request adds (accuracy config,
    accuracy.txt line, accuracy report, tutorial draft), from this run's records."""
    from ...report import upstream_kit

    kit = upstream_kit.write(load_run(data.run_dir))
    for rel in kit["files"]:
        run.artifact(data.run_dir / kit["root"] / rel)
    run.add("upstream_kit", kit)
    return kit


def card_step(run: Any, data: RunData) -> Card:
    """Report step: write README.md + README.html for this run (language from params)."""
    lang = run.conf.language
    data = load_run(data.run_dir)  # re-read: this section's own record now holds the verify result
    paths_ = write_card(data, lang)
    for p in paths_.values():
        run.artifact(p)
    for rel in ("artifacts/report_smoke_latency.png", "artifacts/report_wall_times.png"):
        if (data.run_dir / rel).is_file():
            run.artifact(data.run_dir / rel)
    return build_page(data, lang)  # the model page; report.md / report.html hold the rest


def verdict_table(data: RunData, lang: str = "en") -> Any:
    import pandas as pd

    rows = [{"section": v.section, "status": (data.rec(v.section) or {}).get("status", "—"),
             "verdict": verdict_label(v.state, lang), "note": v.note}
            for v in (section_verdict(data, s, lang) for s in sections_mod.JUDGED)]
    return pd.DataFrame(rows)


def not_measured_table(data: RunData, lang: str = "en") -> Any:
    import pandas as pd

    return pd.DataFrame(not_measured(data, lang), columns=["section", "what", "status", "reason"])


def verify_step(run: Any) -> Any:
    """Report step: `ascendeval verify` on the records written so far; problems fail this step."""
    import pandas as pd

    from ... import verify

    if not run.conf.verify:
        raise SectionSkipped("verify: false in params (sections.report.verify)",
                             zh="参数文件中设置了 verify: false（sections.report.verify）")

    res = verify.verify_run(run.run_dir, skip_sections=("report",))
    run.add("verify", {"checks_count": res.checks, "problems_count": len(res.problems),
                       "problems": res.problems[:50]})
    if res.problems:
        raise RuntimeError(f"{len(res.problems)} problem(s): " + "; ".join(res.problems[:5]))
    return pd.DataFrame({"checks": [res.checks], "problems": [0]})


def index_step(run: Any) -> dict[str, str]:
    """Report step: regenerate outputs/index.{md,html} over every run next to this one."""

    if not run.conf.index:
        raise SectionSkipped("index: false in params (sections.report.index)",
                             zh="参数文件中设置了 index: false（sections.report.index）")
    outputs = run.run_dir.parent.parent
    return build_index(outputs, run.conf.language)

