"""Run untrusted generated code (HumanEval / MBPP items) in a contained subprocess.

Layers, strongest available first, and the result says which ones were in force (`isolation`):

- `namespaces`: the item runs under `unshare --mount --net --pid --fork --kill-child` (plus
  `--user --map-root-user` when we are not root). In the new mount namespace every mount except
  the item's temporary directory is remounted read-only, so the code cannot write or delete
  anything outside it (EROFS), even in world-writable /tmp. The network namespace has no
  interfaces. The pid namespace means killing its first process kills every process the item
  started, including ones that called setsid() to leave the process group.
- `uid`: started as root, the item drops to the `nobody` uid. RLIMIT_NPROC is not enforced for
  root, so without this a fork loop would be limited only by the timeout; as nobody it is.
  File permissions then also protect files not owned by nobody.
- `rlimits` (always): RLIMIT_AS (memory), RLIMIT_CPU, RLIMIT_NPROC, RLIMIT_FSIZE,
  RLIMIT_NOFILE, RLIMIT_CORE=0; a fresh session (process group) killed with SIGKILL on timeout;
  cwd, HOME and TMPDIR inside the item's own temp directory; an environment built from scratch
  (no inherited tokens, keys or proxies); `python -I` (ignores PYTHON* variables and user site).

Without namespaces (no `unshare`, or it is forbidden) the file-system guarantee is only what
the uid/permissions give: a non-root run can still write where the invoking user can write. The
`isolation` field records this so a report never claims more than was in force.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Literal

_BOOT = str(Path(__file__).with_name("_sandbox_boot.py"))
EXIT_SETUP_FAILED = 97  # same value as in _sandbox_boot.py
_OUTPUT_LIMIT = 16_384  # characters of stdout/stderr kept per item


@dataclass
class SandboxLimits:
    timeout_s: float = 10.0
    memory_mb: int = 1024
    max_processes: int = 16  # processes the item may add (fork loops hit this)
    file_size_mb: int = 16
    open_files: int = 256
    isolation: Literal["auto", "namespaces", "rlimits"] = "auto"


@dataclass
class SandboxResult:
    passed: bool  # exit status 0 within the limits
    status: Literal["passed", "failed", "timeout", "setup_failed"]
    returncode: int | None
    wall_s: float
    stdout: str
    stderr: str
    isolation: list[str] = field(default_factory=list)

    @property
    def reason(self) -> str:
        if self.passed:
            return ""
        if self.status == "timeout":
            return "timeout"
        lines = [ln for ln in self.stderr.strip().splitlines() if ln.strip()]
        return (lines[-1] if lines else f"exit status {self.returncode}")[:300]


@lru_cache(maxsize=4)
def _unshare_prefix(as_root: bool) -> tuple[str, ...] | None:
    """The unshare command line when it works here (probed once), else None."""
    exe = shutil.which("unshare")
    if exe is None:
        return None
    prefix = [exe, "--mount", "--net", "--pid", "--fork", "--kill-child", "--mount-proc"]
    if not as_root:
        prefix[1:1] = ["--user", "--map-root-user"]
    try:
        probe = subprocess.run([*prefix, "true"], capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return tuple(prefix) if probe.returncode == 0 else None


def _nobody() -> tuple[int, int]:
    try:
        pw = pwd.getpwnam("nobody")
        return pw.pw_uid, pw.pw_gid
    except KeyError:
        return 65534, 65534


def _world_executable(path: str) -> bool:
    """True when any uid can exec `path`: every ancestor directory o+x and the file o+rx.
    (A root-owned interpreter under /root, e.g. pyenv or conda, is not reachable by nobody.)"""
    real = Path(os.path.realpath(path))
    try:
        if real.stat().st_mode & 0o005 != 0o005:
            return False
        return all(p.stat().st_mode & 0o001 for p in real.parents)
    except OSError:
        return False


@lru_cache(maxsize=2)
def item_interpreter(drop_uid: bool) -> str | None:
    """The Python that runs generated code. Our own when the sandbox uid can run it, else a
    world-executable system python3 (the code needs only the standard library). None: none fits."""
    if not drop_uid or _world_executable(sys.executable):
        return sys.executable
    for cand in ("/usr/bin/python3", "/usr/local/bin/python3", shutil.which("python3") or ""):
        if cand and _world_executable(cand):
            return os.path.realpath(cand)
    return None


def _count_processes(uid: int) -> int:
    """Processes currently owned by `uid`: RLIMIT_NPROC counts them all, so the budget adds to it."""
    n = 0
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if d.stat().st_uid == uid:
                    n += 1
            except OSError:
                continue
    return n


def clean_env(home: str) -> dict[str, str]:
    """A fresh environment: nothing from ours (API keys, HF/ModelScope tokens, proxies...)."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": home,
        "TMPDIR": home,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONIOENCODING": "utf-8",
    }


