"""Test-only stand-in for torch_npu (Ascend's torch plug-in), for machines without CANN.

It behaves like the real one where the workbook's correctness depends on it:
- importing it registers `torch.npu`; nothing touches the device until the first call that needs
  it (lazy init, as torch_npu's `_lazy_init`);
- `device_count()` / `is_available()` do not initialise the device; memory, synchronize,
  mem_get_info, names and empty_cache do;
- after the device was initialised in a process, a forked child that uses it raises
  "Cannot re-initialize NPU in forked subprocess. To use NPU with multiprocessing, you must use
  the 'spawn' start method" (torch_npu/npu/__init__.py);
- memory counters are per process: a process that allocated nothing reads 0.
Never installed outside tests (tests/standins is put on sys.path by the tests that use it).
"""

from __future__ import annotations

import os
import sys
import types

import torch

DEVICE_COUNT = int(os.environ.get("STANDIN_NPU_COUNT", "1"))
TOTAL_BYTES = 64 * 1024**3  # a 910B's 64 GiB HBM


class _State:
    initialized = False
    in_bad_fork = False
    allocated = 0
    peak = 0
    init_calls = 0


def _after_fork_in_child() -> None:
    if _State.initialized:
        _State.in_bad_fork = True
        _State.initialized = False


os.register_at_fork(after_in_child=_after_fork_in_child)


def _lazy_init() -> None:
    if _State.in_bad_fork:
        raise RuntimeError("Cannot re-initialize NPU in forked subprocess. To use NPU with multiprocessing, "
                           "you must use the 'spawn' start method")
    if not _State.initialized:
        _State.initialized = True
        _State.init_calls += 1


npu = types.ModuleType("torch.npu")
npu.is_available = lambda: DEVICE_COUNT > 0
npu.device_count = lambda: DEVICE_COUNT
npu.is_initialized = lambda: _State.initialized


def _needs_device(fn):
    def wrapped(*args, **kwargs):
        _lazy_init()
        return fn(*args, **kwargs)

    wrapped.__name__ = fn.__name__
    return wrapped


npu.synchronize = _needs_device(lambda device=None: None)
npu.memory_allocated = _needs_device(lambda device=None: _State.allocated)
npu.max_memory_allocated = _needs_device(lambda device=None: _State.peak)
npu.reset_peak_memory_stats = _needs_device(lambda device=None: setattr(_State, "peak", _State.allocated))
npu.empty_cache = _needs_device(lambda: None)
npu.mem_get_info = _needs_device(lambda device=None: (TOTAL_BYTES - _State.allocated, TOTAL_BYTES))
npu.get_device_name = _needs_device(lambda device=None: "Ascend910B3")
npu._state = _State

torch.npu = npu
sys.modules["torch.npu"] = npu
__version__ = "2.13.0.standin"
