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
# # 01 · Load & smoke test
#
# Does the model load on the target, answer sensibly, and answer the same way twice?
#
# * **Dummy-weights gate** — the engine starts with random weights (`load_format=dummy`): checks the
#   engine, kernels and memory in seconds before real weights are read. Its text is meaningless.
# * **Real-weights gate** — load time and process memory with the real weights. When the run keeps
#   one shared server (the target's configuration, served; `sections.smoke.target_via: auto`), that
#   server is the load under test: its start time and process-tree memory, and the prompts below go
#   through its API, so the configuration is not started a second time (the dummy gate and the
#   offline-vs-served comparison are then skipped, each with its reason).
# * **Prompts** — ten varied prompts (English, Chinese, code, arithmetic), each run alone, greedy,
#   so each latency is that prompt's own.
# * **Chat** — one conversation through the model's chat template.
# * **Determinism** — the prompts twice, greedy (offline: as one batch; served: each alone, the
#   prompts step's outputs being the first run); any differing token is reported.
# * **Served** — the same prompts through `/v1/completions` and `/v1/chat/completions` of a served
#   model with the same settings; `same_as_offline` compares token ids with the offline run.

# %% tags=["parameters"]
# Parameters (papermill injects the run's values after this cell)
params_file = "../params/tiny-qwen2.yaml"
run_dir = ""  # empty: a fresh run directory under outputs/<model>/

# %%
import ascendeval
from ascendeval.sections.smoke import steps as smoke

run = ascendeval.open_section("smoke", params_file, run_dir)
print(f"run directory: {run.run_dir}")
print(f"model: {run.cfg.model.id} on {run.cfg.target.engine}/{run.cfg.target.device}")

# %% [markdown]
# ## Model

# %%
model = run.step("resolve_model", smoke.resolve_model, run)
run.show("resolve_model", model)

# %% [markdown]
# ## Dummy-weights gate

# %%
gate = run.step("dummy_gate", smoke.dummy_gate, run)
run.show("dummy_gate", gate)

# %% [markdown]
# ## Real-weights gate: load time and memory

# %%
loaded = run.step("load", smoke.load, run)
run.show("load", loaded)

# %% [markdown]
# ## Prompts, one at a time (greedy)

# %%
prompts = run.step("prompts", smoke.run_prompts, run, loaded)
run.show("prompts", prompts)

# %% [markdown]
# ## Chat template

# %%
chat = run.step("chat", smoke.run_chat, run, loaded)
run.show("chat", chat)

# %% [markdown]
# ## Determinism: two greedy runs

# %%
det = run.step("determinism", smoke.determinism, run, loaded, prompts)
run.show("determinism", det)

# %%
run.step("close_engine", smoke.close, loaded)

# %% [markdown]
# ## Through the OpenAI API of a served model

# %%
served = run.step("served", smoke.served, run, prompts)
run.show("served", served)

# %% [markdown]
# Greedy decoding is deterministic only where the kernels are: a differing token between the two
# runs, or between offline and served output, points at batch-dependent numerics on this target.

# %%
record = run.finish()
