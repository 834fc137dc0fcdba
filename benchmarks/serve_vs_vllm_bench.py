"""Our serving client vs `vllm bench serve` on the same server and the same workload (issue 3, item 5).

Both clients get the SAME requests: the prompts come from vLLM's own random dataset
(`vllm.benchmarks.datasets.get_samples`, same seed), the arrival schedule is the same (our
`loadgen.arrival_offsets` draws from numpy's `RandomState(seed)`, the generator behind
`vllm bench serve --seed`), greedy sampling and `ignore_eos` on both sides.

Two modes, both printed:
  * interleaved (default): ONE run of the workload in which request i is sent, at its scheduled
    time, by vLLM's own request function (`vllm.benchmarks.lib.endpoint_request_func`, vLLM's
    connector settings) when i is even and by `ascendeval.loadgen.stream_request` when i is odd
    (swapped every round); vLLM's half is summarised by vLLM's `calculate_metrics`, ours by
    `metrics.serving_metrics`. Both clients see the same server at the same moments, so the
    comparison holds on a shared, noisy CPU where consecutive runs differ by 2-3x.
  * sequential (--sequential): whole `vllm bench serve` runs (its `main()`, in-process) and whole
    ascendeval runs, alternating A B B A ...: the full command, but only as good as the machine
    is quiet.
Every round is printed, then the medians over rounds and the median of the per-round paired
differences. Goal: medians of TTFT, TPOT and ITL within 5 %.

Targets:
  * default: a vLLM OpenAI server started for the params' model (or --url for a running one);
  * --sim: `ascendeval.simserver` in its own process (known TTFT/TPOT, no engine noise), which
    isolates the two clients' definitions from the server's run-to-run variation.

    python benchmarks/serve_vs_vllm_bench.py params/tiny-qwen2.yaml [--num-prompts 40]
        [--input-len 32] [--output-len 32] [--rate 4] [--rounds 4] [--url URL | --sim]
"""

from __future__ import annotations

import argparse
import math
import statistics
import subprocess
import sys
from pathlib import Path

from ascendeval.engines import vllm_compat

KEYS = [("median_ttft_ms", "median_ttft_ms"), ("median_tpot_ms", "median_tpot_ms"),
        ("median_itl_ms", "median_itl_ms"), ("median_e2el_ms", "median_e2el_ms"),
        ("mean_ttft_ms", "mean_ttft_ms"), ("mean_tpot_ms", "mean_tpot_ms"), ("p99_ttft_ms", "p99_ttft_ms"),
        ("output_throughput", "output_tok_per_s"), ("request_throughput", "request_throughput_req_per_s")]
GATED = ("median_ttft_ms", "median_tpot_ms", "median_itl_ms")


def vllm_args(url: str, model: str, tokenizer: str, a: argparse.Namespace) -> argparse.Namespace:
    bench = vllm_compat.bench_api()  # where this vLLM keeps `vllm bench serve`'s helpers
    parser = bench.FlexibleArgumentParser()
    bench.add_cli_args(parser)
    return parser.parse_args([
        "--backend", "vllm", "--base-url", url, "--endpoint", "/v1/completions", "--model", model,
        "--tokenizer", tokenizer, "--dataset-name", "random", "--random-input-len", str(a.input_len),
        "--random-output-len", str(a.output_len), "--random-range-ratio", "0", "--num-prompts", str(a.num_prompts),
        "--request-rate", str(a.rate), "--burstiness", str(a.burstiness), "--ignore-eos", "--seed", str(a.seed),
        "--temperature", "0", "--num-warmups", "2", "--disable-tqdm", "--percentile-metrics", "ttft,tpot,itl,e2el",
    ])


def vllm_bench(url: str, model: str, tokenizer: str, a: argparse.Namespace) -> dict:
    return vllm_compat.bench_api().main(vllm_args(url, model, tokenizer, a))


def vllm_samples(url: str, model: str, tokenizer: str, a: argparse.Namespace) -> list:
    """The exact requests `vllm bench serve` sends for these arguments (its dataset has its own seeded rng)."""
    bench = vllm_compat.bench_api()
    return bench.get_samples(vllm_args(url, model, tokenizer, a), bench.get_tokenizer(tokenizer))


