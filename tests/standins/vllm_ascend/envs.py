"""Stand-in for vllm_ascend/envs.py: `env_variables` maps each variable vllm-ascend reads to a getter."""

import json
import os
from pathlib import Path

_RECORDED = Path(__file__).resolve().parents[3] / "ascendeval" / "data" / "vllm_ascend_envs.json"
env_variables = {name: (lambda n=name: os.environ.get(n)) for name in json.loads(_RECORDED.read_text())["names"]}
