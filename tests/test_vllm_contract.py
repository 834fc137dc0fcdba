"""Contract tests: what ascendeval hands vLLM (and SGLang) is what they accept.

For every shipped params file (`params/*.yaml`, loaded with `ascendeval.config.load`):

1. offline engine: the `vllm.LLM(...)` keyword arguments (`engine_kwargs(cfg.target, cfg.model)`
   plus what `VLLMEngine` adds, captured by standing in for `vllm.LLM`) are all `EngineArgs`
   fields or named parameters of `LLM.__init__`, and `EngineArgs(model=..., **kwargs)` builds;
2. served engine: the command `server.for_config` builds (`vllm_command` + `vllm_cli_flags` +
   `server.extra_args`) parses with vLLM's own `vllm serve` parser
   (`make_arg_parser(FlexibleArgumentParser(...))`, as `python -m vllm.entrypoints.openai.api_server`
   builds it) and every emitted flag lands on the intended value;
3. model card: the "Quick deploy" `vllm serve` / `python -m ...api_server` command of
   `report.deploy_commands` parses the same way (the `vllm serve` form through vLLM's real CLI
   with its `serve` subcommand) and its Python snippet's `LLM(...)` keywords pass check 1;
4. negative controls: a made-up kwarg / flag / wrong value is rejected by the same checks.

The section overrides that reach vLLM (perf: prefix caching off, eager toggle; smoke: dummy
weights; features: prefix caching on + chunk budget, speculative decoding, PD split, chunked
prefill off) are checked the same way on top of each params file.

SGLang: `sglang_command` is parsed by SGLang's own parser (a venv of its own with the pinned
SGLang and no dependencies, scripts/install_sglang_parser.sh), and each flag lands on its value.

No model is loaded: `create_engine_config` is never called.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import dataclasses
import importlib.util
import inspect
import io
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

vllm = pytest.importorskip("vllm")

from vllm.engine.arg_utils import EngineArgs  # noqa: E402

try:  # vLLM >= 0.11 moved it here; keep the older location for other installs
    from vllm.utils.argparse_utils import FlexibleArgumentParser  # noqa: E402
except ImportError:  # pragma: no cover - older vLLM
    from vllm.utils import FlexibleArgumentParser  # type: ignore[no-redef]  # noqa: E402

try:  # vLLM 0.32: vllm/entrypoints/launchers/cli_args.py
    from vllm.entrypoints.launchers.cli_args import (  # noqa: E402
        make_arg_parser,
        validate_parsed_serve_args,
    )
except ImportError:  # pragma: no cover - older vLLM: vllm/entrypoints/openai/cli_args.py
    from vllm.entrypoints.openai.cli_args import (  # type: ignore[no-redef]  # noqa: E402
        make_arg_parser,
        validate_parsed_serve_args,
    )

from ascendeval import config, paths, report, server  # noqa: E402
from ascendeval.sections.features import speculative  # noqa: E402
from ascendeval.engines.vllm_engine import VLLMEngine, engine_kwargs  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PARAMS = sorted((ROOT / "params").glob("*.yaml"))
MODEL_PATH = "/models/contract-test"  # never opened

# `vllm_cli_flags` drops these: they are engine-object settings with the same default on both
# sides (checked in test_served_defaults_match_offline), not `vllm serve` flags to pass.
CLI_DROPPED = {"disable_log_stats"}


# =========================================================================== params files


def _cfg(path: Path) -> config.RunConfig:
    return config.load(path)


def _vllm_skip(cfg: config.RunConfig) -> str | None:
    if cfg.server.kind == "sglang":
        return "server.kind sglang: no vLLM engine or server (see the SGLang tests)"
    if cfg.target.engine != "vllm" and cfg.server.kind != "vllm":
        return f"target.engine {cfg.target.engine} and server.kind {cfg.server.kind}: vLLM is not used"
    return None


def _try_cfg(path: Path) -> config.RunConfig | None:
    """At collection: an invalid params file must not hide the others; its tests fail on load."""
    try:
        return _cfg(path)
    except config.ConfigError:
        return None


def _param(path: Path, check: str) -> Any:
    cfg = _try_cfg(path)
    marks = []
    skip = _vllm_skip(cfg) if cfg is not None else None
    if skip:
        marks.append(pytest.mark.skip(reason=skip))
    reason = KNOWN_DEFECTS.get((check, path.name))
    if reason:
        marks.append(pytest.mark.xfail(strict=True, reason=reason))
    return pytest.param(path, id=path.name, marks=marks)


# (check, params file name) -> the defect that makes vLLM reject it. Each is a strict xfail:
# fixing the code turns it into a failure until the entry is removed. None at present: every
# shipped params file passes checks 1-3.
KNOWN_DEFECTS: dict[tuple[str, str], str] = {}


def vllm_params(check: str) -> list[Any]:
    return [_param(p, check) for p in PARAMS]


def sglang_params() -> list[Any]:
    out = []
    for p in PARAMS:
        cfg = _try_cfg(p)
        marks = [] if cfg is None or cfg.server.kind == "sglang" else [
            pytest.mark.skip(reason="server.kind is not sglang")]
        out.append(pytest.param(p, id=p.name, marks=marks))
    return out


# A params file exercising every TargetConfig key engine_kwargs reads, non-builtin model id with a
# revision, dict-valued engine_args, and server.extra_args (the shipped files set few of these).
SYNTHETIC_ALL_KEYS: dict[str, Any] = {
    "model": {"id": "Qwen/Qwen2-0.5B", "name": "synthetic", "revision": "v1.0", "dtype": "bfloat16",
              "trust_remote_code": True, "max_model_len": 4096},
    "target": {"engine": "vllm", "device": "cuda", "count": 2, "pipeline_parallel_size": 2,
               "enforce_eager": False, "max_num_seqs": 8, "max_num_batched_tokens": 1024,
               "gpu_memory_utilization": 0.5, "kv_cache_memory_bytes": 2147483648,
               "enable_prefix_caching": False,
               "engine_args": {"distributed_executor_backend": "mp", "compilation_config": {"mode": 0},
                               "hf_overrides": {"rope_theta": 1000000.0}}},
    "server": {"extra_args": ["--uvicorn-log-level", "warning", "--max-log-len", "100"]},
}


def _synthetic(**patch: Any) -> config.RunConfig:
    data = yaml.safe_load(yaml.safe_dump(SYNTHETIC_ALL_KEYS))
    for section, values in patch.items():
        data.setdefault(section, {}).update(values)
    return config.parse(data, "<synthetic>")


# =========================================================================== check 1: vllm.LLM kwargs


EA_FIELDS = {f.name for f in dataclasses.fields(EngineArgs)}
LLM_PARAMS = {name for name, p in inspect.signature(vllm.LLM.__init__).parameters.items()
              if name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}


def check_llm_kwargs(kwargs: dict[str, Any]) -> EngineArgs:
    """Raise AssertionError unless vLLM accepts these `vllm.LLM(model=..., **kwargs)` arguments."""
    assert "model" not in kwargs, "model is passed separately by VLLMEngine; a 'model' kwarg collides"
    unknown = sorted(k for k in kwargs if k not in EA_FIELDS and k not in LLM_PARAMS)
    assert not unknown, (f"not vllm.LLM / EngineArgs arguments in vLLM {vllm.__version__}: {unknown}")
    try:
        return EngineArgs(model="x", **{k: v for k, v in kwargs.items() if k in EA_FIELDS})
    except TypeError as exc:
        raise AssertionError(f"EngineArgs rejects the kwargs: {exc}") from None


def offline_kwargs(cfg: config.RunConfig, monkeypatch: pytest.MonkeyPatch, **overrides: Any) -> dict[str, Any]:
    """The exact keyword arguments VLLMEngine gives `vllm.LLM` (a stand-in records them)."""
    seen: dict[str, Any] = {}

    class RecordingLLM:
        def __init__(self, model: str, **kw: Any) -> None:
            seen["model"] = model
            seen["kwargs"] = kw

    monkeypatch.setattr(vllm, "LLM", RecordingLLM)
    VLLMEngine(MODEL_PATH, **engine_kwargs(cfg.target, cfg.model, **overrides))
    assert seen["model"] == MODEL_PATH
    return seen["kwargs"]


@pytest.mark.parametrize("path", vllm_params("llm_kwargs"))
def test_llm_kwargs_accepted_by_engine_args(path: Path, monkeypatch: pytest.MonkeyPatch):
    cfg = _cfg(path)
    kw = offline_kwargs(cfg, monkeypatch)
    assert "disable_log_stats" in kw, "VLLMEngine should add its disable_log_stats default"
    ea = check_llm_kwargs(kw)
    # the values reach EngineArgs unchanged
    for key, value in kw.items():
        if key in EA_FIELDS and not isinstance(value, dict):
            assert getattr(ea, key) == value, key
    assert ea.tensor_parallel_size == cfg.target.count
    assert ea.enforce_eager == cfg.target.enforce_eager
    if cfg.model.max_model_len:
        assert ea.max_model_len == cfg.model.max_model_len


def test_llm_kwargs_every_target_key(monkeypatch: pytest.MonkeyPatch):
    cfg = _synthetic()
    kw = offline_kwargs(cfg, monkeypatch)
    for key in ("pipeline_parallel_size", "max_num_seqs", "max_num_batched_tokens", "gpu_memory_utilization",
                "kv_cache_memory_bytes", "enable_prefix_caching", "revision", "compilation_config", "hf_overrides"):
        assert key in kw, key
    ea = check_llm_kwargs(kw)
    assert ea.enable_prefix_caching is False and ea.pipeline_parallel_size == 2 and ea.revision == "v1.0"


# Keyword arguments the sections add on top of the params (ascendeval/sections/performance/steps.py _engine_overrides,
# smoke.py dummy gate, features.py start_main / spec / PD / chunked-off). Built from the params
# file's own features config, so they carry the values a run would use.
def section_overrides(cfg: config.RunConfig) -> dict[str, dict[str, Any]]:
    fc = cfg.sections.features
    kv = {"kv_connector": fc.kv_connector, "kv_role": "kv_producer",
          "kv_connector_extra_config": {"shared_storage_path": "/tmp/kv_store", **fc.kv_connector_extra_config}}
    return {
        "perf-prefix-off": {"enable_prefix_caching": False},
        "perf-graph-toggle": {"enable_prefix_caching": False, "enforce_eager": not cfg.target.enforce_eager},
        "smoke-dummy-gate": {"load_format": "dummy"},
        "features-main": {"enable_prefix_caching": True, "max_num_batched_tokens": 512},
        "features-spec-ngram": {"speculative_config": speculative.spec_config(fc, "ngram")},
        "features-spec-draft": {"speculative_config": {"num_speculative_tokens": fc.num_speculative_tokens,
                                                       "method": "draft_model", "model": "/models/draft"}},
        "features-pd": {"kv_transfer_config": kv},
        "features-chunked-off": {"enable_chunked_prefill": False,
                                 "max_num_batched_tokens": cfg.model.max_model_len or 4096},
    }


# Served overrides: only these go through `vllm serve` (features.py spec_served A/B).
SERVED_OVERRIDES = ("features-spec-ngram",)


@pytest.mark.parametrize("case", list(section_overrides(_synthetic())))
@pytest.mark.parametrize("path", vllm_params("llm_kwargs"))
def test_section_overrides_accepted(path: Path, case: str, monkeypatch: pytest.MonkeyPatch):
    cfg = _cfg(path)
    over = section_overrides(cfg)[case]
    kw = offline_kwargs(cfg, monkeypatch, **over)
    ea = check_llm_kwargs(kw)
    for key, value in over.items():
        assert getattr(ea, key) == value, key


# =========================================================================== check 2: vllm serve flags


class CLIRejected(AssertionError):
    """vLLM's (or SGLang's) parser refused the command line."""


def parse_cli(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            return parser.parse_args(argv)
        except SystemExit as exc:  # argparse's error(): usage + message on stderr
            lines = err.getvalue().strip().splitlines()
            raise CLIRejected(f"parser rejected {shlex.join(argv)}: {lines[-1] if lines else exc}") from None
        except ValueError as exc:  # FlexibleArgumentParser's own checks
            raise CLIRejected(f"parser rejected {shlex.join(argv)}: {exc}") from None


@pytest.fixture(scope="module")
def api_server_parser() -> FlexibleArgumentParser:
    """As `python -m vllm.entrypoints.openai.api_server` (vllm/entrypoints/launchers/api_server/entry.py
    main()) builds it; `vllm serve` adds the same arguments to its subparser."""
    return make_arg_parser(FlexibleArgumentParser(description="vLLM OpenAI-Compatible RESTful API server."))


@pytest.fixture(scope="module")
def vllm_cli_parser() -> FlexibleArgumentParser:
    """The `vllm` console script's parser with its `serve` subcommand (vllm/entrypoints/cli/main.py)."""
    from vllm.entrypoints.cli.serve import ServeSubcommand

    parser = FlexibleArgumentParser(description="vLLM CLI")
    subparsers = parser.add_subparsers(required=False, dest="subparser")
    ServeSubcommand().subparser_init(subparsers)
    return parser


