"""Every plot, rendered from the golden run's real records in English and Chinese, is publishable:
titled, units on numeric axes, legends that cover no data, nothing outside the figure or on top of
a neighbouring label, human legend labels, words in the run's language, and a font with Chinese
glyphs for zh (found on a fresh matplotlib font cache too). The figures are inspected as
matplotlib drew them: `plotting.save` is wrapped to keep each figure after the real save."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from matplotlib import font_manager
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.ft2font import FT2Font

from ascendeval import plotting, records
from ascendeval.context import SectionRun
from ascendeval.report.card import timing_rows
from ascendeval.report.plots import make_plots
from ascendeval.report.rundata import load_run
from ascendeval.sections.features import long_context
from ascendeval.sections.features.common import Table
from ascendeval.sections.performance import charts, serving
from ascendeval.sections.precision import steps as precision

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "fixtures" / "golden-run"
CJK = re.compile(r"[\u3400-\u9fff]")
NUMBER = re.compile(r"[−\-]?[\d,]*\.?\d+(e[−\-+]?\d+)?")


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(params=["en", "zh"])
def lang(request) -> str:
    return request.param


@pytest.fixture
def run_dir(tmp_path, lang) -> Path:
    """A copy of the golden run whose params ask for the report in `lang`."""
    d = tmp_path / "run"
    shutil.copytree(GOLDEN, d)
    params = yaml.safe_load((d / "params.yaml").read_text(encoding="utf-8"))
    params["sections"]["report"]["language"] = lang
    (d / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True), encoding="utf-8")
    return d


@pytest.fixture
def figures(monkeypatch) -> list:
    """The figures the plot functions save, in order (the real save still writes each PNG)."""
    saved: list = []
    real_save = plotting.save

    def keep(fig, path):
        saved.append(fig)
        out = real_save(fig, path)
        assert out.stat().st_size > 5000 and fig.get_figwidth() == plotting.WIDTH_IN
        return out

    monkeypatch.setattr(plotting, "save", keep)
    return saved


def section_run(run_dir: Path, section: str) -> SectionRun:
    """A SectionRun on the copied run holding the section's recorded metrics, as after its steps."""
    run = SectionRun(section, run_dir / "params.yaml", run_dir)
    run.metrics.update(json.loads((run_dir / "records" / f"{section}.json").read_text())["metrics"])
    return run


# --------------------------------------------------------------------------- checks every figure passes


def _texts(fig) -> list:
    return [t for t in fig.findobj(lambda a: hasattr(a, "get_text") and hasattr(a, "get_fontproperties"))
            if t.get_visible() and t.get_text().strip()]


def _subfigures(fig) -> list:
    return [fig, *[s for sub in fig.subfigs for s in _subfigures(sub)]]


def _legends(fig) -> list:
    return [lg for f in _subfigures(fig) for lg in f.legends] + [ax.get_legend() for ax in fig.get_axes()
                                                                  if ax.get_legend()]


def _drawn_ticklabels(ax, axis: str) -> list:
    lo, hi = sorted(getattr(ax, f"get_{axis}lim")())
    i = 0 if axis == "x" else 1
    return [t for t in getattr(ax, f"get_{axis}ticklabels")()
            if t.get_visible() and t.get_text().strip() and lo - 1e-9 <= t.get_position()[i] <= hi + 1e-9]


def _inside(inner, outer, tol: float = 1.5) -> bool:
    return (inner.x0 >= outer.x0 - tol and inner.y0 >= outer.y0 - tol and inner.x1 <= outer.x1 + tol
            and inner.y1 <= outer.y1 + tol)


def _data_points(ax) -> np.ndarray:
    """Display coordinates of every plotted point and bar corner of the axes."""
    pts = [np.empty((0, 2))]
    for line in ax.get_lines():
        xy = np.column_stack([np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)])
        pts.append(line.get_transform().transform(xy[np.isfinite(xy).all(axis=1)]))  # axvline: axes y
    for patch in ax.patches:
        bb = patch.get_window_extent()
        pts.append(np.array([[bb.x0, bb.y1], [bb.x1, bb.y1], [(bb.x0 + bb.x1) / 2, bb.y1]]))
    return np.concatenate(pts)


def _fonts_for(text) -> list[str]:
    """The font files matplotlib draws `text` with: one per family of its fallback chain."""
    paths = []
    for family in text.get_fontproperties().get_family():
        try:
            paths.append(font_manager.findfont(font_manager.FontProperties(family=family),
                                               fallback_to_default=False))
        except ValueError:
            continue
    return paths


