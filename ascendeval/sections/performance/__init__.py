"""Performance (notebook 02_performance), one module per concern:

* `setup`: the plan (model facts, reduced counts for large models) and the shared offline engine;
* `offline`: latency, throughput, prefill / decode split, memory, graph vs eager on that engine;
* `roofline`: the measured prefill / decode rates against the environment's probes;
* `serving`: the serving benchmark against an HTTP server, its sweeps and plots.

Every step stores its metrics with `run.add` (keys declared in the metric catalog; None = not
measured) and returns a result with `.table()` for display. Statistics live in `metrics.py`; the
HTTP client and arrival process in `loadgen.py`.
"""

from ..base import Section
from . import card, verify
from .config import PerformanceConfig
from .metrics import PerformanceMetrics

SECTION = Section(
    "performance", "02_performance", "sec_performance", config=PerformanceConfig, metrics=PerformanceMetrics,
    card=card.render, summary=card.summary, verify=verify.rule,
    uses_shared_server=lambda cfg: (cfg.sections.performance.serving.enabled
                                    and not cfg.sections.performance.serving.url),
    index_metrics=(("output_tok_per_s", "serving_main.output_tok_per_s"),
                   ("p99_ttft_ms", "serving_main.p99_ttft_ms"),
                   ("generation_tok_per_s", "latency.generation_tok_per_s")),
)
