"""Output quality: shipped prompt suites, small benchmarks (gsm8k, mmlu, ...), baselines and batch
invariance, with the float32 reference beside the target (notebook 04_quality)."""

from ..base import Section
from . import card, verify
from .config import QualityConfig
from .metrics import QualityMetrics

SECTION = Section(
    "quality", "04_quality", "sec_quality", config=QualityConfig, metrics=QualityMetrics,
    card=card.render, summary=card.summary, verify=verify.rule,
    # a served target (engine openai) without a URL of its own, or a vllm target asked through the
    # deployment's API (target_via auto/server): the run's shared server
    uses_shared_server=lambda cfg: not cfg.server.url and (
        cfg.target.engine == "openai"
        or (cfg.target.engine == "vllm" and cfg.sections.quality.target_via in ("auto", "server"))),
    index_metrics=(("overall_pass_rate", "suites.overall_pass_rate"),),
)
