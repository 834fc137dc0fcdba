# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 02 · Performance
#
# How fast is the model on this target, offline and served? Every figure below is measured in this
# run; counts come from `sections.performance` in the params file (smaller counts apply
# automatically to models above `reduced.above_params` parameters).
#
# * **Latency** — `vllm bench latency` semantics: one batch of fixed-length random-token prompts,
#   `ignore_eos`, warm-up iterations not counted, prefix caching off (repeated prompts would
#   otherwise hit the cache and skip prefill). Mean and P10…P99 over the timed iterations, plus
#   end-to-end latency at several output lengths.
# * **Throughput** — `vllm bench throughput`: all prompts at once. The same prompts also go through
#   a bare `LLM.generate` on the same engine, alternating, so the harness's own overhead is
#   measured (goal: harness ≥ 0.98 × bare).
# * **Prefill / decode split** — prefill tok/s = B·L_in / T(long input, 1 token);
#   decode tok/s = B·(L_out−1) / (T(short input, L_out) − T(short input, 1)), per batch size B.
# * **Graph vs eager** — the same workloads with `enforce_eager` true and false (ACL graph on
#   Ascend, CUDA graph on GPUs, torch.compile on CPU), start-up time included.
# * **Roofline** — decode bandwidth utilisation
#   MBU = (W + B·C·kv) · steps/s ÷ measured bandwidth (W weight bytes, C mean context tokens,
#   kv bytes per token); prefill FLOPs utilisation MFU = B·(2·N·T + 2·layers·T²·hidden) ÷ T_prefill
#   ÷ measured matmul FLOP/s. Bandwidth and matmul throughput come from the environment record.
# * **Memory** — weights, KV-cache capacity in tokens and the max concurrency the engine reports,
#   peak RSS of the process tree (and device memory on accelerators).
# * **Serving** — an async streaming client with vLLM's definitions: TTFT to the first generated
#   chunk, TPOT = (E2EL − TTFT)/(output tokens − 1) with tokens from `usage`, ITL per chunk, E2EL;
#   Poisson/gamma arrivals, request-rate and concurrency sweeps. Raw rows:
#   `records/performance.requests.jsonl`.

# %% tags=["parameters"]
# Parameters (papermill injects the run's values after this cell)
params_file = "../params/tiny-qwen2.yaml"
run_dir = ""  # empty: a fresh run directory under outputs/<model>/

# %%
import ascendeval
from ascendeval import output_guard
from ascendeval.sections.performance import charts, client_check, offline, roofline, serving, setup, slo_capacity

run = ascendeval.open_section("performance", params_file, run_dir)
guard = output_guard.OutputGuard(run.cfg.output_guard)  # keeps a few outputs of every timed measurement
print(f"run directory: {run.run_dir}")
print(f"model: {run.cfg.model.id} on {run.cfg.target.engine}/{run.cfg.target.device}")

# %% [markdown]
# ## Plan: effective counts and model facts

# %%
plan = run.step("plan", setup.plan, run)
run.show("plan", plan)

# %% [markdown]
# ## Engine (prefix caching off for offline measurements)

# %%
pe = run.step("engine", setup.open_engine, run)
run.show("engine", pe)

# %% [markdown]
# ## Offline latency

# %%
lat = run.step("latency", offline.latency, run, pe, plan, guard)
run.show("latency", lat)

# %% [markdown]
# ## Offline throughput: harness vs bare `LLM.generate`

# %%
thr = run.step("throughput", offline.throughput, run, pe, plan, guard)
run.show("throughput", thr)

# %% [markdown]
# ## Prefill and decode speed per batch size

# %%
split = run.step("prefill_decode", offline.prefill_decode, run, pe, plan, guard)
run.show("prefill_decode", split)

# %% [markdown]
# ## Memory

# %%
mem = run.step("memory", offline.memory, run, pe, plan)
run.show("memory", mem)