def _read_capped(path: Path) -> str:
    with open(path, "rb") as fh:
        data = fh.read(_OUTPUT_LIMIT * 4)
    return data.decode("utf-8", errors="replace")[:_OUTPUT_LIMIT]


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _kill_session_leftovers(sid: int) -> None:
    """Without a pid namespace: kill processes still in the item's session (those that did not
    call setsid() again; the pid namespace is what catches those)."""
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[3]) == sid or int(fields[2]) == sid:  # session id or process group
                os.kill(int(d.name), signal.SIGKILL)
        except (OSError, ValueError, IndexError):
            continue


def run_python(code: str, limits: SandboxLimits | None = None, files: dict[str, str] | None = None) -> SandboxResult:
    """Run `code` as `main.py` in a fresh contained interpreter; never raises for what the code does."""
    limits = limits or SandboxLimits()
    as_root = os.geteuid() == 0
    prefix = None
    if limits.isolation in ("auto", "namespaces"):
        prefix = _unshare_prefix(as_root)
        if prefix is None and limits.isolation == "namespaces":
            raise RuntimeError("sandbox isolation 'namespaces' requested but `unshare` is unavailable or forbidden here")
    work = Path(tempfile.mkdtemp(prefix="ascendeval-sbx-"))
    logs = Path(tempfile.mkdtemp(prefix="ascendeval-sbx-log-"))  # outside the item's reach
    isolation = ["rlimits", "own-cwd", "clean-env"]
    try:
        (work / "main.py").write_text(code, encoding="utf-8")
        for name, text in (files or {}).items():
            (work / name).write_text(text, encoding="utf-8")
        uid = gid = None
        python = item_interpreter(as_root)
        if python is None:  # root, and no interpreter the nobody uid can run: stay root, say so
            python = sys.executable
        elif as_root:
            uid, gid = _nobody()
            for p in [work, *work.iterdir()]:
                os.chown(p, uid, gid)
            isolation.append("uid-nobody")
        base_procs = _count_processes(uid if uid is not None else os.getuid())
        mem = limits.memory_mb << 20
        conf = {
            "rw_dir": str(work),
            "read_only": prefix is not None,
            "uid": uid,
            "gid": gid,
            "env": clean_env(str(work)),
            "rlimits": {
                "RLIMIT_AS": mem,
                "RLIMIT_CPU": int(limits.timeout_s) + 2,  # backstop if the wall timer fails
                "RLIMIT_NPROC": base_procs + limits.max_processes,
                "RLIMIT_FSIZE": limits.file_size_mb << 20,
                "RLIMIT_NOFILE": limits.open_files,
                "RLIMIT_CORE": 0,
            },
        }
        if prefix is not None:
            isolation += ["namespaces", "read-only-fs", "no-network", "pid-namespace"]
        cmd = [*(prefix or ()), sys.executable, "-I", "-S", _BOOT, json.dumps(conf), "--",
               python, "-I", "main.py"]
        t0 = time.perf_counter()
        with open(logs / "out", "wb") as out, open(logs / "err", "wb") as err:
            proc = subprocess.Popen(cmd, cwd=work, env=clean_env(str(work)), stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=err, start_new_session=True)
            timed_out = False
            try:
                rc: int | None = proc.wait(timeout=limits.timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
                rc = None
            # Always kill the group: code may have left background children even after exiting.
            _kill_group(proc.pid)
            if prefix is None:
                _kill_session_leftovers(proc.pid)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        wall = time.perf_counter() - t0
        stdout, stderr = _read_capped(logs / "out"), _read_capped(logs / "err")
        if timed_out:
            status = "timeout"
        elif rc == EXIT_SETUP_FAILED and "ascendeval-sandbox:" in stderr:
            status = "setup_failed"
        else:
            status = "passed" if rc == 0 else "failed"
        return SandboxResult(passed=status == "passed", status=status, returncode=rc, wall_s=wall,
                             stdout=stdout, stderr=stderr, isolation=isolation)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(logs, ignore_errors=True)


def describe_isolation(limits: SandboxLimits | None = None) -> list[str]:
    """The layers `run_python` applies on this machine (for the record, without running code)."""
    limits = limits or SandboxLimits()
    as_root = os.geteuid() == 0
    layers = ["rlimits", "own-cwd", "clean-env"] + (["uid-nobody"] if as_root and item_interpreter(True) else [])
    if limits.isolation != "rlimits" and _unshare_prefix(as_root) is not None:
        layers += ["namespaces", "read-only-fs", "no-network", "pid-namespace"]
    return layers
