"""Every skip reason has a Chinese twin: each `SectionSkipped(...)` call in the package passes a
`zh=` keyword whose value is a string literal or f-string with Chinese text, so the Chinese card
never falls back to an English reason. Static (ast), so it covers steps no test reaches."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "ascendeval"
EXEMPT = {PACKAGE / "errors.py"}  # the class definition
CJK = re.compile(r"[\u4e00-\u9fff]")


def _call_name(node: ast.Call) -> str | None:
    f = node.func
    if isinstance(f, ast.Name):
        return f.id
    if isinstance(f, ast.Attribute):
        return f.attr
    return None


def _literal_text(node: ast.expr) -> str | None:
    """The literal text of a str constant or an f-string (its constant parts); None otherwise."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str))
    return None


def _has_chinese_zh(call: ast.Call) -> bool:
    for kw in call.keywords:
        if kw.arg == "zh":
            text = _literal_text(kw.value)
            return text is not None and bool(CJK.search(text))
    return False


def _offenders() -> tuple[list[str], int]:
    bad, seen = [], 0
    for path in sorted(PACKAGE.rglob("*.py")):
        if path in EXEMPT:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and _call_name(node) == "SectionSkipped":
                seen += 1
                if not _has_chinese_zh(node):
                    bad.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    return bad, seen


def test_every_section_skipped_has_a_chinese_reason():
    bad, seen = _offenders()
    assert seen > 0, "no SectionSkipped call found: the scan is looking in the wrong place"
    assert not bad, ("SectionSkipped without a Chinese zh= (str or f-string literal):\n  "
                     + "\n  ".join(bad))


def test_the_check_catches_a_missing_or_english_zh():
    calls = [node for node in ast.walk(ast.parse(
        'SectionSkipped("a")\n'
        'SectionSkipped("a", zh="b")\n'
        'SectionSkipped("a", zh=reason)\n'
        'SectionSkipped(f"a {x}", zh=f"跳过 {x}")\n'
        'errors.SectionSkipped("a", zh="不适用")\n')) if isinstance(node, ast.Call)]
    assert [_has_chinese_zh(c) for c in calls] == [False, False, False, True, True]
