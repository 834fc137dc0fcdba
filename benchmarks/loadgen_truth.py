"""Truth of the serving client: measure a server whose timing is known and print the error.

Starts `ascendeval.simserver` in its own process (TTFT 50 ms, 10 ms per token by default), sends
requests at 50 req/s (Poisson) and prints the client's medians next to
  * the nominal delays, and
  * what the server actually did (its own write times on the same monotonic clock), which
    separates the client's error from the server's sleep overshoot on a busy CPU.
Every request is matched to the server's record by its completion id, so the client's TTFT
splits into: send (client clock start -> server handler start), server (handler start -> first
write) and receive (first write -> client sees the chunk). The client's own share is send +
receive. Goal (issue 3): medians within 3 % or 1 ms of the truth.

    python benchmarks/loadgen_truth.py [--rate 50] [--num-prompts 500] [--output-len 32]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import urllib.request

from ascendeval import loadgen


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=50.0)
    ap.add_argument("--num-prompts", type=int, default=500)
    ap.add_argument("--output-len", type=int, default=32)
    ap.add_argument("--ttft-ms", type=float, default=50.0)
    ap.add_argument("--tpot-ms", type=float, default=10.0)
    args = ap.parse_args()

    proc = subprocess.Popen([sys.executable, "-m", "ascendeval.simserver", "--ttft-ms", str(args.ttft_ms),
                             "--tpot-ms", str(args.tpot_ms)], stdout=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()  # type: ignore[union-attr]
        ep = loadgen.Endpoint(url, "sim-model")
        run = loadgen.run_load(ep, ["hello world"] * args.num_prompts, args.output_len,
                               loadgen.LoadSpec(request_rate=args.rate, seed=0), warmup_requests=2)
        m = run.metrics()
        stats = json.load(urllib.request.urlopen(f"{url}/sim/stats", timeout=10))
    finally:
        proc.terminate()
        proc.wait(10)

    by_id = {e["id"]: e for e in stats["events"]}
    pairs = [(r, by_id[r.response_id]) for r in run.results if r.success and r.response_id in by_id]
    events = [e for _, e in pairs]  # warm-up requests excluded, as in the client's figures
    srv_ttft = statistics.median((e["writes"][0] - e["arrival"]) * 1e3 for e in events)
    srv_itl = statistics.median((b - a) * 1e3 for e in events for a, b in zip(e["writes"], e["writes"][1:]))
    srv_tpot = statistics.median((e["writes"][-1] - e["writes"][0]) * 1e3 / (len(e["writes"]) - 1) for e in events)
    send = [(e["arrival"] - r.start_s) * 1e3 for r, e in pairs]
    recv = [(r.start_s + r.ttft_s - e["writes"][0]) * 1e3 for r, e in pairs]  # type: ignore[operator]

    print(f"requests {m['completed_count']} ok / {m['failed_count']} failed ({len(pairs)} matched to the "
          f"server's record), rate {args.rate} req/s, {args.output_len} tokens each, duration {m['duration_s']:.2f} s, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print(f"{'median':8} {'client ms':>10} {'nominal':>8} {'err %':>7} {'server did':>11} {'err %':>7}")
    for name, nominal, srv in (("TTFT", args.ttft_ms, srv_ttft), ("TPOT", args.tpot_ms, srv_tpot),
                               ("ITL", args.tpot_ms, srv_itl)):
        got = m[f"median_{name.lower()}_ms"]
        e_nom = (got - nominal) / nominal * 100
        e_srv = (got - srv) / srv * 100
        ok_nom = "OK" if abs(got - nominal) <= max(0.03 * nominal, 1.0) else "OUT"
        ok_srv = "OK" if abs(got - srv) <= max(0.03 * srv, 1.0) else "OUT"
        print(f"{name:8} {got:10.3f} {nominal:8.1f} {e_nom:+7.2f} {srv:11.3f} {e_srv:+7.2f}  "
              f"vs nominal {ok_nom}, vs server {ok_srv} (3% or 1 ms)")
    q = lambda v: statistics.quantiles(v, n=100)  # noqa: E731
    print(f"TTFT split, ms (median / p90 / p99): client send {statistics.median(send):.3f} / {q(send)[89]:.3f} / "
          f"{q(send)[98]:.3f}; server {srv_ttft:.3f}; client receive {statistics.median(recv):.3f} / "
          f"{q(recv)[89]:.3f} / {q(recv)[98]:.3f}")
    print(f"p99 TTFT {m['p99_ttft_ms']:.2f} ms, p99 ITL {m['p99_itl_ms']:.2f} ms, "
          f"output {m['output_tok_per_s']:.1f} tok/s")


if __name__ == "__main__":
    main()
