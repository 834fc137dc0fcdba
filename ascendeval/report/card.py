"""The model card of one run: the run-level parts (header, verdicts, model, deploy, not measured,
run time, files, FAQ) around each registered section's own part (its `card` renderer)."""

from __future__ import annotations

# the registry is read at call time only: the section packages import these report modules
from .. import sections as sections_mod
from . import templates
from .builder import Card, CardBuilder
from .cells import Raw, fmt, get, human_params, md_escape, md_table
from .deploy import deploy_commands, download_command
from .rundata import RunData, recorded_model_facts
from .text import L, metric_label, section_label, verdict_label
from .verdicts import not_measured, section_verdict

# the report's contents, in the order of the parts below: (heading key, anchor); the anchors are
# the same in both languages, so a link to report.html#precision survives a re-render in Chinese
TOC = (("sec_verdicts", "verdicts"), ("sec_model", "model"), ("sec_env", "environment"), ("sec_deploy", "deploy"),
       ("sec_smoke", "smoke"), ("sec_performance", "performance"), ("sec_precision", "precision"),
       ("sec_quality", "quality"), ("sec_features", "features"), ("sec_not_measured", "not-measured"),
       ("sec_timing", "run-time"), ("sec_files", "files"), ("sec_faq", "faq"))
ANCHORS = {"environment": "environment", "smoke": "smoke", "performance": "performance", "precision": "precision",
           "quality": "quality", "features": "features", "report": "verdicts"}

CONFIG_FACT_ROWS = (
    "architecture", "model_type", "param_count", "num_layers", "hidden_size", "intermediate_size",
    "num_attention_heads", "num_key_value_heads", "head_dim", "vocab_size", "max_context", "rope_theta",
    "tie_word_embeddings", "config_dtype", "weight_dtype", "weight_bytes", "safetensors_files", "quantization",
)


def header_facts(d: RunData, lang: str) -> dict[str, str]:
    """Title and one-line facts of the run, shared by the model page and the full report."""
    any_rec = d.any_record()
    facts = recorded_model_facts(d)[0] or {}
    model = get(any_rec, "model.name") or get(any_rec, "model.id") or "?"
    tgt = any_rec.get("target", {})
    target = f"{tgt.get('device', '?')} ×{tgt.get('count', 1)}"
    dev_name = get(d.rec("environment"), "metrics.target_device.name")
    if dev_name:
        target += f" ({dev_name})"
    return {"title": get(d.params(), "sections.report.title") or L(lang, "title", model=model, target=target),
            "model": model, "target": target, "arch": facts.get("architecture") or "—",
            "params": human_params(facts.get("param_count")), "dtype": get(any_rec, "model.dtype") or "—",
            "engine": tgt.get("engine", "?"), "run_id": d.run_id, "date": (any_rec.get("created_at") or "")[:10],
            **profile_facts(d, lang)}


def profile_facts(d: RunData, lang: str) -> dict[str, str]:
    """The run's profile (quick / standard / full) and what it means; none for older records."""
    from .. import profiles

    # the first record that carries one (a record the runner wrote for a section that never ran has none)
    name = next((get(d.rec(s), "params.profile.name") for s in sections_mod.NAMES
                 if get(d.rec(s), "params.profile.name")), None)
    if name not in profiles.PROFILE_NAMES:
        return {"profile": None, "profile_desc": None, "profile_keys": 0}
    keys = sorted({k for s in sections_mod.NAMES for k in (get(d.rec(s), "params.profile.keys") or [])})
    return {"profile": name, "profile_desc": profiles.describe(name, lang), "profile_keys": len(keys)}


def _sec_header(b: CardBuilder) -> None:
    b.add(templates.render("header.md.j2", b.lang, **header_facts(b.d, b.lang), toc=TOC))


