"""Environment section: software versions, hardware and devices, params advisories, and the
bandwidth / matmul probes that feed the roofline (notebook 00_environment; steps in probe.py)."""

from ..base import Section
from . import card
from .config import EnvironmentConfig
from .metrics import EnvironmentMetrics

SECTION = Section("environment", "00_environment", "sec_env", config=EnvironmentConfig,
                  metrics=EnvironmentMetrics, card=card.render, summary=card.summary)