def check_figure(fig, lang: str) -> None:
    # pyplot closed the figure after saving it: draw it again on an Agg canvas to measure its text
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    r = canvas.get_renderer()
    page = fig.bbox
    for ax in fig.get_axes():
        assert ax.get_title().strip(), "every panel has a title"
        assert _inside(ax.get_tightbbox(r), page), f"panel {ax.get_title()!r} reaches outside the figure"
        for axis in ("x", "y"):
            ticks = _drawn_ticklabels(ax, axis)
            label = getattr(ax, f"get_{axis}label")()
            if any(NUMBER.fullmatch(t.get_text().strip()) for t in ticks):
                assert re.search(r"\(.+\)", label), f"numeric {axis} axis of {ax.get_title()!r} needs a unit: {label!r}"
            boxes = [t.get_window_extent(r) for t in ticks]
            for a, b in zip(boxes, boxes[1:]):
                assert not a.overlaps(b), f"{axis} tick labels of {ax.get_title()!r} overlap"
    for ax in fig.get_axes():  # no point drawn outside its panel (where it would be clipped away)
        pts = _data_points(ax)
        box = ax.bbox
        assert ((pts[:, 0] >= box.x0 - 1) & (pts[:, 0] <= box.x1 + 1) & (pts[:, 1] >= box.y0 - 1)
                & (pts[:, 1] <= box.y1 + 1)).all(), f"data outside the panel {ax.get_title()!r}"
    for lg in _legends(fig):
        box = lg.get_window_extent(r)
        assert _inside(box, page), "legend outside the figure"
        for ax in fig.get_axes():
            pts = _data_points(ax)
            covered = (pts[:, 0] > box.x0) & (pts[:, 0] < box.x1) & (pts[:, 1] > box.y0) & (pts[:, 1] < box.y1)
            assert not covered.any(), f"the legend covers data of {ax.get_title()!r}"
        for t in lg.get_texts():
            assert "=" not in t.get_text() and "_" not in t.get_text(), f"raw legend label {t.get_text()!r}"
    for t in _texts(fig):
        assert t.get_fontsize() >= 8, f"{t.get_text()!r} is too small to read at the card's width"
    titles = [t for ax in fig.get_axes() for t in (ax.get_title(), ax.get_xlabel(), ax.get_ylabel())]
    if lang == "zh":
        assert all(CJK.search(t) for t in titles if t.strip()), f"untranslated: {titles}"
        for t in _texts(fig):
            fonts = _fonts_for(t)
            if CJK.search(t.get_text()):
                assert FT2Font(fonts[0]).get_char_index(ord("吞")), f"zh text drawn with {fonts[0]}"
                missing = [c for c in set(CJK.findall(t.get_text()))
                           if not any(FT2Font(p).get_char_index(ord(c)) for p in fonts)]
                assert not missing, f"no glyph for {missing} in {fonts}"
    else:
        assert not any(CJK.search(t) for t in titles), f"Chinese in an English plot: {titles}"


# --------------------------------------------------------------------------- fonts and text helpers


