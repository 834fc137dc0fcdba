#!/usr/bin/env bash
# System packages the test suite needs beyond .venv: a real headless Chromium for the report's
# browser test (tests/test_browser.py). Idempotent; needs root (or sudo) and apt (Debian/Ubuntu).
set -euo pipefail
# fonts-wqy-zenhei: a CJK font so Chinese labels in plots and the zh report render (not boxes).
if { command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; } \
   && fc-list 2>/dev/null | grep -qi "wenquanyi\|wqy"; then
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -q
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium fonts-wqy-zenhei
