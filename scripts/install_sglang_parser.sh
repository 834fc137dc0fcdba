#!/usr/bin/env bash
# SGLang's own server argument parser, for the contract test of the `server.kind: sglang` command
# (tests/test_vllm_contract.py). SGLang pins a CUDA torch and cannot share .venv, but its parser
# needs only its own package (and orjson): it goes into a venv of its own, without dependencies,
# that sees .venv's packages (torch, transformers, pydantic, ...) after its own through a .pth file.
# Idempotent; about 33 s and 250 MB on first use.
set -euo pipefail
VERSION="${SGLANG_PARSER_VERSION:-0.5.23}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="$ROOT/.cache/sglang-parser"
PY="$DEST/bin/python"
if [ -x "$PY" ] && "$PY" -c "import importlib.metadata as m, sys; sys.exit(m.version('sglang') != '$VERSION')" 2>/dev/null; then
  exit 0
fi
rm -rf "$DEST"
"$ROOT/.venv/bin/python" -m venv "$DEST"
"$DEST/bin/pip" install -q --disable-pip-version-check --no-deps "sglang==$VERSION" orjson
SITE="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
MAIN_SITE="$("$ROOT/.venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
echo "$MAIN_SITE" > "$SITE/zz_ascendeval_venv.pth"   # after sglang's own packages: read-only use
"$PY" -c "from sglang.srt.server_args import ServerArgs" >/dev/null
echo "SGLang $VERSION parser ready in $DEST"