def test_cjk_font_is_found_on_a_fresh_font_cache_without_system_cjk_fonts(tmp_path):
    """As on a fresh machine after `make install`: an empty matplotlib cache, and no CJK font among
    the system's (dropped from the list here); the font that comes with the dependencies is used."""
    code = (
        "import re\n"
        "from matplotlib import font_manager as fm\n"
        "from matplotlib.ft2font import FT2Font\n"
        "from ascendeval import plotting\n"
        "fm.fontManager.ttflist = [f for f in fm.fontManager.ttflist if not FT2Font(f.fname).get_char_index(ord('中'))]\n"
        "plotting.SYSTEM_FONT_DIRS = ()\n"
        "family = plotting.cjk_font()\n"
        "path = fm.findfont(fm.FontProperties(family=family), fallback_to_default=False)\n"
        "print(family, '|', path, '|', all(FT2Font(path).get_char_index(ord(c)) for c in '吞吐量首延迟'))\n")
    env = {**os.environ, "MPLCONFIGDIR": str(tmp_path / "mpl")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    family, path, glyphs = (s.strip() for s in out.stdout.strip().splitlines()[-1].split("|"))
    assert family == "WenQuanYi Micro Hei" and plotting.FONT_PACKAGE in path and glyphs == "True", out.stdout


def test_cjk_font_in_this_process_has_chinese_glyphs():
    family = plotting.cjk_font()
    assert family in plotting.CJK_FAMILIES
    path = font_manager.findfont(font_manager.FontProperties(family=family), fallback_to_default=False)
    assert all(FT2Font(path).get_char_index(ord(c)) for c in "吞吐量首延迟")


def test_wrap_breaks_at_spaces_only_and_shorten_cuts_at_a_word():
    label = "Precision against the reference · reference-engine-with-a-long-name (hf)"
    wrapped = plotting.wrap(label, 20)
    assert "\n" in wrapped and wrapped.replace("\n", " ") == label
    assert "reference-engine-with-a-long-name" in wrapped.splitlines()  # a long word stays whole
    short = plotting.shorten("The chemical symbol for water is", 24)
    assert short.endswith("…") and "The chemical symbol for water is".startswith(short[:-1])
    assert "The chemical symbol for water is"[len(short) - 1] == " "  # cut where a word ends
    assert plotting.shorten("人工智能的英文缩写是什么呢请回答", 6) == "人工智能的英…"
    assert plotting.shorten("short", 30) == "short"


def test_words_have_both_languages():
    for key, entry in plotting.WORDS.items():
        assert set(entry) == {"en", "zh"}, key
        assert CJK.search(entry["zh"]) or entry["zh"] == entry["en"], f"{key}: zh not translated"


# --------------------------------------------------------------------------- each plot


def test_report_plots(run_dir, lang, figures):
    data = load_run(run_dir)
    assert make_plots(data, lang) == ["artifacts/report_smoke_latency.png", "artifacts/report_wall_times.png"]
    smoke, wall = figures
    for fig in figures:
        check_figure(fig, lang)
    # prompt labels: whole words, an ellipsis where a prompt was shortened
    prompts = {str(r["prompt"]) for r in data.rows("smoke", "prompts")}
    for t in smoke.axes[0].get_yticklabels():
        text = t.get_text().split(". ", 1)[1]
        if text.endswith("…"):
            full = next(p for p in prompts if " ".join(p.split()).startswith(text[:-1]))
            rest = " ".join(full.split())[len(text) - 1:]
            # (a comma or colon before the cut is dropped)
            assert CJK.search(text) or rest.lstrip(",;:·").startswith(" "), f"prompt cut mid-word: {text!r}"
    # wall-time labels: every label whole, wrapped at spaces, and a legend naming the colours
    ax = wall.axes[0]
    shown = [t.get_text().replace("\n", " ") for t in ax.get_yticklabels()]
    assert shown == [w for w, _, _ in timing_rows(data, lang)]
    assert any("\n" in t.get_text() for t in ax.get_yticklabels()) or max(map(len, shown)) <= 34
    (legend,) = wall.legends
    assert [t.get_text() for t in legend.get_texts()] == [plotting.word(lang, "section"),
                                                          plotting.word(lang, "engine_start")]


def test_serving_plots(run_dir, lang, figures):
    run = SectionRun("performance", run_dir / "params.yaml", run_dir)
    points = json.loads((run_dir / "records" / "performance.json").read_text())["metrics"]["serving"]
    rows = records.load_rows(run_dir, "performance", "requests")
    paths = serving.serving_plots(run, points, rows)
    assert [Path(p).name for p in paths] == ["perf_latency_vs_rate.png", "perf_throughput_vs_concurrency.png",
                                             "perf_latency_cdf.png", "perf_request_timeline.png", "perf_pareto.png"]
    assert all(str(Path(p).relative_to(run_dir)) in run.artifacts for p in paths)
    rate, conc, cdf, timeline_fig, pareto_fig = figures
    for fig in figures:
        check_figure(fig, lang)

    finite = sorted(pt["request_rate_req_per_s"] for pt in points
                    if pt["sweep"] == "rate" and pt["request_rate_req_per_s"] is not None)
    for ax in rate.axes:
        ticks = [t.get_text() for t in ax.get_xticklabels()]
        assert ticks[:len(finite)] == [f"{r:g}" for r in finite] and ticks[-1].startswith("∞")
        median = ax.get_lines()[0]  # the finite rates' median line: the infinite rate is not on it
        lo, hi = ax.get_xlim()
        assert len(median.get_xdata()) == len(finite)
        assert (max(median.get_xdata()) - min(median.get_xdata())) / (hi - lo) > 0.3, "finite rates squeezed"
        # the finite points use a good part of the height: the infinite rate's queueing does not
        # flatten them (flattened, they span a few percent)
        ys = [y for line in ax.get_lines() if len(line.get_xdata()) == len(finite) for y in line.get_ydata()]
        disp = ax.transData.transform(np.column_stack([np.zeros(len(ys)), ys]))[:, 1]
        assert (disp.max() - disp.min()) / ax.bbox.height > 0.4
        # the infinite rate's values are on the axis or, above it, printed at its top edge
        key = "ttft" if ax is rate.axes[0] else "tpot"
        inf_pt = next(pt for pt in points if pt["sweep"] == "rate" and pt["request_rate_req_per_s"] is None)
        printed = {t.get_text() for t in ax.texts}
        for stat in ("median", "p99"):
            y = inf_pt[f"{stat}_{key}_ms"]
            assert y <= ax.get_ylim()[1] or f"{y:,.3g}" in printed, (key, stat, y, printed)
    assert any(rate.axes[0].texts), "the golden run's all-at-once TTFT is off the finite rates' scale"
    labels = [t.get_text() for t in rate.legends[0].get_texts()]
    # the golden run measured every point 3 times: the median's range over the repeats is drawn
    assert labels == [plotting.word(lang, "median"), plotting.word(lang, "repeat_range"), plotting.word(lang, "p99")]

    (ax,) = conc.axes
    assert list(ax.get_lines()[0].get_ydata()) == pytest.approx(
        [pt["output_tok_per_s"] for pt in sorted((p for p in points if p["sweep"] == "concurrency"),
                                                 key=lambda p: p["max_concurrency"])])

    legends = [[t.get_text() for t in lg.get_texts()] for sub in cdf.subfigs for lg in sub.legends]
    assert all(len(ax.get_lines()) <= serving.CDF_LINES for ax in cdf.axes)
    # one line per load point, labelled with the golden run's own rates (params: request_rates [4, 16, inf])
    assert finite == [4, 16]
    if lang == "en":
        assert legends == [["rate 4 req/s", "rate 16 req/s", "rate ∞ (all at once)"],
                           ["concurrency 1", "concurrency 4", "concurrency 16"]]
    else:
        assert legends == [["速率 4 req/s", "速率 16 req/s", "速率 ∞（全部同时发送）"], ["并发 1", "并发 4", "并发 16"]]
    # the timeline: one bar pair per timed request of the main point's first repeat
    from ascendeval.sections.performance import timeline

    top, bottom = timeline_fig.axes[:2]
    n_main = len(timeline.main_run_rows(rows))
    assert len(top.patches) == 2 * n_main and max(bottom.get_lines()[0].get_ydata()) <= n_main
    # the Pareto front: one marker per concurrency point, the front through the undominated ones
    (ax,) = pareto_fig.axes
    pts = timeline.pareto_points(points, 1)
    assert len(ax.get_lines()[1].get_xdata()) == len(pts) == 3
    assert len(ax.get_lines()[0].get_xdata()) == sum(p["on_front"] for p in pts) >= 1
    # each line is the distribution of its own point's timed requests
    n_timed = sum(1 for r in rows if r["sweep"] == "rate" and r["load"] == "rate=4" and r["success"] and not r["warmup"])
    first = cdf.subfigs[0].axes[0].get_lines()[0]
    assert first.get_ydata()[-1] == pytest.approx(100.0) and len(first.get_xdata()) == n_timed


def test_precision_positions(run_dir, lang, figures):
    rec = json.loads((run_dir / "records" / "precision.json").read_text())["metrics"]["teacher_forced"]
    rows = records.load_rows(run_dir, "precision", "positions")
    tf = precision.TeacherForcedResult(scope=rec["scope"], rows=rows, per_prompt=[], summary=rec,
                                       hidden_layers=[], wall_s=0.0)
    # no lang given: the language comes from the run's params beside artifacts/
    precision.plot_positions(tf, run_dir / "artifacts" / "precision_positions.png")
    (fig,) = figures
    check_figure(fig, lang)
    ax = fig.axes[0]
    assert "kl_returned_renorm" not in ax.get_ylabel() and "nats" in ax.get_ylabel()
    n_flips = sum(not r["top1_match"] for r in rows)
    assert n_flips > 0
    flips = [ln for ln in ax.get_lines() if ln.get_marker() == "X"]
    assert len(flips) == 1 and len(flips[0].get_xdata()) == n_flips
    prompt_colours = {ln.get_color() for ln in ax.get_lines() if ln.get_marker() != "X"}
    assert flips[0].get_color() not in prompt_colours and flips[0].get_markersize() >= 9
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels[0] == plotting.word(lang, "flips", n=n_flips)


def test_long_context_plot(run_dir, lang, figures):
    run = SectionRun("features", run_dir / "params.yaml", run_dir)
    on = Table("long_context", records.load_rows(run_dir, "features", "long_context_requests"))
    # the golden run is at the standard profile, which leaves the chunked-off sweep out: its second
    # series here is the measured one with the mode renamed and TTFT x1.5 (a plotting test only)
    off_rows = records.load_rows(run_dir, "features", "long_context_chunked_off_requests") or [
        {**r, "mode": "chunked_off", "ttft_ms": r["ttft_ms"] * 1.5} for r in on.rows]
    off = Table("chunked_prefill_off", off_rows)
    plot = long_context.long_context_plot(run, on, off)
    assert Path(plot.path).is_file()
    (fig,) = figures
    check_figure(fig, lang)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [plotting.word(lang, "chunked_on"),
                                                                  plotting.word(lang, "chunked_off")]
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == [str(r["input_len"]) for r in on.rows]


def test_graph_vs_eager_chart(run_dir, lang, figures):
    run = section_run(run_dir, "performance")
    (path,) = charts.graph_vs_eager_chart(run)
    assert str(Path(path).relative_to(run_dir)) in run.artifacts
    (fig,) = figures
    check_figure(fig, lang)
    rec = run.metrics["graph_vs_eager"]
    for ax, (key, scale, *_rest) in zip(fig.axes, charts.GRAPH_PANELS):
        assert [p.get_height() for p in ax.patches] == pytest.approx([rec["eager"][key] * scale,
                                                                       rec["graph"][key] * scale])
        change = [t.get_text() for t in ax.texts if t.get_text().endswith("%")]
        assert change == [f"{rec['graph_vs_eager_delta'][key + '_delta']:+.0%}".replace("-", "−")]
    ticks = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert ticks == [plotting.word(lang, "eager_mode"), plotting.word(lang, "graph_mode", mode="torch.compile")]
    assert "32" in fig.get_suptitle()  # the workload the modes ran is stated


def test_prefill_decode_chart(run_dir, lang, figures):
    run = section_run(run_dir, "performance")
    (path,) = charts.prefill_decode_chart(run)
    assert Path(path).name == "perf_prefill_decode.png"
    (fig,) = figures
    check_figure(fig, lang)
    rows = run.metrics["prefill_decode"]
    prefill, decode = fig.axes
    assert [p.get_height() for p in prefill.patches] == pytest.approx([r["prefill_tok_per_s"] for r in rows])
    assert [p.get_height() for p in decode.patches] == pytest.approx([r["decode_tok_per_s"] for r in rows])
    assert [t.get_text() for t in decode.get_xticklabels()] == [str(r["batch_size"]) for r in rows]
    assert "1024" in fig.get_suptitle() and "128" in fig.get_suptitle()


def test_chart_of_a_step_that_did_not_run_is_skipped(run_dir, lang):
    from ascendeval.context import SectionSkipped

    run = SectionRun("performance", run_dir / "params.yaml", run_dir)
    run.steps["graph_vs_eager"] = {"status": "skipped", "reason": "graph.enabled is false", "wall_s": 0.0}
    with pytest.raises(SectionSkipped, match="graph.enabled is false"):
        charts.graph_vs_eager_chart(run)


@pytest.fixture(scope="module")
def hidden_tf():
    """Real hidden states: the untrained tiny Qwen2, float32 reference vs bfloat16 target (hf)."""
    from ascendeval import builtin_models, config

    path = str(builtin_models.ensure("tiny-qwen2-untrained"))

    def cfg(dtype):
        return config.parse({"model": {"id": "builtin:tiny-qwen2-untrained", "dtype": dtype},
                             "target": {"engine": "hf"},
                             "sections": {"precision": {"max_new_tokens": 6, "max_prompts": 2}}})

    ref = precision.run_reference(cfg("float32"), cfg("float32").sections.precision, path)
    tgt = precision.open_target(cfg("bfloat16"), path)
    try:
        return precision.teacher_forced(ref, tgt, cfg("bfloat16").sections.precision)
    finally:
        precision.close(ref, tgt)


def test_hidden_states_plot(tmp_path, lang, figures, hidden_tf):
    assert hidden_tf.hidden_layers
    precision.plot_hidden_states(hidden_tf, tmp_path / "hidden.png", lang=lang)
    (fig,) = figures
    check_figure(fig, lang)
    norm, rel = fig.axes
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [plotting.word(lang, "reference"),
                                                                  plotting.word(lang, "target")]
    assert list(norm.get_lines()[0].get_ydata()) == pytest.approx([r["ref_mean_norm"] for r in hidden_tf.hidden_layers])
    assert "hidden_states" not in norm.get_xlabel() + rel.get_xlabel()
