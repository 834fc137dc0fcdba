"""Truth of the serving client: measure a server whose timing is known and print each client's error.

Starts `ascendeval.simserver` in its own process (TTFT 50 ms, 10 ms per token by default; a fresh
one for every client and point) and drives it at 50, 200 and 500 req/s (Poisson, vLLM's schedule
with the same seed) and with 8k-token prompts, with

  * ascendeval's client (`loadgen.run_load`, the default fast transport),
  * ascendeval's aiohttp transport (`Endpoint(transport="aiohttp")`, the client before the fast one),
  * vLLM's request function (`vllm.benchmarks.lib.endpoint_request_func.async_request_openai_completions`
    with `vllm.benchmarks.serve.get_request` and the aiohttp session settings of `vllm bench serve`,
    from the project's environment),
  * AIPerf and GuideLLM (their CLIs, from a separate environment: `--peers-bin`, default
    /tmp/peers/bin; `python3 -m venv /tmp/peers && /tmp/peers/bin/pip install aiperf guidellm`).

Every client runs in its own process, after the host's CPUs have been quiet for a second (up to
--settle-max-s; the busy share seen is printed per row: the machine is shared). Every request is matched to the server's own record
(`loadgen.truth_figures`): by completion id (ascendeval, GuideLLM) or by the X-Request-ID header the
client sent (vLLM's request_id, AIPerf's x_request_id). Per matched request, the client's own share
of TTFT = client TTFT - server TTFT (server: request's first bytes received -> first token write);
for clients that time on this machine's monotonic clock (ascendeval, vLLM) it splits into send
(client clock start -> server received the request) and receive (server write -> client saw it).
TTFT and TPOT are also compared with the server's record (median vs median; TPOT per request) and
with the nominal delays. AIPerf and GuideLLM tokenise prompts and outputs: they are given the local
tokenizer of the built-in tiny-qwen2 model (`ascendeval.builtin_models`), no model hub needed.

    python benchmarks/loadgen_truth.py            # all points, all clients (~6 min on 2 cores)
    python benchmarks/loadgen_truth.py --quick    # fewer requests per point (~3 min)
    python benchmarks/loadgen_truth.py --tools ascendeval,vllm --rates 50,200
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ascendeval import loadgen  # noqa: E402
from ascendeval.simserver import SimProcess  # noqa: E402

TOOLS = ("ascendeval", "ascendeval-aiohttp", "vllm", "aiperf", "guidellm")


def prompts_for(n: int, input_len: int) -> list[list[int]]:
    """Token-id prompts of exactly `input_len` ids (what ascendeval's serving step sends), distinct."""
    return [[(7 * i + 13 * j) % 30000 + 1 for j in range(input_len)] for i in range(n)]


# --------------------------------------------------------------------------- workers (one process each)


def worker_ascendeval(a: argparse.Namespace, transport: str) -> dict[str, Any]:
    ep = loadgen.Endpoint(a.url, "sim-model", transport=transport)  # type: ignore[arg-type]
    n = a.num_prompts
    lr = loadgen.run_load(ep, prompts_for(n, a.input_len), a.output_len,
                          loadgen.LoadSpec(a.rate, 1.0, None, a.seed), prompt_tokens=[a.input_len] * n,
                          warmup_requests=1)
    return {"records": loadgen.result_records(lr.results), "sent": n,
            "ok": sum(r.success for r in lr.results), "client": lr.client,
            "errors": sorted({r.error for r in lr.results if r.error})[:3]}


def worker_vllm(a: argparse.Namespace) -> dict[str, Any]:
    import aiohttp
    import numpy as np
    from ascendeval.engines import vllm_compat

    bench = vllm_compat.bench_api(vllm_compat.BENCH_CLIENT_HELPERS)  # the one place that imports vLLM
    SampleRequest, RequestFuncInput = bench.SampleRequest, bench.RequestFuncInput
    async_request_openai_completions, get_request = bench.async_request_openai_completions, bench.get_request

    api_url = f"{a.url}/v1/completions"
    prompts = prompts_for(a.num_prompts, a.input_len)

    async def run() -> list[Any]:
        # the session of vllm.benchmarks.serve.benchmark
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, ttl_dns_cache=300, use_dns_cache=True,
                                         keepalive_timeout=60, enable_cleanup_closed=True, force_close=False,
                                         ssl=False)
        async with aiohttp.ClientSession(connector=connector, trust_env=True,
                                         timeout=aiohttp.ClientTimeout(total=6 * 60 * 60)) as session:
            def inp(prompt: list[int], rid: str) -> Any:
                return RequestFuncInput(prompt=prompt, api_url=api_url, prompt_len=a.input_len,
                                        output_len=a.output_len, model="sim-model", ignore_eos=True, request_id=rid)

            await async_request_openai_completions(inp(prompts[0], "warmup-0"), session)  # its test prompt
            reqs = [SampleRequest(prompt=p, prompt_len=a.input_len, expected_output_len=a.output_len,
                                  request_id=f"truth-{i}") for i, p in enumerate(prompts)]
            gc.collect()
            gc.freeze()  # as vllm bench serve does before the timed run
            tasks = []
            async for req, _rate in get_request(reqs, a.rate, 1.0):
                tasks.append(asyncio.create_task(async_request_openai_completions(inp(req.prompt, req.request_id), session)))
            return list(await asyncio.gather(*tasks))

    np.random.seed(a.seed)  # vllm bench serve seeds numpy's global generator; get_request draws from it
    outs = asyncio.run(run())
    records = []
    for i, o in enumerate(outs):
        if not o.success:
            continue
        tpot = (o.latency - o.ttft) / (o.output_tokens - 1) * 1e3 if o.output_tokens and o.output_tokens > 1 else None
        records.append({"key": f"truth-{i}", "ttft_ms": o.ttft * 1e3, "tpot_ms": tpot, "start_s": o.start_time})
    return {"records": records, "sent": len(outs), "ok": sum(o.success for o in outs),
            "errors": sorted({o.error.strip().splitlines()[-1] for o in outs if o.error})[:3]}