# %% [markdown]
# ## Graph vs eager (start-up included)

# %%
graph = run.step("graph_vs_eager", offline.graph_vs_eager, run, pe, plan, lat, thr, guard)
run.show("graph_vs_eager", graph)

# %% [markdown]
# ## Charts: graph vs eager, prefill and decode speed per batch size
#
# Drawn from the figures recorded above (the record's `graph_vs_eager` and `prefill_decode`);
# the percentage in each graph-vs-eager panel is the graph mode's change, green where it helps.

# %%
graph_chart = run.step("graph_chart", charts.graph_vs_eager_chart, run)
charts.show(graph_chart)
split_chart = run.step("prefill_decode_chart", charts.prefill_decode_chart, run)
charts.show(split_chart)

# %%
run.step("close_engine", setup.close_engine, pe)

# %% [markdown]
# ## Roofline

# %%
roof = run.step("roofline", roofline.roofline, run, plan, split)
run.show("roofline", roof)

# %% [markdown]
# ## The serving client's own error
#
# Before the load points, the client drives the in-package simulated server (TTFT 50 ms, 10 ms
# per token; its writes stamped on this machine's clock) at the run's planned rates. Every request
# is matched to the server's own record: the client's share of TTFT (send + receive) is measured
# here, in this run, and printed beside the serving figures.

# %%
calibration = run.step("client_calibration", client_check.calibration, run, plan)
run.show("client_calibration", calibration)

# %% [markdown]
# ## Serving benchmark and sweeps

# %%
served = run.step("serving", serving.serving, run, plan, guard)
run.show("serving", served)

# %%
run.step("serving_plots", serving.show_plots, served)

# %% [markdown]
# Read TTFT against the request rate: flat TTFT means the server keeps up; a knee marks where
# requests start queueing. Throughput that stops growing with concurrency marks the batch size
# the target saturates at. A utilisation above the roofline's ceiling is reported as not
# measured (the working set fits in cache), never as a value above 100 %.

# %% [markdown]
# ## One trace, every tool's definitions
#
# The main point's raw rows under the definitions of vLLM `bench serve`, SGLang `bench_serving`,
# GuideLLM, AIPerf and EvalScope (each read in the tool's source; `ascendeval/metric_definitions.py`
# cites file and function), so a figure from any of them can be compared with this report, and
# the rows below say where their definitions give different numbers on this trace.

# %%
definitions = run.step("serving_definitions", serving.tool_definitions, run)
run.show("serving_definitions", definitions)

# %% [markdown]
# ## Capacity under an SLO
#
# The highest request rate (Poisson arrivals) and the highest concurrency at which at least the
# target share of requests (default 99 %) meet every SLO: the params' `serving.slo_*_ms`, else
# multiples of a single-request baseline measured first (`serving.capacity`). The search doubles
# the load until a probe misses the target, then bisects, within a bounded request budget; every
# probe is a clean load point whose goodput is recorded. Raw rows:
# `records/performance.capacity_requests.jsonl`.

# %%
capacity = run.step("serving_capacity", slo_capacity.capacity, run, plan, guard)
run.show("serving_capacity", capacity)

# %%
run.step("capacity_plots", serving.show_plots, capacity)

# %% [markdown]
# ## Outputs checked
#
# A speed figure counts only if what it timed was sane output. Every measurement above kept a few
# of its outputs; here their first tokens are scored under the float32 transformers reference
# (teacher-forced, one forward each): greedy tokens must be the reference's top-1 (or a near tie),
# sampled tokens (latency and throughput sample at temperature 1, as `vllm bench` does) must be
# about as likely under the reference as its own samples. Empty outputs with `ignore_eos` fail
# too. A figure judged invalid is shown in the card as "invalid: outputs degenerate", never as a
# number.

# %%
checked = run.step("output_guard", output_guard.check_run, run, guard)
run.show("output_guard", checked)

# %%
record = run.finish()
