"""One trace, every tool's definitions: TTFT, TPOT, ITL and E2EL of the same request rows as
vLLM `bench serve`, SGLang `bench_serving`, GuideLLM, AIPerf and EvalScope perf would compute them.

Input: the raw rows of `records/performance.requests.jsonl` (`metrics.RequestResult.row()`; times
in ms). Each tool's figure is rebuilt from the per-request times the row holds (start -> first
output chunk = `ttft_ms`, start -> last output chunk = `e2el_ms`, the gaps between output chunks
= `itl_ms`, tokens per chunk = `chunk_tokens`, usage `output_tokens`) with the tool's own
per-request formula, its own choice of which requests count, and its own aggregation (mean over
requests or over tokens, percentile method). Every definition below was read in the tool's
source; the file, function and commit are in `DEFINITIONS[i].sources`.

What the rows cannot reproduce (stated per tool in `ToolDefinition.caveats`):
  - the rows time output-carrying chunks only. vLLM and EvalScope also time a chunk whose
    `choices` carry no text (the chat role chunk, an empty final chunk), and SGLang, GuideLLM and
    EvalScope end their E2E latency at the trailing usage chunk / `[DONE]` / stream close. The
    figures here use the last output chunk, a lower bound a fraction of a millisecond short;
  - AIPerf counts output tokens by re-tokenizing the text (unless --use-server-token-count), and
    vLLM / EvalScope re-tokenize when the server sends no usage; the rows hold the server's usage
    count, and a row without one is left out of the token-based figures here;
  - the tools print 0 for an empty sample; here it is None (not measured), like `metrics.py`.

Only successful, non-warm-up rows are used: every tool reports its latency figures over the
successful requests of the measured phase (failed and warm-up requests are dropped before).
Rows with one output token are treated as each tool treats them (see the definitions).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

FIGURES = ("ttft_ms", "tpot_ms", "itl_ms", "e2el_ms")
STATS = ("mean", "median", "p99")
AGREE_REL = 0.01  # two figures "differ" when they are more than 1 % apart


# =========================================================================== the definitions


@dataclass(frozen=True)
class MetricDefinition:
    """How one tool makes one figure: per request, which requests count, and the aggregation."""

    en: str
    zh: str
    defined: bool = True  # False: the tool reports no figure under this name


@dataclass(frozen=True)
class ToolDefinition:
    name: str  # the `tool` value in per_tool_figures
    label: str
    label_zh: str
    sources: tuple[str, ...]  # "owner/repo path::function (commit / version)"
    metrics: dict[str, MetricDefinition] = field(default_factory=dict)  # keyed by FIGURES
    itl_basis: str = "per_chunk"  # per_chunk | per_token | per_request: what one ITL sample is
    caveats: tuple[str, ...] = ()  # what these rows cannot reproduce of the tool


VLLM = ToolDefinition(
    name="vllm",
    label="vLLM bench serve",
    label_zh="vLLM bench serve",
    sources=(
        ("vllm-project/vllm vllm/benchmarks/serve.py::calculate_metrics "
         "(commit 009e6d4a1cd6ba3fb2a9fc00f4ec06f5297232a1)"),
        ("vllm-project/vllm vllm/benchmarks/lib/endpoint_request_func.py::async_request_openai_completions, "
         "async_request_openai_chat_completions (commit 02cfb534df5674737558730b10f23d1b7aef9b7c)"),
    ),
    metrics={
        "ttft_ms": MetricDefinition(
            "Send -> first SSE message with non-empty `choices` (text may be empty). Mean, np.median, "
            "np.percentile (linear) over successful requests.",
            "发送请求到第一个 `choices` 非空的 SSE 消息（文本可为空）的时间。对成功请求取均值、np.median、"
            "np.percentile（线性插值）。"),
        "tpot_ms": MetricDefinition(
            "(E2EL - TTFT) / (output_tokens - 1) per request, output_tokens from usage (tokenizer "
            "re-count when absent); requests with <= 1 token are left out. Mean / median / linear "
            "percentile over requests.",
            "每请求 (E2EL - TTFT) / (输出 token 数 - 1)，token 数取自 usage（缺失时用分词器重数）；"
            "输出 <= 1 个 token 的请求不计入。按请求取均值 / 中位数 / 线性插值分位数。"),
        "itl_ms": MetricDefinition(
            "Every gap between consecutive `choices` messages after the first, pooled over all requests: "
            "one sample per chunk, whatever the tokens in it. Mean / median / linear percentile over chunks.",
            "首个消息之后相邻 `choices` 消息之间的每个间隔，汇总所有请求：每个 chunk 一个样本，不论其含几个 "
            "token。按 chunk 取均值 / 中位数 / 线性插值分位数。"),
        "e2el_ms": MetricDefinition(
            "Send -> last `choices` message (the usage-only message does not end it). Mean / median / "
            "linear percentile over successful requests.",
            "发送请求到最后一个 `choices` 消息（仅含 usage 的消息不算）。对成功请求取均值 / 中位数 / 线性插值分位数。"),
    },
    itl_basis="per_chunk",
    caveats=(
        ("Chat completions: vLLM starts TTFT at the role chunk (choices present, content empty); the rows "
         "skip it, so on a chat endpoint vLLM's own TTFT would read earlier than here."),
        "A row without usage output_tokens is left out of TPOT (vLLM would re-tokenize the text).",
        "An empty sample is None here; vLLM prints 0 (np.mean(x or 0)).",
    ),
)

SGLANG = ToolDefinition(
    name="sglang",
    label="SGLang bench_serving (native /generate backend)",
    label_zh="SGLang bench_serving（原生 /generate 后端）",
    sources=(
        ("sgl-project/sglang python/sglang/bench_serving.py::calculate_metrics, async_request_sglang_generate "
         "(commit 0033168f0f58b2bc05aa0273bd475d9c01bafb1c)"),
        ("sgl-project/sglang python/sglang/benchmark/metrics.py::do_calculate_metrics "
         "(commit 1291c7fc351de2eb2548a95b82a27fb166143efa)"),
        ("sgl-project/sglang python/sglang/benchmark/backends/sglang_client.py::SglangClient.make_request "
         "(commit 0ec535b49035ab21bb42a3b743362b30b3df06e3)"),
    ),
    metrics={
        "ttft_ms": MetricDefinition(
            "Send -> first message with non-empty text. Mean / np.median / np.percentile(99) over "
            "successful requests.",
            "发送请求到第一个文本非空的消息。对成功请求取均值 / np.median / np.percentile(99)。"),
        "tpot_ms": MetricDefinition(
            "(latency - TTFT) / (output_len - 1), output_len = meta_info.completion_tokens (actual "
            "tokens); requests with <= 1 token left out. Mean / median / linear p99 over requests.",
            "(latency - TTFT) / (output_len - 1)，output_len 为 meta_info.completion_tokens（实际 token 数）；"
            "<= 1 个 token 的请求不计入。按请求取均值 / 中位数 / 线性插值 p99。"),
        "itl_ms": MetricDefinition(
            "Per token: a chunk bringing k new tokens adds k samples of gap/k (gap since the last chunk "
            "that brought tokens; a chunk with no new token is skipped and its time goes to the next). "
            "Extra tokens of the first chunk add no sample. Pooled over requests; mean / median / linear p99.",
            "按 token：带来 k 个新 token 的 chunk 计 k 个样本，每个为 间隔/k（间隔从上一个带来 token 的 chunk 起算；"
            "不带新 token 的 chunk 被跳过，其时间并入下一个）。首个 chunk 多出的 token 不计样本。汇总所有请求后取"
            "均值 / 中位数 / 线性插值 p99。"),
        "e2el_ms": MetricDefinition(
            "Send -> last SSE line read, `[DONE]` included. Mean / median / linear p99 over successful requests.",
            "发送请求到读到最后一行 SSE（含 `[DONE]`）。对成功请求取均值 / 中位数 / 线性插值 p99。"),
    },
    itl_basis="per_token",
    caveats=(
        "E2E latency and TPOT end at the `[DONE]` line in SGLang; the rows end at the last output chunk.",
        "ITL needs the tokens of every chunk (`chunk_tokens`); without them it is None.",
    ),
)

SGLANG_OAI = ToolDefinition(
    name="sglang_oai",
    label="SGLang bench_serving (OpenAI backends: sglang-oai, vllm, lmdeploy)",
    label_zh="SGLang bench_serving（OpenAI 兼容后端：sglang-oai、vllm、lmdeploy）",
    sources=(
        ("sgl-project/sglang python/sglang/bench_serving.py::async_request_openai_completions, "
         "async_request_openai_chat_completions, calculate_metrics (commit 0033168f0f58b2bc05aa0273bd475d9c01bafb1c)"),
        ("sgl-project/sglang python/sglang/benchmark/backends/oai_client.py::OAIClient.make_request "
         "(commit 6c32c2895e5b11a77cf450fb79cba23828cdc7a0)"),
    ),
    metrics={
        "ttft_ms": MetricDefinition(
            "Send -> first message with non-empty text. Mean / np.median / np.percentile(99).",
            "发送请求到第一个文本非空的消息。取均值 / np.median / np.percentile(99)。"),
        "tpot_ms": MetricDefinition(
            "(latency - TTFT) / (output_len - 1) with output_len = the REQUESTED output length "
            "(max_tokens): the client sends no stream_options, so no usage arrives and the request's "
            "length is kept (a text chunk that carries usage would replace it). Requests asking for <= 1 "
            "token left out. Mean / median / linear p99.",
            "(latency - TTFT) / (output_len - 1)，其中 output_len 为请求的输出长度（max_tokens）：客户端不发送 "
            "stream_options，收不到 usage，于是沿用请求长度（若带文本的 chunk 附带 usage 则以其为准）。请求长度 <= 1 的不计入。"
            "取均值 / 中位数 / 线性插值 p99。"),
        "itl_ms": MetricDefinition(
            "Every gap between consecutive text-carrying chunks (one sample per chunk), pooled; "
            "mean / median / linear p99.",
            "相邻两个带文本 chunk 之间的每个间隔（每 chunk 一个样本），汇总后取均值 / 中位数 / 线性插值 p99。"),
        "e2el_ms": MetricDefinition(
            "Send -> last SSE line read, `[DONE]` included. Mean / median / linear p99.",
            "发送请求到读到最后一行 SSE（含 `[DONE]`）。取均值 / 中位数 / 线性插值 p99。"),
    },
    itl_basis="per_chunk",
    caveats=(
        "E2E latency and TPOT end at the `[DONE]` line in SGLang; the rows end at the last output chunk.",
        "TPOT divides by the row's max_tokens (what SGLang sent as the requested output length).",
    ),
)

GUIDELLM = ToolDefinition(
    name="guidellm",
    label="GuideLLM (0.4 and later)",
    label_zh="GuideLLM（0.4 及以后）",
    sources=(
        ("vllm-project/guidellm src/guidellm/schemas/request_stats.py::GenerativeRequestStats."
         "time_to_first_token_ms, time_per_output_token_ms, inter_token_latency_ms, request_latency, "
         "output_tokens (v0.7.3-12, commit ee7a77457ba668b4b5ccb40f110518829893b36a; same formulas at tag v0.4.0)"),
        ("vllm-project/guidellm src/guidellm/benchmark/schemas/metrics.py::GenerativeMetrics.compile "
         "(weights: TPOT by output_tokens, ITL by output_tokens - 1; same commit)"),
        ("vllm-project/guidellm src/guidellm/schemas/statistics.py::DistributionSummary.from_values, "
         "Percentiles.from_pdf (weighted, no interpolation; same commit)"),
        ("vllm-project/guidellm src/guidellm/backends/openai/http.py::OpenAIHTTPBackend._resolve_streaming "
         "(first/last_token_iteration: lines with non-empty text; request_end after the stream closes; same commit)"),
        ("vllm-project/guidellm src/guidellm/benchmark/benchmark.py::GenerativeTextResponseStats "
         "(tag v0.3.0: older TPOT = (last_token - first_token) / output_tokens, not reproduced here)"),
    ),
    metrics={
        "ttft_ms": MetricDefinition(
            "Send -> first line with non-empty text. Distribution over successful requests (weight 1); "
            "percentiles are the first value whose cumulative weight reaches p (no interpolation).",
            "发送请求到第一行非空文本。对成功请求的分布（权重 1）；分位数取累积权重首次达到 p 的值（不插值）。"),
        "tpot_ms": MetricDefinition(
            "(last token - send) / output_tokens: TTFT INCLUDED, all tokens in the divisor, defined from "
            "1 token. Weighted by output_tokens, so the mean is sum(last - send) / sum(tokens).",
            "(最后一个 token 时刻 - 发送时刻) / 输出 token 数：包含 TTFT，除数为全部 token，1 个 token 起即有定义。"
            "按输出 token 数加权，均值即 sum(最后 token - 发送) / sum(token 数)。"),
        "itl_ms": MetricDefinition(
            "(last token - first token) / (output_tokens - 1) per request (vLLM's TPOT), weighted by "
            "output_tokens - 1: the mean is over tokens; 1-token requests weigh 0.",
            "每请求 (最后 token - 首 token) / (输出 token 数 - 1)（即 vLLM 的 TPOT），按 输出 token 数 - 1 加权："
            "均值是对 token 取的；1 个 token 的请求权重为 0。"),
        "e2el_ms": MetricDefinition(
            "request_latency = request_end - request_start, request_end taken after the stream closes. "
            "Distribution over successful requests, weighted percentiles.",
            "request_latency = request_end - request_start，request_end 在流关闭之后取。对成功请求的分布，加权分位数。"),
    },
    itl_basis="per_request",
    caveats=(
        "E2E latency ends when the stream closes in GuideLLM; the rows end at the last output chunk.",
        "Without usage GuideLLM counts one token per text chunk; so does this code (num_chunks).",
        "An empty distribution is None here; GuideLLM reports 0.",
    ),
)

AIPERF = ToolDefinition(
    name="aiperf",
    label="AIPerf (NVIDIA)",
    label_zh="AIPerf（NVIDIA）",
    sources=(
        ("ai-dynamo/aiperf src/aiperf/metrics/types/ttft_metric.py::TTFTMetric "
         "(commit 58028d5ba1cb33b0e135e18f1cc8833556a3639e)"),
        ("ai-dynamo/aiperf src/aiperf/metrics/types/inter_token_latency_metric.py::InterTokenLatencyMetric, "
         "_decode_token_count (commit 58dd5dea729ceece71b0afbea12994030bf70d8b)"),
        ("ai-dynamo/aiperf src/aiperf/metrics/types/request_latency_metric.py::RequestLatencyMetric "
         "(commit 4f7ccffdf9641d884461671f3790dc700c814d27)"),
        ("ai-dynamo/aiperf src/aiperf/metrics/types/inter_chunk_latency_metric.py::InterChunkLatencyMetric "
         "(commit 58028d5ba1cb33b0e135e18f1cc8833556a3639e; per-chunk gaps, not in the console table)"),
        ("ai-dynamo/aiperf src/aiperf/metrics/metric_dicts.py::MetricArray.to_result, metric_result_from_array "
         "(commit 0fec57a67268df14c2988dcd73df7d28c675e1f4; linear percentiles)"),
        ("ai-dynamo/aiperf aiperf/parsers/inference_result_parser.py::InferenceResultParser.process_valid_record "
         "(commit db4f6397d11ee2d4cfbb41f70b2327315163dcf0, 2025-10-10: output tokens re-tokenized client-side)"),
    ),
    metrics={
        "ttft_ms": MetricDefinition(
            "First content response - request start. Mean, linear percentiles (p50 as median) over requests.",
            "首个带内容的响应时刻 - 请求开始时刻。对请求取均值与线性插值分位数（p50 即中位数）。"),
        "tpot_ms": MetricDefinition(
            "Not defined: AIPerf has no TPOT; the quantity other tools call TPOT is its 'Inter Token Latency'.",
            "未定义：AIPerf 没有 TPOT；其他工具称为 TPOT 的量在 AIPerf 里叫 Inter Token Latency。",
            defined=False),
        "itl_ms": MetricDefinition(
            "Per request (request latency - TTFT) / (OSL - 1) (divisor OSL - first-chunk tokens only under "
            "--per-chunk-usage); OSL < 2 has no value. One sample per request; mean, linear percentiles. "
            "Per-chunk gaps are a separate 'inter_chunk_latency' metric.",
            "每请求 (请求时延 - TTFT) / (OSL - 1)（仅在 --per-chunk-usage 下除数为 OSL - 首 chunk token 数）；"
            "OSL < 2 无值。每请求一个样本，取均值与线性插值分位数。逐 chunk 间隔另有 inter_chunk_latency 指标。"),
        "e2el_ms": MetricDefinition(
            "Request latency = last content response - request start (usage-only chunks excluded). "
            "Mean, linear percentiles.",
            "请求时延 = 最后一个带内容的响应时刻 - 请求开始时刻（不含仅 usage 的 chunk）。取均值与线性插值分位数。"),
    },
    itl_basis="per_request",
    caveats=(
        ("AIPerf counts output tokens with its own tokenizer unless --use-server-token-count; the rows "
         "hold the server's usage count, which is what is used here (rows without one are left out of ITL)."),
        "Newer AIPerf versions also publish adj_* percentiles that include failed requests; not reproduced.",
    ),
)

EVALSCOPE = ToolDefinition(
    name="evalscope",
    label="EvalScope perf",
    label_zh="EvalScope perf",
    sources=(
        ("modelscope/evalscope evalscope/perf/utils/benchmark_util.py::BenchmarkData.finalize, "
         "MetricsAccumulator.update, MetricsAccumulator.to_result "
         "(commit fde259d2a32ab8a4cdb3af44dc8b18f504f1e277, after tag v1.10.0)"),
        ("modelscope/evalscope evalscope/perf/utils/db_util.py::get_percentile_results, calculate_percentiles "
         "(same commit)"),
        ("modelscope/evalscope evalscope/perf/plugin/api/default_api.py::DefaultApiPlugin.process_request "
         "(stream timing; OpenaiPlugin in openai_api.py inherits it; same commit)"),
    ),
    metrics={
        "ttft_ms": MetricDefinition(
            "Send -> first message with non-empty `choices`. Average over successful requests; percentiles "
            "sorted[int(n * p / 100)] (no interpolation; '50%' used as median).",
            "发送请求到第一个 `choices` 非空的消息。对成功请求取平均；分位数为 sorted[int(n * p / 100)]"
            "（不插值；'50%' 作中位数）。"),
        "tpot_ms": MetricDefinition(
            "(latency - TTFT) / (completion_tokens - 1) for > 1 token, else 0: a 1-token request stays in "
            "the average and the percentiles with TPOT 0.",
            "token 数 > 1 时为 (latency - TTFT) / (completion_tokens - 1)，否则为 0：1 个 token 的请求以 TPOT 0 "
            "留在平均值和分位数中。"),
        "itl_ms": MetricDefinition(
            "Every gap between consecutive `choices` messages, pooled over requests (per chunk). "
            "Average = sum / count; percentiles sorted[int(n * p / 100)].",
            "相邻 `choices` 消息之间的每个间隔，汇总所有请求（逐 chunk）。平均 = 总和 / 个数；"
            "分位数为 sorted[int(n * p / 100)]。"),
        "e2el_ms": MetricDefinition(
            "Send -> last data message, the usage-only message included. Average over successful requests; "
            "sorted[int(n * p / 100)] percentiles.",
            "发送请求到最后一个数据消息（含仅 usage 的消息）。对成功请求取平均；分位数为 sorted[int(n * p / 100)]。"),
    },
    itl_basis="per_chunk",
    caveats=(
        ("Latency (and so TPOT) ends at the usage-only message in EvalScope; the rows end at the last "
         "output chunk."),
        "EvalScope rounds percentiles to 2 decimals for display; not rounded here.",
    ),
)

DEFINITIONS: tuple[ToolDefinition, ...] = (VLLM, SGLANG, SGLANG_OAI, GUIDELLM, AIPERF, EVALSCOPE)


# =========================================================================== aggregations


def _linear(values: Sequence[float]) -> dict[str, float | None]:
    """np.mean / np.median / np.percentile(99) (linear): vLLM, SGLang, AIPerf."""
    if not values:
        return {s: None for s in STATS}
    arr = np.asarray(values, dtype=float)
    return {"mean": float(np.mean(arr)), "median": float(np.median(arr)), "p99": float(np.percentile(arr, 99))}


def _evalscope(values: Sequence[float]) -> dict[str, float | None]:
    """EvalScope: average = sum / n; percentile p = sorted[int(n * p / 100)] (db_util.calculate_percentiles)."""
    if not values:
        return {s: None for s in STATS}
    data = sorted(float(v) for v in values)
    n = len(data)
    return {"mean": sum(data) / n, "median": data[int(n * 50 / 100)], "p99": data[int(n * 99 / 100)]}


def _guidellm(pairs: Sequence[tuple[float, float]]) -> dict[str, float | None]:
    """GuideLLM's DistributionSummary.from_values over (value, weight): duplicate values merged,
    zero weights dropped, mean = sum(value * p), percentile = the first value whose cumulative
    probability reaches p (np.searchsorted side='left', no interpolation)."""
    if not pairs:
        return {s: None for s in STATS}
    arr = np.asarray(pairs, dtype=float)
    order = np.argsort(arr[:, 0])
    vals, weights = arr[order, 0], arr[order, 1]
    uniq, inv = np.unique(vals, return_inverse=True)
    combined = np.zeros_like(uniq, dtype=float)
    np.add.at(combined, inv, weights)
    keep = combined > 0
    uniq, combined = uniq[keep], combined[keep]
    if uniq.size == 0:
        return {s: None for s in STATS}  # GuideLLM: an all-zero pdf, printed as 0
    probs = combined / np.sum(combined)
    cdf = np.cumsum(probs)

    def pct(p: float) -> float:
        i = min(int(np.searchsorted(cdf, p, side="left")), uniq.size - 1)
        return float(uniq[i])

    return {"mean": float(np.sum(uniq * probs)), "median": pct(0.5), "p99": pct(0.99)}


# =========================================================================== per-request values


def measured_rows(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows every tool reports on: successful, not warm-up, with a TTFT and an E2EL."""
    return [r for r in rows if r.get("success") and not r.get("warmup")
            and _num(r.get("ttft_ms")) and _num(r.get("e2el_ms"))]


