"""Environment section: software versions, hardware and devices, params advisories, and the
bandwidth / matmul probes that feed the roofline (notebook 00_environment; steps in probe.py)."""

from ..base import Section
from . import card
from .config import EnvironmentConfig

SECTION = Section("environment", "00_environment", "sec_env", config=EnvironmentConfig, card=card.render, verdict=card.verdict)
