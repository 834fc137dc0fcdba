"""The deployment matrix catches what it claims (issue: numerics across deployment configurations).

03_precision runs with papermill on the untrained tiny model with three custom arms besides the
baseline: `same` (a restart with identical settings: must agree exactly and pass), `flip` (a
logits processor bans the top token at generated position FLIP_AT: a decode-path fault with a
known first divergence) and `scaled` (a weights copy with one layer's MLP output scaled: a
prefill-path fault). Real vLLM engines, real notebook. Slow: marked e2e."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbrun
import pytest

ROOT = Path(__file__).resolve().parents[1]
FAULTS = Path(__file__).resolve().parent / "faults"
sys.path.insert(0, str(FAULTS))


def _scaled_copy(tmp_path: Path) -> Path:
    """The built-in model's files with layer 1's MLP down-projection scaled by 8."""
    import shutil

    from safetensors.torch import load_file, save_file

    from ascendeval import config, models

    src = models.resolve(config.ModelConfig(id="builtin:tiny-qwen2-untrained")).path
    dst = tmp_path / "scaled"
    shutil.copytree(src, dst)
    for f in dst.glob("*.safetensors"):
        tensors = load_file(f)
        key = next(k for k in tensors if k.endswith("layers.1.mlp.down_proj.weight"))
        tensors[key] = tensors[key] * 8
        save_file(tensors, f, metadata={"format": "pt"})
    return dst


@pytest.mark.e2e
def test_matrix_flags_injected_faults_and_passes_an_identical_restart(tmp_path):
    import yaml
    from flip_logits import FLIP_AT

    params = {
        "model": {"id": "builtin:tiny-qwen2-untrained", "dtype": "bfloat16", "max_model_len": 512},
        "target": {"engine": "vllm", "device": "cpu", "enforce_eager": True, "kv_cache_memory_bytes": 1 << 30,
                   "env": {"VLLM_ENABLE_V1_MULTIPROCESSING": "0"},
                   "engine_args": {"distributed_executor_backend": "uni"}},
        "sections": {"precision": {"max_new_tokens": 8, "max_prompts": 4, "deployment": {
            "arms": [], "full_vocab_positions": 8,
            # the untrained model's distributions are nearly flat: any flip there is a near tie at
            # the default 0.5 nats, so the test asks for strict agreement
            "tie_nats": 0.001,
            "custom": [
                {"name": "same"},
                {"name": "flip", "engine_args": {"logits_processors": ["flip_logits:FlipTopAt"]}},
                {"name": "scaled", "model_path": str(_scaled_copy(tmp_path))},
            ]}}},
    }
    pfile = tmp_path / "params.yaml"
    pfile.write_text(yaml.safe_dump(params))
    run_dir = tmp_path / "run"
    nbrun.execute("03_precision", pfile, run_dir, tmp_path / "out.ipynb", extra_paths=(FAULTS,))
    rec = json.loads((run_dir / "records" / "precision.json").read_text())
    steps = rec["metrics"]["steps"]
    assert steps["deployment_matrix"]["status"] == "ok", steps["deployment_matrix"]
    arms = {a["arm"]: a for a in rec["metrics"]["deployment"]["arms"]}
    # the standard arms are listed with the reason they did not run
    assert arms["graph"]["status"] == "not_run" and "precision.deployment.arms" in arms["graph"]["reason"]
    assert arms["tensor_parallel"]["status"] == "not_run"

    same = arms["same"]
    assert same["status"] == "ok" and same["engine_start_s"] > 0
    assert same["tf_top1_agreement_vs_baseline"] == 1.0 and same["tf_max_abs_logprob_diff_vs_baseline"] == 0.0
    assert same["num_prompts_diverged"] == 0 and same["verdict"]["passed"] is True

    flip = arms["flip"]  # prefill untouched (processors do not touch prompt logprobs), decode forced off
    assert flip["tf_top1_agreement_vs_baseline"] == 1.0
    assert flip["first_divergence_min"] == FLIP_AT
    assert flip["num_prompts_diverged"] == flip["num_prompts"] == 4
    assert flip["divergences_beyond_tie"] >= 1 and flip["verdict"]["passed"] is False
    failed = {c["metric"] for c in flip["verdict"]["checks"] if c["passed"] is False}
    assert failed == {"divergences_beyond_tie"}

    scaled = arms["scaled"]  # the weights changed: the prefill path sees it
    assert scaled["verdict"]["passed"] is False
    assert scaled["tf_top1_agreement_vs_baseline"] < 0.98 or scaled["tf_mean_abs_logprob_diff_vs_baseline"] > 0.05
    assert rec["metrics"]["deployment"]["passed"] is False

    # per-position rows behind the figures, and verify recomputes them
    rows = [json.loads(l) for l in (run_dir / "records" / "precision.deployment_positions.jsonl").read_text().splitlines()]
    flip_decode = [r for r in rows if r["arm"] == "flip" and r["path"] == "decode" and r["diverged"]]
    assert min(r["position"] for r in flip_decode) == FLIP_AT
    assert "artifacts/precision_deployment.png" in rec["artifacts"]
    fv = rec["metrics"]["full_vocab"]
    assert fv["num_positions"] == 8 and fv["vocab_size"] > 10000 and -1 <= fv["mean_cosine_centered"] <= 1
    from ascendeval import verify

    result = verify.verify_run(run_dir)
    assert not result.problems, result.problems[:5]