def _num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _tokens(r: dict[str, Any]) -> int | None:
    n = r.get("output_tokens")
    return int(n) if _num(n) else None


def _gaps(r: dict[str, Any]) -> list[float]:
    return [float(g) for g in (r.get("itl_ms") or [])]


def _sglang_token_gaps(r: dict[str, Any]) -> list[float] | None:
    """SGLang's native backend (async_request_sglang_generate / SglangClient): a chunk with k new
    tokens adds k gaps of (t - t_last)/k, where t_last is the last chunk that brought tokens; a
    chunk with no new token is skipped (`continue`) without moving t_last; tokens beyond the first
    in the first chunk add nothing. None when the row does not know its tokens per chunk."""
    ct = r.get("chunk_tokens")
    gaps = _gaps(r)
    if not isinstance(ct, list) or len(ct) != len(gaps) + 1:
        return None
    out: list[float] = []
    pending = 0.0
    for gap, k in zip(gaps, ct[1:]):
        pending += gap
        if int(k) <= 0:
            continue
        out.extend([pending / int(k)] * int(k))
        pending = 0.0
    return out


def _stats_dict(figure: str, stats: dict[str, float | None]) -> dict[str, float | None]:
    return {f"{s}_{figure}": stats[s] for s in STATS}


def _vllm(ok: list[dict[str, Any]]) -> dict[str, Any]:
    tpots = [(r["e2el_ms"] - r["ttft_ms"]) / (n - 1) for r in ok if (n := _tokens(r)) is not None and n > 1]
    return {**_stats_dict("ttft_ms", _linear([r["ttft_ms"] for r in ok])),
            **_stats_dict("tpot_ms", _linear(tpots)),
            **_stats_dict("itl_ms", _linear([g for r in ok for g in _gaps(r)])),
            **_stats_dict("e2el_ms", _linear([r["e2el_ms"] for r in ok]))}


