"""Charts of the offline figures the performance record holds: graph vs eager mode, and prefill /
decode speed per batch size. Each reads the recorded metrics (what the card prints), never a
re-measurement, and returns the artifact paths it wrote."""

from __future__ import annotations

from typing import Any

from ... import plotting
from ...context import SectionRun

EAGER_COLOUR, GRAPH_COLOUR = "#9d9d9d", "#4c78a8"
BETTER_COLOUR, WORSE_COLOUR = "#2ca02c", "#d62728"

# (record key, scale to the plotted unit, words of the title and the axis, lower is better)
GRAPH_PANELS = (
    ("avg_latency_s", 1e3, "latency", "lat_ms", True),
    ("mean_ttft_ms", 1.0, "ttft", "ttft_ms", True),
    ("output_tok_per_s", 1.0, "throughput", "out_tok_s", False),
)


def graph_vs_eager_chart(run: SectionRun) -> list[str]:
    """Eager vs graph mode bars for mean latency, mean TTFT and output throughput, each panel with
    the graph mode's recorded change (green where it is better)."""
    rec = run.needs("graph_vs_eager", run.metrics.get("graph_vs_eager"))
    eager, graph, delta = rec["eager"], rec["graph"], rec.get("graph_vs_eager_delta") or {}
    with plotting.style(plotting.language(run)) as (plt, lang):
        fig, axs = plotting.figure(plt, 3.9, ncols=len(GRAPH_PANELS))
        names = [plotting.word(lang, "eager_mode"), plotting.word(lang, "graph_mode", mode=graph["mode"])]
        for ax, (key, scale, title, axis, lower) in zip(axs[0], GRAPH_PANELS):
            values = [eager.get(key), graph.get(key)]
            _bars(ax, names, [v * scale if v is not None else None for v in values], [EAGER_COLOUR, GRAPH_COLOUR])
            ax.set_ylabel(plotting.word(lang, axis))
            ax.set_title(plotting.word(lang, "lower_better" if lower else "higher_better",
                                       what=plotting.word(lang, title)))
            _change(ax, delta.get(f"{key}_delta"), lower)
        fig.suptitle(_graph_conditions(run, lang))
        return [str(plotting.save(fig, run.artifact_path("perf_graph_vs_eager.png")))]


def prefill_decode_chart(run: SectionRun) -> list[str]:
    """Prefill and decode speed (tokens/s) per batch size, from the record's metrics.prefill_decode."""
    rows = run.needs("prefill_decode", run.metrics.get("prefill_decode"))
    rows = sorted(rows, key=lambda r: r["batch_size"])
    word = plotting.word
    with plotting.style(plotting.language(run)) as (plt, lang):
        fig, ((a, b),) = plotting.figure(plt, 3.8, ncols=2)
        sizes = [str(r["batch_size"]) for r in rows]
        for ax, key, what, colour in ((a, "prefill_tok_per_s", "prefill_speed", "#4c78a8"),
                                      (b, "decode_tok_per_s", "decode_speed", "#f58518")):
            _bars(ax, sizes, [r.get(key) for r in rows], [colour] * len(rows))
            ax.set_xlabel(word(lang, "batch_axis"))
            ax.set_ylabel(word(lang, "tok_s", what=word(lang, what)))
            ax.set_title(word(lang, "prefill" if key.startswith("prefill") else "decode"))
        first = rows[0]
        fig.suptitle(f"{word(lang, 'pd')}\n"
                     f"{word(lang, 'pd_conditions', i=first['prefill_input_len'], o=first['decode_output_len'])}")
        return [str(plotting.save(fig, run.artifact_path("perf_prefill_decode.png")))]


def show(paths: list[str] | None) -> None:
    """Display charts inline at the card's width (nothing when the chart step did not run)."""
    from IPython.display import Image, display

    for path in paths or []:
        display(Image(filename=path, width=plotting.WIDTH_IN * 100))


# --------------------------------------------------------------------------- helpers


def _bars(ax: Any, names: list[str], values: list[float | None], colours: list[str]) -> None:
    """Bars with their values on top; an unmeasured value is an empty slot marked "n/a"."""
    heights = [v if v is not None else 0.0 for v in values]
    ax.bar(range(len(names)), heights, color=colours, width=0.6)
    for x, v in enumerate(values):
        ax.annotate(f"{v:,.1f}" if v is not None and v < 100 else (f"{v:,.0f}" if v is not None else "n/a"),
                    (x, v or 0), textcoords="offset points", xytext=(0, 3), ha="center", fontsize=8)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylim(0, max(heights, default=0) * 1.25 or 1)  # room for the value labels and the change note
    ax.grid(axis="x", visible=False)


def _change(ax: Any, delta: float | None, lower: bool) -> None:
    """The graph mode's relative change, top left, green when it is an improvement."""
    if delta is None:
        return
    better = delta < 0 if lower else delta > 0
    ax.text(0.03, 0.97, f"{delta:+.0%}".replace("-", "−"), transform=ax.transAxes, ha="left", va="top",
            fontsize=10, fontweight="bold", color=BETTER_COLOUR if better else WORSE_COLOUR)


def _graph_conditions(run: SectionRun, lang: str) -> str:
    """Title with the workloads both modes ran (the latency and throughput workloads' settings)."""
    title = plotting.word(lang, "gve")
    lat, thr = run.metrics.get("latency") or {}, run.metrics.get("throughput") or {}
    if not {"batch_size", "input_len", "output_len"} <= lat.keys() or "num_requests" not in thr:
        return title
    return title + "\n" + plotting.word(lang, "gve_conditions", b=lat["batch_size"], i=lat["input_len"],
                                        o=lat["output_len"], n=thr["num_requests"])
