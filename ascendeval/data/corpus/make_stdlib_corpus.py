"""Regenerate stdlib_prose.txt.gz and stdlib_code.txt.gz from the running CPython's Lib/.

Why shipped instead of collected at build time: the built-in models must be the same on every
host (a CPU run and an NPU run of `builtin:tiny-qwen2` are compared), and stdlib sources differ
between Python versions. The shipped files were made with CPython 3.11.7; the text is CPython's
own (PSF License, see NOTICE.md). Run: python ascendeval/data/corpus/make_stdlib_corpus.py
"""

from __future__ import annotations

import ast
import gzip
import inspect
import sysconfig
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Pure-Python modules with plenty of English docstrings; order is fixed for determinism.
PROSE_MODULES = [
    "textwrap", "string", "json/__init__", "json/decoder", "json/encoder", "collections/__init__",
    "functools", "argparse", "pathlib", "dataclasses", "statistics", "fractions", "_pydecimal",
    "heapq", "bisect", "calendar", "csv", "difflib", "fnmatch", "glob", "shutil", "tempfile",
    "random", "typing", "enum", "contextlib", "abc", "copy", "pprint", "queue", "sched", "shlex",
    "zipfile", "tarfile", "gzip", "logging/__init__", "unittest/case", "email/message",
    "http/client", "urllib/parse", "html/parser", "inspect", "ast", "tokenize", "re/__init__",
    "os", "datetime", "numbers", "operator", "optparse", "gettext", "configparser", "ipaddress",
    "uuid", "base64", "hmac", "secrets", "selectors", "threading", "subprocess", "warnings",
    "weakref", "concurrent/futures/_base", "asyncio/events", "asyncio/tasks", "asyncio/queues",
    "imaplib", "smtplib", "ftplib", "mailbox", "codecs", "locale", "platform", "pydoc",
    "pickle", "plistlib", "socket", "ssl", "turtle", "wave", "zipapp", "cmd", "code", "timeit",
    "trace", "traceback", "types", "graphlib", "colorsys", "filecmp", "netrc", "reprlib",
]
CODE_MODULES = [
    "textwrap", "string", "json/decoder", "json/encoder", "heapq", "bisect", "fnmatch", "glob",
    "statistics", "fractions", "colorsys", "graphlib", "shlex", "sched", "queue", "copy",
    "pprint", "reprlib", "calendar", "difflib", "base64", "contextlib", "dataclasses",
    "functools", "operator", "csv", "netrc", "filecmp", "timeit", "cmd", "ipaddress",
]
PROSE_BUDGET = 1_000_000  # bytes of raw text per file: keeps the shipped .gz files small
CODE_BUDGET = 1_000_000


def _docstrings(source: str) -> list[str]:
    tree = ast.parse(source)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=True)
            # Short one-liners teach little prose; doctest-heavy ones are mostly code.
            if doc and len(doc) >= 80 and doc.count(">>>") < 3:
                out.append(doc.strip())
    return out


def main() -> None:
    lib = Path(sysconfig.get_paths()["stdlib"])
    prose: list[str] = []
    size = 0
    for mod in PROSE_MODULES:
        for doc in _docstrings((lib / f"{mod}.py").read_text(encoding="utf-8")):
            if size + len(doc) > PROSE_BUDGET:
                break
            prose.append(doc)
            size += len(doc) + 2
    code: list[str] = []
    size = 0
    for mod in CODE_MODULES:
        src = (lib / f"{mod}.py").read_text(encoding="utf-8")
        if size + len(src) > CODE_BUDGET:
            continue
        code.append(src)
        size += len(src)
    # mtime=0 so the .gz bytes themselves are reproducible.
    for name, docs in (("stdlib_prose.txt.gz", prose), ("stdlib_code.txt.gz", code)):
        data = "\n\x00\n".join(docs).encode("utf-8")
        (HERE / name).write_bytes(gzip.compress(data, compresslevel=9, mtime=0))
        print(name, len(docs), "documents", len(data), "bytes raw")


if __name__ == "__main__":
    main()