# --------------------------------------------------------------------------- peer CLIs


def tokenizer_dir() -> str:
    from ascendeval import builtin_models

    return str(builtin_models.ensure("tiny-qwen2-untrained"))


def run_aiperf(a: argparse.Namespace, url: str, rate: float, n: int, input_len: int, workdir: Path) -> dict[str, Any]:
    exe = Path(a.peers_bin) / "aiperf"
    if not exe.exists():
        return {"skip": f"aiperf is not installed at {exe} (pip install aiperf in a separate venv, --peers-bin)"}
    art = workdir / "aiperf"
    cmd = [str(exe), "profile", "-m", "sim-model", "--url", url, "--endpoint-type", "completions", "--streaming",
           "--request-rate", f"{rate:g}", "--arrival-pattern", "poisson", "--request-count", str(n),
           "--warmup-request-count", "1", "--synthetic-input-tokens-mean", str(input_len),
           "--synthetic-input-tokens-stddev", "0", "--output-tokens-mean", str(a.output_len),
           "--output-tokens-stddev", "0", "--extra-inputs", "ignore_eos:true", "--use-server-token-count",
           "--tokenizer", a.tokenizer, "--random-seed", str(a.seed), "--artifact-dir", str(art), "--ui-type", "none"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=a.tool_timeout, cwd=workdir)
    f = art / "profile_export.jsonl"
    if p.returncode != 0 or not f.exists():
        tail = " ".join((p.stdout + p.stderr).strip().splitlines()[-3:])[-400:]
        return {"skip": f"aiperf failed (exit {p.returncode}): {tail}"}
    records, sent = [], 0
    for line in f.read_text().splitlines():
        rec = json.loads(line)
        md, m = rec.get("metadata", {}), rec.get("metrics", {})
        if md.get("benchmark_phase") not in (None, "profiling"):
            continue
        sent += 1
        ttft = (m.get("time_to_first_token") or {}).get("value")
        if ttft is None or rec.get("error"):
            continue
        tpot = (m.get("inter_token_latency") or {}).get("value")
        records.append({"key": md.get("x_request_id"), "ttft_ms": ttft, "tpot_ms": tpot})
    return {"records": records, "sent": sent, "ok": len(records), "errors": []}