def _sec_verdicts(b: CardBuilder) -> None:
    lang = b.lang
    b.add(f"## {L(lang, 'sec_verdicts')}")
    rows = []
    for s in sections_mod.JUDGED:
        v = section_verdict(b.d, s, lang)
        stem = sections_mod.get(s).notebook
        link = Raw(f"[{section_label(s, lang)}](records/{s}.json)") if b.d.rec(s) else section_label(s, lang)
        st = L(lang, b.d.rec(s)["status"]) if b.d.rec(s) else "—"
        rows.append((link, st, verdict_label(v.state, lang), v.note, Raw(f"[{stem}.html]({stem}.html)")
                     if b.d.rec(s) else "—"))
    b.add(md_table([L(lang, "section"), L(lang, "status"), L(lang, "verdict"), L(lang, "note"),
                    L(lang, "notebook")], rows))
    ver = get(b.d.rec("report"), "metrics.verify")
    if isinstance(ver, dict):
        b.add(L(lang, "verify_line", checks=ver.get("checks_count"), problems=ver.get("problems_count"))
              + " " + b.source("report"))


def _sec_model(b: CardBuilder) -> None:
    lang, d = b.lang, b.d
    b.add(f"## {L(lang, 'sec_model')}")
    desc = (get(d.params(), "model.description_zh") if lang == "zh" else None) or get(d.params(), "model.description")
    if desc:
        b.add(f"{L(lang, 'desc_from_params')} {desc.strip()}")
    facts, where = recorded_model_facts(d)
    if not facts:
        b.add(L(lang, "no_facts"))
        return
    b.add(L(lang, "facts_source"))
    rows = []
    for k in CONFIG_FACT_ROWS:
        if k in facts and facts[k] is not None:
            v = facts[k]
            shown = human_params(v) if k == "param_count" else fmt(v, k, lang)
            if k == "num_key_value_heads" and facts.get("num_attention_heads") and v < facts["num_attention_heads"]:
                shown += " (GQA)"
            rows.append((metric_label(k, lang), shown, Raw(f"`{k}`")))
    if where:
        rows.append((L(lang, "model_id"), get(d.any_record(), "model.id") or "—", Raw("`model.id`")))
        b.add(md_table([L(lang, "item"), L(lang, "value"), L(lang, "key")], rows), b.source(where))
    files = facts.get("model_files")
    if files:
        b.add(f"### {L(lang, 'model_files')}", md_table([L(lang, "file"), L(lang, "size")],
                                                         [(f["name"], fmt(f["bytes"], "weight_bytes", lang)) for f in files]))
    download = download_command(d)
    if download:
        b.add(L(lang, "download_intro"), f"```bash\n{download}\n```")


def _sec_deploy(b: CardBuilder) -> None:
    cmds = deploy_commands(b.d)
    if cmds:
        b.add(templates.render("deploy.md.j2", b.lang, cmds=cmds))


def _sec_not_measured(b: CardBuilder) -> None:
    lang = b.lang
    b.add(f"## {L(lang, 'sec_not_measured')}")
    items = not_measured(b.d, lang)
    if not items:
        b.add(L(lang, "nothing_missing"))
        return
    b.add(md_table([L(lang, "section"), L(lang, "step"), L(lang, "status"), L(lang, "reason")],
                   [(section_label(i["section"], lang), i["what"], L(lang, {"hw": "hw_not_here"}.get(i["status"], i["status"])),
                     md_escape(i["reason"], 300)) for i in items]))


def timing_rows(data: RunData, lang: str = "en") -> list[tuple[str, str, float]]:
    """(what, kind, wall_s) for each section (run.json) and each engine start (records, run.json)."""
    rows: list[tuple[str, str, float]] = []
    man = data.manifest or {}
    for s in man.get("sections", []):
        if isinstance(s.get("wall_s"), (int, float)):
            rows.append((section_label(s["section"], lang), "section", float(s["wall_s"])))
    shared = man.get("shared_server")
    if isinstance(shared, dict) and isinstance(shared.get("start_wall_s"), (int, float)):
        rows.append((L(lang, "shared_server"), "engine", float(shared["start_wall_s"])))
    for section in sections_mod.NAMES:
        for st in get(data.rec(section), "metrics.engine_starts") or []:
            if isinstance(st, dict) and isinstance(st.get("wall_s"), (int, float)):
                rows.append((f"{section_label(section, lang)} · {st.get('label')} ({st.get('engine')})", "engine",
                             float(st["wall_s"])))
    return rows


