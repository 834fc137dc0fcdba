"""Serving features (notebook 05_features): every feature is an A/B on the real engine, backed by
its counters, one module per feature:

* `prefix_cache`: shared vs distinct prefixes with caching on, and caching off;
* `speculative`: ngram / draft / EAGLE vs the main engine, acceptance from the engine's counters,
  offline and served;
* `pd_split`: prefill / decode split from the engine's request timestamps, and real disaggregated
  prefill (producer and consumer joined by a KV connector);
* `long_context`: TTFT and throughput per context length, chunked prefill on and off;
* `capacity`: KV capacity as concurrent sequences, and the largest batch that runs;
* `op_scan`: which kernels a forward pass runs.

`common` holds the "main" engine (prefix caching on) that serves every measurement needing no
other engine setting. Engine starts dominate the cost on small machines, so engines are open one at
a time: each comparison engine starts after the main engine has measured its arm and closed.
"""

from ..base import Section
from . import card, verify
from .config import FeaturesConfig
from .metrics import FeaturesMetrics

SECTION = Section(
    "features", "05_features", "sec_features", config=FeaturesConfig, metrics=FeaturesMetrics,
    card=card.render, summary=card.summary, verify=verify.rule,
    # the served speculative A/B's baseline arm (its ngram arm needs its own server); a served
    # target (openai) with no URL in the params: the served-feature steps
    uses_shared_server=lambda cfg: ((cfg.sections.features.speculative and cfg.sections.features.spec_served)
                                    or (cfg.target.engine == "openai" and not cfg.server.url)),
)