def ours(url: str, model: str, samples: list, a: argparse.Namespace) -> dict:
    from ascendeval import loadgen

    ep = loadgen.Endpoint(url, model, ignore_eos=True)
    run = loadgen.run_load(ep, [s.prompt for s in samples], [s.expected_output_len for s in samples],
                           loadgen.LoadSpec(a.rate, a.burstiness, None, a.seed),
                           prompt_tokens=[s.prompt_len for s in samples], warmup_requests=2)
    return run.metrics()


async def _interleaved_async(url: str, model: str, samples: list, a: argparse.Namespace, swap: bool,
                             tokenizer: str) -> tuple[dict, dict]:
    import asyncio
    import time

    import aiohttp
    bench = vllm_compat.bench_api()
    ASYNC_REQUEST_FUNCS, RequestFuncInput = bench.ASYNC_REQUEST_FUNCS, bench.RequestFuncInput  # noqa: N806
    calculate_metrics, get_tokenizer = bench.calculate_metrics, bench.get_tokenizer
    from ascendeval import loadgen, metrics

    vllm_fn = ASYNC_REQUEST_FUNCS["vllm"]
    ep = loadgen.Endpoint(url, model, ignore_eos=True)
    # vLLM's own connector settings (serve.py::benchmark) for its half, ours for ours
    v_sess = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, limit_per_host=0, ttl_dns_cache=300,
                                                                  keepalive_timeout=60, enable_cleanup_closed=True),
                                   trust_env=True, timeout=aiohttp.ClientTimeout(total=6 * 60 * 60))
    o_sess = aiohttp.ClientSession(connector=loadgen._connector(None), timeout=aiohttp.ClientTimeout(total=600),
                                   read_bufsize=1 << 20)

    def v_input(smp) -> RequestFuncInput:
        return RequestFuncInput(prompt=smp.prompt, api_url=ep.url, prompt_len=smp.prompt_len,
                                output_len=smp.expected_output_len, model=model, ignore_eos=True,
                                extra_body={"temperature": 0.0})

    try:
        for smp in samples[:2]:  # warm-up: one request each way per client, not counted
            await vllm_fn(request_func_input=v_input(smp), session=v_sess)
            await loadgen.stream_request(o_sess, ep, -1, smp.prompt, smp.expected_output_len, smp.prompt_len)
        offsets = loadgen.arrival_offsets(len(samples), a.rate, a.burstiness, a.seed)
        v_idx = [i for i in range(len(samples)) if (i % 2 == 0) != swap]

        async def one(i: int, t0: float):
            delay = t0 + offsets[i] - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            smp = samples[i]
            if i in v_idx:
                return await vllm_fn(request_func_input=v_input(smp), session=v_sess)
            return await loadgen.stream_request(o_sess, ep, i, smp.prompt, smp.expected_output_len, smp.prompt_len)

        t0 = time.perf_counter()
        outs = await asyncio.gather(*(one(i, t0) for i in range(len(samples))))
        dur = time.perf_counter() - t0
    finally:
        await v_sess.close()
        await o_sess.close()
    v_out = [outs[i] for i in v_idx]
    o_out = [outs[i] for i in range(len(samples)) if i not in v_idx]
    vm, _ = calculate_metrics([samples[i] for i in v_idx], v_out, dur, get_tokenizer(tokenizer), [50, 90, 99], {})
    v = dict(vars(vm))
    for key in ("ttft", "tpot", "itl", "e2el"):  # [(99, value), ...] -> p99_<key>_ms, as main() reports
        v.update({f"p{p:g}_{key}_ms": x for p, x in v.get(f"percentiles_{key}_ms") or []})
    return v, metrics.serving_metrics(o_out, dur)