def parse_api_server(parser: FlexibleArgumentParser, argv: list[str]) -> argparse.Namespace:
    ns = parse_cli(parser, argv)
    validate_parsed_serve_args(ns)
    return ns


def parse_vllm_serve(parser: FlexibleArgumentParser, argv: list[str]) -> argparse.Namespace:
    """`vllm serve <argv>`; returns the namespace with `model` resolved as ServeSubcommand.cmd does."""
    ns = parse_cli(parser, ["serve", *argv])
    validate_parsed_serve_args(ns)
    if getattr(ns, "model_tag", None) is not None:
        ns.model = ns.model_tag
    return ns


def _same(got: Any, want: Any) -> bool:
    if isinstance(want, dict):
        if isinstance(got, dict):
            return all(k in got and _same(got[k], v) for k, v in want.items())
        return all(_same(getattr(got, k, object()), v) for k, v in want.items())  # a parsed config object
    if isinstance(want, float) or isinstance(got, float):
        return got == pytest.approx(want)
    return got == want


def assert_flags_map(ns: argparse.Namespace, kwargs: dict[str, Any], where: str) -> None:
    """Every engine kwarg the command carries landed on the parsed attribute of the same name."""
    for key, value in kwargs.items():
        if key in CLI_DROPPED or value is None:
            continue
        assert hasattr(ns, key), f"{where}: vLLM's parser has no destination {key!r}"
        got = getattr(ns, key)
        assert _same(got, value), f"{where}: {key} parsed as {got!r}, intended {value!r}"


