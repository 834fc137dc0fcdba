"""One clean load point against a served model: what the serving sweep and the capacity search
both measure through.

Clean means nothing an earlier point did is timed in this one: the server's prefix cache is reset
where the server offers it (vLLM's /reset_prefix_cache, SGLang's /flush_cache), every point sends
fresh random prompts of exact length (token ids on the completions API; on the chat API text
re-tokenized to the length as vLLM's random dataset does), and the host is given a moment to go
quiet first. Each point also records the requested and actual input lengths, and the server's
CPU / memory (and device power, memory, utilisation where read) sampled while it ran.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ... import device as device_mod
from ... import loadgen
from ...token_prompts import TokenPrompts


@dataclass
class Measured:
    """One load run with what was sent and how the point was kept clean."""

    run: loadgen.LoadRun
    prompts: list[Any]  # the timed requests' prompts (ids, or text on the chat API)
    clean: dict[str, Any]  # prefix-cache reset, settle wait, input lengths requested vs actual
    telemetry: dict[str, Any] | None = None  # summary of the samples taken while the point ran
    samples: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Client:
    """The endpoint, tokenizer and serving params every point of one step is sent with."""

    ep: loadgen.Endpoint
    tok: Any
    conf: Any  # PerfServingConfig
    server_pid: int | None = None  # the server's API process on this host (telemetry); None: remote
    device_kind: str = "cpu"
    telemetry_interval_s: float | None = 0.5  # None: no sampling

    def prompts(self, n: int, seed: int) -> tuple[list[Any], list[int]]:
        """`n` fresh prompts of `conf.input_len` tokens and each one's length mismatch (0: exact)."""
        tp = TokenPrompts(self.tok, seed)
        if self.ep.api != "chat":
            return tp.many(n, self.conf.input_len), [0] * n  # ids are sent as they are: exact
        texts = [tp.text(self.tok, self.conf.input_len) for _ in range(n)]
        return [t for t, _ in texts], [m for _, m in texts]

    def measure(self, spec: loadgen.LoadSpec, n: int, seed: int, n_warm: int, as_load: bool = False,
                settle_max_s: float | None = None, reset_cache: bool = True) -> Measured:
        c = self.conf
        clean: dict[str, Any] = {"prefix_cache_reset": None, "prefix_cache_reset_note": None}
        if reset_cache and c.reset_prefix_cache:
            done, note = loadgen.reset_prefix_cache(self.ep.root, self.ep.api_key)
            clean.update(prefix_cache_reset=done, prefix_cache_reset_note=note)
        settle = c.settle_max_s if settle_max_s is None else settle_max_s
        waited, busy = device_mod.wait_for_quiet_host(settle) if settle else (None, None)
        clean.update(settle_wait_s=waited, host_cpu_busy_before=busy)
        prompts, mismatch = self.prompts(n + n_warm, seed)
        sampler = None
        if self.telemetry_interval_s:
            from ... import telemetry

            sampler = telemetry.Sampler(self.server_pid, self.device_kind, interval_s=self.telemetry_interval_s)
            sampler.start()
        try:
            lr = loadgen.run_load(self.ep, prompts[n_warm:], c.output_len, spec, prompt_tokens=[c.input_len] * n,
                                  warmup_requests=n_warm, warmup_prompts=prompts[:n_warm], warmup_as_load=as_load,
                                  warmup_max_tokens=c.warmup_output_len)
        finally:
            samples = sampler.stop() if sampler is not None else []
        actual = [r.usage_prompt_tokens for r in lr.results if r.success and r.usage_prompt_tokens is not None]
        clean.update(input_len_requested=c.input_len,
                     input_len_mismatch_count=sum(1 for m in mismatch[n_warm:] if m),
                     input_tokens_actual_min=min(actual) if actual else None,
                     input_tokens_actual_max=max(actual) if actual else None)
        tel = None
        if sampler is not None:
            ok = [r for r in lr.results if r.success]
            out_tokens = sum(r.output_tokens or 0 for r in ok) if all(r.output_tokens is not None for r in ok) else None
            t0 = min((r.start_s for r in lr.results), default=None)
            t1 = max((r.start_s + (r.e2el_s or 0.0) for r in ok), default=None)
            tel = sampler.summarise(out_tokens, t0, t1)
        return Measured(lr, prompts[n_warm:], clean, tel, samples)


def merge_telemetry(parts: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    """One point's telemetry over its repeats: means weighted by samples, maxima, energy summed
    (joules per token = total energy over total tokens, the tokens recovered from each repeat's
    own J/token), reasons from the first repeat that gives one."""
    parts = [p for p in parts if p]
    if not parts:
        return None
    n = [p["telemetry_samples"] for p in parts]
    out: dict[str, Any] = {"telemetry_samples": sum(n)}
    gaps = sorted(p["telemetry_interval_s"] for p in parts if p.get("telemetry_interval_s") is not None)
    out["telemetry_interval_s"] = gaps[len(gaps) // 2] if gaps else None
    for key in parts[0]:
        if key.endswith("_mean"):
            vals = [(p[key], w) for p, w in zip(parts, n) if p.get(key) is not None and w]
            out[key] = sum(v * w for v, w in vals) / sum(w for _, w in vals) if vals else None
        elif key.endswith("_max"):
            vals = [p[key] for p in parts if p.get(key) is not None]
            out[key] = max(vals) if vals else None
    energy = [p.get("device_energy_j") for p in parts]
    out["device_energy_j"] = sum(energy) if all(e is not None for e in energy) else None  # type: ignore[arg-type]
    windows = [p.get("device_energy_window_s") for p in parts]
    out["device_energy_window_s"] = sum(windows) if all(w is not None for w in windows) else None  # type: ignore[arg-type]
    jpt = [p.get("device_joules_per_output_token") for p in parts]
    if out["device_energy_j"] is not None and all(j for j in jpt):
        tokens = sum(e / j for e, j in zip(energy, jpt))  # type: ignore[operator]
        out["device_joules_per_output_token"] = out["device_energy_j"] / tokens
    else:
        out["device_joules_per_output_token"] = None
    for key in ("device_not_exercised", "device_not_exercised_zh", "joules_per_token_not_computed",
                "joules_per_token_not_computed_zh"):
        out[key] = next((p[key] for p in parts if p.get(key)), None)
    return out