def interleaved(url: str, model: str, samples: list, a: argparse.Namespace, r: int, tokenizer: str) -> tuple[dict, dict]:
    import asyncio

    return asyncio.run(_interleaved_async(url, model, samples, a, r % 2 == 1, tokenizer))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("params")
    ap.add_argument("--url", default=None)
    ap.add_argument("--sim", action="store_true", help="measure ascendeval.simserver instead of vLLM")
    ap.add_argument("--num-prompts", type=int, default=40)
    ap.add_argument("--input-len", type=int, default=32)
    ap.add_argument("--output-len", type=int, default=32)
    ap.add_argument("--rate", type=float, default=4.0)
    ap.add_argument("--burstiness", type=float, default=1.0)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sequential", action="store_true", help="whole runs alternating instead of interleaved requests")
    a = ap.parse_args()

    from ascendeval import config, loadgen, models, paths, server

    cfg = config.load(a.params)
    model_path = str(models.resolve(cfg.model).path)
    paths.set_engine_cache_env()
    srv = sim = None
    url = a.url
    if a.sim:
        sim = subprocess.Popen([sys.executable, "-m", "ascendeval.simserver"], stdout=subprocess.PIPE, text=True)
        url = sim.stdout.readline().strip()  # type: ignore[union-attr]
        print(f"simulated server (TTFT 50 ms, 10 ms/token) at {url}", flush=True)
    elif url is None:
        srv = server.for_config(cfg, model_path, Path(paths.cache_dir()) / "bench-logs")
        srv.start()
        url = srv.base_url
        print(f"server up in {srv.startup_s:.1f} s at {url}", flush=True)
    try:
        name = loadgen.list_models(url)[0]
        samples = vllm_samples(url, name, model_path, a)
        res: dict[str, list[dict]] = {"vllm": [], "ours": []}
        for r in range(a.rounds):
            if a.sequential:  # A B, B A, A B ...: drift of the shared CPU hits both alike
                for who in (("vllm", "ours") if r % 2 == 0 else ("ours", "vllm")):
                    m = vllm_bench(url, name, model_path, a) if who == "vllm" else ours(url, name, samples, a)
                    res[who].append(m)
            else:
                vm, om = interleaved(url, name, samples, a, r, model_path)
                res["vllm"].append(vm)
                res["ours"].append(om)
            for who in ("vllm", "ours"):
                m = res[who][-1]
                print(f"round {r} {who:5} median TTFT {m['median_ttft_ms']:.2f} TPOT {m['median_tpot_ms']:.2f} "
                      f"ITL {m['median_itl_ms']:.2f} ms", flush=True)
    finally:
        if srv is not None:
            srv.stop()
        if sim is not None:
            sim.terminate()
            sim.wait(10)

    target = "simserver (TTFT 50 ms, TPOT 10 ms)" if a.sim else f"vLLM server, model {cfg.model.id}"
    print(f"\ntarget: {target}")
    mode = ("sequential whole runs, alternating" if a.sequential else
            "interleaved: even/odd requests of one run split between the clients, swapped every round; "
            "throughputs below are of half the requests over the whole run")
    print(f"workload: {a.num_prompts} prompts (vLLM random dataset, same for both), {a.input_len} in / "
          f"{a.output_len} out, rate {a.rate} req/s, burstiness {a.burstiness}, seed {a.seed}, {a.rounds} rounds")
    print(f"mode: {mode}")
    print(f"{'metric':22} {'vllm bench':>11} {'ascendeval':>11} {'diff %':>8} {'paired %':>9}   per round vllm / ours")
    worst = 0.0
    for vk, ok in KEYS:
        vs = [x[vk] for x in res["vllm"]]
        os_ = [x[ok] for x in res["ours"]]
        v, o = statistics.median(vs), statistics.median(os_)
        d = (o - v) / v * 100 if v else math.nan
        paired = statistics.median((y - x) / x * 100 for x, y in zip(vs, os_)) if all(vs) else math.nan
        if vk in GATED:  # paired: each round's two figures come from the same minutes of the server
            worst = max(worst, abs(paired))
        print(f"{vk:22} {v:11.3f} {o:11.3f} {d:+8.2f} {paired:+9.2f}   "
              + ", ".join(f"{x:.2f}" for x in vs) + " / " + ", ".join(f"{y:.2f}" for y in os_))
    print(f"\nworst median paired difference (TTFT/TPOT/ITL): {worst:.2f} % (goal <= 5 %)")


if __name__ == "__main__":
    main()