def assert_extra_args_map(parser: FlexibleArgumentParser, ns: argparse.Namespace, extra: list[str],
                          where: str) -> None:
    """server.extra_args: whatever they set on their own is what the full command ends up with."""
    if not extra:
        return
    defaults = vars(parse_cli(parser, []))
    alone = vars(parse_cli(parser, list(extra)))
    for dest, value in alone.items():
        if value != defaults.get(dest):
            got = getattr(ns, dest)
            assert _same(got, value), f"{where}: extra_args {dest} = {got!r}, intended {value!r}"


def served_command(cfg: config.RunConfig, monkeypatch: pytest.MonkeyPatch, **overrides: Any) -> list[str]:
    """The command `server.for_config` would start (not started; the cache-env side effect is off)."""
    monkeypatch.setattr(paths, "set_engine_cache_env", lambda: None)
    srv = server.for_config(cfg, MODEL_PATH, "/tmp/contract-logs", **overrides)
    return srv.cmd


def check_served(parser: FlexibleArgumentParser, cfg: config.RunConfig, cmd: list[str],
                 kwargs: dict[str, Any]) -> argparse.Namespace:
    assert cmd[1:3] == ["-m", "vllm.entrypoints.openai.api_server"], cmd[:3]
    ns = parse_api_server(parser, cmd[3:])
    where = "served command"
    assert ns.model == MODEL_PATH
    assert ns.host == "127.0.0.1" and ns.port == int(cmd[cmd.index("--port") + 1])
    assert ns.served_model_name == [cfg.server.served_model_name or cfg.model.short_name]
    extra = list(cfg.server.extra_args)
    touched: set[str] = set()  # what extra_args set themselves (they come last, so they win)
    if extra:
        defaults, alone = vars(parse_cli(parser, [])), vars(parse_cli(parser, extra))
        touched = {dest for dest, value in alone.items() if value != defaults.get(dest)}
    assert_flags_map(ns, {k: v for k, v in kwargs.items() if k not in touched}, where)
    assert_extra_args_map(parser, ns, extra, where)
    return ns


