"""Precision against a reference: teacher-forced logits / hidden states and free-running greedy
agreement of the target engine vs a transformers reference (notebook 03_precision)."""

from ..base import Section
from . import card, verify
from .config import PrecisionConfig
from .metrics import PrecisionMetrics

SECTION = Section(
    "precision", "03_precision", "sec_precision", config=PrecisionConfig, metrics=PrecisionMetrics,
    card=card.render, summary=card.summary, verify=verify.rule,
    # a served target (openai) with no URL in the params reads its prompts through the run's server
    uses_shared_server=lambda cfg: cfg.target.engine == "openai" and not cfg.server.url,
    index_metrics=(("top1_agreement", "teacher_forced.top1_agreement"),
                   ("mean_cosine", "teacher_forced.mean_cosine")),
)
