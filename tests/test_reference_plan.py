"""The reference's memory check before it loads (ascendeval/reference_model.py): float32 when it
fits, else the configured fallback, else one line with the figures; the engine really loads as
planned and the plan is recorded."""

from __future__ import annotations

from pathlib import Path

import pytest

from ascendeval import builtin_models, context, records, reference_model as rm

GIB = 1 << 30


@pytest.fixture(scope="module")
def tiny():
    return builtin_models.ensure("tiny-qwen2-untrained")


def test_need_is_weights_plus_logits_plus_margin(tiny):
    n = rm.num_parameters(tiny)
    assert n > 1_000_000
    need32 = rm.need_bytes(n, "float32", 1000, 100)
    need16 = rm.need_bytes(n, "bfloat16", 1000, 100)
    assert need32 - need16 == 2 * n
    assert need16 == 2 * n + 8 * 1000 * 100 + rm.RUNTIME_MARGIN_BYTES


def test_float32_when_it_fits(tiny):
    p = rm.plan(tiny, dtype="float32", device="cpu", target_device="cpu", fallbacks=["bfloat16"], budget_gb=64)
    assert (p.dtype, p.device, p.fallback, p.reason) == ("float32", "cpu", None, None)
    assert p.available_source == "params reference.memory_budget_gb" and p.describe() == "float32 on cpu"


def test_measured_host_memory_is_the_default(tiny):
    p = rm.plan(tiny, dtype="float32", device="cpu", target_device="cpu", fallbacks=[])
    avail, source = rm.host_available()
    assert p.available_source == source and p.available_bytes > 0 and p.fallback is None
    assert abs(p.available_bytes - avail) < 2 * GIB  # read moments apart


def test_bfloat16_fallback_when_float32_does_not_fit(tiny):
    n = rm.num_parameters(tiny)
    need32 = rm.need_bytes(n, "float32", rm._vocab_size(tiny), 2048)
    budget = (need32 - n) / GIB  # between the bf16 and the float32 need
    p = rm.plan(tiny, dtype="float32", device="cpu", target_device="cpu", fallbacks=["device", "bfloat16"],
                budget_gb=budget)
    assert (p.dtype, p.device, p.fallback) == ("bfloat16", "cpu", "bfloat16")
    assert "float32 on cpu needs" in p.reason and "GiB available" in p.reason
    assert p.describe().startswith("bfloat16 on cpu (fallback 'bfloat16': float32 on cpu needs")


def test_nothing_fits_is_one_line_with_the_figures(tiny):
    with pytest.raises(rm.ReferenceDoesNotFit) as exc:
        rm.plan(tiny, dtype="float32", device="cpu", target_device="cpu", fallbacks=["device", "bfloat16"],
                budget_gb=0.01)
    msg = str(exc.value)
    assert "\n" not in msg
    assert "float32 on cpu needs" in msg and "0.01 GiB available" in msg
    assert "fallback 'device' does not apply" in msg  # a CPU target has no accelerator to move to
    assert "fallback 'bfloat16' (bfloat16 on cpu) needs" in msg and "allowed fallbacks: offload, bfloat16, device" in msg


def test_device_fallback_reads_the_device_and_says_so_when_it_cannot(tiny):
    # an npu target on this host: the device's free memory is unreadable (no torch_npu), which is
    # "unknown", not zero: the plan goes ahead on the device and says where the figure came from
    p = rm.plan(tiny, dtype="float32", device="cpu", target_device="npu", fallbacks=["device"], budget_gb=None,
                max_tokens=10**9)  # a need no host has: float32 on cpu cannot fit
    assert (p.dtype, p.device, p.fallback) == ("float32", "npu", "device")
    assert p.available_bytes is None and "unreadable" in p.available_source


