"""Automatic checks and answer extraction (pure functions; the code check uses the sandbox).

Check specs (one JSON object per suite item, `check` field):
  {"type": "exact", "value": "Paris"}                 first line, case/space/punctuation-normalised
  {"type": "contains", "any": ["Paris"]} / {"all": [...]}   case-insensitive substring(s)
  {"type": "regex", "pattern": "...", "flags": "im", "min_count": 1, "max_count": null}
  {"type": "numeric", "value": 42, "tol": 1e-6}       final number of the answer (GSM8K rules)
  {"type": "max_words", "value": 40}                   length limit (instruction following)
  {"type": "code", "tests": "assert f(1) == 2", "entry_point": "f"}   run in the sandbox
  {"type": "all", "checks": [...]}                     every sub-check passes
"""

from __future__ import annotations

import math
import re
import string
from dataclasses import dataclass
from typing import Any

from . import sandbox

CHECK_TYPES = ("exact", "contains", "regex", "numeric", "max_words", "code", "all")


@dataclass
class CheckResult:
    passed: bool
    detail: str  # what was compared / why it failed, short


# --------------------------------------------------------------------------- extraction

_NUM = r"-?\$?\d[\d,]*(?:\.\d+)?"


def _clean_number(s: str) -> str:
    s = s.replace(",", "").replace("$", "").strip().rstrip(".")
    if re.fullmatch(r"-?\d+\.0+", s):  # "18.00" and "18" are the same answer
        s = s.split(".")[0]
    return s


def extract_final_number(text: str) -> str | None:
    """GSM8K final-answer extraction, in the order the standard harnesses use:
    1. `#### N` (the GSM8K gold format, "strict match"),
    2. `The answer is N` (the few-shot chain-of-thought format),
    3. the last number in the text ("flexible extract").
    Commas, `$` and a trailing period are dropped. None when the text has no number."""
    for pat in (rf"####\s*({_NUM})", rf"[Tt]he (?:final )?answer is[:\s]*\$?\s*({_NUM})"):
        m = re.findall(pat, text)
        if m:
            return _clean_number(m[-1] if pat.startswith("[Tt]") else m[0])
    nums = re.findall(_NUM, text)
    return _clean_number(nums[-1]) if nums else None


def numbers_equal(a: str | None, b: str | float | int, tol: float = 1e-6) -> bool:
    if a is None:
        return False
    try:
        return math.isclose(float(a), float(_clean_number(str(b))), rel_tol=0.0, abs_tol=tol)
    except ValueError:
        return False


def extract_choice_letter(text: str, n_choices: int) -> str | None:
    """The option letter a generated answer picks (A.. up to n_choices), or None.

    Tried in order: "answer is (B)" / "答案是B" / "Answer: B"; a letter at the very start
    ("B", "(B)", "B." "B)"); the first stand-alone capital letter among the options.
    """
    letters = string.ascii_uppercase[:n_choices]
    cls = f"[{letters}]"
    pats = [
        rf"(?:answer|Answer|ANSWER)\s*(?:is|:)?\s*[:：]?\s*\(?({cls})\b",
        rf"答案\s*(?:是|为|：|:)?\s*\(?({cls})",
        rf"^\s*\(?({cls})(?:[\s\.\)\:：,，]|$)",
        rf"(?<![A-Za-z])({cls})(?![A-Za-z])",
    ]
    for pat in pats:
        m = re.search(pat, text.strip())
        if m:
            return m.group(1)
    return None


def extract_code(text: str, prompt: str = "", entry_point: str | None = None) -> str:
    """The program to test, from a generation.

    A fenced block (```python ... ```) wins: chat models answer in markdown. If the generation
    defines the entry point itself it stands alone; otherwise it is the body that continues the
    prompt (base-model completion, HumanEval style) and the prompt is prepended.
    """
    blocks = re.findall(r"```(?:python|py|Python)?[^\n]*\n(.*?)(?:```|$)", text, flags=re.S)
    code = max(blocks, key=len) if blocks else text
    if entry_point and re.search(rf"^\s*def\s+{re.escape(entry_point)}\s*\(", code, flags=re.M):
        # keep the prompt's imports (e.g. `from typing import List`) that a stand-alone answer may omit
        imports = "\n".join(ln for ln in prompt.splitlines() if ln.startswith(("import ", "from ")))
        return (imports + "\n" + code) if imports else code
    return prompt + code