def run_guidellm(a: argparse.Namespace, url: str, rate: float, n: int, input_len: int, workdir: Path) -> dict[str, Any]:
    exe = Path(a.peers_bin) / "guidellm"
    if not exe.exists():
        return {"skip": f"guidellm is not installed at {exe} (pip install guidellm in a separate venv, --peers-bin)"}
    out = workdir / "guidellm.json"
    cmd = [str(exe), "run", "--backend", f"kind=openai_http,target={url},request_format=/v1/completions",
           "--profile", f"kind=poisson,rate={rate:g}", "--constraint", f"kind=max_requests,count={n}",
           "--data", f"kind=synthetic_text,prompt_tokens={input_len},output_tokens={a.output_len}",
           "--tokenizer", f"kind=huggingface_auto,model={a.tokenizer}", "--seed", f"kind=static,value={a.seed}",
           "--output", f"kind=json,path={out}", "--disable-console-interactive"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=a.tool_timeout, cwd=workdir)
    if p.returncode != 0 or not out.exists():
        tail = " ".join((p.stdout + p.stderr).strip().splitlines()[-3:])[-400:]
        return {"skip": f"guidellm failed (exit {p.returncode}): {tail}"}
    bench = json.loads(out.read_text())["benchmarks"][0]["requests"]
    records = [{"key": r.get("response_id"), "ttft_ms": r.get("time_to_first_token_ms"),
                "tpot_ms": r.get("inter_token_latency_ms")} for r in bench.get("successful", [])]
    failed = len(bench.get("errored", [])) + len(bench.get("incomplete", []))
    return {"records": records, "sent": len(records) + failed, "ok": len(records), "errors": []}


# --------------------------------------------------------------------------- orchestration


def settle(a: argparse.Namespace) -> float:
    """Wait (up to --settle-max-s) until the host's CPUs are less than --settle-busy busy over one
    second, so each client starts on an equally quiet machine; the busy share seen last."""
    import psutil

    deadline = time.monotonic() + a.settle_max_s
    while True:
        busy = psutil.cpu_percent(interval=1.0) / 100.0
        if busy < a.settle_busy or time.monotonic() >= deadline:
            return busy


def run_tool(a: argparse.Namespace, tool: str, rate: float, n: int, input_len: int) -> dict[str, Any]:
    busy = settle(a) if a.settle_max_s > 0 else None
    with tempfile.TemporaryDirectory(prefix=f"truth-{tool}-") as tmp, SimProcess(a.ttft_ms, a.tpot_ms) as sim:
        work = Path(tmp)
        t0 = time.perf_counter()
        if tool in ("ascendeval", "ascendeval-aiohttp", "vllm"):
            out_file = work / "out.json"
            cmd = [sys.executable, __file__, "--worker", tool, "--url", sim.url, "--rate", f"{rate:g}",
                   "--num-prompts", str(n), "--input-len", str(input_len), "--output-len", str(a.output_len),
                   "--seed", str(a.seed), "--out", str(out_file)]
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=a.tool_timeout)
            if p.returncode != 0 or not out_file.exists():
                tail = " ".join(p.stderr.strip().splitlines()[-2:])[-400:]
                res = {"skip": f"{tool} failed (exit {p.returncode}): {tail}"}
            else:
                res = json.loads(out_file.read_text())
        elif tool == "aiperf":
            res = run_aiperf(a, sim.url, rate, n, input_len, work)
        elif tool == "guidellm":
            res = run_guidellm(a, sim.url, rate, n, input_len, work)
        else:
            raise ValueError(tool)
        res["seconds"] = time.perf_counter() - t0
        res["host_busy_before"] = busy
        if "skip" not in res:
            res["truth"] = loadgen.truth_figures(res["records"], sim.stats()["events"], a.ttft_ms, a.tpot_ms)
    return res


def fmt(v: Any, spec: str = ".3f") -> str:
    return "-" if v is None else format(v, spec)


