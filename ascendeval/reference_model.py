"""The float32 reference, planned before it loads: does it fit, and if not, which fallback.

The reference is a transformers model (4 bytes per parameter in float32: 28 GB for a 7B model,
56 GB for 14B). Loading one that does not fit the host kills the notebook's kernel with no
reason on the page, so every section opens its reference through `plan()`:

* need = weights (parameter count from the safetensors headers x bytes of the dtype)
  + one forward's logits over the longest scored sequence (float32, vocab x tokens, twice: the
  logits and their log-softmax) + a fixed runtime margin;
* available = what the host can still give: MemAvailable, capped by the cgroup's limit
  (containers report the host's memory through /proc/meminfo), or the device's free memory for a
  reference on `npu`/`cuda`; `reference.memory_budget_gb` in params replaces it (a host shared
  with other jobs);
* float32 on the configured device when it fits, else the first of `reference.fallback` that
  fits: `offload` (float32 still, on the host CPU, the weights that do not fit streamed from disk
  at each forward through accelerate's disk offload: the same figures, paid in time), `bfloat16`
  (half the weights, on the same device) or `device` (float32 on the target's accelerator). None
  fits: `ReferenceDoesNotFit`, one line with both figures and what to change.

The chosen plan is recorded with the reference's results and named on the card, so a bfloat16
reference is never read as a float32 one.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

GIB = 1 << 30
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
RUNTIME_MARGIN_BYTES = 512 << 20  # torch + transformers + the tokenizer, measured ~400 MiB on CPU
FALLBACKS = ("offload", "bfloat16", "device")
# accelerate's disk offload keeps this many of the largest modules in memory at once: the one
# computing and the next one being read (a decoder layer, or the embedding / output matrix)
OFFLOAD_RESIDENT_MODULES = 2


class ReferenceDoesNotFit(RuntimeError):
    """No allowed way to load the reference fits this host; the message says which figures."""


@dataclass
class ReferencePlan:
    dtype: str
    device: str
    need_bytes: int | None  # None: not computed (no parameter count)
    available_bytes: int | None
    available_source: str
    num_parameters: int
    fallback: str | None  # None: the configured reference; else the fallback taken
    reason: str | None  # why the fallback was taken, or why memory was not checked
    # `offload`: the weights kept in host memory (accelerate's max_memory) and where the rest go
    offload_memory_bytes: int | None = None
    offload_folder: str | None = None

    def describe(self) -> str:
        """'float32 on cpu', 'bfloat16 on cpu (fallback: ...)': the card's words for it."""
        text = f"{self.dtype} on {self.device}"
        if self.fallback == "offload":
            return (f"{text}, weights beyond {self.offload_memory_bytes / GIB:.2f} GiB streamed from disk at each "
                    f"forward (fallback 'offload': {self.reason})")
        if self.fallback:
            return f"{text} (fallback '{self.fallback}': {self.reason})"
        return f"{text} ({self.reason})" if self.reason else text

    def info(self) -> dict[str, Any]:
        return {**asdict(self), "described": self.describe()}


def num_parameters(model_path: str | Path) -> int:
    """From the safetensors headers; a checkpoint without them (*.bin, *.pt): its file sizes at 2
    bytes per parameter (the 16-bit weights hubs ship), an estimate the plan's figures carry."""
    from .models import model_card_facts

    n = int(model_card_facts(model_path).get("param_count") or 0)
    if n == 0:
        n = sum(f.stat().st_size for pat in ("*.bin", "*.pt", "*.pth") for f in Path(model_path).glob(pat)) // 2
    return n


def _vocab_size(model_path: str | Path) -> int:
    import json

    cfg = json.loads((Path(model_path) / "config.json").read_text(encoding="utf-8"))
    return int((cfg.get("text_config") or cfg).get("vocab_size") or 0)


def largest_module_parameters(model_path: str | Path) -> int:
    """Parameters of the checkpoint's largest module that disk offload moves as a whole: a decoder
    layer (every tensor under `...layers.<i>.`) or a lone matrix (the embedding, the output head),
    from the safetensors headers. 0 without safetensors."""
    import re

    from .models import safetensors_header

    sizes: dict[str, int] = {}
    for f in sorted(Path(model_path).glob("*.safetensors")):
        for key, meta in safetensors_header(f).items():
            if key == "__metadata__":
                continue
            m = re.match(r"(.*\.(?:layers|h|blocks)\.\d+)\.", key)
            module = m.group(1) if m else key.rsplit(".", 1)[0]
            sizes[module] = sizes.get(module, 0) + math.prod(meta["shape"])
    return max(sizes.values(), default=0)