def _sglang(ok: list[dict[str, Any]]) -> dict[str, Any]:
    tpots = [(r["e2el_ms"] - r["ttft_ms"]) / (n - 1) for r in ok if (n := _tokens(r)) is not None and n > 1]
    per_row = [_sglang_token_gaps(r) for r in ok]
    itl = None if any(g is None for g in per_row) else [x for g in per_row for x in g]  # type: ignore[union-attr]
    return {**_stats_dict("ttft_ms", _linear([r["ttft_ms"] for r in ok])),
            **_stats_dict("tpot_ms", _linear(tpots)),
            **_stats_dict("itl_ms", _linear(itl) if itl is not None else _linear([])),
            **_stats_dict("e2el_ms", _linear([r["e2el_ms"] for r in ok]))}


def _sglang_oai(ok: list[dict[str, Any]]) -> dict[str, Any]:
    tpots = [(r["e2el_ms"] - r["ttft_ms"]) / (int(r["max_tokens"]) - 1) for r in ok
             if _num(r.get("max_tokens")) and int(r["max_tokens"]) > 1]
    return {**_stats_dict("ttft_ms", _linear([r["ttft_ms"] for r in ok])),
            **_stats_dict("tpot_ms", _linear(tpots)),
            **_stats_dict("itl_ms", _linear([g for r in ok for g in _gaps(r)])),
            **_stats_dict("e2el_ms", _linear([r["e2el_ms"] for r in ok]))}


