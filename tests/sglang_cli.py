"""SGLang's real server argument parser, as a line server for the contract test: run with the
SGLang parser venv's python (scripts/install_sglang_parser.sh). Each input line is a JSON list of
arguments (what follows `python -m sglang.launch_server`); each output line is the parsed namespace
as JSON, or {"error": ...} with argparse's message. The parser is built once (it takes seconds)."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys


def main() -> None:
    from sglang.srt.server_args import ServerArgs

    # as sglang.launch_server -> prepare_server_args builds it
    parser = argparse.ArgumentParser(prog="sglang.launch_server")
    ServerArgs.add_cli_args(parser)
    import importlib.metadata

    print(json.dumps({"ready": importlib.metadata.version("sglang")}), flush=True)
    for line in sys.stdin:
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err):
                ns = parser.parse_args(json.loads(line))
            out = {k: v if isinstance(v, (str, int, float, bool, type(None), list)) else repr(v)
                   for k, v in vars(ns).items()}
        except SystemExit:
            out = {"error": err.getvalue().strip().splitlines()[-1] if err.getvalue().strip() else "rejected"}
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
