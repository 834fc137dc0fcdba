"""The report: model facts, verdicts, `verify`, the model card, report.html and the cross-run index,
all read from this run's records (notebook 06_report)."""

from ..base import Section
from .config import ReportConfig
from .metrics import ReportMetrics

SECTION = Section("report", "06_report", "sec_report", config=ReportConfig, metrics=ReportMetrics, has_verdict=False)
