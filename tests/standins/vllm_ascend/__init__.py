"""Test-only stand-in for vllm-ascend, for machines without CANN (tests/standins is put on
sys.path by the tests that use it; the dist-info beside it makes importlib.metadata see
vllm-ascend 0.23.0). It keeps what the workbook depends on:

- `envs.env_variables`: the variables it reads (the names of the real v0.25.1rc1 list);
- `utils.register_ascend_customop`: registers Ascend replacements of vLLM custom ops into vLLM's
  `op_registry_oot` with `CustomOp.register_oot(_decorated_op_cls=..., name=...)`, once per process,
  as the real one does (the real one is only called inside vllm-ascend's worker).
"""
