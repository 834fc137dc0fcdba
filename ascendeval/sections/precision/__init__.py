"""Precision against a reference: teacher-forced logits / hidden states and free-running greedy
agreement of the target engine vs a transformers reference (notebook 03_precision)."""

from ..base import Section
from . import card, steps, verify
from .config import PrecisionConfig
from .metrics import PrecisionMetrics

SECTION = Section(
    "precision", "03_precision", "sec_precision", config=PrecisionConfig, metrics=PrecisionMetrics,
    card=card.render, summary=card.summary, verify=verify.rule,
    # a served target (engine openai) with no URL in the params, or a vllm target read through the
    # deployment's API (target_via auto/server): the run's shared server, which must then return
    # every vocabulary entry's logprob for the full-vocabulary step (max_logprobs)
    uses_shared_server=lambda cfg: not cfg.server.url and (
        cfg.target.engine == "openai"
        or (cfg.target.engine == "vllm" and cfg.sections.precision.target_via in ("auto", "server"))),
    shared_server_overrides=steps.shared_server_overrides,
    index_metrics=(("top1_agreement", "teacher_forced.top1_agreement"),
                   ("mean_cosine", "teacher_forced.mean_cosine")),
)
