"""Performance: offline latency / throughput / prefill-decode / memory / graph vs eager on one
engine, the roofline, and the serving benchmark against an HTTP server (notebook 02_performance)."""

from ..base import Section
from . import card, verify
from .config import PerformanceConfig
from .metrics import PerformanceMetrics

SECTION = Section(
    "performance", "02_performance", "sec_performance", config=PerformanceConfig, metrics=PerformanceMetrics, card=card.render, verify=verify.rule,
    uses_shared_server=lambda cfg: (cfg.sections.performance.serving.enabled
                                    and not cfg.sections.performance.serving.url),
    index_metrics=(("output_tok_per_s", "serving_main.output_tok_per_s"),
                   ("p99_ttft_ms", "serving_main.p99_ttft_ms"),
                   ("generation_tok_per_s", "latency.generation_tok_per_s")),
)