def test_api_server_module_exists():
    # vllm_command runs `python -m vllm.entrypoints.openai.api_server` (deprecated in vLLM 0.32 in
    # favour of `vllm serve`, still shipped)
    assert importlib.util.find_spec("vllm.entrypoints.openai.api_server") is not None


@pytest.mark.parametrize("path", vllm_params("serve"))
def test_served_command_parses(path: Path, api_server_parser, monkeypatch: pytest.MonkeyPatch):
    cfg = _cfg(path)
    cmd = served_command(cfg, monkeypatch)
    kwargs = engine_kwargs(cfg.target, cfg.model)
    ns = check_served(api_server_parser, cfg, cmd, kwargs)
    assert ns.tensor_parallel_size == cfg.target.count
    assert ns.enforce_eager is cfg.target.enforce_eager
    assert ns.trust_remote_code is cfg.model.trust_remote_code


@pytest.mark.parametrize("case", SERVED_OVERRIDES)
@pytest.mark.parametrize("path", vllm_params("serve"))
def test_served_overrides_parse(path: Path, case: str, api_server_parser, monkeypatch: pytest.MonkeyPatch):
    cfg = _cfg(path)
    over = section_overrides(cfg)[case]
    cmd = served_command(cfg, monkeypatch, **over)
    check_served(api_server_parser, cfg, cmd, engine_kwargs(cfg.target, cfg.model, **over))