def test_section_reference_loads_as_planned_and_records_the_plan(tmp_path, tiny):
    n = rm.num_parameters(tiny)
    budget = (rm.need_bytes(n, "float32", rm._vocab_size(tiny), 512) - n) / GIB
    params = tmp_path / "p.yaml"
    params.write_text(f"model: {{id: builtin:tiny-qwen2-untrained, name: t}}\nreference: {{memory_budget_gb: {budget}}}\n",
                      encoding="utf-8")
    run = context.open_section("precision", params, tmp_path / "run")
    eng = run.reference("reference", device="cpu", dtype="float32", max_tokens=512)
    try:
        assert eng.info()["dtype"] == "bfloat16" and str(next(eng.model.parameters()).dtype) == "torch.bfloat16"
        assert eng.plan.fallback == "bfloat16"
    finally:
        eng.close()
    start = run.engine_starts[-1]
    assert start["engine"] == "hf" and start["reference_plan"]["fallback"] == "bfloat16"
    assert start["reference_plan"]["described"].startswith("bfloat16 on cpu (fallback")
    rec = run.finish()
    assert records.validate_record(rec) == []


def test_params_refuse_an_unknown_fallback():
    from ascendeval import config

    with pytest.raises(config.ConfigError) as exc:
        config.parse({"model": {"id": "x"}, "reference": {"fallback": ["int8"]}})
    assert "reference.fallback" in str(exc.value) and "bfloat16" in str(exc.value) and "offload" in str(exc.value)
    one = config.parse({"model": {"id": "x"}, "reference": {"fallback": "offload"}})
    assert one.reference.fallback == ["offload"]  # one fallback may be written without a list


def test_device_fallback_does_not_apply_beside_a_target_starting_on_that_device(tiny):
    # precision keeps the reference loaded while the target's engine starts on its accelerator
    with pytest.raises(rm.ReferenceDoesNotFit) as exc:
        rm.plan(tiny, dtype="float32", device="cpu", target_device="npu", fallbacks=["device"], budget_gb=0.01,
                alongside_target=True)
    assert "fallback 'device' does not apply (the target's engine shares that device" in str(exc.value)


def _tree(root, files):
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


def test_cgroup_v2_limit_counts_without_the_inactive_page_cache(tmp_path):
    proc = tmp_path / "cgroup"
    proc.write_text("0::/pod/job\n")
    _tree(tmp_path / "fs", {"pod/job/memory.max": f"{8 * GIB}\n", "pod/job/memory.current": f"{5 * GIB}\n",
                            "pod/job/memory.stat": f"anon {3 * GIB}\ninactive_file {2 * GIB}\n"})
    room, source = rm.cgroup_headroom(proc, tmp_path / "fs")
    assert room == 5 * GIB and "memory.max" in source  # 8 - (5 - 2)


def test_cgroup_v1_limit_and_an_unlimited_group(tmp_path):
    proc = tmp_path / "cgroup"
    proc.write_text("4:memory:/process_api/x\n3:cpuset:/\n0::/\n")
    _tree(tmp_path / "fs", {"memory/process_api/x/memory.limit_in_bytes": f"{32 * GIB}\n",
                            "memory/process_api/x/memory.usage_in_bytes": f"{30 * GIB}\n",
                            "memory/process_api/x/memory.stat": f"cache {9 * GIB}\ntotal_inactive_file {6 * GIB}\n"})
    room, source = rm.cgroup_headroom(proc, tmp_path / "fs")
    assert room == 8 * GIB and "memory.limit_in_bytes" in source
    (tmp_path / "fs/memory/process_api/x/memory.limit_in_bytes").write_text("9223372036854771712\n")
    assert rm.cgroup_headroom(proc, tmp_path / "fs") is None  # v1's "no limit"