def print_point(title: str, rows: list[tuple[str, dict[str, Any]]]) -> None:
    print(f"\n== {title}")
    print(f"{'client':19} {'busy':>4} {'ok/sent':>9} {'match':>5} | {'own TTFT share ms: med':>22} {'p90':>7} {'p99':>8} | "
          f"{'send med':>8} {'recv med':>8} | {'TTFT err vs srv':>15} {'vs nom':>7} | {'TPOT err vs srv':>15} "
          f"{'vs nom':>7} | client_bound")
    for tool, r in rows:
        if "skip" in r:
            print(f"{tool:19} not run: {r['skip']}")
            continue
        t = r["truth"]
        c = r.get("client") or {}
        bound = "" if not c else ("YES: " + (c.get("client_bound_reason") or "")) if c.get("client_bound") else (
            f"no (loop lag p99 {fmt(c.get('loop_lag_p99_ms'), '.2f')} ms, send lateness p99 "
            f"{fmt(c.get('send_lateness_p99_ms'), '.2f')} ms, backlog {c.get('send_backlog_max')})")
        ttft_err = f"{fmt(t['ttft_error_ms'], '+.3f')} ({fmt(t['ttft_error_pct'], '+.2f')}%)"
        tpot_err = f"{fmt(t['tpot_error_ms'], '+.3f')} ({fmt(t['tpot_error_pct'], '+.2f')}%)"
        hb = r.get("host_busy_before")
        print(f"{tool:19} {'-' if hb is None else format(hb, '.0%'):>4} {r['ok']:>4}/{r['sent']:<4} {t['matched_count']:>5} | {fmt(t['client_overhead_median_ms']):>22} "
              f"{fmt(t['client_overhead_p90_ms']):>7} {fmt(t['client_overhead_p99_ms']):>8} | "
              f"{fmt(t['client_send_median_ms']):>8} {fmt(t['client_receive_median_ms']):>8} | {ttft_err:>15} "
              f"{fmt(t.get('ttft_vs_nominal_pct'), '+.2f') + '%':>7} | {tpot_err:>15} "
              f"{fmt(t.get('tpot_vs_nominal_pct'), '+.2f') + '%':>7} | {bound}")
        if r.get("errors"):
            print(f"{'':19} errors: {r['errors']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer requests per point")
    ap.add_argument("--rates", default="50,200,500")
    ap.add_argument("--num-prompts", type=int, default=None, help="requests per point (default 400, quick 150; "
                    "500 req/s: x2)")
    ap.add_argument("--output-len", type=int, default=32)
    ap.add_argument("--input-len", type=int, default=32)
    ap.add_argument("--long-input-len", type=int, default=8192, help="the long-prompt point's prompt tokens (0: none)")
    ap.add_argument("--long-rate", type=float, default=50.0, help="the long-prompt point's rate")
    ap.add_argument("--ttft-ms", type=float, default=50.0)
    ap.add_argument("--tpot-ms", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tools", default=",".join(TOOLS))
    ap.add_argument("--peers-bin", default="/tmp/peers/bin", help="bin/ of the venv with aiperf and guidellm")
    ap.add_argument("--tool-timeout", type=float, default=600.0)
    ap.add_argument("--settle-busy", type=float, default=0.25,
                    help="before each client's run, wait for the host's CPUs to be less busy than this (0-1)")
    ap.add_argument("--settle-max-s", type=float, default=120.0, help="... for at most this long (0: no wait)")
    # worker mode (internal)
    ap.add_argument("--worker", choices=["ascendeval", "ascendeval-aiohttp", "vllm"])
    ap.add_argument("--url")
    ap.add_argument("--rate", type=float)
    ap.add_argument("--out")
    a = ap.parse_args()

    if a.worker:
        if a.worker == "vllm":
            res = worker_vllm(a)
        else:
            res = worker_ascendeval(a, "aiohttp" if a.worker == "ascendeval-aiohttp" else "fast")
        Path(a.out).write_text(json.dumps(res))
        return

    tools = [t for t in a.tools.split(",") if t]
    unknown = set(tools) - set(TOOLS)
    if unknown:
        ap.error(f"unknown tools {sorted(unknown)}; known: {', '.join(TOOLS)}")
    base_n = a.num_prompts or (150 if a.quick else 400)
    points = [(float(r), a.input_len, base_n * (2 if float(r) >= 500 else 1)) for r in a.rates.split(",") if r]
    if a.long_input_len:
        points.append((a.long_rate, a.long_input_len, max(100, base_n // 2) if a.quick else base_n))
    a.tokenizer = tokenizer_dir() if {"aiperf", "guidellm"} & set(tools) else ""
    t_all = time.perf_counter()
    print(f"loadgen truth: server TTFT {a.ttft_ms:g} ms, TPOT {a.tpot_ms:g} ms, {a.output_len} output tokens; "
          f"Poisson arrivals, seed {a.seed}; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start")
    print("busy = the host's CPU busy share over 1 s just before the client ran (it waits up to "
          f"{a.settle_max_s:g} s for < {a.settle_busy:.0%}: another workload on the machine inflates every figure)")
    print("own TTFT share = client TTFT - server TTFT (request received -> first token write), per request "
          "matched to the server's record; send/recv: its split where the client's clock is this machine's "
          "monotonic clock; err vs srv: client median - server median (TPOT per request); vs nom: against "
          f"{a.ttft_ms:g} / {a.tpot_ms:g} ms")
    for rate, input_len, n in points:
        rows = []
        for tool in tools:
            r = run_tool(a, tool, rate, n, input_len)
            rows.append((tool, r))
        print_point(f"rate {rate:g} req/s, {input_len}-token prompts, {n} requests "
                    f"(load average {os.getloadavg()[0]:.2f})", rows)
        sys.stdout.flush()
    print(f"\ntook {time.perf_counter() - t_all:.0f} s")


if __name__ == "__main__":
    main()