def test_served_command_every_target_key(api_server_parser, monkeypatch: pytest.MonkeyPatch):
    cfg = _synthetic()
    cmd = served_command(cfg, monkeypatch)
    ns = check_served(api_server_parser, cfg, cmd, engine_kwargs(cfg.target, cfg.model))
    assert "--no-enable-prefix-caching" in cmd and ns.enable_prefix_caching is False
    assert "--no-enforce-eager" in cmd and ns.enforce_eager is False
    assert cmd[cmd.index("--tensor-parallel-size") + 1] == "2" and ns.tensor_parallel_size == 2
    assert ns.pipeline_parallel_size == 2 and ns.revision == "v1.0" and ns.max_num_batched_tokens == 1024
    assert ns.compilation_config.mode == 0 and ns.hf_overrides == {"rope_theta": 1000000.0}
    assert ns.uvicorn_log_level == "warning" and ns.max_log_len == 100  # server.extra_args


def test_served_command_true_booleans(api_server_parser, monkeypatch: pytest.MonkeyPatch):
    cfg = _synthetic(target={"enable_prefix_caching": True, "enforce_eager": True}, model={"trust_remote_code": False})
    cmd = served_command(cfg, monkeypatch)
    ns = check_served(api_server_parser, cfg, cmd, engine_kwargs(cfg.target, cfg.model))
    assert ns.enable_prefix_caching is True and ns.enforce_eager is True and ns.trust_remote_code is False


