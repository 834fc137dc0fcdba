"""The serving benchmark's added card parts: the SLOs goodput is judged against, how points were
kept clean, intervals and indistinguishable points, server telemetry, capacity under the SLO,
and the main point under every tool's definitions."""

from __future__ import annotations

from typing import Any

from ...report.builder import CardBuilder
from ...report.cells import fmt, md_escape, md_table
from ...report.text import L, metric_label


def slo_note(b: CardBuilder, m: dict[str, Any]) -> None:
    """Which SLOs goodput is measured against, and where they came from."""
    slo = m.get("serving_slo")
    if not isinstance(slo, dict):
        return
    lang = b.lang
    text = slo_text(slo)
    if slo.get("source") == "baseline" and isinstance(slo.get("single_request_baseline"), dict):
        base, f = slo["single_request_baseline"], slo.get("factors") or {}
        b.add(L(lang, "slo_from_baseline", slo=text, n=base.get("completed_count"),
                ttft=fmt(base.get("median_ttft_ms"), "median_ttft_ms", lang),
                tpot=fmt(base.get("median_tpot_ms"), "median_tpot_ms", lang),
                fx=f.get("ttft_x_baseline"), px=f.get("tpot_x_baseline")))
    else:
        b.add(L(lang, "slo_from_params", slo=text))


def slo_text(slo: dict[str, Any]) -> str:
    parts = [(name, slo.get(key)) for name, key in (("TTFT", "ttft_ms"), ("TPOT", "tpot_ms"), ("E2EL", "e2el_ms"))]
    return ", ".join(f"{name} ≤ {v:.4g} ms" for name, v in parts if v is not None)


def clean_note(b: CardBuilder, points: list[dict[str, Any]]) -> None:
    """How the points were kept apart: the prefix-cache reset, and input lengths asked vs counted."""
    if not points:
        return
    lang = b.lang
    resets = {p.get("prefix_cache_reset") for p in points}
    if resets == {True}:
        cache = L(lang, "clean_reset")
    elif False in resets:
        note = next((p.get("prefix_cache_reset_note") for p in points if p.get("prefix_cache_reset") is False), "")
        cache = L(lang, "clean_reset_refused", why=md_escape(note, 160))
    elif resets == {None} and any(p.get("prefix_cache_reset_note") for p in points):
        note = next(p.get("prefix_cache_reset_note") for p in points if p.get("prefix_cache_reset_note"))
        cache = L(lang, "clean_no_reset", why=md_escape(note, 160))
    else:
        cache = L(lang, "clean_fresh_only")
    asked = points[0].get("input_len_requested")
    lows = [p["input_tokens_actual_min"] for p in points if p.get("input_tokens_actual_min") is not None]
    highs = [p["input_tokens_actual_max"] for p in points if p.get("input_tokens_actual_max") is not None]
    lengths = "" if asked is None or not lows else L(lang, "clean_lengths", asked=asked, lo=min(lows), hi=max(highs))
    b.add(cache + lengths)


def client_note(b: CardBuilder, m: dict[str, Any]) -> None:
    """The client's own share of TTFT, calibrated in this run (client_check.py), and the points
    where the client itself was the bottleneck (each point's `client`, loadgen.client_stats)."""
    lang = b.lang
    cal = [r for r in m.get("loadgen_calibration") or [] if r.get("client_overhead_median_ms") is not None]
    if cal:
        items = [L(lang, "client_cal_item", rate=_rate_text(r.get("request_rate_label"), lang),
                   med=fmt(r["client_overhead_median_ms"], "client_overhead_median_ms", lang),
                   p99=fmt(r.get("client_overhead_p99_ms"), "client_overhead_p99_ms", lang))
                 + (L(lang, "client_cal_bound") if (r.get("client") or {}).get("client_bound") else "")
                 for r in cal]
        b.add(L(lang, "client_calibrated", transport=cal[0]["client"]["transport"],
                ttft=fmt(cal[0].get("sim_ttft_ms"), "sim_ttft_ms", lang),
                tpot=fmt(cal[0].get("sim_tpot_ms"), "sim_tpot_ms", lang), items=L(lang, "list_sep").join(items)),
              b.source("performance", ["client_calibration"]))
    pts = [p for p in m.get("serving") or [] if isinstance(p.get("client"), dict)]
    if not pts:
        return
    bound = [p for p in pts if p["client"].get("client_bound")]
    if bound:
        key = "client_bound_reason_zh" if lang == "zh" else "client_bound_reason"
        items = [f"{_point_label(p, lang)}: {md_escape(p['client'].get(key) or '', 1000)}" for p in bound]
        b.add(L(lang, "client_bound_points", n=len(bound), total=len(pts), points=L(lang, "list_sep").join(items)))
    else:
        lag = max((p["client"].get("loop_lag_p99_ms") or 0.0) for p in pts)
        late = max((p["client"].get("send_lateness_p99_ms") or 0.0) for p in pts)
        b.add(L(lang, "client_never_bound", total=len(pts), lag=fmt(lag, "loop_lag_p99_ms", lang),
                late=fmt(late, "send_lateness_p99_ms", lang)))


