"""What every plot shares: a figure sized for the model card, a font with Chinese glyphs, the plot
words in English and Chinese, and saving.

The card shows images about 800 px wide. Figures are `WIDTH_IN` inches wide whatever their dpi,
so a 10 pt label is about 14 px at that width; the dpi only adds sharpness on dense screens.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import re
import textwrap
from pathlib import Path
from typing import Any, Iterator

WIDTH_IN = 8.0
DPI = 120

# Families with Chinese glyphs, best first. WenQuanYi Micro Hei comes with the package's
# dependencies (FONT_PACKAGE); the others are used when the system has them.
CJK_FAMILIES = ("Noto Sans CJK SC", "Source Han Sans SC", "WenQuanYi Micro Hei", "WenQuanYi Zen Hei",
                "Noto Sans CJK JP", "Source Han Sans", "Microsoft YaHei", "PingFang SC", "SimHei",
                "Droid Sans Fallback", "AR PL UMing CN")
# A pip package (pyproject dependencies) holding WenQuanYi Micro Hei (Apache-2.0), so `make install`
# alone gives matplotlib a Chinese font on a fresh machine.
FONT_PACKAGE = "paperang_p2_fonts_cjk"
# Where distributions install fonts (scripts/install_test_deps.sh: fonts-wqy-zenhei). matplotlib
# keeps a font cache and does not rescan these folders when a font is installed after the cache
# was built, so they are searched here.
SYSTEM_FONT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts", "~/.local/share/fonts", "~/.fonts")
_CJK_FILE = re.compile(r"wqy|wenquanyi|cjk|sourcehan|source-han|droidsansfallback|uming|ukai|simhei|yahei|pingfang",
                       re.IGNORECASE)
_PROBE = "中文吞吐"  # a family counts as CJK only when its file has these glyphs

WORDS: dict[str, dict[str, str]] = {
    # shared
    "median": {"en": "median", "zh": "中位数"},
    "repeat_range": {"en": "median, range over repeats", "zh": "中位数在各次重复间的范围"},
    "p99": {"en": "P99", "zh": "P99"},
    "ttft_ms": {"en": "TTFT (ms)", "zh": "首 Token 延迟 TTFT (ms)"},
    "tpot_ms": {"en": "TPOT (ms)", "zh": "每 Token 延迟 TPOT (ms)"},
    "ttft": {"en": "Time to first token", "zh": "首 Token 延迟"},
    "tpot": {"en": "Time per output token", "zh": "每输出 Token 延迟"},
    "tok_s": {"en": "{what} (tokens/s)", "zh": "{what} (tokens/s)"},
    "workload": {"en": "{inp} tokens in, {out} out; {n} requests per point, measured {k}x",
                 "zh": "输入 {inp} tokens，输出 {out} tokens；每个测试点 {n} 个请求，测量 {k} 次"},
    # serving
    "lat_vs_rate": {"en": "Serving latency vs request rate", "zh": "服务延迟随请求速率的变化"},
    "rate_axis": {"en": "request rate (req/s)", "zh": "请求速率 (req/s)"},
    "all_at_once": {"en": "∞\n(all at once)", "zh": "∞\n（全部同时发送）"},
    "thr_vs_conc": {"en": "Output throughput vs concurrency", "zh": "输出吞吐随并发数的变化"},
    "conc_axis": {"en": "max concurrency (requests)", "zh": "最大并发数 (请求)"},
    "out_thr": {"en": "output throughput", "zh": "输出吞吐"},
    "ttft_cdf": {"en": "TTFT distribution", "zh": "首 Token 延迟分布"},
    "by_rate": {"en": "by request rate", "zh": "按请求速率"},
    "by_conc": {"en": "by concurrency", "zh": "按并发数"},
    "main_point": {"en": "main load point", "zh": "主测试点"},
    "share_axis": {"en": "requests at or below (%)", "zh": "不超过该延迟的请求占比 (%)"},
    "rate_n": {"en": "rate {r} req/s", "zh": "速率 {r} req/s"},
    "rate_inf": {"en": "rate ∞ (all at once)", "zh": "速率 ∞（全部同时发送）"},
    "conc_n": {"en": "concurrency {k}", "zh": "并发 {k}"},
    # request timeline, Pareto front, capacity under an SLO
    "tl_title": {"en": "Main run: each request over time", "zh": "主测试点：各请求的时间线"},
    "tl_ttft": {"en": "waiting for the first token (queue + prefill)", "zh": "等待首 token（排队 + 预填充）"},
    "tl_decode": {"en": "decode", "zh": "解码"},
    "tl_request_axis": {"en": "requests (by send time)", "zh": "请求（按发送时间）"},
    "tl_in_flight": {"en": "requests in flight", "zh": "进行中的请求"},
    "tl_bottom_title": {"en": "Requests in flight", "zh": "进行中的请求"},
    "tl_cpu_title": {"en": "The server process's CPU use (telemetry)", "zh": "服务进程 CPU 占用 (遥测)"},
    "tl_in_flight_axis": {"en": "in flight (requests)", "zh": "进行中 (请求)"},
    "tl_time_axis": {"en": "time since the first request (s)", "zh": "自第一个请求起的时间 (s)"},
    "tl_server_cpu": {"en": "server CPU", "zh": "服务进程 CPU"},
    "tl_cpu_axis": {"en": "server CPU (% of one core)", "zh": "服务进程 CPU (单核 %)"},
    "pareto_title": {"en": "Throughput per device vs speed per user (concurrency points)\nper user = 1000 / median TPOT (ms); {n} device(s)",
                     "zh": "单设备吞吐与单用户速度（各并发测试点）\n单用户 = 1000 / TPOT 中位数 (ms)；{n} 个设备"},
    "pareto_x": {"en": "output per device (tok/s)", "zh": "单设备输出 (tok/s)"},
    "pareto_y": {"en": "output per user (tok/s)", "zh": "单用户输出 (tok/s)"},
    "pareto_front": {"en": "Pareto front", "zh": "帕累托前沿"},
    "pareto_points": {"en": "concurrency point", "zh": "并发测试点"},
    "capacity_title": {"en": "Capacity under the SLO: share of requests meeting it per probe",
                       "zh": "SLO 约束下的容量：每个探测点满足 SLO 的请求占比"},
    "capacity_rate": {"en": "by request rate (Poisson arrivals)", "zh": "按请求速率（泊松到达）"},
    "capacity_concurrency": {"en": "by concurrency (all at once)", "zh": "按并发数（全部同时发送）"},
    "share_met_axis": {"en": "requests meeting the SLO (%)", "zh": "满足 SLO 的请求 (%)"},
    "slo_target": {"en": "target share", "zh": "目标占比"},
    "slo_answer": {"en": "highest load meeting it", "zh": "满足目标的最高负载"},
    # graph vs eager, prefill / decode
    "gve": {"en": "Graph mode vs eager mode", "zh": "图模式与 eager 模式对比"},
    "gve_conditions": {"en": "latency: batch {b}, {i} tokens in, {o} out · TTFT and throughput: {n} prompts at once",
                       "zh": "延迟：批大小 {b}，输入 {i} tokens，输出 {o} tokens · TTFT 与吞吐：{n} 条提示词同时发送"},
    "out_tok_s": {"en": "output throughput (tokens/s)", "zh": "输出吞吐 (tokens/s)"},
    "lat_ms": {"en": "mean latency (ms)", "zh": "平均延迟 (ms)"},
    "lower_better": {"en": "{what}\n(lower is better)", "zh": "{what}\n（越低越好）"},
    "higher_better": {"en": "{what}\n(higher is better)", "zh": "{what}\n（越高越好）"},
    "latency": {"en": "Mean latency", "zh": "平均延迟"},
    "throughput": {"en": "Output throughput", "zh": "输出吞吐"},
    "graph_mode": {"en": "graph\n({mode})", "zh": "图模式\n（{mode}）"},
    "eager_mode": {"en": "eager", "zh": "eager 模式"},
    "pd": {"en": "Prefill and decode speed vs batch size", "zh": "预填充与解码速度随批大小的变化"},
    "pd_conditions": {"en": "prefill: {i} tokens in, 1 out · decode: {o} tokens out",
                      "zh": "预填充：输入 {i} tokens、输出 1 个 token · 解码：输出 {o} tokens"},
    "prefill": {"en": "Prefill", "zh": "预填充"},
    "decode": {"en": "Decode", "zh": "解码"},
    "prefill_speed": {"en": "prefill speed", "zh": "预填充速度"},
    "decode_speed": {"en": "decode speed", "zh": "解码速度"},
    "batch_axis": {"en": "batch size (sequences)", "zh": "批大小 (条)"},
    # precision
    "positions": {"en": "Divergence from the reference per position (teacher forcing)",
                  "zh": "逐位置与参考模型的分布差异（teacher forcing）"},
    "position_axis": {"en": "position in the reference sequence (token index)", "zh": "参考序列中的位置 (token 序号)"},
    "kl_full": {"en": "KL divergence, full vocabulary (nats)", "zh": "KL 散度，全词表 (nats)"},
    "kl_returned": {"en": "KL divergence on the returned top-k (nats)", "zh": "返回 top-k 上的 KL 散度 (nats)"},
    "flips": {"en": "top-1 token differs ({n})", "zh": "top-1 token 不一致（{n} 处）"},
    "prompt": {"en": "prompt", "zh": "提示词"},
    "hidden_norm": {"en": "Hidden-state norm per layer", "zh": "各层隐藏状态范数"},
    "hidden_rel": {"en": "Relative difference per layer", "zh": "各层相对差异"},
    "layer_axis": {"en": "layer (index, 0 = embeddings)", "zh": "层 (序号，0 = 嵌入层)"},
    "norm_axis": {"en": "norm (mean L2 per token)", "zh": "范数 (每 token 平均 L2)"},
    "rel_axis": {"en": "relative difference (‖target − ref‖ / ‖ref‖)", "zh": "相对差异 (‖目标 − 参考‖ / ‖参考‖)"},
    "reference": {"en": "reference", "zh": "参考模型"},
    "target": {"en": "target", "zh": "目标模型"},
    # deployment matrix
    "dep_prefill": {"en": "Prefill path vs the baseline", "zh": "预填充路径：与基线对比"},
    "dep_logprob_axis": {"en": "mean |Δ logprob| of the sequence's token (nats)",
                         "zh": "序列 token 的平均 |Δ logprob| (nats)"},
    "dep_decode": {"en": "Decode path: divergence from the baseline", "zh": "解码路径：与基线分叉"},
    "generated_axis": {"en": "generated token (index)", "zh": "生成的 token (序号)"},
    "dep_diverged_axis": {"en": "share of prompts diverged", "zh": "已分叉的提示词比例"},
    # long context
    "long_context": {"en": "Long context: {model} on {target}", "zh": "长上下文：{model}（{target}）"},
    "ttft_vs_len": {"en": "TTFT vs input length", "zh": "首 Token 延迟随输入长度的变化"},
    "decode_vs_len": {"en": "Decode speed vs input length", "zh": "解码速度随输入长度的变化"},
    "input_axis": {"en": "input length (tokens)", "zh": "输入长度 (tokens)"},
    "chunked_on": {"en": "chunked prefill on", "zh": "分块预填充开启"},
    "chunked_off": {"en": "chunked prefill off", "zh": "分块预填充关闭"},
    # report
    "smoke": {"en": "Smoke test: latency per prompt (greedy, one at a time)",
              "zh": "冒烟测试：逐条提示词延迟（贪心解码，逐条发送）"},
    "latency_s": {"en": "latency (s)", "zh": "延迟 (s)"},
    "wall": {"en": "Run time: sections and engine starts", "zh": "运行耗时：各章节与引擎启动"},
    "wall_s": {"en": "wall time (s)", "zh": "耗时 (s)"},
    "section": {"en": "section", "zh": "章节"},
    "engine_start": {"en": "engine start", "zh": "引擎启动"},
}


def word(lang: str, key: str, **kw: Any) -> str:
    """The plot word `key` in `lang` (English when there is no Chinese), formatted with `kw`."""
    entry = WORDS[key]
    return entry.get(lang, entry["en"]).format(**kw)


def language(run: Any) -> str:
    """The run's report language: from a SectionRun's params, or (for plot functions that get
    only a path) from the params.yaml the runner copies into the run directory the artifact is in."""
    cfg = getattr(run, "cfg", None)
    if cfg is not None:
        return cfg.sections.report.language
    params = Path(run).resolve().parent.parent / "params.yaml"
    if not params.is_file():
        return "en"
    import yaml

    data = yaml.safe_load(params.read_text(encoding="utf-8")) or {}
    lang = ((data.get("sections") or {}).get("report") or {}).get("language", "en")
    return lang if lang in ("en", "zh") else "en"


# --------------------------------------------------------------------------- fonts


def _has_cjk_glyphs(path: str) -> bool:
    from matplotlib import ft2font

    try:
        font = ft2font.FT2Font(path)
    except (OSError, RuntimeError):
        return False
    return all(font.get_char_index(ord(c)) for c in _PROBE)


def _font_files() -> list[Path]:
    """CJK font files: the bundled package's, then those in the system's font folders."""
    found: list[Path] = []
    spec = importlib.util.find_spec(FONT_PACKAGE)
    for loc in (spec.submodule_search_locations or []) if spec else []:
        found += sorted(Path(loc).rglob("*.tt[cf]"))
    for d in SYSTEM_FONT_DIRS:
        root = Path(d).expanduser()
        if root.is_dir():
            found += sorted(p for p in root.rglob("*") if p.suffix.lower() in (".ttf", ".ttc", ".otf")
                            and _CJK_FILE.search(p.name))
    return found


def _register_fonts() -> None:
    """Add CJK font files matplotlib's cached font list does not know (a cache built before the
    font was installed, or the bundled font, which is in no system folder)."""
    from matplotlib import font_manager

    known = {Path(f.fname).resolve() for f in font_manager.fontManager.ttflist}
    for path in _font_files():
        if path.resolve() not in known:
            try:
                font_manager.fontManager.addfont(str(path))
            except (OSError, RuntimeError, ValueError):  # an unreadable file is not a font to use
                continue


@functools.lru_cache(maxsize=1)
def cjk_font() -> str | None:
    """The family of an installed font with Chinese glyphs (registered with matplotlib here when
    it is not in matplotlib's font cache), or None when there is none. Looked up once a process."""
    from matplotlib import font_manager

    _register_fonts()
    by_name = {f.name: f.fname for f in font_manager.fontManager.ttflist}
    for name in CJK_FAMILIES:
        if name in by_name and _has_cjk_glyphs(by_name[name]):
            return name
    return None


# --------------------------------------------------------------------------- figures


@contextlib.contextmanager
def style(lang: str = "en") -> Iterator[tuple[Any, str]]:
    """pyplot with the card's style and a CJK font, as (plt, lang). lang falls back to "en" when
    no CJK font is installed: English labels read better than boxes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    family = cjk_font()
    if family is None:
        lang = "en"
    # zh: the CJK font first (its Latin glyphs match its Chinese); en: DejaVu first and the CJK
    # font as fallback, for Chinese prompts and the like
    fonts = ([family, "DejaVu Sans"] if lang == "zh" else ["DejaVu Sans", family]) if family else ["DejaVu Sans"]
    # font.family as a list, not "sans-serif": matplotlib falls back glyph by glyph only along
    # the families named there
    rc = {"font.family": fonts, "axes.unicode_minus": False,
          "font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 9,
          "xtick.labelsize": 9, "ytick.labelsize": 9, "figure.titlesize": 12, "axes.grid": True,
          "grid.alpha": 0.3, "legend.frameon": True, "legend.framealpha": 0.9, "figure.dpi": DPI,
          "savefig.dpi": DPI, "axes.spines.top": False, "axes.spines.right": False}
    with matplotlib.rc_context(rc):
        yield plt, lang


def figure(plt: Any, height_in: float, ncols: int = 1, nrows: int = 1, **kw: Any) -> tuple[Any, Any]:
    """A card-wide figure; constrained layout keeps titles, labels and outside legends in it."""
    return plt.subplots(nrows, ncols, figsize=(WIDTH_IN, height_in), layout="constrained", squeeze=False, **kw)


def legend_below(fig: Any, handles: list[Any], labels: list[str], ncol: int | None = None, title: str | None = None) -> Any:
    """One legend under the axes, outside them, so it never covers data."""
    return fig.legend(handles, labels, loc="outside lower center", ncol=ncol or min(len(labels), 4),
                      title=title, frameon=False)


def log_scale(ax: Any, axis: str = "y") -> None:
    """A log axis labelled 10, 20, 50, 100 ... (plain numbers, not 2×10¹)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    getattr(ax, f"set_{axis}scale")("log")
    a = getattr(ax, f"{axis}axis")
    a.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    a.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    a.set_minor_formatter(NullFormatter())


def save(fig: Any, path: str | Path) -> Path:
    """Write the figure as PNG and free it (a notebook keeps every open figure alive)."""
    import matplotlib.pyplot as plt

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, dpi=DPI)
    plt.close(fig)
    return p


# --------------------------------------------------------------------------- text


def wrap(text: str, width: int) -> str:
    """Break a label into lines of about `width` characters at spaces, never inside a word."""
    return "\n".join(textwrap.wrap(text, width, break_long_words=False, break_on_hyphens=False)) or text


def shorten(text: str, width: int) -> str:
    """`text` cut to about `width` characters with an ellipsis: at a space where there is one in
    the second half (Latin), else after a character (Chinese has no spaces between words)."""
    text = " ".join(str(text).split())
    if len(text) <= width:
        return text
    cut = text[:width]
    space = cut.rfind(" ")
    return (cut[:space] if space > width // 2 else cut).rstrip(" ,;:·") + "…"