def test_served_command_list_engine_arg(api_server_parser, monkeypatch: pytest.MonkeyPatch):
    cfg = _synthetic(target={"engine_args": {"cudagraph_capture_sizes": [1, 2, 4]}})
    check_llm_kwargs(engine_kwargs(cfg.target, cfg.model))  # offline: accepted
    cmd = served_command(cfg, monkeypatch)
    check_served(api_server_parser, cfg, cmd, engine_kwargs(cfg.target, cfg.model))


def test_served_defaults_match_offline(api_server_parser, monkeypatch: pytest.MonkeyPatch):
    """What vllm_cli_flags drops must default, on the server, to what VLLMEngine sets offline."""
    kw = offline_kwargs(_synthetic(), monkeypatch)
    ns = parse_api_server(api_server_parser, [])
    for key in CLI_DROPPED:
        assert getattr(ns, key) == kw[key], key


# =========================================================================== check 3: model card


def deploy(params_text: str, tmp_path: Path) -> dict[str, str]:
    data = report.RunData(run_dir=tmp_path / "run", records={}, manifest=None, params_text=params_text)
    cmds = report.deploy_commands(data)
    assert cmds, "deploy_commands returned nothing for a valid params file"
    return cmds


def split_serve(serve: str) -> tuple[list[str], list[str]]:
    """(export lines, argv of the command) of the card's shell block."""
    lines = serve.split("\n")
    exports = [ln for ln in lines if ln.startswith("export ")]
    body = "\n".join(ln for ln in lines if not ln.startswith("export "))
    return exports, shlex.split(body.replace("\\\n", " "))


def check_deploy(cmds: dict[str, str], cfg: config.RunConfig, api_parser: FlexibleArgumentParser,
                 cli_parser: FlexibleArgumentParser) -> argparse.Namespace:
    _, argv = split_serve(cmds["serve"])
    kwargs = engine_kwargs(cfg.target, cfg.model)
    if argv[:2] == ["vllm", "serve"]:
        ns = parse_vllm_serve(cli_parser, argv[2:])
        assert ns.model == argv[2]
    elif argv[:3] == ["python", "-m", "vllm.entrypoints.openai.api_server"]:
        ns = parse_api_server(api_parser, argv[3:])
    else:
        raise AssertionError(f"unexpected quick-deploy command: {argv[:3]}")
    if not cfg.model.id.startswith("builtin:"):
        assert ns.model == cfg.model.id
    assert ns.port == 8000
    assert ns.served_model_name == [cfg.server.served_model_name or cfg.model.short_name]
    assert_flags_map(ns, kwargs, "quick deploy")
    check_deploy_python(cmds["python"], kwargs)
    return ns


def check_deploy_python(snippet: str, kwargs: dict[str, Any]) -> None:
    calls = [n for n in ast.walk(ast.parse(snippet))
             if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "LLM"]
    assert len(calls) == 1, "the Python snippet should build one LLM(...)"
    kw = {k.arg: ast.literal_eval(k.value) for k in calls[0].keywords}
    assert "model" in kw
    kw.pop("model")
    check_llm_kwargs(kw)
    want = {k: v for k, v in kwargs.items() if not (k == "dtype" and v == "auto")}
    assert kw == want, "the Python snippet's LLM(...) differs from the engine's arguments"


@pytest.mark.parametrize("path", vllm_params("deploy"))
def test_quick_deploy_parses(path: Path, tmp_path: Path, api_server_parser, vllm_cli_parser):
    cfg = _cfg(path)
    check_deploy(deploy(path.read_text(encoding="utf-8"), tmp_path), cfg, api_server_parser, vllm_cli_parser)


@pytest.mark.parametrize("device", ["cuda", "cpu"])
def test_quick_deploy_every_target_key(device: str, tmp_path: Path, api_server_parser, vllm_cli_parser):
    data = yaml.safe_load(yaml.safe_dump(SYNTHETIC_ALL_KEYS))
    data["target"]["device"] = device
    data["server"]["extra_args"] = []
    cfg = config.parse(data, "<synthetic>")
    cmds = deploy(yaml.safe_dump(data), tmp_path)
    ns = check_deploy(cmds, cfg, api_server_parser, vllm_cli_parser)
    assert ns.enable_prefix_caching is False and ns.tensor_parallel_size == 2 and ns.revision == "v1.0"


