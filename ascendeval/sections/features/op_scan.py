"""The op scan: which kernels a forward pass on the target runs (custom / native fallback)."""

from __future__ import annotations

from typing import Any

from ...context import SectionRun, SectionSkipped


def opscan(run: SectionRun) -> Any:
    """Operator compatibility scan of the model directory (see opscan.py)."""
    from ... import opscan as opscan_mod

    c = run.conf
    if not c.opscan:
        raise SectionSkipped("opscan: false in params", zh="参数文件中设置了 opscan: false")
    path = c.opscan_model_path or str(run.model().path)
    res = opscan_mod.scan(path, device=run.cfg.target.device, trace=c.opscan_trace,
                          trust_remote_code=run.cfg.model.trust_remote_code)
    run.save_rows("opscan", res.rows)
    run.add("opscan", res.summary)
    return res

