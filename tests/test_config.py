"""Strict params: every bad file gives ONE line naming the file, the key path and what is allowed."""

from pathlib import Path

import pytest
import yaml

from ascendeval import config

ROOT = Path(__file__).resolve().parents[1]
GOOD = {"model": {"id": "builtin:tiny-qwen2"}}


def write(tmp_path: Path, data) -> Path:
    p = tmp_path / "p.yaml"
    p.write_text(data if isinstance(data, str) else yaml.safe_dump(data), encoding="utf-8")
    return p


def merged(**parts):
    data = {"model": {"id": "builtin:tiny-qwen2"}}
    for k, v in parts.items():
        data[k] = v
    return data


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "params").glob("*.yaml")))
def test_shipped_params_validate(name):
    cfg = config.load(ROOT / "params" / name)
    assert cfg.model.id
    assert cfg.target.engine in config.ENGINES


def test_shipped_reference_models_are_all_there():
    names = {p.stem for p in (ROOT / "params").glob("*.yaml")}
    assert {"tiny-qwen2", "qwen2-0.5b-ascend", "bitcpm4-0.5b-ascend", "qwen2.5-14b-sglang-ascend",
            "qwen3-1.7b-fp16-ascend", "internlm2.5-7b-chat-ascend"} <= names
    assert config.load(ROOT / "params/bitcpm4-0.5b-ascend.yaml").model.trust_remote_code is True
    assert config.load(ROOT / "params/qwen2.5-14b-sglang-ascend.yaml").server.kind == "sglang"


def test_defaults_run_on_cpu(tmp_path):
    cfg = config.load(write(tmp_path, GOOD))
    assert cfg.target.device == "cpu" and cfg.target.engine == "vllm"
    assert cfg.target.kv_cache_memory_bytes == 1 << 30  # required on CPU
    assert cfg.model.short_name == "tiny-qwen2"
    assert cfg.enabled_sections() == list(config.SECTION_NAMES)


BAD_CASES = [
    # (data, expected fragments of the one-line message)
    ({"model": {"idd": "x"}}, ["model.idd", "unknown key", "allowed:", "id"]),
    ({}, ["model", "required key is missing"]),
    ({"model": {"id": ""}}, ["model.id", "must not be empty"]),
    (merged(target={"engine": "tensorrt"}), ["target.engine", "'tensorrt'", "allowed", "'vllm'", "'hf'", "'openai'"]),
    (merged(target={"device": "gpu"}), ["target.device", "'gpu'", "'cpu'", "'cuda'", "'npu'"]),
    (merged(target={"count": "two"}), ["target.count", "integer", "'two'"]),
    (merged(target={"count": 0}), ["target.count", "greater than or equal to 1"]),
    (merged(sections={"perfomance": {}}), ["sections.perfomance", "unknown key", "performance"]),
    (merged(sections={"smoke": {"max_tokens": -1}}), ["sections.smoke.max_tokens", "greater than 0"]),
    (merged(sections={"smoke": {"prompts": "hello"}}), ["sections.smoke.prompts", "list"]),
    ({"model": {"id": "x", "dtype": "fp8"}}, ["model.dtype", "'fp8'", "'bfloat16'"]),
    (merged(server={"kind": "external"}), ["server", "needs url"]),
    (merged(target={"gpu_memory_utilization": 1.5}), ["target.gpu_memory_utilization", "less than or equal to 1"]),
    (merged(report={"language": "fr"}), ["report", "unknown key"]),
    (merged(sections={"report": {"language": "fr"}}), ["sections.report.language", "'fr'", "'en'", "'zh'"]),
    ("model: [unclosed", ["not valid YAML", "line"]),
    ("- just\n- a list\n", ["top level must be a mapping"]),
]


@pytest.mark.parametrize("data,fragments", BAD_CASES)
def test_bad_params_one_clear_line(tmp_path, data, fragments):
    path = write(tmp_path, data)
    with pytest.raises(config.ConfigError) as err:
        config.load(path)
    msg = str(err.value)
    assert "\n" not in msg, msg
    assert msg.startswith(str(path)), msg
    for frag in fragments:
        assert frag in msg, f"{frag!r} not in {msg!r}"


def test_missing_file_is_clear(tmp_path):
    with pytest.raises(config.ConfigError, match="params file not found"):
        config.load(tmp_path / "nope.yaml")


def test_unknown_section_name():
    cfg = config.parse(GOOD)
    with pytest.raises(config.ConfigError, match="unknown section 'speed'; allowed: environment"):
        cfg.section("speed")


def test_cli_validate_exit_codes(tmp_path, capsys):
    from ascendeval import cli

    assert cli.main(["validate", str(ROOT / "params/tiny-qwen2.yaml")]) == 0
    bad = write(tmp_path, {"model": {"id": "x"}, "target": {"engine": "trt"}})
    assert cli.main(["validate", str(bad)]) == 2
    assert "target.engine" in capsys.readouterr().err


def test_cli_run_rejects_bad_params_before_anything_starts(tmp_path, capsys):
    from ascendeval import cli

    bad = write(tmp_path, {"model": {"id": "x"}, "sections": {"smoke": {"max_tokenz": 3}}})
    assert cli.main(["run", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "sections.smoke.max_tokenz: unknown key" in err
    assert cli.main(["run", str(ROOT / "params/tiny-qwen2.yaml"), "--sections", "smoke,speed"]) == 2
    assert "unknown section(s) speed" in capsys.readouterr().err
