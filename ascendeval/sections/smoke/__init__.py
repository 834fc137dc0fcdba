"""Load & smoke test: resolve and load the model, run the prompt set and chat template, check
determinism, and (optionally) the same prompts through a served endpoint (notebook 01_smoke)."""

from ..base import Section
from . import card, verify
from .config import SmokeConfig
from .metrics import SmokeMetrics

SECTION = Section(
    "smoke", "01_smoke", "sec_smoke", config=SmokeConfig, metrics=SmokeMetrics,
    card=card.render, summary=card.summary, verify=verify.rule,
    uses_shared_server=lambda cfg: cfg.sections.smoke.serve or (cfg.target.engine == "openai" and not cfg.server.url),
    index_metrics=(("load_s", "load.load_s"),),
)
