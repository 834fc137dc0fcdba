"""Two serving plots drawn from the raw rows: the main run's request timeline (each request's wait
for its first token and its decode, the requests in flight, the server's CPU from telemetry), and
the throughput/latency Pareto front over the concurrency points (output tok/s per user against
output tok/s per device)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ... import plotting

TTFT_COLOUR, DECODE_COLOUR, CPU_COLOUR = "#f58518", "#4c78a8", "#54a24b"
MAX_TIMELINE_REQUESTS = 200  # bars beyond this are unreadable at the card's width


def main_run_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The main point's first repeat: its timed, successful requests."""
    return [r for r in rows if r.get("sweep") == "main" and r.get("repeat", 0) == 0 and r["success"]
            and not r["warmup"] and r.get("ttft_ms") is not None and r.get("e2el_ms") is not None]


def in_flight(rows: list[dict[str, Any]], t0: float) -> tuple[np.ndarray, np.ndarray]:
    """(times s, requests in flight) as a step series: +1 at each start, -1 at each end."""
    events = sorted([(r["start_s"] - t0, 1) for r in rows] + [(r["start_s"] - t0 + r["e2el_ms"] / 1e3, -1) for r in rows])
    ts = np.array([0.0] + [t for t, _ in events])
    counts = np.concatenate([[0], np.cumsum([d for _, d in events])])
    return ts, counts


def timeline_plot(run: Any, rows: list[dict[str, Any]], samples: list[dict[str, Any]], path: Any) -> Any:
    """Requests as bars over time (TTFT: queue + prefill, as the client sees it; then decode),
    and below, on the same time axis, requests in flight and (a third panel) the server's CPU use."""
    word = plotting.word
    main = sorted(main_run_rows(rows), key=lambda r: r["start_s"])[:MAX_TIMELINE_REQUESTS]
    if not main:
        return None
    t0 = main[0]["start_s"]
    end = max(r["start_s"] + r["e2el_ms"] / 1e3 for r in main)
    # the sampler also ran through the point's warm-up: only the timed span is drawn
    smp = [s for s in samples if s.get("sweep") == "main" and s.get("repeat", 0) == 0
           and s.get("server_cpu_percent") is not None and t0 <= s["t_s"] <= end + 0.5]
    with_cpu = len(smp) >= 2  # a point shorter than the sampling interval has no CPU line to draw
    with plotting.style(plotting.language(run)) as (plt, lang):
        heights = [max(2.0, 0.06 * len(main)), 2.0] + ([1.6] if with_cpu else [])
        fig = plt.figure(figsize=(plotting.WIDTH_IN, 1.0 + sum(heights)), layout="constrained")
        axes = fig.subplots(len(heights), 1, sharex=True, height_ratios=heights)
        top, bottom = axes[0], axes[1]
        ys = np.arange(len(main))
        starts = np.array([r["start_s"] - t0 for r in main])
        ttft = np.array([r["ttft_ms"] / 1e3 for r in main])
        e2el = np.array([r["e2el_ms"] / 1e3 for r in main])
        top.barh(ys, ttft, left=starts, color=TTFT_COLOUR, height=0.8, label=word(lang, "tl_ttft"))
        top.barh(ys, e2el - ttft, left=starts + ttft, color=DECODE_COLOUR, height=0.8, label=word(lang, "tl_decode"))
        top.invert_yaxis()
        top.set_ylabel(word(lang, "tl_request_axis"))
        top.set_yticks([])
        top.set_title(word(lang, "tl_title"))
        from matplotlib.ticker import MaxNLocator

        ts, counts = in_flight(main, t0)
        bottom.step(ts, counts, where="post", color=DECODE_COLOUR, label=word(lang, "tl_in_flight"))
        bottom.set_ylabel(word(lang, "tl_in_flight_axis"))
        bottom.set_title(word(lang, "tl_bottom_title"))
        bottom.yaxis.set_major_locator(MaxNLocator(integer=True))
        handles, labels = top.get_legend_handles_labels()
        h2, l2 = bottom.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
        if with_cpu:
            cpu = axes[2]
            cpu.plot([s["t_s"] - t0 for s in smp], [s["server_cpu_percent"] for s in smp], "-", color=CPU_COLOUR,
                     lw=1.2, label=word(lang, "tl_server_cpu"))
            cpu.set_ylabel(word(lang, "tl_cpu_axis"))
            cpu.set_title(word(lang, "tl_cpu_title"))
            cpu.set_ylim(bottom=0)
            h3, l3 = cpu.get_legend_handles_labels()
            handles, labels = handles + h3, labels + l3
        axes[-1].set_xlabel(word(lang, "tl_time_axis"))
        plotting.legend_below(fig, handles, labels)
        return plotting.save(fig, path)


def pareto_points(points: list[dict[str, Any]], devices: int) -> list[dict[str, Any]]:
    """Per concurrency point: output tok/s per device (the point's output throughput over the
    devices serving it) and output tok/s per user (1000 / median TPOT: the decode speed one
    request sees), and whether the point is on the Pareto front (no other point is better on both)."""
    pts = [pt for pt in points if pt.get("sweep") == "concurrency" and pt.get("output_tok_per_s")
           and pt.get("median_tpot_ms")]
    out = [{"max_concurrency": pt["max_concurrency"], "per_device": pt["output_tok_per_s"] / max(devices, 1),
            "per_user": 1000.0 / pt["median_tpot_ms"]} for pt in pts]
    for p in out:
        p["on_front"] = not any(q is not p and q["per_device"] >= p["per_device"] and q["per_user"] >= p["per_user"]
                                and (q["per_device"] > p["per_device"] or q["per_user"] > p["per_user"]) for q in out)
    return sorted(out, key=lambda p: p["per_device"])


def pareto_plot(run: Any, points: list[dict[str, Any]], devices: int, path: Any) -> Any:
    word = plotting.word
    pts = pareto_points(points, devices)
    if len(pts) < 2:
        return None
    with plotting.style(plotting.language(run)) as (plt, lang):
        fig, axs = plotting.figure(plt, 3.8)
        ax = axs[0][0]
        front = [p for p in pts if p["on_front"]]
        ax.plot([p["per_device"] for p in front], [p["per_user"] for p in front], "-", color="#999999", lw=1,
                label=word(lang, "pareto_front"))
        ax.plot([p["per_device"] for p in pts], [p["per_user"] for p in pts], "o", color=DECODE_COLOUR,
                label=word(lang, "pareto_points"))
        for p in pts:
            ax.annotate(word(lang, "conc_n", k=p["max_concurrency"]), (p["per_device"], p["per_user"]),
                        textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set_xlabel(word(lang, "pareto_x"))
        ax.set_ylabel(word(lang, "pareto_y"))
        ax.set_title(word(lang, "pareto_title", n=devices))
        ax.margins(x=0.15, y=0.15)
        plotting.legend_below(fig, *ax.get_legend_handles_labels())
        return plotting.save(fig, path)
