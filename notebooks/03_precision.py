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
# # 03 · Precision against a float32 reference
#
# How far are the target's next-token distributions from a float32 transformers reference run on
# CPU (reference device/dtype are params)?
#
# * **Reference** — transformers in float32 greedily continues each prompt (mixed English /
#   Chinese / code / arithmetic by default). Prompt + continuation is the sequence both sides are
#   scored on. The target proposes the continuation and one reference forward checks it; the
#   reference generates only from where its own choice differs, so the continuation is the
#   reference's greedy one without generating it token by token.
# * **Teacher-forced comparison** — the target reads exactly that sequence, so position *i* has the
#   same context on both sides even after a top-1 flip. Per position: top-1 agreement, top-k
#   overlap, cosine / MSE / max-abs of logits, KL(ref‖target) over the full vocabulary, and the
#   logprob difference of the reference's token. **Scope**: `full_vocab` for hf targets;
#   `target_returned` for vLLM / OpenAI targets, which return only their top-N logprobs — there
#   top-1, top-k and the reference-token logprob are still exact, while KL / cosine / MSE are
#   computed on the returned ids only (renormalised) and are labelled so. Nothing is filled in.
# * **Free-running** — both sides generate greedily; token agreement, first divergence, and the
#   two texts side by side from there.
# * **Hidden states** (hf targets) — norm per layer on both sides and their relative difference:
#   where the error enters and grows.
# * **Verdict** — each metric against the thresholds in params. Every value is checked to be
#   possible (cosine in [−1, 1], KL ≥ 0, rates in [0, 1]) before it is saved.

# %% tags=["parameters"]
# Parameters (papermill injects the run's values after this cell)
params_file = "../params/tiny-qwen2.yaml"
run_dir = ""  # empty: a fresh run directory under outputs/<model>/

# %%
import ascendeval
from ascendeval.sections.precision import deployment
from ascendeval.sections.precision import steps as precision

run = ascendeval.open_section("precision", params_file, run_dir)
print(f"run directory: {run.run_dir}")
print(f"reference: transformers {run.conf.reference_dtype} on {run.conf.reference_device}; "
      f"target: {run.cfg.target.engine}/{run.cfg.target.device} {run.cfg.model.dtype}")

# %% [markdown]
# ## Target engine

# %%
target = run.step("target", precision.open_target_engine, run)

# %% [markdown]
# ## Reference run: prompts and the reference's greedy continuations

# %%
ref = run.step("reference", precision.run_reference, run.cfg, run.conf, run=run, target=target)
run.show("reference", ref)

# %% [markdown]
# ## Teacher-forced comparison
#
# One row per prompt below, then the aggregate over all positions. `top1_agreement` and
# `topk_overlap` are fractions; `mean_kl` is in nats; `mean_ref_logprob_diff` is target minus
# reference (negative: the target is less sure of the reference's token).

# %%
tf = run.step("teacher_forced", precision.teacher_forced, ref, target, run.conf)
run.show("teacher_forced", tf)

# %%
precision.show(tf, "summary_table")

# %%
positions_png = run.step("plot_positions", precision.plot_positions, tf, run.artifact_path("precision_positions.png"))
precision.show_image(positions_png)

# %% [markdown]
# ## Full vocabulary (vLLM targets)
#
# The target's logprobs of every vocabulary entry for a bounded number of positions
# (`deployment.full_vocab_positions`): KL and the cosine of centred logits over the whole
# vocabulary (logprobs are logits minus one constant per position, so the centred cosine is
# exactly that of the logits). Memory: positions × vocabulary × 4 bytes.

# %%
fv = run.step("full_vocab", precision.full_vocab, ref, target, run.conf)
run.show("full_vocab", fv)

# %% [markdown]
# ## Hidden states per layer (hf targets)
#
# Left: mean L2 norm of the hidden vector per token, reference vs target. Right: relative
# difference ‖h_target − h_ref‖ / ‖h_ref‖ per layer — a jump marks the layer where error enters.

# %%
hidden_png = run.step("plot_hidden_states", precision.plot_hidden_states, tf, run.artifact_path("precision_hidden_states.png"))
precision.show_image(hidden_png)

# %%
precision.show(tf, "hidden_table")

# %% [markdown]
# ## Free-running greedy generation, side by side from the first divergence

# %%
fr = run.step("free_running", precision.free_running, ref, target, run.conf)
run.show("free_running", fr)

# %% [markdown]
# ## Verdict against the params thresholds

# %%
verdict = run.step("verdict", precision.verdict, tf, fr, run.conf, fv)
run.show("verdict", verdict)

# %%
run.step("record", precision.record, run, ref, tf, fr, verdict, target, fv)

# %% [markdown]
# ## Deployment matrix: does a deployment setting change the answers?
#
# One baseline arm (the params' target, eager) and one arm per deployment setting that applies:
# graph mode, chunked prefill with small chunks, prefix-cache hit vs miss, speculative decoding,
# batch 1 vs a full batch, tensor parallel, other dtypes. Each arm reads the reference's sequences
# (prefill path: top-N prompt logprobs) and generates greedily with logprobs (decode path); it is
# compared with the baseline and with the float32 reference. A free-running divergence where the
# baseline was at a near tie (`tie_nats`) is benign; one where the baseline was sure is not.
# Arms that cannot run on this target are listed with the reason. The target engine is closed here.

# %%
matrix = run.step("deployment_matrix", deployment.run_matrix, run, ref, target)
run.show("deployment_matrix", matrix)

# %%
precision.show(matrix, "not_run")

# %%
deployment_png = run.step("plot_deployment", deployment.plot, matrix, run.artifact_path("precision_deployment.png"))
precision.show_image(deployment_png)

# %%
run.step("close", precision.close, ref, target)

# %% [markdown]
# ## How to read this
#
# * Top-1 flips concentrate where the reference itself is unsure (small `ref_top1_margin` in
#   `records/precision.positions.jsonl`); a flip at a large margin points at a real numeric problem.
# * KL is the most sensitive single number: bf16 against fp32 typically gives 1e-4 – 1e-2 nats on a
#   healthy model; a broken kernel or weight gives orders of magnitude more, usually from one layer
#   on (see the hidden-state plot).
# * In the `target_returned` scope, read `mean_ref_mass_returned`: distribution metrics on the
#   returned ids mean little when they cover little of the reference's probability.
# * Free-running agreement drops to the first flip and stays meaningless after it; that is why the
#   teacher-forced numbers are the ones the verdict uses.

# %%
run.finish()
