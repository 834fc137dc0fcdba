"""Quality section: shipped prompt suites with automatic checks, offline benchmark subsets,
baseline verdicts and a batch-invariance check. Called by notebooks/04_quality.ipynb.

Measurement choices (why):
- Greedy decoding everywhere (temperature 0, seed 0): a score must be reproducible, and the
  gallery compares the target with the float32 reference token for token.
- Multiple choice (MMLU, ARC, C-Eval, CMMLU) is scored two ways, named in every metric key:
  `logprob` compares the log-probability of each option letter (" A", " B", ...) after the
  prompt "...\\nAnswer:" (the original MMLU evaluation; needs prompt logprobs, so not the
  `openai` engine), `generate` lets the model answer and extracts the letter from the text.
- Benchmarks are 0-shot with plain prompts (below); scores are not comparable with published
  few-shot numbers unless the baseline was measured the same way: that is why a baseline states
  its source, and a `run` baseline (this tool, same prompts) is the one to trust.
- Code is executed only inside `sandbox.run_python` (pass@1 = one greedy sample per task).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from dataclasses import dataclass, field
from itertools import zip_longest
from pathlib import Path
from typing import Any, Callable, TypeVar

from ... import benchmarks_data as bdata
from ... import paths, records, sandbox
from ...errors import SectionSkipped
from ...quality_checks import (
    accuracy_with_stderr,
    extract_choice_letter,
    extract_code,
    extract_final_number,
    numbers_equal,
    run_check,
    validate_check,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

CODE_STOPS_BASE = ["\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#", "\n```", "\nassert"]
DEFAULT_MAX_TOKENS = {"gsm8k": 256, "mc": 8, "humaneval": 256, "mbpp": 256}


# --------------------------------------------------------------------------- suites


SUITES_DIR = paths.PACKAGE_DIR / "data" / "suites"


def load_suite(name: str) -> list[dict[str, Any]]:
    """Items of a shipped suite (ascendeval/data/suites/<name>.jsonl), validated."""
    path = SUITES_DIR / f"{name}.jsonl"
    if not path.is_file():
        allowed = sorted(p.stem for p in SUITES_DIR.glob("*.jsonl"))
        raise ValueError(f"unknown suite {name!r}; allowed: {', '.join(allowed)}")
    items = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        item = json.loads(line)
        for key in ("id", "prompt", "check"):
            if key not in item:
                raise ValueError(f"suite {name} line {n}: missing key {key!r}")
        validate_check(item["check"], f"suite {name} item {item['id']}")
        items.append({**item, "suite": name})
    return items


def chat_mode(cfg: Any, conf: Any, engine: Any) -> str:
    """'chat' or 'base': params first (section, then model), else detect the chat template."""
    mode = conf.chat or cfg.model.chat
    if mode in ("chat", "base"):
        return mode
    tok = engine.tokenizer() if engine is not None else None
    if tok is None:  # an HTTP server: its chat endpoint applies the template server-side
        return "chat"
    return "chat" if getattr(tok, "chat_template", None) else "base"


@dataclass
class Target:
    engine: Any
    mode: str  # chat | base
    name: str  # engine name (vllm / hf / openai)
    # what keeps a served target up (SectionRun.served): left when the target closes
    serving: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    def close(self) -> None:
        try:
            self.engine.close()
        finally:
            self.serving.close()


def served_target(run: Any) -> bool:
    """Whether the target is asked through a served model: a served target always; a vllm target
    through the run's shared server (target_via auto, when the run has one; server, always)."""
    cfg, via = run.cfg, run.conf.target_via
    if cfg.target.engine == "openai":
        return True
    if cfg.target.engine != "vllm" or via == "offline":
        return False
    return via == "server" or run.shared_server_url() is not None


