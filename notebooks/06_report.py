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
# # 06 · Report
#
# Turns this run's records into the published report. It measures nothing: every figure comes from
# `records/*.json` of this run, and every table of the model card names the record (and notebook)
# it came from.
#
# * **Model facts** — architecture, parameters counted from the weight files, layers, heads, KV
#   heads, vocabulary, context, dtype: read from the model's own `config.json` (taken from the smoke
#   record when it has them, otherwise read here and stored in this section's record).
# * **Verdicts** — one line per section: pass / fail / check / measured (no threshold) / not measured.
# * **Not measured** — every skipped or failed section and step with the reason its record gives,
#   and the hardware this host does not have.
# * **Verify** — `ascendeval verify` recomputes the summary figures from the raw per-request and
#   per-item rows and checks every record for impossible values; a problem fails this step.
# * **Model card** — `README.md` and `README.html` of the run (language from params); the runner
#   adds `report.html` (card plus every section in one file) and `outputs/index.html` after this.

# %% tags=["parameters"]
# Parameters (papermill injects the run's values after this cell)
params_file = "../params/tiny-qwen2.yaml"
run_dir = ""  # empty: a fresh run directory under outputs/<model>/

# %%
import ascendeval
from ascendeval import report
from ascendeval.sections.report import steps

run = ascendeval.open_section("report", params_file, run_dir)
data = report.load_run(run.run_dir)
print(f"run directory: {run.run_dir}")
print(f"records: {', '.join(sorted(data.records)) or 'none'}; language: {run.conf.language}")

# %% [markdown]
# ## Model facts

# %%
facts = run.step("model_facts", steps.model_facts_step, run, data)
run.show("model_facts", steps.facts_table(facts))

# %% [markdown]
# ## Verdicts per section

# %%
run.show("verdicts", steps.verdict_table(data, run.conf.language))

# %% [markdown]
# ## Not measured, skipped or failed — and why

# %%
run.show("not_measured", steps.not_measured_table(data, run.conf.language))

# %% [markdown]
# ## Verify: summaries recomputed from the raw rows

# %%
checked = run.step("verify", steps.verify_step, run)
run.show("verify", checked)

# %% [markdown]
# ## vLLM-Ascend model-support kit
#
# What a vLLM-Ascend pull request that adds this model contains, written from this run's records
# under `upstream/vllm-ascend/` at the paths they have upstream: the accuracy config
# (`tests/e2e/models/configs/<Model>.yaml`, the lm-eval values measured here), its `accuracy.txt`
# line, the accuracy report in the layout of upstream's report template, and a tutorial page draft.
# A run that was not on an Ascend NPU says so in every file.

# %%
kit = run.step("upstream_kit", steps.upstream_kit_step, run, data)
run.show("upstream_kit", kit)

# %% [markdown]
# ## Model card

# %%
card = run.step("model_card", steps.card_step, run, data)
run.show("model_card", card)

# %% [markdown]
# ## Index of all runs

# %%
index = run.step("index", steps.index_step, run)
run.show("index", index)

# %% [markdown]
# A section marked *not measured* printed no figure: nothing is ever filled in with 0. To check a
# published report later, run `ascendeval verify <run directory>`.

# %%
record = run.finish()
