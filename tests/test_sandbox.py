"""The sandbox really contains hostile generated code (real subprocesses, real limits).

Each hostile item must (1) be scored as a failure, (2) leave the machine as it was (files, no
processes left), (3) not stop the next item from running. Which guarantees apply depends on the
isolation layers in force here; each test asserts exactly what `isolation` claims.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pytest

from ascendeval import sandbox

MODES = ["auto", "rlimits"]


def _limits(mode: str, **kw) -> sandbox.SandboxLimits:
    return sandbox.SandboxLimits(isolation=mode, **{"timeout_s": 3.0, **kw})


def _procs_with(marker: str) -> list[int]:
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if marker.encode() in (d / "cmdline").read_bytes():
                    state = (d / "stat").read_text().rsplit(")", 1)[1].split()[0]
                    if state != "Z":  # a zombie already dead, waiting to be reaped by init
                        found.append(int(d.name))
            except OSError:
                continue
    return found


def _wait_gone(marker: str, seconds: float = 5.0) -> list[int]:
    deadline = time.time() + seconds
    while time.time() < deadline:
        left = _procs_with(marker)
        if not left:
            return []
        time.sleep(0.2)
    return _procs_with(marker)


@pytest.mark.parametrize("mode", MODES)
def test_good_code_passes_and_env_is_scrubbed(mode, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "secret-should-not-leak")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-should-not-leak")
    code = "import os, json\nprint(json.dumps({'env': dict(os.environ), 'cwd': os.getcwd()}))\n"
    res = sandbox.run_python(code, _limits(mode))
    assert res.passed, res.stderr
    import json

    out = json.loads(res.stdout)
    assert "HF_TOKEN" not in out["env"] and "OPENAI_API_KEY" not in out["env"]
    assert out["env"]["HOME"] == out["cwd"] == out["env"]["TMPDIR"]
    assert Path(out["cwd"]).name.startswith("ascendeval-sbx-")
    assert not Path(out["cwd"]).exists(), "the item's temp dir is removed afterwards"


@pytest.mark.parametrize("mode", MODES)
def test_failing_assertion_is_a_failure(mode):
    res = sandbox.run_python("def f(x):\n    return x + 1\nassert f(1) == 3\n", _limits(mode))
    assert not res.passed and res.status == "failed"
    assert "AssertionError" in res.stderr


@pytest.mark.parametrize("mode", MODES)
def test_infinite_loop_is_killed_at_the_timeout(mode):
    marker = f"loop-{uuid.uuid4().hex}"
    code = f"import sys, os\nos.execv(sys.executable, [sys.executable, '-c', 'while True: pass', '{marker}'])\n"
    t0 = time.perf_counter()
    res = sandbox.run_python(code, _limits(mode, timeout_s=2.0))
    assert res.status == "timeout" and not res.passed
    assert time.perf_counter() - t0 < 2.0 + 8.0
    assert _wait_gone(marker) == []


@pytest.mark.parametrize("mode", MODES)
def test_fork_loop_is_contained(mode):
    marker = f"fork-{uuid.uuid4().hex}"
    loop = "import os\\nwhile True:\\n    try:\\n        os.fork()\\n    except OSError:\\n        pass\\n"
    code = f"import sys, os\nos.execv(sys.executable, [sys.executable, '-c', '{loop}', '{marker}'])\n"
    res = sandbox.run_python(code, _limits(mode, timeout_s=2.0, max_processes=8))
    assert not res.passed
    assert _wait_gone(marker) == [], "fork-loop processes survived the item"
    # the run goes on: the next item works
    assert sandbox.run_python("print(1)", _limits(mode)).passed


def test_setsid_escapee_is_killed_with_the_pid_namespace():
    if "pid-namespace" not in sandbox.describe_isolation():
        pytest.skip("no pid namespace here (unshare unavailable): setsid() escapees are a documented gap")
    marker = f"daemon-{uuid.uuid4().hex}"
    code = (
        "import os, sys, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        f"    os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(60)', '{marker}'])\n"
        "time.sleep(0.5)\n"
    )
    res = sandbox.run_python(code, _limits("auto"))
    assert res.passed  # the parent exited 0, but its daemon must not outlive the item
    assert _wait_gone(marker) == []


@pytest.mark.parametrize("mode", MODES)
def test_huge_allocation_fails_cleanly(mode):
    res = sandbox.run_python("x = bytearray(64 * 1024**3)\n", _limits(mode, memory_mb=512))
    assert res.status == "failed" and "MemoryError" in res.stderr


@pytest.mark.parametrize("mode", MODES)
def test_files_outside_the_temp_dir_are_untouched(mode, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    outside.chmod(0o755)
    canary = outside / "canary.txt"
    canary.write_text("original")
    shared_tmp = Path("/tmp") / f"ascendeval-canary-{uuid.uuid4().hex}"
    layers = sandbox.describe_isolation(_limits(mode))
    if "read-only-fs" not in layers and "uid-nobody" not in layers:
        pytest.skip(f"isolation here is {layers}: files the invoking user owns are not protected")
    for code in (
        f"open({str(canary)!r}, 'w').write('overwritten')\n",
        f"import os\nos.remove({str(canary)!r})\n",
        f"open({str(outside / 'new.txt')!r}, 'w').write('x')\n",
        f"import shutil\nshutil.rmtree({str(outside)!r})\n",
    ):
        res = sandbox.run_python(code, _limits(mode))
        assert not res.passed, code
        assert res.status == "failed" and ("Error" in res.stderr), res.stderr
    assert canary.read_text() == "original"
    assert sorted(p.name for p in outside.iterdir()) == ["canary.txt"]
    res = sandbox.run_python(f"open({str(shared_tmp)!r}, 'w').write('x')\n", _limits(mode))
    try:
        if "read-only-fs" in res.isolation:
            # the strong claim: even world-writable /tmp is read-only to the item
            assert not res.passed and "Read-only file system" in res.stderr
            assert not shared_tmp.exists()
    finally:
        shared_tmp.unlink(missing_ok=True)


def test_no_network_in_namespace_mode():
    if "no-network" not in sandbox.describe_isolation():
        pytest.skip("no network namespace here")
    code = "import socket\ns = socket.socket()\ns.settimeout(2)\ns.connect(('1.1.1.1', 80))\n"
    res = sandbox.run_python(code, _limits("auto"))
    assert res.status == "failed" and ("OSError" in res.stderr or "unreachable" in res.stderr), res.stderr


def test_output_flood_is_capped():
    res = sandbox.run_python("import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n",
                             _limits("auto", timeout_s=3.0, file_size_mb=1))
    assert not res.passed
    assert len(res.stdout) <= sandbox._OUTPUT_LIMIT


def test_namespaces_requested_but_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(sandbox, "_unshare_prefix", lambda as_root: None)
    with pytest.raises(RuntimeError, match="unshare"):
        sandbox.run_python("print(1)", sandbox.SandboxLimits(isolation="namespaces"))


def test_mountinfo_unescape():
    from ascendeval import _sandbox_boot

    assert _sandbox_boot._unescape(r"/mnt/with\040space") == "/mnt/with space"
    assert _sandbox_boot._unescape("/plain") == "/plain"
