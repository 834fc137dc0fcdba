from nbtools import code, md, parameters, write

write("02_performance.ipynb", [
    md("""
# 02 · Performance

How fast is the model on this target, offline and served? Every figure below is measured in this
run; counts come from `sections.performance` in the params file (smaller counts apply
automatically to models above `reduced.above_params` parameters).

* **Latency** — `vllm bench latency` semantics: one batch of fixed-length random-token prompts,
  `ignore_eos`, warm-up iterations not counted, prefix caching off (repeated prompts would
  otherwise hit the cache and skip prefill). Mean and P10…P99 over the timed iterations, plus
  end-to-end latency at several output lengths.
* **Throughput** — `vllm bench throughput`: all prompts at once. The same prompts also go through
  a bare `LLM.generate` on the same engine, alternating, so the harness's own overhead is
  measured (goal: harness ≥ 0.98 × bare).
* **Prefill / decode split** — prefill tok/s = B·L_in / T(long input, 1 token);
  decode tok/s = B·(L_out−1) / (T(short input, L_out) − T(short input, 1)), per batch size B.
* **Graph vs eager** — the same workloads with `enforce_eager` true and false (ACL graph on
  Ascend, CUDA graph on GPUs, torch.compile on CPU), start-up time included.
* **Roofline** — decode bandwidth utilisation
  MBU = (W + B·C·kv) · steps/s ÷ measured bandwidth (W weight bytes, C mean context tokens,
  kv bytes per token); prefill FLOPs utilisation MFU = B·(2·N·T + 2·layers·T²·hidden) ÷ T_prefill
  ÷ measured matmul FLOP/s. Bandwidth and matmul throughput come from the environment record.
* **Memory** — weights, KV-cache capacity in tokens and the max concurrency the engine reports,
  peak RSS of the process tree (and device memory on accelerators).
* **Serving** — an async streaming client with vLLM's definitions: TTFT to the first generated
  chunk, TPOT = (E2EL − TTFT)/(output tokens − 1) with tokens from `usage`, ITL per chunk, E2EL;
  Poisson/gamma arrivals, request-rate and concurrency sweeps. Raw rows:
  `records/performance.requests.jsonl`.
"""),
    parameters(),
    code("""
import ascendeval
from ascendeval import perf

run = ascendeval.open_section("performance", params_file, run_dir)
print(f"run directory: {run.run_dir}")
print(f"model: {run.cfg.model.id} on {run.cfg.target.engine}/{run.cfg.target.device}")
"""),
    md("## Plan: effective counts and model facts"),
    code("""
plan = run.step("plan", perf.plan, run)
run.show("plan", plan)
"""),
    md("## Engine (prefix caching off for offline measurements)"),
    code("""
pe = run.step("engine", perf.open_engine, run)
run.show("engine", pe)
"""),
    md("## Offline latency"),
    code("""
lat = run.step("latency", perf.latency, run, pe, plan)
run.show("latency", lat)
"""),
    md("## Offline throughput: harness vs bare `LLM.generate`"),
    code("""
thr = run.step("throughput", perf.throughput, run, pe, plan)
run.show("throughput", thr)
"""),
    md("## Prefill and decode speed per batch size"),
    code("""
split = run.step("prefill_decode", perf.prefill_decode, run, pe, plan)
run.show("prefill_decode", split)
"""),
    md("## Memory"),
    code("""
mem = run.step("memory", perf.memory, run, pe, plan)
run.show("memory", mem)
"""),
    md("## Graph vs eager (start-up included)"),
    code("""
graph = run.step("graph_vs_eager", perf.graph_vs_eager, run, pe, plan, lat, thr)
run.show("graph_vs_eager", graph)
"""),
    code("""
run.step("close_engine", perf.close_engine, pe)
"""),
    md("## Roofline"),
    code("""
roof = run.step("roofline", perf.roofline, run, plan, split)
run.show("roofline", roof)
"""),
    md("## Serving benchmark and sweeps"),
    code("""
serving = run.step("serving", perf.serving, run, plan)
run.show("serving", serving)
"""),
    code("""
run.step("serving_plots", perf.show_plots, serving)
"""),
    md("""
Read TTFT against the request rate: flat TTFT means the server keeps up; a knee marks where
requests start queueing. Throughput that stops growing with concurrency marks the batch size
the target saturates at. A utilisation above the roofline's ceiling is reported as not
measured (the working set fits in cache), never as a value above 100 %.
"""),
    code("""
record = run.finish()
"""),
])