def test_the_targets_memory_is_kept_free_beside_it(tiny):
    n = rm.num_parameters(tiny)
    need32 = rm.need_bytes(n, "float32", rm._vocab_size(tiny), 512)
    assert 2 * n > 12 << 20  # bfloat16 saves more than 12 MiB here
    budget = (need32 + (4 << 20)) / GIB  # float32 fits alone, not beside a 16 MiB target
    alone = rm.plan(tiny, dtype="float32", device="cpu", target_device="cpu", fallbacks=["bfloat16"],
                    budget_gb=budget, max_tokens=512)
    beside = rm.plan(tiny, dtype="float32", device="cpu", target_device="cpu", fallbacks=["bfloat16"],
                     budget_gb=budget, max_tokens=512, alongside_target=True, target_bytes=16 << 20)
    assert alone.dtype == "float32" and beside.dtype == "bfloat16"
    assert "kept for the target's engine" in beside.available_source
    # a budget below the target's own memory leaves nothing: 0 available, never a negative figure
    with pytest.raises(rm.ReferenceDoesNotFit) as exc:
        rm.plan(tiny, dtype="float32", device="cpu", target_device="cpu", fallbacks=["bfloat16"],
                budget_gb=0.01, max_tokens=512, alongside_target=True, target_bytes=1 << 30)
    assert "0.00 GiB available" in str(exc.value) and "-" not in str(exc.value).split("GiB available")[0][-8:]


def test_weights_without_a_parameter_count_load_as_configured_and_say_so(tmp_path, tiny):
    import shutil

    d = tmp_path / "m"
    d.mkdir()
    shutil.copy(tiny / "config.json", d / "config.json")
    p = rm.plan(d, dtype="float32", device="cpu", target_device="cpu", fallbacks=["bfloat16"], budget_gb=0.001)
    assert p.dtype == "float32" and p.need_bytes is None and "memory not checked" in p.describe()


def _between_offload_and_float32(tiny, max_tokens=512):
    """A budget float32 does not fit and the offload floor (two decoder layers or the embedding,
    logits, margin) does, with room for a few layers in memory."""
    n, vocab = rm.num_parameters(tiny), rm._vocab_size(tiny)
    floor = rm.need_bytes(rm.OFFLOAD_RESIDENT_MODULES * rm.largest_module_parameters(tiny), "float32", vocab,
                          max_tokens)
    need32 = rm.need_bytes(n, "float32", vocab, max_tokens)
    assert floor < need32
    return (floor + need32) / 2 / GIB


def test_largest_module_is_a_decoder_layer_or_the_embedding(tiny):
    import json

    cfg = json.loads((tiny / "config.json").read_text())
    h, inter, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    kv = cfg["num_key_value_heads"] * h // cfg["num_attention_heads"]
    layer = h * h + 2 * h * kv + h * h + 3 * h * inter + 2 * h + (h + 2 * kv)  # attn, mlp, norms, qkv bias
    assert rm.largest_module_parameters(tiny) == max(layer, v * h)


def test_offload_keeps_float32_on_the_host_and_streams_the_rest(tiny):
    budget = _between_offload_and_float32(tiny)
    p = rm.plan(tiny, dtype="float32", device="cpu", target_device="cpu", fallbacks=["offload", "bfloat16"],
                budget_gb=budget, max_tokens=512)
    assert (p.dtype, p.device, p.fallback) == ("float32", "cpu", "offload")
    n = rm.num_parameters(tiny)
    overhead = rm.need_bytes(0, "float32", rm._vocab_size(tiny), 512)
    assert p.offload_memory_bytes == int(budget * GIB) - overhead < 4 * n  # part of the weights, not all
    assert p.describe().startswith("float32 on cpu, weights beyond ") and "streamed from disk" in p.describe()
    assert "fallback 'offload': float32 on cpu needs" in p.describe()


