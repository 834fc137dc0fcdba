"""Serving features: prefix caching, prefill/decode split, long context and chunked prefill, KV
capacity, speculative decoding, disaggregated prefill and the op scan (notebook 05_features)."""

from ..base import Section
from . import card
from .config import FeaturesConfig

SECTION = Section(
    "features", "05_features", "sec_features", config=FeaturesConfig, card=card.render,
    # the served speculative A/B's baseline arm (its ngram arm needs its own server)
    uses_shared_server=lambda cfg: cfg.sections.features.speculative and cfg.sections.features.spec_served,
)