# --------------------------------------------------------------------------- checks


def _norm(s: str) -> str:
    s = s.strip().splitlines()[0] if s.strip() else ""
    s = s.strip().strip(string.punctuation + "。，！？：；“”‘’ ").lower()
    return re.sub(r"\s+", " ", s)


def _flags(spec: str) -> int:
    table = {"i": re.I, "m": re.M, "s": re.S}
    out = 0
    for ch in spec:
        if ch not in table:
            raise ValueError(f"regex flag {ch!r} not allowed; allowed: i, m, s")
        out |= table[ch]
    return out


def validate_check(spec: dict[str, Any], where: str = "check") -> None:
    """Raise ValueError (one line) for a malformed check spec."""
    t = spec.get("type")
    if t not in CHECK_TYPES:
        raise ValueError(f"{where}: check type {t!r} not allowed; allowed: {', '.join(CHECK_TYPES)}")
    need = {"exact": ["value"], "numeric": ["value"], "max_words": ["value"], "regex": ["pattern"],
            "code": ["tests"], "all": ["checks"]}.get(t, [])
    for k in need:
        if k not in spec:
            raise ValueError(f"{where}: check type {t!r} needs key {k!r}")
    if t == "contains" and not (spec.get("any") or spec.get("all")):
        raise ValueError(f"{where}: check type 'contains' needs 'any' or 'all' (a list of strings)")
    if t == "regex":
        re.compile(spec["pattern"], _flags(spec.get("flags", "")))
    if t == "all":
        for i, sub in enumerate(spec["checks"]):
            validate_check(sub, f"{where}.checks[{i}]")


def run_check(spec: dict[str, Any], output: str, prompt: str = "",
              limits: sandbox.SandboxLimits | None = None) -> CheckResult:
    """Apply one check to a model output."""
    t = spec["type"]
    if t == "exact":
        got, want = _norm(output), _norm(str(spec["value"]))
        return CheckResult(got == want, f"first line {got!r} vs {want!r}")
    if t == "contains":
        low = output.lower()
        if spec.get("all"):
            missing = [s for s in spec["all"] if s.lower() not in low]
            return CheckResult(not missing, f"missing {missing}" if missing else "all present")
        found = [s for s in spec["any"] if s.lower() in low]
        return CheckResult(bool(found), f"found {found[0]!r}" if found else f"none of {spec['any']}")
    if t == "regex":
        n = len(re.findall(spec["pattern"], output, _flags(spec.get("flags", ""))))
        lo, hi = spec.get("min_count", 1), spec.get("max_count")
        ok = n >= lo and (hi is None or n <= hi)
        return CheckResult(ok, f"{n} match(es) of /{spec['pattern']}/ (want {lo}..{hi if hi is not None else 'any'})")
    if t == "numeric":
        got = extract_final_number(output)
        ok = numbers_equal(got, spec["value"], float(spec.get("tol", 1e-6)))
        return CheckResult(ok, f"extracted {got} vs {spec['value']}")
    if t == "max_words":
        n = len(output.split())
        return CheckResult(0 < n <= int(spec["value"]), f"{n} words (limit {spec['value']})")
    if t == "code":
        program = extract_code(output, prompt, spec.get("entry_point")) + "\n\n" + spec["tests"] + "\n"
        res = sandbox.run_python(program, limits)
        return CheckResult(res.passed, "tests passed" if res.passed else f"{res.status}: {res.reason}")
    if t == "all":
        subs = [run_check(s, output, prompt, limits) for s in spec["checks"]]
        failed = [r.detail for r in subs if not r.passed]
        return CheckResult(not failed, "; ".join(failed) if failed else "all sub-checks passed")
    raise ValueError(f"check type {t!r} not allowed; allowed: {', '.join(CHECK_TYPES)}")


# --------------------------------------------------------------------------- statistics


def accuracy_with_stderr(outcomes: list[bool]) -> tuple[float | None, float | None]:
    """Mean and its standard error sqrt(p(1-p)/(n-1)) (the sample-variance form lm-eval reports).
    None when nothing was scored; stderr None for a single item."""
    n = len(outcomes)
    if n == 0:
        return None, None
    p = sum(bool(x) for x in outcomes) / n
    return p, (math.sqrt(p * (1 - p) / (n - 1)) if n > 1 else None)
