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
# # 04 · Quality
#
# Does the model still answer well on this target? Every figure here is scored automatically, so
# it can be reproduced; nothing is judged by eye.
#
# * **Prompt suites** shipped with `ascendeval` (QA, code, summarisation, instruction following,
#   Chinese, arithmetic). Each item carries its own check: exact, contains, regex, numeric, word
#   limit or code execution. Chat models get their chat template, base models a plain completion
#   prompt (from params, else detected from the tokenizer).
# * **Gallery** — the target's outputs scored under the float32 reference engine (transformers on
#   CPU by default), one teacher-forced forward per item, and a few items generated freely on it
#   beside the target: a drift in quality shows up as a different output or a different check.
# * **Benchmarks, offline** — seeded subsets of GSM8K (final-number extraction), MMLU and ARC
#   (multiple choice scored by option-letter log-probabilities *and* by generation with letter
#   extraction; the method is part of every key), HumanEval and MBPP (pass@1, generated code run
#   in a sandbox), C-Eval / CMMLU from a local path. Accuracy comes with its standard error: with a
#   few items the interval is wide, and two runs differ by less than it says nothing.
# * **lm-evaluation-harness** — lm-eval's own tasks (GSM8K by default) on local data, the scores
#   comparable with vLLM-Ascend's accuracy configs, and judged against one when params name it.
# * **Baselines** — each score against the baseline in params, with its source (a run of this
#   tool, or an external citation labelled as such) and the tolerance; pass/fail with the difference.
# * **Batch invariance** — greedy outputs at batch 1 vs the engine's normal batch, items listed
#   when they differ.
#
# Per-item results: `records/quality.items.jsonl` (benchmarks) and `records/quality.suites.jsonl`.

# %% tags=["parameters"]
# Parameters (papermill injects the run's values after this cell)
params_file = "../params/tiny-qwen2.yaml"
run_dir = ""  # empty: a fresh run directory under outputs/<model>/

# %%
import ascendeval
from ascendeval import benchmarks_data, sandbox
from ascendeval.sections.quality import lm_eval as quality_lm_eval
from ascendeval.sections.quality import reference as quality_reference
from ascendeval.sections.quality import steps as quality

run = ascendeval.open_section("quality", params_file, run_dir)
print(f"run directory: {run.run_dir}")
print(f"target: {run.cfg.target.engine}/{run.cfg.target.device}, model {run.cfg.model.id}")

# %% [markdown]
# ## Sandbox and data sources
#
# Generated code runs only in the sandbox: its own temp directory, a scrubbed environment, memory,
# CPU, process and file-size limits, and the whole process tree killed on timeout. The layers in
# force on this machine are listed; `read-only-fs` / `no-network` / `pid-namespace` appear only
# when Linux namespaces are available. Then the benchmark registry: which source each benchmark can
# come from.

# %%
run.add("sandbox_isolation", sandbox.describe_isolation(quality.sandbox_limits(run.conf)))
print("sandbox layers:", ", ".join(run.metrics["sandbox_isolation"]))
run.show("registry", benchmarks_data.describe_table())

# %% [markdown]
# ## Engine under test

# %%
target = run.step("target", quality.open_target, run)
run.show("target", quality.target_info(target))

# %% [markdown]
# lm-evaluation-harness starts now (its results are below): against a served target it runs
# beside the suites and benchmarks, and the server batches its requests with theirs.

# %%
lm_started = run.step("lm_eval_start", quality_lm_eval.start_lm_eval, run, target)

# %% [markdown]
# ## Prompt suites
#
# Pass rate per suite on the target. The per-item table (with the reference) is the gallery below.

# %%
suite = run.step("suites", quality.run_suites, run, target)
run.show("suites", quality.suite_table(suite))

# %% [markdown]
# ## Benchmarks
#
# `n` items sampled with the seed from params; `source` says where the items came from (package
# and version, or local file hash; the items' sha256 is in the record). A benchmark with no
# available data is listed as skipped with the reason.

# %%
bench = run.step("benchmarks", quality.run_benchmarks, run, target)
run.show("benchmarks", quality.benchmark_table(bench))

# %% [markdown]
# ## lm-evaluation-harness
#
# The same target through lm-evaluation-harness, the harness vLLM-Ascend's accuracy CI runs: its
# task, prompt template, few-shot sampling, filters and metric, so the score is comparable with a
# published lm-eval number measured with the same settings. The data comes from local files (the
# task's own YAML with its dataset source replaced; `data_source`, and the files' sha256 in the
# record); where the task's few-shot split is not available offline the record says where the
# shots came from. With `lm_eval.accuracy_config` (a vLLM-Ascend accuracy config) every metric is
# compared as that CI does: `numpy.isclose(expected, round(measured, 4), rtol=0.05)`.
# Logged samples: `records/quality.lm_eval_samples.jsonl`.

# %%
lm = run.step("lm_eval", quality_lm_eval.finish_lm_eval, run, lm_started)
run.show("lm_eval", quality_lm_eval.table(lm))
run.show("lm_eval", quality_lm_eval.comparison_table(lm))

# %% [markdown]
# ## Baseline verdicts
#
# `diff_abs` = measured − baseline. A baseline labelled `external` was not measured by this tool
# and may use another prompt format or shot count; prefer a `run` baseline measured here.

# %%
verdicts = run.step("baselines", quality.baseline_verdicts, run, bench)
run.show("baselines", quality.baseline_table(verdicts))

# %% [markdown]
# ## Determinism and batch invariance
#
# The suite prompts greedily at batch 1 and as one batch (and the batch twice). Batched kernels may
# legitimately change low-order bits and so a token; the items that differ are listed.

# %%
invariance = run.step("batch_invariance", quality.batch_invariance, run, target)
run.show("batch_invariance", invariance)
quality.close(target)

# %% [markdown]
# ## Gallery: reference vs target
#
# The reference engine (float32, or the fallback its memory check took) loads once the section's
# own engine is closed (a shared server stays up for the sections after this one: the memory check
# sees what it holds). Every target output is scored under it teacher-forced: where every token is the
# reference's top-1, the reference's greedy output is the target's. The `reference_gallery` items
# (divergent ones first) are generated freely on it. `same_output` is exact text equality;
# `reference` / `target` are the item's check on each output.

# %%
# the reference columns are added to the suite's rows in place: if this step is skipped or fails,
# the target's rows are still saved and shown below
run.step("reference", quality_reference.run_reference, run, suite)
run.show("reference", quality.suite_table(suite))
quality.save_suite_rows(run, suite)
run.show("reference", quality.gallery(suite))

# %% [markdown]
# How to read it: a suite that passes on the reference and fails on the target points at the
# target (dtype, kernels, engine settings); one that fails on both is the model's own limit. On
# the built-in tiny model low scores are expected: this section then tests the pipeline, not the model.

# %%
record = run.finish()
print(record["status"], record["reason"] or "")