def open_target(run: Any) -> Target:
    """The engine under test: the params' served target or the run's shared server (answers over
    the deployment's own API: no second start of the same configuration), else an offline engine."""
    cfg = run.cfg
    serving = contextlib.ExitStack()
    if served_target(run):
        # the params' URL, else the run's shared server, else one served here (vLLM/SGLang on
        # 127.0.0.1, stopped in close()); its start is recorded like every engine start
        url = serving.enter_context(run.served("target"))
        eng = run.engine("target", engine="openai", base_url=url, concurrency=run.conf.server_concurrency)
        name = "openai"
    else:
        eng = run.engine("target")
        name = cfg.target.engine
    target = Target(engine=eng, mode=chat_mode(cfg, run.conf, eng), name=name, serving=serving)
    run.add("target", {"engine": target.name, "prompt_mode": target.mode})
    return target


def target_info(target: Target | None) -> dict[str, Any] | None:
    """What answers the prompts: engine, prompt mode (chat/base) and the engine's own facts."""
    if target is None:
        return None
    return {"engine": target.name, "prompt_mode": target.mode, **target.engine.info()}


def _gen(target: Target, prompts_chat: list[str], prompts_base: list[str], sampling: Any) -> list[Any]:
    if target.mode == "chat":
        return target.engine.chat([[{"role": "user", "content": p}] for p in prompts_chat], sampling)
    return target.engine.generate(prompts_base, sampling)


def _side_by_side(target: Target, jobs: list[Callable[[], T]]) -> list[T]:
    """Run independent jobs (groups of requests) and return their results in order. A served
    target takes them at once, from threads, so the server batches the requests of every group
    together, as it batches any concurrent clients (a group of 3 long generations no longer holds
    the server at batch 3 while the next group waits); an offline engine runs them one by one."""
    if target.name != "openai" or len(jobs) <= 1:
        return [job() for job in jobs]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        return list(pool.map(lambda job: job(), jobs))


def _base_prompt(item: dict[str, Any]) -> str:
    return item.get("completion") or f"Question: {item['prompt']}\nAnswer:"


@dataclass
class SuiteResult:
    rows: list[dict[str, Any]]
    pass_rate: dict[str, float | None]
    mode: str
    reference: dict[str, Any] = field(default_factory=dict)


def _suite_sampling(it: dict[str, Any], mode: str) -> Any:
    """Greedy, the item's budget and stops (base-mode code: stop at the next top-level statement)."""
    from ...engines import Sampling

    stop = CODE_STOPS_BASE if (it["check"]["type"] == "code" and mode == "base") else it.get("stop")
    return Sampling(max_tokens=int(it.get("max_tokens", 64)), temperature=0.0, seed=0, stop=stop)


def run_suites(run: Any, target: Target) -> SuiteResult:
    """Run every configured suite on the target; score each output with its check."""
    conf = run.conf
    limits = sandbox_limits(conf)
    items = [it for suite in conf.suites for it in load_suite(suite)[: conf.suite_max_items]]
    samplings = [_suite_sampling(it, target.mode) for it in items]
    # one engine call per distinct sampling (budget, stops): the engine batches the items as it
    # batches any list (the server, `server_concurrency` requests at once, and the groups side by
    # side); batch_invariance below measures whether batching changes a greedy output
    gens: list[Any] = [None] * len(items)
    groups = [[i for i, s in enumerate(samplings) if (s.max_tokens, tuple(s.stop or ())) == key]
              for key in dict.fromkeys((s.max_tokens, tuple(s.stop or ())) for s in samplings)]
    outs = _side_by_side(target, [
        (lambda idx=idx: _gen(target, [items[i]["prompt"] for i in idx], [_base_prompt(items[i]) for i in idx],
                              samplings[idx[0]])) for idx in groups])
    for idx, group_out in zip(groups, outs):
        for i, g in zip(idx, group_out):
            gens[i] = g
    rows: list[dict[str, Any]] = []
    for it, g in zip(items, gens):
        shown = it["prompt"] if target.mode == "chat" else _base_prompt(it)
        code_prompt = _base_prompt(it) if target.mode == "base" else ""
        res = run_check(it["check"], g.text, code_prompt, limits)
        rows.append({"suite": it["suite"], "id": it["id"], "mode": target.mode, "prompt": shown,
                     "check": it["check"], "output": g.text, "token_ids": g.token_ids,
                     "prompt_token_ids": list(g.prompt_token_ids or []),
                     "passed": res.passed, "detail": res.detail})
    rate = {s: accuracy_with_stderr([r["passed"] for r in rows if r["suite"] == s])[0] for s in conf.suites}
    rate["overall"] = accuracy_with_stderr([r["passed"] for r in rows])[0]
    run.add("suites", {"mode": target.mode, "num_items": len(rows),
                       **{f"{k}_pass_rate": v for k, v in rate.items()}})
    return SuiteResult(rows=rows, pass_rate=rate, mode=target.mode)


