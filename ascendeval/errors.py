"""Exceptions shared across the package. A leaf module (imports nothing of ascendeval), so any
module can raise them without importing the section context."""


class SectionSkipped(Exception):
    """Raised by a step that does not apply to this target; the step is recorded as skipped."""