NEUTRAL_OVERRIDES = {"max_logprobs"}  # engine settings that change no figure of the target (precision's logprob cap)


def changed_settings(st: dict, target: dict | None) -> list[str]:
    """The override keys of an engine start that differ from the params' target (its fields and
    engine_args); an override equal to what the target already sets changes nothing."""
    target = target or {}
    mine = {**(target.get("engine_args") or {}), **{k: v for k, v in target.items() if k != "engine_args"}}
    return sorted(k for k, v in (st.get("overrides") or {}).items()
                  if k not in NEUTRAL_OVERRIDES and not (k in mine and mine[k] == v))


def start_role(st: dict, target: dict | None = None) -> str:
    """What an engine start was: the target's configuration (offline or served), a configuration
    of its own (an override that changes the target's settings), the reference, or an API client."""
    engine = st.get("engine")
    if engine == "hf" and st.get("reference_plan") is not None or str(st.get("label", "")).endswith("reference"):
        return "role_reference"
    if engine == "openai":
        return "role_client"
    if changed_settings(st, target):
        return "role_comparison"
    return "role_target_served" if engine == "server" else "role_target_offline"


def target_starts(data: RunData) -> list[tuple[str, str]]:
    """(section or "shared", role) of each start of the target's own configuration, in run order."""
    out = []
    shared = (data.manifest or {}).get("shared_server")
    if isinstance(shared, dict) and shared.get("status") == "ok":
        out.append(("shared", "role_target_served"))
    for section in sections_mod.NAMES:
        rec = data.rec(section)
        for st in get(rec, "metrics.engine_starts") or []:
            if isinstance(st, dict) and not st.get("shared"):
                role = start_role(st, get(rec, "params.target"))
                if role in ("role_target_offline", "role_target_served"):
                    out.append((section, role))
    return out


def _sec_timing(b: CardBuilder) -> None:
    lang = b.lang
    rows = timing_rows(b.d, lang)
    if not rows:
        return
    b.add(f"## {L(lang, 'sec_timing')}")
    total = (b.d.manifest or {}).get("wall_s")
    kinds = {"section": L(lang, "section"), "engine": L(lang, "kind_engine")}
    shared = (b.d.manifest or {}).get("shared_server")
    # one role per engine row of timing_rows, in its order (the same conditions)
    roles = [L(lang, "role_target_served")] if isinstance(shared, dict) and isinstance(
        shared.get("start_wall_s"), (int, float)) else []
    for section in sections_mod.NAMES:
        target = get(b.d.rec(section), "params.target")
        for st in get(b.d.rec(section), "metrics.engine_starts") or []:
            if isinstance(st, dict) and isinstance(st.get("wall_s"), (int, float)):
                role = start_role(st, target)
                roles.append(L(lang, role, keys=", ".join(changed_settings(st, target)))
                             if role == "role_comparison" else L(lang, role))
    roles_iter = iter(roles)
    table = [(w, kinds.get(k, k), next(roles_iter, "—") if k == "engine" else "", fmt(s, "wall_s"))
             for w, k, s in rows]
    if isinstance(total, (int, float)):
        table.append((L(lang, "total"), L(lang, "kind_run"), "", fmt(total, "wall_s")))
    starts = target_starts(b.d)
    if starts:
        where = [L(lang, "shared_server") if s == "shared" else
                 f"{section_label(s, lang)} ({L(lang, 'why_own_server' if role == 'role_target_served' else f'why_offline_{s}')})"
                 for s, role in starts]
        shared = any(s == "shared" for s, _ in starts)
        b.add(L(lang, "target_starts_shared" if shared else "target_starts", n=len(starts),
                where=L(lang, "list_sep").join(where)))
    b.add(md_table([L(lang, "what"), L(lang, "kind"), L(lang, "start_role"), L(lang, "wall_s")], table),
          f"<sub>{L(lang, 'source')}: [run.json](run.json) · records/*.json `engine_starts`</sub>")
    b.image("artifacts/report_wall_times.png", L(lang, "wall_times"))