def save_suite_rows(run: Any, suite: SuiteResult | None) -> Path | None:
    """Per-item suite rows (target and reference outputs) -> records/quality.suites.jsonl."""
    return run.save_rows("suites", suite.rows) if suite is not None else None


def suite_table(suite: SuiteResult | None) -> Any:
    """Pass rate per suite (target, and reference when it ran)."""
    import pandas as pd

    if suite is None:
        return None
    rows = []
    for name in dict.fromkeys(r["suite"] for r in suite.rows):
        mine = [r for r in suite.rows if r["suite"] == name]
        ran = any("reference_passed" in r for r in mine)
        # None: the reference's answer to that item is unknown (diverged, not in the gallery)
        ref = [r["reference_passed"] for r in mine if r.get("reference_passed") is not None]
        same = [r["same_as_reference"] for r in mine if r.get("same_as_reference") is not None]
        rows.append({"suite": name, "items": len(mine),
                     "target_pass_rate": accuracy_with_stderr([r["passed"] for r in mine])[0],
                     "reference_pass_rate": accuracy_with_stderr(ref)[0] if ref else None,
                     "reference_known_items": len(ref) if ran else None,
                     "same_output_as_reference": accuracy_with_stderr(same)[0] if same else None})
    return pd.DataFrame(rows)


def baseline_table(verdicts: list[dict[str, Any]] | None) -> Any:
    import pandas as pd

    if verdicts is None:
        return None
    cols = ["metric", "measured", "baseline", "diff_abs", "diff_rel", "tolerance_abs", "tolerance_rel", "passed",
            "label", "reason"]
    return pd.DataFrame(verdicts, columns=cols) if verdicts else pd.DataFrame(columns=cols)


def close(target: Target | None) -> None:
    """Release the engine under test (and the server started for it) before the reference loads."""
    if target is not None:
        target.close()


def gallery(suite: SuiteResult | None, width: int = 160) -> Any:
    """The side-by-side table: prompt, reference output, target output, check results."""
    import pandas as pd

    if suite is None:
        return None

    def cut(s: Any) -> Any:
        return s if not isinstance(s, str) or len(s) <= width else s[: width - 1] + "…"

    rows = [{"suite": r["suite"], "id": r["id"], "prompt": cut(r["prompt"]), "check": r["check"]["type"],
             "reference_output": cut(r.get("reference_output")),
             "reference": None if r.get("reference_passed") is None else ("pass" if r["reference_passed"] else "fail"),
             "target_output": cut(r["output"]), "target": "pass" if r["passed"] else "fail",
             "same_output": r.get("same_as_reference"), "detail": cut(r["detail"])} for r in suite.rows]
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- benchmarks


def sandbox_limits(conf: Any) -> sandbox.SandboxLimits:
    s = conf.sandbox
    return sandbox.SandboxLimits(timeout_s=s.timeout_s, memory_mb=s.memory_mb, max_processes=s.max_processes,
                                 isolation=s.isolation)