def test_quick_deploy_includes_extra_args(tmp_path: Path, api_server_parser, vllm_cli_parser):
    cfg = _synthetic()
    cmds = deploy(yaml.safe_dump(SYNTHETIC_ALL_KEYS), tmp_path)
    ns = check_deploy(cmds, cfg, api_server_parser, vllm_cli_parser)
    assert_extra_args_map(api_server_parser, ns, list(cfg.server.extra_args), "quick deploy")


@pytest.mark.parametrize("path", sglang_params())
def test_quick_deploy_sglang_parses_with_sglang(path: Path, tmp_path: Path, sglang_parser):
    """The card's SGLang command is one SGLang's own parser accepts, with the run's settings."""
    cmds = deploy(path.read_text(encoding="utf-8"), tmp_path)
    _, argv = split_serve(cmds["serve"])
    assert argv[1:3] == ["-m", "sglang.launch_server"], f"quick deploy of an SGLang run is {argv[:3]}"
    cfg = _cfg(path)
    ns = check_sglang(sglang_parser, cfg, argv, model=argv[argv.index("--model-path") + 1],
                      host=argv[argv.index("--host") + 1])
    assert ns.model_path == cfg.model.id  # a hub id the server downloads


# =========================================================================== SGLang


SGLANG_PARSER_PY = ROOT / ".cache" / "sglang-parser" / "bin" / "python"  # scripts/install_sglang_parser.sh


class SGLangCLI:
    """SGLang's own parser (`ServerArgs.add_cli_args`, as `python -m sglang.launch_server` builds
    it), in the SGLang venv, behind tests/sglang_cli.py: one process, built once, one JSON line per
    command line."""

    def __init__(self) -> None:
        import json
        import os
        import subprocess

        self._json = json
        self.proc = subprocess.Popen([str(SGLANG_PARSER_PY), str(ROOT / "tests" / "sglang_cli.py")],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     env={**os.environ, "PYTHONHASHSEED": "0"})
        ready = json.loads(self.proc.stdout.readline() or "{}")  # type: ignore[union-attr]
        if "ready" not in ready:
            raise RuntimeError("SGLang's parser did not start (see the test's stderr)")
        self.version = ready["ready"]

    def parse(self, argv: list[str]) -> argparse.Namespace:
        self.proc.stdin.write(self._json.dumps(argv) + "\n")  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]
        out = self._json.loads(self.proc.stdout.readline())  # type: ignore[union-attr]
        if "error" in out and len(out) == 1:
            raise CLIRejected(f"SGLang's parser rejected {shlex.join(argv)}: {out['error']}")
        return argparse.Namespace(**out)

    def close(self) -> None:
        self.proc.stdin.close()  # type: ignore[union-attr]
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def sglang_parser() -> Any:
    if not SGLANG_PARSER_PY.exists():
        pytest.fail("SGLang's parser is not installed: run scripts/install_sglang_parser.sh (`make test` does)")
    cli = SGLangCLI()
    yield cli
    cli.close()


def check_sglang(parser: SGLangCLI, cfg: config.RunConfig, cmd: list[str], model: str = MODEL_PATH,
                 host: str = "127.0.0.1") -> argparse.Namespace:
    assert cmd[1:3] == ["-m", "sglang.launch_server"], cmd[:3]
    ns = parser.parse(cmd[3:])
    assert ns.model_path == model and ns.host == host
    assert ns.tp_size == cfg.target.count
    assert ns.dtype == cfg.model.dtype  # "auto" is not passed and is SGLang's default
    assert ns.trust_remote_code is cfg.model.trust_remote_code
    assert ns.context_length == cfg.model.max_model_len
    if cfg.target.device == "npu":
        assert ns.device == "npu" and ns.attention_backend == "ascend"
    return ns