def _guidellm_tokens(r: dict[str, Any]) -> int | None:
    """GenerativeRequestStats.output_tokens: usage, else the number of token iterations (chunks)."""
    n = _tokens(r)
    if n is None:
        chunks = r.get("num_chunks")
        n = int(chunks) if _num(chunks) and chunks > 0 else None
    return n


def _guidellm_figs(ok: list[dict[str, Any]]) -> dict[str, Any]:
    tpot, itl = [], []
    for r in ok:
        n = _guidellm_tokens(r)
        if n is None or n == 0:
            continue
        tpot.append((r["e2el_ms"] / n, float(n)))  # last token - request start, over all tokens
        if n > 1:
            itl.append(((r["e2el_ms"] - r["ttft_ms"]) / (n - 1), float(n - 1)))
        # n == 1: (None or 0.0, weight 0): dropped by the zero-weight filter
    return {**_stats_dict("ttft_ms", _guidellm([(r["ttft_ms"], 1.0) for r in ok])),
            **_stats_dict("tpot_ms", _guidellm(tpot)),
            **_stats_dict("itl_ms", _guidellm(itl)),
            **_stats_dict("e2el_ms", _guidellm([(r["e2el_ms"], 1.0) for r in ok]))}


def _aiperf(ok: list[dict[str, Any]]) -> dict[str, Any]:
    itl = [(r["e2el_ms"] - r["ttft_ms"]) / (n - 1) for r in ok if (n := _tokens(r)) is not None and n >= 2]
    return {**_stats_dict("ttft_ms", _linear([r["ttft_ms"] for r in ok])),
            **{f"{s}_tpot_ms": None for s in STATS},
            **_stats_dict("itl_ms", _linear(itl)),
            **_stats_dict("e2el_ms", _linear([r["e2el_ms"] for r in ok]))}