def mc_prompt(item: dict[str, Any]) -> str:
    head = f"The following is a multiple choice question about {item['subject'].replace('_', ' ')}.\n\n" \
        if item.get("subject") else ""
    opts = "\n".join(f"{bdata.LETTERS[i]}. {c}" for i, c in enumerate(item["choices"]))
    return f"{head}Question: {item['question']}\n{opts}\nAnswer:"


def gsm8k_prompts(item: dict[str, Any]) -> tuple[str, str]:
    chat = f"{item['question']}\nSolve it step by step, then finish with 'The answer is N.' where N is a number."
    return chat, f"Question: {item['question']}\nAnswer:"


def humaneval_prompts(item: dict[str, Any]) -> tuple[str, str]:
    chat = ("Complete the following Python function. Reply with the complete function in one ```python code "
            f"block.\n\n```python\n{item['prompt']}```")
    return chat, item["prompt"]


def mbpp_entry_point(item: dict[str, Any]) -> str | None:
    m = re.search(r"assert\s+(?:not\s+)?\(?\s*(?:set\()?\s*(\w+)\s*\(", item["test_list"][0])
    return m.group(1) if m else None


def mbpp_prompts(item: dict[str, Any]) -> tuple[str, str]:
    tests = "\n".join(item["test_list"])
    chat = f"{item['text']}\nYour code should pass these tests:\n{tests}\nReply with the Python code in one ```python code block."
    base = f"You are an expert Python programmer, and here is your task: {item['text']} " \
           f"Your code should pass these tests:\n\n{tests}\n```python\n"
    return chat, base


@dataclass
class BenchResult:
    name: str
    status: str  # ok | skipped | failed
    reason: str | None = None
    scores: dict[str, dict[str, Any]] = field(default_factory=dict)  # method -> accuracy, stderr, n
    provenance: dict[str, Any] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)


def _score(outcomes: list[bool]) -> dict[str, Any]:
    acc, se = accuracy_with_stderr(outcomes)
    return {"accuracy": acc, "accuracy_stderr": se, "num_items": len(outcomes), "num_correct": sum(outcomes)}


def _option_logprob_scores(engine: Any, prompts: list[str], n_opts: list[int]) -> list[list[float]]:
    """Per prompt, the logprob of each continuation " A", " B", ... (one teacher-forced pass each)."""
    from ...engines import Sampling

    tok = engine.tokenizer()
    seqs, spans = [], []
    for p, k in zip(prompts, n_opts):
        ctx = list(tok(p)["input_ids"])
        for i in range(k):
            full = list(tok(p + " " + bdata.LETTERS[i])["input_ids"])
            if full[: len(ctx)] != ctx:  # the merge crossed the boundary: append the letter's own tokens
                full = ctx + list(tok(" " + bdata.LETTERS[i], add_special_tokens=False)["input_ids"])
            seqs.append(full)
            spans.append((len(ctx), len(full)))
    gens = engine.generate(seqs, Sampling(max_tokens=1, temperature=0.0, seed=0, prompt_logprobs=1))
    flat = []
    for g, seq, (a, b) in zip(gens, seqs, spans):
        if g.prompt_logprobs is None:
            raise RuntimeError("engine returned no prompt logprobs")
        flat.append(sum(g.prompt_logprobs[j][seq[j]] for j in range(a, b)))
    out, pos = [], 0
    for k in n_opts:
        out.append(flat[pos: pos + k])
        pos += k
    return out