def test_offload_does_not_apply_off_the_host_below_its_floor_or_without_disk(tiny, monkeypatch):
    # a reference configured on an accelerator: offload streams host-CPU references only
    with pytest.raises(rm.ReferenceDoesNotFit) as exc:
        rm.plan(tiny, dtype="float32", device="npu", target_device="npu", fallbacks=["offload"], budget_gb=0.01)
    assert "fallback 'offload' does not apply (it streams a reference on the host CPU; this one is on npu)" \
        in str(exc.value)
    # a checkpoint without safetensors (a *.bin shard is read whole before offloading)
    import shutil
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        shutil.copy(tiny / "config.json", Path(d) / "config.json")
        (Path(d) / "pytorch_model.bin").write_bytes(b"\0" * (64 << 20))  # 32 M parameters at 2 bytes
        with pytest.raises(rm.ReferenceDoesNotFit) as exc:
            rm.plan(d, dtype="float32", device="cpu", target_device="cpu", fallbacks=["offload"], budget_gb=0.2)
    assert "fallback 'offload' does not apply (it streams safetensors weights; this checkpoint has none)" \
        in str(exc.value)
    # below the floor: the figures
    with pytest.raises(rm.ReferenceDoesNotFit) as exc:
        rm.plan(tiny, dtype="float32", device="cpu", target_device="cpu", fallbacks=["offload"], budget_gb=0.01)
    assert "fallback 'offload' (float32 on cpu, streamed from disk) needs" in str(exc.value)
    assert "GiB in memory, 0.01 GiB available" in str(exc.value)
    # a full disk: the spill does not fit the offload folder, and bfloat16 is taken next
    monkeypatch.setattr(rm, "disk_free", lambda path: 1024)
    p = rm.plan(tiny, dtype="float32", device="cpu", target_device="cpu", fallbacks=["offload", "bfloat16"],
                budget_gb=_between_offload_and_float32(tiny), max_tokens=512)
    assert p.fallback == "bfloat16"
    with pytest.raises(rm.ReferenceDoesNotFit) as exc:
        rm.plan(tiny, dtype="float32", device="cpu", target_device="cpu", fallbacks=["offload"],
                budget_gb=_between_offload_and_float32(tiny), max_tokens=512)
    assert "GiB of disk at" in str(exc.value) and "0.00 GiB free" in str(exc.value)


def test_offloaded_reference_computes_what_the_in_memory_one_does(tmp_path, tiny, monkeypatch):
    """A section's reference taking `offload` really streams (modules on disk, the model's
    parameters not all in memory), scores the same logits bit for bit as float32 in memory, and
    leaves no offload folder behind."""
    import torch

    from ascendeval.engines.hf_engine import HFEngine

    monkeypatch.setenv("ASCENDEVAL_CACHE_DIR", str(tmp_path / "cache"))
    params = tmp_path / "p.yaml"
    params.write_text(f"model: {{id: builtin:tiny-qwen2-untrained, name: t}}\n"
                      f"reference: {{memory_budget_gb: {_between_offload_and_float32(tiny)}}}\n", encoding="utf-8")
    run = context.open_section("precision", params, tmp_path / "run")
    eng = run.reference("reference", device="cpu", dtype="float32", max_tokens=512)
    plain = HFEngine(tiny, device="cpu", dtype="float32")
    try:
        assert eng.plan.fallback == "offload"
        placed = eng.info()["offloaded_modules"]
        assert placed.get("disk", 0) > 0, placed
        folder = eng._offload_folder
        assert folder.startswith(str(tmp_path / "cache" / "reference-offload"))
        ids = list(range(5, 60))
        got = eng.forward_logits(ids).logits
        want = plain.forward_logits(ids).logits
        assert got.dtype == torch.float32 and torch.equal(got, want)
        from ascendeval.engines import Sampling

        a = eng.generate(["The capital of France is"], Sampling(max_tokens=8))[0]
        b = plain.generate(["The capital of France is"], Sampling(max_tokens=8))[0]
        assert a.token_ids == b.token_ids and len(a.token_ids) == 8
    finally:
        eng.close()
        plain.close()
    assert not Path(folder).exists()
    start = run.engine_starts[-1]
    assert start["reference_plan"]["fallback"] == "offload" and start["overrides"]["device_map"] == "auto"
    rec = run.finish()
    assert records.validate_record(rec) == []