def _rate_text(label: Any, lang: str) -> str:
    return L(lang, "rate_inf_short") if label == "inf" else f"{label} req/s"


def ci_cell(point: dict[str, Any], key: str, lang: str) -> str:
    """'lo – hi' of a point's 95 % interval for `key`; blank where none was computed."""
    iv = ((point.get("ci") or {}).get("intervals") or {}).get(key)
    if not iv:
        return ""
    return f"{fmt(iv[0], key, lang)} – {fmt(iv[1], key, lang)}"


def indistinguishable_note(b: CardBuilder, m: dict[str, Any]) -> None:
    close = m.get("serving_indistinguishable") or []
    pts = m.get("serving") or []
    lang = b.lang
    if not any(p.get("ci") for p in pts):
        return
    level = next((p["ci"].get("level") for p in pts if p.get("ci")), 0.95)
    method = next((p["ci"].get("method") for p in pts if p.get("ci")), "")
    if not close:
        b.add(L(lang, "ci_all_distinct", level=f"{level:.0%}", method=method))
        return
    items = [L(lang, "ci_pair", a=c["first_point"], b=c["second_point"], what=metric_label(c["compared_metric"], lang))
             for c in close]
    b.add(L(lang, "ci_indistinct", level=f"{level:.0%}", method=method, pairs=L(lang, "list_sep").join(items)))


TELEMETRY_KEYS = ("server_cpu_percent_mean", "server_cpu_percent_max", "server_rss_bytes_max", "host_cpu_percent_mean",
                  "device_power_w_mean", "device_util_percent_mean", "device_mem_used_bytes_max",
                  "device_joules_per_output_token")


def telemetry_table(b: CardBuilder, points: list[dict[str, Any]]) -> None:
    """The server's processes (and device) while each point ran; device columns say why they are empty."""
    rows = [(p, p.get("telemetry")) for p in points if isinstance(p.get("telemetry"), dict)]
    if not rows:
        return
    lang = b.lang
    keys = [k for k in TELEMETRY_KEYS if any(t.get(k) is not None for _, t in rows)]
    interval = rows[0][1].get("telemetry_interval_s")
    b.add(f"#### {L(lang, 'telemetry_title')}",
          L(lang, "telemetry_intro", interval=fmt(interval, "telemetry_interval_s", lang)))
    b.add(md_table([L(lang, "load_point")] + [metric_label(k, lang) for k in keys],
                   [[_point_label(p, lang)] + [fmt(t.get(k), k, lang) for k in keys] for p, t in rows]),
          b.source("performance", ["telemetry"]))
    why = next((t.get("device_not_exercised_zh" if lang == "zh" else "device_not_exercised") for _, t in rows
                if t.get("device_not_exercised")), None)
    if why:
        b.add(L(lang, "telemetry_device_not_exercised", why=md_escape(why, 200)))


def _point_label(p: dict[str, Any], lang: str) -> str:
    sweep = fmt(p.get("sweep"), "sweep", lang)
    rate = p.get("request_rate_label")
    conc = p.get("max_concurrency")
    load = f"rate {rate}" if rate else ""
    if conc:
        load += f" conc {conc}"
    return f"{sweep} ({load.strip()})"