@pytest.mark.parametrize("path", sglang_params())
def test_sglang_command_uses_known_flags(path: Path, sglang_parser, monkeypatch: pytest.MonkeyPatch):
    cfg = _cfg(path)
    cmd = server.sglang_command(MODEL_PATH, 30000, cfg)
    ns = check_sglang(sglang_parser, cfg, cmd)
    assert ns.port == 30000
    # the real start-up path builds the same command
    monkeypatch.setattr(paths, "set_engine_cache_env", lambda: None)
    started = server.for_config(cfg, MODEL_PATH, "/tmp/contract-logs").cmd
    check_sglang(sglang_parser, cfg, started)


def test_sglang_command_cuda_auto(sglang_parser):
    cfg = config.parse({"model": {"id": "Qwen/Qwen2.5-14B-Instruct", "dtype": "auto"},
                        "target": {"engine": "openai", "device": "cuda", "count": 2},
                        "server": {"kind": "sglang", "extra_args": ["--mem-fraction-static", "0.8"]}}, "<synthetic>")
    ns = check_sglang(sglang_parser, cfg, server.sglang_command(MODEL_PATH, 30001, cfg))
    assert ns.device is None and ns.attention_backend is None and ns.mem_fraction_static == 0.8


# =========================================================================== check 4: negative controls


def test_negative_unknown_kwarg_rejected(monkeypatch: pytest.MonkeyPatch):
    cfg = _synthetic()
    with pytest.raises(AssertionError, match="made_up_engine_knob"):
        check_llm_kwargs(offline_kwargs(cfg, monkeypatch, made_up_engine_knob=1))
    with pytest.raises(TypeError):
        EngineArgs(model="x", made_up_engine_knob=1)
    with pytest.raises(AssertionError, match="collides"):
        check_llm_kwargs({"model": "y"})


def test_negative_unknown_flag_rejected(api_server_parser, vllm_cli_parser, monkeypatch: pytest.MonkeyPatch):
    cfg = _synthetic(server={"extra_args": ["--made-up-flag", "1"]})
    cmd = served_command(cfg, monkeypatch)
    with pytest.raises(CLIRejected, match="unrecognized arguments: --made-up-flag"):
        check_served(api_server_parser, cfg, cmd, engine_kwargs(cfg.target, cfg.model))
    with pytest.raises(CLIRejected, match="made-up-flag"):
        parse_vllm_serve(vllm_cli_parser, ["m", "--made-up-flag"])
    with pytest.raises(CLIRejected, match="invalid choice"):
        parse_api_server(api_server_parser, ["--dtype", "float8"])


def test_negative_wrong_value_caught(api_server_parser):
    ns = parse_api_server(api_server_parser, ["--enable-prefix-caching", "--tensor-parallel-size", "4"])
    with pytest.raises(AssertionError, match="enable_prefix_caching"):
        assert_flags_map(ns, {"enable_prefix_caching": False}, "control")
    with pytest.raises(AssertionError, match="tensor_parallel_size"):
        assert_flags_map(ns, {"tensor_parallel_size": 2}, "control")


def test_negative_deploy_check_bites(tmp_path: Path, api_server_parser, vllm_cli_parser,
                                     monkeypatch: pytest.MonkeyPatch):
    real = server.vllm_cli_flags
    monkeypatch.setattr(server, "vllm_cli_flags", lambda kw: real(kw) + [["--made-up-flag"]])
    path = ROOT / "params" / "qwen2-0.5b-ascend.yaml"
    if not path.exists():
        pytest.skip("control params file missing")
    with pytest.raises(CLIRejected, match="made-up-flag"):
        check_deploy(deploy(path.read_text(encoding="utf-8"), tmp_path), _cfg(path), api_server_parser,
                     vllm_cli_parser)


def test_negative_sglang_flag_rejected(sglang_parser):
    with pytest.raises(CLIRejected, match="--enforce-eager"):  # a vLLM flag, not an SGLang one
        sglang_parser.parse(["--model-path", "m", "--enforce-eager"])
    with pytest.raises(CLIRejected, match="invalid choice"):
        sglang_parser.parse(["--model-path", "m", "--attention-backend", "made_up"])
