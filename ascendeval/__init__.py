"""ascendeval: evaluate an LLM on Ascend NPU / NVIDIA GPU / CPU and publish a model-card report.

Notebooks start with `run = ascendeval.open_section("<section>", params_file, run_dir)`.
Heavy modules (torch, vllm, transformers) are imported only where used.
"""

from .context import SectionRun, SectionSkipped, open_section

__version__ = "0.1.0"
__all__ = ["SectionRun", "SectionSkipped", "open_section", "__version__"]