def capacity_part(b: CardBuilder, m: dict[str, Any]) -> None:
    cap = m.get("capacity_slo")
    if not isinstance(cap, dict):
        return
    lang = b.lang
    b.add(f"### {L(lang, 'capacity_title')}", capacity_sentence(cap, lang))
    keys = ["search", "x", "num_requests", "good_count", "share_met", "goodput_req_per_s", "p99_ttft_ms",
            "p99_tpot_ms", "met"]
    b.add(md_table([metric_label(k, lang) for k in keys],
                   [[fmt(pr.get(k), k, lang) for k in keys] for pr in cap.get("probes") or []]),
          L(lang, "capacity_budget", used=cap.get("requests_used"), budget=cap.get("request_budget"),
            n=cap.get("probe_requests"), wall=fmt(cap.get("wall_s"), "wall_s", lang)),
          b.source("performance", ["capacity_requests"]))
    bound = [pr for pr in cap.get("probes") or [] if pr.get("client_bound")]
    if bound:
        b.add(L(lang, "capacity_client_bound", n=len(bound),
                probes=", ".join(f"{fmt(pr.get('search'), 'search', lang)} {pr.get('x'):.3g}" for pr in bound)))


def capacity_sentence(cap: dict[str, Any], lang: str) -> str:
    """'This deployment serves up to N req/s ... within <SLOs> for at least 99 % of requests ...'."""
    share = f"{cap.get('target_share', 0):.0%}"
    slo = slo_text(cap.get("slo") or {})
    parts = []
    for kind in ("rate", "concurrency"):
        res = cap.get(kind)
        if not isinstance(res, dict):
            continue
        best, worst = res.get("highest_passing"), res.get("lowest_failing")
        unit = "req/s" if kind == "rate" else L(lang, "capacity_in_flight")
        if best is None:
            parts.append(L(lang, "capacity_none", kind=L(lang, f"capacity_{kind}"),
                           low=f"{worst:.3g} {unit}" if worst is not None else "?"))
        elif worst is None:
            parts.append(L(lang, "capacity_at_least", kind=L(lang, f"capacity_{kind}"), best=f"{best:.3g} {unit}",
                           why=fmt(res.get("stop_reason"), "stop_reason", lang)))
        else:
            parts.append(L(lang, "capacity_between", kind=L(lang, f"capacity_{kind}"), best=f"{best:.3g} {unit}",
                           worst=f"{worst:.3g} {unit}"))
    return L(lang, "capacity_sentence", share=share, slo=slo, parts=L(lang, "list_sep").join(parts))


DEF_KEYS = ("median_ttft_ms", "mean_tpot_ms", "median_tpot_ms", "median_itl_ms", "p99_itl_ms", "median_e2el_ms")


def definitions_part(b: CardBuilder, m: dict[str, Any]) -> None:
    from ... import metric_definitions

    d = m.get("serving_definitions")
    if not isinstance(d, dict):
        return
    lang = b.lang
    labels = {t.name: (t.label_zh if lang == "zh" else t.label) for t in metric_definitions.DEFINITIONS}
    b.add(f"### {L(lang, 'defs_title')}", L(lang, "defs_intro"))
    b.add(md_table([metric_label("tool", lang), metric_label("itl_basis", lang)] + [metric_label(k, lang) for k in DEF_KEYS],
                   [[labels.get(t["tool"], t["tool"]), fmt(t.get("itl_basis"), "itl_basis", lang)]
                    + [fmt(t.get(k), k, lang) for k in DEF_KEYS] for t in d.get("tools") or []]),
          b.source("performance", ["requests"]))
    found = [f for f in d.get("findings") or [] if f.get("differs")]
    same = [f for f in d.get("findings") or [] if f.get("differs") is False]
    if found:
        b.add(L(lang, "defs_differ"), "\n".join(f"- {md_escape(f['message_zh' if lang == 'zh' else 'message'], 400)}"
                                                for f in found))
    if same:
        b.add(L(lang, "defs_agree", what=L(lang, "list_sep").join(fmt(f["finding"], "finding", lang) for f in same)))
    b.add(L(lang, "defs_sources"), "\n".join(f"- {labels.get(t.name, t.name)}: " + "; ".join(f"`{s}`" for s in t.sources)
                                             for t in metric_definitions.DEFINITIONS))
