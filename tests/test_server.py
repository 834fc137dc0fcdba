"""Server lifecycle: readiness wait, log capture, failure with the log tail, teardown of the whole
process group (also when the block raises)."""

import sys
import textwrap
import time

import httpx
import psutil
import pytest

from ascendeval import server

# A minimal OpenAI-ish server that also spawns a grandchild, like vLLM's engine core.
FAKE = textwrap.dedent("""
    import http.server, subprocess, sys
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    print("CHILD_PID=" + str(child.pid), flush=True)
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200); self.end_headers(); self.wfile.write(b'{"data": [{"id": "m"}]}')
        def log_message(self, *a): pass
    http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
""")


def fake_cmd(port):
    return [sys.executable, "-c", FAKE, str(port), "--port", str(port)]


def child_pid(log_path):
    for _ in range(50):
        for line in log_path.read_text().splitlines():
            if line.startswith("CHILD_PID="):
                return int(line.split("=")[1])
        time.sleep(0.1)
    raise AssertionError("no child pid in log")


def test_start_ready_and_stop_kills_group(tmp_path):
    port = server.free_port()
    srv = server.Server(fake_cmd(port), tmp_path / "s.log", startup_timeout_s=30, port=port)
    with srv:
        assert httpx.get(f"{srv.base_url}/v1/models").json()["data"][0]["id"] == "m"
        leader, child = srv.proc.pid, child_pid(srv.log_path)
        assert psutil.pid_exists(child)
        assert srv.startup_s is not None and srv.startup_s > 0
    time.sleep(0.2)
    assert not psutil.pid_exists(leader) or psutil.Process(leader).status() == psutil.STATUS_ZOMBIE
    assert not psutil.pid_exists(child) or psutil.Process(child).status() == psutil.STATUS_ZOMBIE
    assert srv.log_path.read_text().startswith("$ ")  # the command line is logged


def test_stopped_on_exception(tmp_path):
    port = server.free_port()
    srv = server.Server(fake_cmd(port), tmp_path / "s.log", startup_timeout_s=30, port=port)
    with pytest.raises(RuntimeError, match="boom"):
        with srv:
            child = child_pid(srv.log_path)
            raise RuntimeError("boom")
    time.sleep(0.2)
    assert srv.proc is None
    assert not psutil.pid_exists(child) or psutil.Process(child).status() == psutil.STATUS_ZOMBIE


def test_failed_start_reports_log_tail(tmp_path):
    port = server.free_port()
    cmd = [sys.executable, "-c", "print('weights not found: /nope'); raise SystemExit(3)", "--port", str(port)]
    with pytest.raises(server.ServerError) as err:
        server.Server(cmd, tmp_path / "s.log", startup_timeout_s=30, port=port).start()
    assert "exited with code 3" in str(err.value)
    assert "weights not found: /nope" in str(err.value)


def test_not_ready_in_time(tmp_path):
    port = server.free_port()
    cmd = [sys.executable, "-c", "import time; print('loading...', flush=True); time.sleep(60)", "--port", str(port)]
    t0 = time.perf_counter()
    with pytest.raises(server.ServerError, match="not ready after 2 s"):
        server.Server(cmd, tmp_path / "s.log", startup_timeout_s=2, port=port).start()
    assert time.perf_counter() - t0 < 30


def test_vllm_command_mirrors_engine_args():
    cmd = server.vllm_command("/m", 8001, {"dtype": "bfloat16", "enforce_eager": True, "trust_remote_code": False,
                                           "kv_cache_memory_bytes": 1024, "enable_prefix_caching": False,
                                           "compilation_config": {"mode": 0}}, served_name="tiny")
    assert cmd[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    assert cmd[cmd.index("--port") + 1] == "8001" and cmd[cmd.index("--host") + 1] == "127.0.0.1"
    assert "--enforce-eager" in cmd and "--trust-remote-code" not in cmd
    assert "--no-enable-prefix-caching" in cmd
    assert cmd[cmd.index("--kv-cache-memory-bytes") + 1] == "1024"
    assert cmd[cmd.index("--compilation-config") + 1] == '{"mode": 0}'
    assert cmd[cmd.index("--served-model-name") + 1] == "tiny"