def _evalscope_figs(ok: list[dict[str, Any]]) -> dict[str, Any]:
    tpots = []
    for r in ok:
        n = _tokens(r)
        if n is None:
            continue  # EvalScope would re-tokenize; not knowable from the row
        tpots.append((r["e2el_ms"] - r["ttft_ms"]) / (n - 1) if n > 1 else 0.0)
    return {**_stats_dict("ttft_ms", _evalscope([r["ttft_ms"] for r in ok])),
            **_stats_dict("tpot_ms", _evalscope(tpots)),
            **_stats_dict("itl_ms", _evalscope([g for r in ok for g in _gaps(r)])),
            **_stats_dict("e2el_ms", _evalscope([r["e2el_ms"] for r in ok]))}


_COMPUTE: dict[str, Callable[[list[dict[str, Any]]], dict[str, Any]]] = {
    "vllm": _vllm, "sglang": _sglang, "sglang_oai": _sglang_oai, "guidellm": _guidellm_figs,
    "aiperf": _aiperf, "evalscope": _evalscope_figs,
}


def per_tool_figures(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """For each tool of DEFINITIONS: {'tool', 'itl_basis', mean_/median_/p99_ ttft_ms, tpot_ms,
    itl_ms, e2el_ms}, from the successful non-warm-up rows; None where the tool does not define
    the figure or the sample is empty."""
    ok = measured_rows(rows)
    out = []
    for d in DEFINITIONS:
        figs = _COMPUTE[d.name](ok)
        for fig, md in d.metrics.items():
            if not md.defined:
                figs.update({f"{s}_{fig}": None for s in STATS})
        out.append({"tool": d.name, "itl_basis": d.itl_basis,
                    **{f"{s}_{f}": figs[f"{s}_{f}"] for f in FIGURES for s in STATS}})
    return out


# =========================================================================== disagreements

# (finding, figure, tool a, tool b, applies(rows) -> reason the comparison means nothing, or None)
_FINDINGS: dict[str, dict[str, str]] = {
    "itl_per_chunk_vs_per_token": {
        "en": "ITL per chunk (vLLM: one sample per SSE chunk) vs per token (SGLang native: a chunk of k "
              "tokens counts k times gap/k)",
        "zh": "逐 chunk 的 ITL（vLLM：每个 SSE chunk 一个样本）与逐 token 的 ITL（SGLang 原生：含 k 个 token 的 "
              "chunk 计 k 次 间隔/k）",
        "why_en": "chunks carry several tokens (speculative decoding or server-side token batching)",
        "why_zh": "chunk 含多个 token（投机解码或服务端合并 token 发送）",
    },
    "tpot_includes_ttft": {
        "en": "TPOT without TTFT (vLLM: (E2EL - TTFT) / (tokens - 1)) vs with TTFT (GuideLLM: "
              "last token time / tokens)",
        "zh": "不含 TTFT 的 TPOT（vLLM：(E2EL - TTFT) / (token 数 - 1)）与含 TTFT 的 TPOT（GuideLLM："
              "最后 token 时刻 / token 数）",
        "why_en": "GuideLLM's TPOT spreads the first-token wait over all tokens",
        "why_zh": "GuideLLM 的 TPOT 把首 token 等待摊到了所有 token 上",
    },
    "request_mean_vs_token_weighted": {
        "en": "Mean of per-request (E2EL - TTFT) / (tokens - 1): over requests (vLLM TPOT) vs over tokens "
              "(GuideLLM ITL, weighted by tokens - 1)",
        "zh": "每请求 (E2EL - TTFT) / (token 数 - 1) 的平均：按请求平均（vLLM TPOT）与按 token 加权"
              "（GuideLLM ITL，权重 token 数 - 1）",
        "why_en": "output lengths differ between requests and longer requests decode at another pace",
        "why_zh": "各请求输出长度不同，且长请求的解码节奏不同",
    },
    "itl_name_per_request_vs_per_chunk": {
        "en": "Median 'ITL': per-request average (AIPerf, = vLLM's TPOT) vs every chunk gap (vLLM)",
        "zh": "中位数 'ITL'：每请求的平均间隔（AIPerf，即 vLLM 的 TPOT）与每个 chunk 间隔（vLLM）",
        "why_en": "the same name stands for two quantities: a request's average pace and single gaps",
        "why_zh": "同一个名字指两个量：请求的平均节奏与单个间隔",
    },
    "one_token_requests_in_tpot": {
        "en": "Mean TPOT with 1-token requests dropped (vLLM) vs counted as 0 (EvalScope)",
        "zh": "平均 TPOT：丢弃 1 个 token 的请求（vLLM）与将其计为 0（EvalScope）",
        "why_en": "there are requests with a single output token",
        "why_zh": "存在只输出 1 个 token 的请求",
    },
    "requested_vs_actual_tokens": {
        "en": "Mean TPOT over actual output tokens (vLLM, usage) vs over the requested length (SGLang "
              "OpenAI backends, max_tokens)",
        "zh": "平均 TPOT：按实际输出 token 数（vLLM，usage）与按请求长度（SGLang OpenAI 兼容后端，max_tokens）",
        "why_en": "requests stopped before max_tokens (EOS or a stop string)",
        "why_zh": "请求在 max_tokens 之前停止（EOS 或停止词）",
    },
    "percentile_method": {
        "en": "p99 TTFT with linear interpolation (vLLM, numpy) vs the value at sorted[int(n * 0.99)] (EvalScope)",
        "zh": "p99 TTFT：线性插值（vLLM，numpy）与取 sorted[int(n * 0.99)]（EvalScope）",
        "why_en": "with few requests the two percentile rules pick different points of the tail",
        "why_zh": "请求较少时，两种分位数规则取到尾部的不同位置",
    },
}

_COMPARE: tuple[tuple[str, str, str, str], ...] = (
    ("itl_per_chunk_vs_per_token", "mean_itl_ms", "vllm", "sglang"),
    ("tpot_includes_ttft", "mean_tpot_ms", "vllm", "guidellm"),
    ("request_mean_vs_token_weighted", "mean_tpot_ms", "vllm", "guidellm:mean_itl_ms"),
    ("itl_name_per_request_vs_per_chunk", "median_itl_ms", "vllm", "aiperf"),
    ("one_token_requests_in_tpot", "mean_tpot_ms", "vllm", "evalscope"),
    ("requested_vs_actual_tokens", "mean_tpot_ms", "vllm", "sglang_oai"),
    ("percentile_method", "p99_ttft_ms", "vllm", "evalscope"),
)


def _fmt(x: float | None) -> str:
    return "—" if x is None else f"{x:.3f} ms"


def disagreements(rows: Iterable[dict[str, Any]], figures: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Where the definitions differ measurably on this trace: one entry per finding, with
    `differs` True when the two figures are more than 1 % apart, False when they agree (the
    sentence then says so), None when one of them is not measured. `figures`: per_tool_figures(rows)."""
    by_tool = {f["tool"]: f for f in figures}
    ok = measured_rows(rows)
    multi = sum(1 for r in ok for k in (r.get("chunk_tokens") or []) if int(k) > 1)
    one_tok = sum(1 for r in ok if _tokens(r) == 1)
    short = sum(1 for r in ok if _tokens(r) is not None and _num(r.get("max_tokens")) and _tokens(r) < r["max_tokens"])
    context = {
        "itl_per_chunk_vs_per_token": (f"{multi} chunks carry more than one token",
                                       f"{multi} 个 chunk 含多于一个 token"),
        "one_token_requests_in_tpot": (f"{one_tok} requests have one output token",
                                       f"{one_tok} 个请求只有 1 个输出 token"),
        "requested_vs_actual_tokens": (f"{short} requests stopped before max_tokens",
                                       f"{short} 个请求在 max_tokens 之前停止"),
    }
    out = []
    for finding, fig_a, tool_a, spec_b in _COMPARE:
        tool_b, _, fig_b = spec_b.partition(":")
        fig_b = fig_b or fig_a
        a = by_tool.get(tool_a, {}).get(fig_a)
        b = by_tool.get(tool_b, {}).get(fig_b)
        text = _FINDINGS[finding]
        key_a, key_b = f"{tool_a}.{fig_a}", f"{tool_b}.{fig_b}"
        rel = None if a is None or b is None or a == 0 else (b - a) / a
        if a is None or b is None:
            differs = None
        elif a == 0:
            differs = b != 0
        else:
            differs = abs(rel) > AGREE_REL  # type: ignore[arg-type]
        ctx_en, ctx_zh = context.get(finding, ("", ""))
        ctx_en = f" ({ctx_en})" if ctx_en else ""
        ctx_zh = f"（{ctx_zh}）" if ctx_zh else ""
        nums = f"{key_a} = {_fmt(a)}, {key_b} = {_fmt(b)}"
        if differs is None:
            en = f"{text['en']}: not comparable on this trace, a figure is not measured ({nums})."
            zh = f"{text['zh']}：本次数据无法比较，有一项未测得（{nums}）。"
        elif differs:
            pct = "" if rel is None else f" by {rel * 100:+.1f}%"
            pct_zh = "" if rel is None else f" {rel * 100:+.1f}%"
            en = f"{text['en']}: they differ{pct} on this trace ({nums}); {text['why_en']}{ctx_en}."
            zh = f"{text['zh']}：本次数据上相差{pct_zh}（{nums}）；{text['why_zh']}{ctx_zh}。"
        else:
            en = f"{text['en']}: they agree within 1 % on this trace ({nums}){ctx_en}."
            zh = f"{text['zh']}：本次数据上两者相差在 1% 以内，结果一致（{nums}）{ctx_zh}。"
        out.append({"finding": finding, "figure": fig_a if fig_a == fig_b else f"{fig_a} / {fig_b}",
                    "tools": [tool_a, tool_b], "figures_by_tool": {key_a: a, key_b: b},
                    "relative_difference": rel, "differs": differs, "message": en, "message_zh": zh})
    return out
