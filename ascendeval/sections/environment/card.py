"""The environment section's part of the model card (`render`) and its verdict rule (`verdict`)."""

from __future__ import annotations

from typing import Any

from ...report.builder import CardBuilder
from ...report.cells import fmt, get, md_table, opt
from ...report.rundata import RunData
from ...report.text import L, metric_label, seam_text
from ...report.verdicts import Figure, Summary, figure
from .metrics import EnvironmentMetrics


def _env_rows(d: RunData, lang: str) -> list[tuple[str, str, str]]:
    sysinfo = get(d.rec("environment"), "metrics.system")
    rows: list[tuple[str, str, str]] = []
    absent = (sysinfo or {}).get("absent", {}) if isinstance(sysinfo, dict) else {}
    if isinstance(sysinfo, dict):
        pk = sysinfo.get("packages", {})
        for name, label in (("vllm", "vLLM"), ("vllm_ascend", "vLLM-Ascend"), ("torch", "PyTorch"),
                            ("torch_npu", "torch_npu"), ("transformers", "Transformers"), ("sglang", "SGLang")):
            if name in pk:
                note = absent.get(name, "") if pk[name] is None else ""
                seam = sysinfo.get("vllm_seam") or {}
                if name == "vllm" and pk[name] and seam.get("verdict"):
                    # the seam's word on this version: contract checked / untested version
                    note = seam_text(seam["verdict"], lang) + (f" ({', '.join(seam['optional_absent'])}: "
                                                   f"{L(lang, 'not_reported_by_version')})"
                                                   if seam.get("optional_absent") else "")
                rows.append((label, pk[name] or L(lang, "absent"), note))
        cann = sysinfo.get("cann", {})
        rows.append(("CANN", cann.get("version") or L(lang, "absent"), "" if cann.get("present") else L(lang, "hw_not_here")))
        drv = sysinfo.get("npu_driver", {})
        rows.append((L(lang, "env_npu_driver"), drv.get("version") or L(lang, "absent"), "" if drv.get("present") else L(lang, "hw_not_here")))
        rows.append(("Python", get(sysinfo, "python.version") or "—", ""))
        cpu = sysinfo.get("cpu", {})
        rows.append(("CPU", L(lang, "env_cpus", model=cpu.get("model") or "?", n=cpu.get("logical_cpus")),
                     ", ".join(cpu.get("flags_present") or [])))
        mem = get(sysinfo, "memory.total_bytes")
        rows.append((L(lang, "env_memory"), fmt(mem, "total_bytes"), ""))
        osi = sysinfo.get("os", {})
        rows.append((L(lang, "env_os"), f"{osi.get('distribution') or osi.get('system')} ({osi.get('machine')})", osi.get("kernel") or ""))
    else:
        env = d.any_record().get("env", {})
        for k, v in env.items():
            rows.append((k, v if v is not None else L(lang, "absent"), ""))
    tdev = get(d.rec("environment"), "metrics.target_device")
    if isinstance(tdev, dict):
        rows.append((L(lang, "env_device"), f"{tdev.get('name') or tdev.get('device', '?')} ×{tdev.get('count', '?')}",
                     fmt(tdev.get("total_memory_bytes"), "total_memory_bytes") if tdev.get("total_memory_bytes") else ""))
    roof = get(d.rec("environment"), "metrics.roofline") or {}
    for k in ("copy_bandwidth_gbps", "matmul_fp32_tflops", "matmul_bf16_tflops"):
        if roof.get(k) is not None:
            rows.append((metric_label(k, lang), fmt(roof[k], k), L(lang, "env_probe")))
    for k in ("datasheet_bf16_tflops", "datasheet_memory_bandwidth_gbps"):
        if roof.get(k) is not None:
            rows.append((metric_label(k, lang), fmt(roof[k], k), roof.get("datasheet_source") or ""))
    git = d.any_record().get("git_hash")
    if git:
        rows.append(("ascendeval", git, ""))
    return rows


def render(b: CardBuilder) -> None:
    b.add(f"## {L(b.lang, 'sec_env')}")
    dep = get(b.d.rec("environment"), "metrics.deployment")
    if isinstance(dep, dict):  # what was measured: the deployment; the host below is the client's
        b.add(f"### {metric_label('deployment', b.lang)}")
        b.kv_table("environment", dep)
    rows = _env_rows(b.d, b.lang)
    if rows:
        b.add(md_table([L(b.lang, "component"), L(b.lang, "version"), L(b.lang, "note")], rows),
              b.source("environment") if b.d.rec("environment") else "")



def summary(m: EnvironmentMetrics, params: dict[str, Any], lang: str) -> Summary:
    """The probes ran: the environment is described, nothing is judged against a threshold."""
    packages = opt(m, "system.packages") or {}
    seam = seam_text(opt(m, "system.vllm_seam.verdict"), lang)
    device = opt(m, "target_device.name") or "—"
    figures = [Figure("vLLM", packages.get("vllm") or L(lang, "absent"), seam)]
    roof = m.roofline
    if roof and roof.copy_bandwidth_gbps is not None:
        figures.append(figure("copy_bandwidth_gbps", roof.copy_bandwidth_gbps, device, lang))
    sentence = L(lang, "s_env", device=device, vllm=packages.get("vllm") or "—", seam=seam)
    dep = m.deployment
    if dep is not None:  # the deployment's own server is what was measured, not this host's vLLM
        server = f"{'vLLM ' if dep.server_kind == 'vllm' else ''}{dep.version or L(lang, 'server_version_unknown')}"
        figures.insert(0, Figure(metric_label("deployment", lang), server, dep.url))
        return Summary("pass", f"{metric_label('deployment', lang)}: {server}", figures,
                       L(lang, "s_env_deployment", url=dep.url, server=server, model=dep.model or "—"))
    return Summary("pass", f"vLLM {packages.get('vllm') or L(lang, 'absent')}: {seam}", figures, sentence)