def run_benchmark(run: Any, target: Target, bconf: Any) -> BenchResult:
    """Load one benchmark (skipped with the reason when no source has it), generate, score."""
    from ...engines import Sampling

    try:
        ds = bdata.load(bconf.name, path=bconf.path, sources=bconf.sources, n=bconf.n, seed=bconf.seed)
    except bdata.DatasetUnavailable as exc:
        return BenchResult(bconf.name, "skipped", str(exc))
    res = BenchResult(bconf.name, "ok", provenance=ds.provenance())
    limits = sandbox_limits(run.conf)
    max_toks = bconf.max_tokens or DEFAULT_MAX_TOKENS[ds.kind]
    items = ds.items
    base_row = {"benchmark": ds.name, "mode": target.mode}
    if ds.kind == "mc":
        prompts = [mc_prompt(it) for it in items]
        for method in bconf.mc_methods:
            if method == "logprob":
                from ...engines.openai_engine import PromptLogprobsUnsupported

                if target.engine.tokenizer() is None:
                    res.scores["logprob"] = {"status": "skipped", "reason": f"engine {target.name} has no tokenizer "
                                             "here (no local model files) to place the options' tokens"}
                    continue
                try:
                    scores = _option_logprob_scores(target.engine, prompts, [len(it["choices"]) for it in items])
                except PromptLogprobsUnsupported as exc:
                    res.scores["logprob"] = {"status": "skipped", "reason": str(exc)}
                    continue
                picks = [max(range(len(s)), key=s.__getitem__) for s in scores]
                outs = [p == it["answer"] for p, it in zip(picks, items)]
                for it, p, s, ok, pr in zip(items, picks, scores, outs, prompts):
                    res.rows.append({**base_row, "method": "logprob", "id": it["id"], "prompt": pr,
                                     "output": None, "extracted": bdata.LETTERS[p],
                                     "gold": bdata.LETTERS[it["answer"]], "correct": ok,
                                     "option_logprobs": [round(x, 4) for x in s]})
            else:
                chat_p = [p + "\nReply with the letter of the correct option only." for p in prompts]
                gens = _gen(target, chat_p, prompts, Sampling(max_tokens=max_toks, temperature=0.0, seed=0))
                outs = []
                for it, g, pr in zip(items, gens, chat_p if target.mode == "chat" else prompts):
                    letter = extract_choice_letter(g.text, len(it["choices"]))
                    ok = letter == bdata.LETTERS[it["answer"]]
                    outs.append(ok)
                    res.rows.append({**base_row, "method": "generate", "id": it["id"], "prompt": pr,
                                     "output": g.text, "extracted": letter, "gold": bdata.LETTERS[it["answer"]],
                                     "correct": ok})
            res.scores[method] = _score(outs)
    elif ds.kind == "gsm8k":
        cp, bp = zip(*[gsm8k_prompts(it) for it in items])
        stop = None if target.mode == "chat" else ["Question:", "\n\n"]
        gens = _gen(target, list(cp), list(bp), Sampling(max_tokens=max_toks, temperature=0.0, seed=0, stop=stop))
        outs = []
        for it, g, pr in zip(items, gens, cp if target.mode == "chat" else bp):
            got = extract_final_number(g.text)
            ok = numbers_equal(got, it["answer"])
            outs.append(ok)
            res.rows.append({**base_row, "method": "generate", "id": it["id"], "prompt": pr, "output": g.text,
                             "extracted": got, "gold": it["answer"], "correct": ok})
        res.scores["generate"] = _score(outs)
    else:  # humaneval / mbpp: pass@1, one greedy sample executed in the sandbox
        if ds.kind == "humaneval":
            cp, bp = zip(*[humaneval_prompts(it) for it in items])
        else:
            cp, bp = zip(*[mbpp_prompts(it) for it in items])
        stop = None if target.mode == "chat" else (CODE_STOPS_BASE if ds.kind == "humaneval" else ["\n```"])
        gens = _gen(target, list(cp), list(bp), Sampling(max_tokens=max_toks, temperature=0.0, seed=0, stop=stop))
        outs = []
        for it, g, pr in zip(items, gens, cp if target.mode == "chat" else bp):
            if ds.kind == "humaneval":
                ep = it["entry_point"]
                body = extract_code(g.text, it["prompt"], ep) if target.mode == "chat" else it["prompt"] + g.text
                program = f"{body}\n\n{it['test']}\n\ncheck({ep})\n"
            else:
                ep = mbpp_entry_point(it)
                body = extract_code(g.text, "", ep) if target.mode == "chat" else g.text
                program = f"{it['test_setup_code']}\n{body}\n\n" + "\n".join(it["test_list"]) + "\n"
            sb = sandbox.run_python(program, limits)
            outs.append(sb.passed)
            res.rows.append({**base_row, "method": "pass_at_1", "id": it["id"], "prompt": pr, "output": g.text,
                             "extracted": None, "gold": None, "correct": sb.passed,
                             "sandbox": {"status": sb.status, "reason": sb.reason, "wall_s": round(sb.wall_s, 3)}})
        res.scores["pass_at_1"] = _score(outs)
        res.provenance["sandbox_isolation"] = sandbox.describe_isolation(limits)
    return res


