"""Stand-in for vllm_ascend/utils.py: `register_ascend_customop` (vllm_ascend/utils.py:660 in v0.25.1rc1)."""

from __future__ import annotations

_ASCEND_CUSTOMOP_IS_REIGISTERED = False
REGISTERED_NAMES: list[str] = []


def register_ascend_customop(vllm_config=None) -> None:
    global _ASCEND_CUSTOMOP_IS_REIGISTERED
    if _ASCEND_CUSTOMOP_IS_REIGISTERED:
        return
    from vllm.model_executor.custom_op import CustomOp
    from vllm.model_executor.layers.activation import SiluAndMul
    from vllm.model_executor.layers.layernorm import RMSNorm

    class AscendRMSNorm(RMSNorm):
        def forward_oot(self, x, residual=None):  # torch_npu.npu_rms_norm in the real one
            return self.forward_native(x, residual)

    class AscendSiluAndMul(SiluAndMul):
        def forward_oot(self, x):  # torch_npu.npu_swiglu in the real one
            return self.forward_native(x)

    for name, op_cls in {"RMSNorm": AscendRMSNorm, "SiluAndMul": AscendSiluAndMul}.items():
        CustomOp.register_oot(_decorated_op_cls=op_cls, name=name)
        REGISTERED_NAMES.append(name)
    _ASCEND_CUSTOMOP_IS_REIGISTERED = True