def _sec_files(b: CardBuilder) -> None:
    lang = b.lang
    b.add(f"## {L(lang, 'sec_files')}", L(lang, "files_intro"))
    lines = []
    for p in sorted(b.d.run_dir.rglob("*")):
        rel = p.relative_to(b.d.run_dir)
        if p.is_dir() or any(part.startswith(".") for part in rel.parts) or rel.parts[0] == "logs" and len(rel.parts) > 2:
            continue
        if any(part.endswith("_files") for part in rel.parts[:-1]):
            continue
        lines.append(f"{rel}  ({p.stat().st_size:,} B)")
    b.add("```text\n" + "\n".join(lines[:200]) + ("\n…" if len(lines) > 200 else "") + "\n```")


def run_faq(d: RunData, lang: str) -> list[dict[str, str]]:
    """The questions this run raises, answered from what it found (asked before the general ones)."""
    out = []
    verdicts = {s: section_verdict(d, s, lang) for s in sections_mod.JUDGED}
    prec = verdicts.get("precision")
    if prec is not None and prec.state == "fail" and prec.note:
        out.append({"q": L(lang, "faq_precision_q"), "a": L(lang, "faq_precision_a", checks=prec.note)})
    smoke = verdicts.get("smoke")
    if smoke is not None and smoke.state == "warn" and smoke.note:
        out.append({"q": L(lang, "faq_smoke_q"), "a": L(lang, "faq_smoke_a", note=smoke.note)})
    missing = not_measured(d, lang)
    hardware = sorted({i["what"] for i in missing if i["status"] == "hw"})
    if hardware:
        out.append({"q": L(lang, "faq_hw_q"), "a": L(lang, "faq_hw_a", items=", ".join(hardware))})
    skipped = [i for i in missing if i["status"] in ("skipped", "failed") and i["what"] != "—"]
    if skipped:
        first = skipped[0]
        out.append({"q": L(lang, "faq_skipped_q", n=len(skipped)),
                    "a": L(lang, "faq_skipped_a", step=first["what"], section=section_label(first["section"], lang),
                           reason=md_escape(first["reason"], 200))})
    return out


def _sec_faq(b: CardBuilder) -> None:
    b.add(templates.render("faq.md.j2", b.lang, found=run_faq(b.d, b.lang)))


def build_card(data: RunData, lang: str = "en") -> Card:
    """The model card of one run, from its records only."""
    b = CardBuilder(data, lang)
    # the run's own parts, the environment's deploy commands, then each section's part in run order
    section_parts = [s.card for s in sections_mod.SECTIONS if s.card]
    for part in (_sec_header, _sec_verdicts, _sec_model, section_parts[0], _sec_deploy, *section_parts[1:],
                 _sec_not_measured, _sec_timing, _sec_files, _sec_faq):
        part(b)
    return Card(_with_anchors("\n\n".join(b.out) + "\n", lang), b.images, data.run_dir)


def _with_anchors(markdown: str, lang: str) -> str:
    """Each part's heading gets the anchor the contents line links to."""
    lines = markdown.split("\n")
    for key, anchor in TOC:
        heading = f"## {L(lang, key)}"
        for i, line in enumerate(lines):
            if line == heading:
                lines[i] = f'<a id="{anchor}"></a>\n\n{line}'
                break
    return "\n".join(lines)