def run_benchmarks(run: Any, target: Target) -> list[BenchResult]:
    """Every configured benchmark; a missing dataset is a skipped benchmark, a crash a failed one."""
    def one(bconf: Any) -> BenchResult:
        try:
            return run_benchmark(run, target, bconf)
        except Exception as exc:  # noqa: BLE001 - one broken benchmark must not hide the others
            log.exception("benchmark %s failed", bconf.name)
            return BenchResult(bconf.name, "failed", f"{type(exc).__name__}: {exc}"[:300])

    if target.name == "openai":
        target.engine.tokenizer()  # loaded once here, not by several benchmark threads at once
    results = _side_by_side(target, [lambda b=bconf: one(b) for bconf in run.conf.benchmarks])
    metrics = {r.name: {"status": r.status, "reason": r.reason, "provenance": r.provenance, **r.scores}
               for r in results}
    run.add("benchmarks", metrics)
    run.save_rows("items", [row for r in results for row in r.rows])
    return results


def benchmark_table(results: list[BenchResult] | None) -> Any:
    """accuracy ± stderr per benchmark and method, with data source; skipped ones with the reason."""
    import pandas as pd

    if results is None:
        return None

    rows = []
    for r in results:
        if r.status != "ok":
            rows.append({"benchmark": r.name, "method": None, "accuracy": None, "stderr": None, "n": None,
                         "source": None, "status": r.status, "reason": r.reason})
        for m, s in r.scores.items():
            rows.append({"benchmark": r.name, "method": m, "accuracy": s.get("accuracy"),
                         "stderr": s.get("accuracy_stderr"), "n": s.get("num_items"),
                         "source": f"{r.provenance.get('source')} {r.provenance.get('version')}",
                         "status": s.get("status", r.status), "reason": s.get("reason")})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- baselines


def _run_baseline_value(run_id: str, bench: str, method: str) -> float:
    """A baseline measured by this tool: read the accuracy from that run's quality record."""
    hits = [p for p in paths.outputs_dir().glob(f"*/{run_id}") if (p / "records" / "quality.json").is_file()]
    if not hits:
        raise LookupError(f"run {run_id!r} not found under {paths.outputs_dir()} (no records/quality.json)")
    rec = records.load(hits[0], "quality") or {}
    score = rec.get("metrics", {}).get("benchmarks", {}).get(bench, {}).get(method, {})
    if score.get("accuracy") is None:
        raise LookupError(f"run {run_id!r} has no {bench}/{method} accuracy")
    return float(score["accuracy"])


def verdict(measured: float, baseline: float, tol_abs: float | None, tol_rel: float | None) -> dict[str, Any]:
    """Pass when every given tolerance holds. diff = measured - baseline (signed)."""
    diff = measured - baseline
    rel = abs(diff) / baseline if baseline > 0 else None
    ok_abs = tol_abs is None or abs(diff) <= tol_abs + 1e-12
    ok_rel = tol_rel is None or (rel is not None and rel <= tol_rel + 1e-12) or (rel is None and diff == 0)
    return {"measured": measured, "baseline": baseline, "diff_abs": diff, "diff_rel": rel,
            "tolerance_abs": tol_abs, "tolerance_rel": tol_rel, "passed": bool(ok_abs and ok_rel)}