def offload_root() -> Path:
    """Where an offloaded reference's converted weights go: the workbook's cache folder."""
    from . import paths

    return paths.cache_dir() / "reference-offload"


def disk_free(path: Path) -> int:
    import shutil

    path.mkdir(parents=True, exist_ok=True)
    return int(shutil.disk_usage(path).free)


def need_bytes(n_params: int, dtype: str, vocab: int, max_tokens: int) -> int:
    """Weights in `dtype` + two float32 [tokens, vocab] tensors + the runtime margin."""
    return n_params * DTYPE_BYTES[dtype] + 2 * 4 * vocab * max_tokens + RUNTIME_MARGIN_BYTES


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return None if text == "max" or not text.lstrip("-").isdigit() else int(text)


def _stat(path: Path, key: str) -> int:
    try:
        for line in path.read_text().splitlines():
            k, _, v = line.partition(" ")
            if k == key:
                return int(v)
    except (OSError, ValueError):
        pass
    return 0


def cgroup_headroom(proc_cgroup: Path = Path("/proc/self/cgroup"), root: Path = Path("/sys/fs/cgroup")
                    ) -> tuple[int, str] | None:
    """(limit - usage, which files) of this process's memory cgroup, v2 or v1, or None when it
    has no limit. Usage leaves out the inactive page cache (the kernel reclaims it before it
    kills anything: the weights just read from disk sit there). Containers report the host's
    memory in /proc/meminfo, so without this a 14B reference looks like it fits a 32 GB pod."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        hid, ctrls, rel = line.split(":", 2)
        rel = rel.lstrip("/")
        if hid == "0" and ctrls == "":  # v2: one unified hierarchy
            files = ("memory.max", "memory.current", "memory.stat", "inactive_file")
            bases = [root / rel, root / "unified" / rel, root, root / "unified"]
        elif "memory" in ctrls.split(","):  # v1: the memory controller's own hierarchy
            files = ("memory.limit_in_bytes", "memory.usage_in_bytes", "memory.stat", "total_inactive_file")
            bases = [root / "memory" / rel, root / "memory"]
        else:
            continue
        for base in bases:  # the process's own group, else the namespace's root view of it
            limit, usage = _read_int(base / files[0]), _read_int(base / files[1])
            if usage is None:
                continue
            if limit is None or limit >= 1 << 60:  # "max" / v1's page-rounded LONG_MAX: no limit here
                break
            used = usage - _stat(base / files[2], files[3])
            return limit - used, f"cgroup {base / files[0]} - usage without inactive page cache"
    return None


def host_available() -> tuple[int, str]:
    import psutil

    avail = int(psutil.virtual_memory().available)
    cg = cgroup_headroom()
    if cg is not None and cg[0] < avail:
        return cg
    return avail, "host MemAvailable"


def device_available(kind: str) -> tuple[int | None, str]:
    """Free memory of accelerator 0 of `kind` (torch's mem_get_info), None where unreadable."""
    from .device import Device

    try:
        dev = Device(kind)
        free, _total = dev._backend.mem_get_info(dev.index)  # noqa: SLF001 - the seam's backend
        return int(free), f"{kind} mem_get_info free"
    except Exception as exc:  # noqa: BLE001 - no backend, older torch_npu: unknown, not zero
        return None, f"{kind} free memory unreadable ({type(exc).__name__})"


def plan(model_path: str | Path, *, dtype: str, device: str, target_device: str, fallbacks: list[str],
         budget_gb: float | None = None, max_tokens: int = 2048, alongside_target: bool = False,
         target_bytes: int = 0) -> ReferencePlan:
    """The reference to load (see module docstring). Raises ReferenceDoesNotFit with one line.

    `alongside_target`: the target's engine starts on its device while the reference is loaded
    (precision): the `device` fallback would take the memory that engine is sized to claim, and
    on the host the target's own memory (`target_bytes`: its weights and KV cache) is kept free."""
    n = num_parameters(model_path)
    vocab = _vocab_size(model_path)
    if n == 0:  # no weights files whose size says anything: load as configured, and say so
        avail, source = host_available() if device == "cpu" else device_available(device)
        return ReferencePlan(dtype, device, None, avail, source, 0, None,
                             "memory not checked: no safetensors/bin weights to count the parameters of")

    def available(dev: str) -> tuple[int | None, str]:
        if budget_gb is not None:
            avail, source = int(budget_gb * GIB), "params reference.memory_budget_gb"
        else:
            avail, source = host_available() if dev == "cpu" else device_available(dev)
        if alongside_target and target_bytes and dev == target_device == "cpu" and avail is not None:
            # nothing left is 0 available, not a negative figure
            return max(avail - target_bytes, 0), f"{source}, less {target_bytes / GIB:.2f} GiB kept for the target's engine"
        return avail, source

    def fits(need: int, avail: int | None) -> bool:
        return avail is None or need <= avail  # an unreadable device: try, as before this check

    tried: list[str] = []
    first_need = need_bytes(n, dtype, vocab, max_tokens)
    avail, source = available(device)
    if fits(first_need, avail):
        return ReferencePlan(dtype, device, first_need, avail, source, n, None, None)
    tried.append(f"{dtype} on {device} needs {first_need / GIB:.2f} GiB, {avail / GIB:.2f} GiB available ({source})")
    why = tried[0]
    for fb in fallbacks:
        if fb == "offload":
            offloaded = _offload_plan(model_path, n, dtype, device, vocab, max_tokens, available)
            if isinstance(offloaded, str):
                tried.append(f"fallback 'offload' {offloaded}")
                continue
            memory, folder, need, a, s = offloaded
            log.warning("reference: %s; taking fallback 'offload' (%s on cpu, %.2f GiB of weights in memory, "
                        "the rest streamed from %s)", why, dtype, memory / GIB, folder)
            return ReferencePlan(dtype, "cpu", need, a, s, n, "offload", why, memory, str(folder))
        if fb == "bfloat16" and dtype != "bfloat16":
            cand = ("bfloat16", device)
        elif fb == "device" and target_device != "cpu" and device != target_device and not alongside_target:
            cand = (dtype, target_device)
        else:
            why_not = "the target's engine shares that device while the reference is loaded" if (
                fb == "device" and alongside_target and target_device != "cpu") else \
                f"reference {dtype} on {device}, target on {target_device}"
            tried.append(f"fallback '{fb}' does not apply ({why_not})")
            continue
        need = need_bytes(n, cand[0], vocab, max_tokens)
        a, s = available(cand[1])
        if fits(need, a):
            log.warning("reference: %s; taking fallback %r (%s on %s)", why, fb, *cand)
            return ReferencePlan(cand[0], cand[1], need, a, s, n, fb, why)
        tried.append(f"fallback '{fb}' ({cand[0]} on {cand[1]}) needs {need / GIB:.2f} GiB, "
                     f"{(a or 0) / GIB:.2f} GiB available ({s})")
    raise ReferenceDoesNotFit(
        "the reference does not fit: " + "; ".join(tried) + f"; allowed fallbacks: {', '.join(FALLBACKS)} "
        "(params reference.fallback), or free memory, or turn the reference off for this section")


def _offload_plan(model_path: str | Path, n: int, dtype: str, device: str, vocab: int, max_tokens: int,
                  available: Any) -> tuple[int, Path, int, int | None, str] | str:
    """(weights kept in memory, offload folder, need, available, its source) for the `offload`
    fallback, or why it does not apply (a phrase). Memory must hold the logits, the runtime
    margin and OFFLOAD_RESIDENT_MODULES of the largest module; the folder's disk must hold every
    weight beyond what memory keeps, in `dtype` (a checkpoint stored in another dtype may be
    converted there)."""
    if device != "cpu":
        return f"does not apply (it streams a reference on the host CPU; this one is on {device})"
    largest = largest_module_parameters(model_path)
    if not largest:  # a *.bin shard is read into memory whole before anything is offloaded
        return "does not apply (it streams safetensors weights; this checkpoint has none)"
    width = DTYPE_BYTES[dtype]
    overhead = need_bytes(0, dtype, vocab, max_tokens)  # logits and runtime margin
    floor = overhead + OFFLOAD_RESIDENT_MODULES * largest * width
    a, s = available("cpu")
    if a is not None and floor > a:
        return (f"({dtype} on cpu, streamed from disk) needs {floor / GIB:.2f} GiB in memory, "
                f"{a / GIB:.2f} GiB available ({s})")
    memory = n * width if a is None else min(n * width, a - overhead)
    folder = offload_root()
    spill, free = n * width - memory, disk_free(folder)
    if spill > free:
        return (f"({dtype} on cpu, streamed from disk) needs {spill / GIB:.2f} GiB of disk at {folder}, "
                f"{free / GIB:.2f} GiB free")
    return memory, folder, floor, a, s
