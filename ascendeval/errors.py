"""Exceptions shared across the package. A leaf module (imports nothing of ascendeval), so any
module can raise them without importing the section context."""


class SectionSkipped(Exception):
    """Raised by a step that does not apply to this target; the step is recorded as skipped.

    `reason` is English; `zh` the same reason in Chinese, for the Chinese card (the reason is
    known only where it is raised, so both languages are written there)."""

    def __init__(self, reason: str, zh: str | None = None):
        super().__init__(reason)
        self.zh = zh