def baseline_verdicts(run: Any, results: list[BenchResult]) -> list[dict[str, Any]]:
    out = []
    by_name = {r.name: r for r in results}
    for key, b in run.conf.baselines.items():
        bench, _, method = key.partition("/")
        r = by_name.get(bench)
        row: dict[str, Any] = {"metric": key, "source_kind": b.kind, "source": b.source,
                               "label": f"measured run {b.source}" if b.kind == "run" else f"external: {b.source}"}
        if r is None or r.status != "ok":
            out.append({**row, "passed": None, "reason": f"{bench} not measured in this run"
                        + (f" ({r.reason})" if r and r.reason else "")})
            continue
        method = method or next(iter(r.scores))
        score = r.scores.get(method, {})
        if score.get("accuracy") is None:
            out.append({**row, "passed": None, "reason": f"{bench}/{method} has no accuracy"})
            continue
        try:
            base = b.value if b.value is not None else _run_baseline_value(b.source, bench, method)
        except LookupError as exc:
            out.append({**row, "passed": None, "reason": str(exc)})
            continue
        out.append({**row, "metric": f"{bench}/{method}", "num_items": score["num_items"],
                    **verdict(score["accuracy"], base, b.tolerance_abs, b.tolerance_rel)})
    run.add("baselines", out)
    return out


# --------------------------------------------------------------------------- batch invariance


def batch_invariance(run: Any, target: Target) -> dict[str, Any]:
    """Same greedy prompts one at a time vs all in one batch (and the batch twice): identical
    token ids, or the differing items listed. An engine that always runs prompts one at a time
    (hf) is invariant by construction; the record says so."""
    from ...engines import Sampling

    conf = run.conf
    if not conf.batch_invariance:
        raise SectionSkipped("batch_invariance disabled in params", zh="参数文件中已关闭 batch_invariance")
    per_suite = [load_suite(s)[: conf.suite_max_items] for s in conf.suites]
    items = [it for group in zip_longest(*per_suite) for it in group if it is not None]  # suites in turn
    items = items[: conf.batch_invariance_max_items]
    s = Sampling(max_tokens=conf.batch_invariance_max_tokens, temperature=0.0, seed=0)
    chat_p = [it["prompt"] for it in items]
    base_p = [_base_prompt(it) for it in items]
    batched = _gen(target, chat_p, base_p, s)
    again = _gen(target, chat_p, base_p, s)
    single = [_gen(target, [c], [b], s)[0] for c, b in zip(chat_p, base_p)]

    def key(g: Any) -> Any:
        return tuple(g.token_ids) if g.token_ids else g.text

    differ = [it["id"] for it, a, b in zip(items, batched, single) if key(a) != key(b)]
    unstable = [it["id"] for it, a, b in zip(items, batched, again) if key(a) != key(b)]
    # a served target has at most `concurrency` requests in flight: that is its batch
    batch = min(len(items), getattr(target.engine, "concurrency", len(items)) or len(items))
    out = {"num_items": len(items), "batch_size": batch, "max_tokens": s.max_tokens,
           "batch_vs_single_identical_rate": (len(items) - len(differ)) / len(items) if items else None,
           "repeat_identical_rate": (len(items) - len(unstable)) / len(items) if items else None,
           "differing_items": differ, "unstable_items": unstable,
           "compared_on": "token_ids" if all(g.token_ids for g in batched) else "text",
           "note": "hf engine runs prompts one at a time: invariant by construction" if target.name == "hf" else None}
    run.add("batch_invariance", out)
    return out
