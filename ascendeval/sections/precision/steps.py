"""Precision section: the target against a float32 transformers reference, done properly.

Flow (notebook 03_precision calls these in order):

1. ``open_target_engine``: the engine from params (hf on any device/dtype, vllm, openai). A vllm
   target is read through the run's shared server when it has one (``target_via``): prompt
   logprobs, full-vocabulary logprobs and greedy continuations are all on vLLM's API, so the
   target's configuration is not started a second time.
2. ``run_reference``: transformers on ``reference_device``/``reference_dtype`` (float32 CPU by
   default) and its greedy continuation of every prompt. Its token sequence (prompt +
   continuation) is THE sequence both sides are scored on. The target proposes the continuations
   and one reference forward checks them; the reference generates only from where its own choice
   differs (``reference_continuations``), so they are its greedy ones without generating every
   token on a float32 model.
3. ``teacher_forced``: the target reads the reference's sequence, so position i means the same
   context on both sides even after the two would have diverged in free generation.
   hf targets give full logits (scope ``full_vocab``); vllm/openai give top-N
   ``prompt_logprobs`` only (scope ``target_returned``: see precision_metrics). Streams one prompt
   at a time and keeps per-position scalars and running sums only.
4. ``free_running``: greedy generation on the target from the same prompt ids (its proposals
   of step 2, not asked for again); agreement, first divergence, texts side by side from there.
5. ``full_vocab`` (vLLM targets, offline or served): every vocabulary entry's logprob for a bounded
   number of positions, so KL and the (centred) logits cosine are measured over the whole
   vocabulary there too. A server returns them when its max_logprobs covers the vocabulary (the
   shared server is started so: ``shared_server_overrides``).
6. ``verdict`` against params thresholds, ``record`` validates every value (cosine in [-1, 1],
   KL >= 0, rates in [0, 1]) before anything is saved.
7. The deployment matrix (``deployment.run_matrix``): the same comparison across deployment settings.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ... import paths
from ... import precision_metrics as pm
from ...errors import SectionSkipped

log = logging.getLogger(__name__)

PROMPTS_FILE = paths.PACKAGE_DIR / "data" / "precision_prompts.json"
FULL_VOCAB_PER_REQUEST = 8
HIDDEN_LAYER_NOTE = ("layer 0 = embedding output, layer i = output of decoder layer i as returned by transformers "
                     "(output_hidden_states); the last entry may already include the final norm")


# --------------------------------------------------------------------------- inputs


@dataclass
class Prompt:
    id: str
    kind: str
    text: str


def load_prompts(conf: Any) -> list[Prompt]:
    """Params prompts if given, else the shipped mixed English/Chinese/code/arithmetic set."""
    if conf.prompts:
        prompts = [Prompt(id=f"p{i}", kind="params", text=t) for i, t in enumerate(conf.prompts)]
    else:
        prompts = [Prompt(**p) for p in json.loads(PROMPTS_FILE.read_text(encoding="utf-8"))]
    if conf.max_prompts:
        prompts = prompts[: conf.max_prompts]
    if not prompts:
        raise ValueError("precision.prompts is empty; give at least one prompt or leave it null for the shipped set")
    return prompts


def model_path(cfg: Any) -> str:
    """Local folder of the params' model (models.resolve: built-ins, local paths, ModelScope)."""
    from ... import models

    return str(models.resolve(cfg.model).path)


def _hf_engine(path: str, device: str, dtype: str, trust_remote_code: bool) -> Any:
    from ...engines.hf_engine import HFEngine

    return HFEngine(path, device=device, dtype=dtype, trust_remote_code=trust_remote_code)


# --------------------------------------------------------------------------- reference


@dataclass
class RefSequence:
    prompt: Prompt
    prompt_ids: list[int]
    continuation_ids: list[int]
    continuation_text: str

    @property
    def ids(self) -> list[int]:
        return self.prompt_ids + self.continuation_ids


@dataclass
class Reference:
    engine: Any  # HFEngine: keeps the reference model for the teacher-forced pass
    sequences: list[RefSequence]
    device: str
    dtype: str
    load_s: float
    generate_s: float
    loaded_as: str | None = None  # reference_model.ReferencePlan.describe() when planned
    # how the continuations were obtained (see reference_continuations)
    continuations_from: str = "reference"  # "reference" | "target_verified"
    reference_generated_tokens: int | None = None
    target_tokens_verified: int | None = None
    # the target's greedy continuation of each prompt, when they were proposed by the target
    # (free_running reuses them: the same request would be sent again)
    target_continuations: list[list[int]] | None = None
    # reference logits of a sequence's last rows, by token ids: the teacher-forced step and the
    # deployment matrix read the same rows the continuation check computed (one forward each)
    _logits: dict[tuple[int, ...], Any] = field(default_factory=dict, repr=False)

    def logits(self, ids: list[int], keep: int) -> Any:
        """The reference's logits of the last `keep` positions of `ids` ([keep, V], float, cpu)."""
        got = self._logits.get(tuple(ids))
        if got is None or got.shape[0] < keep:
            got, _ = _forward(self.engine, ids, keep, False)
            self._logits[tuple(ids)] = got
        return got[-keep:]

    def info(self) -> dict[str, Any]:
        return {"engine": "hf", "device": self.device, "dtype": self.dtype, "loaded_as": self.loaded_as,
                "load_s": self.load_s,
                "generate_s": self.generate_s, "num_prompts": len(self.sequences),
                "num_continuation_tokens": sum(len(s.continuation_ids) for s in self.sequences),
                "num_sequence_tokens": sum(len(s.ids) for s in self.sequences),
                "continuations_from": self.continuations_from,
                "reference_generated_tokens": self.reference_generated_tokens,
                "target_tokens_verified": self.target_tokens_verified}

    def table(self) -> Any:
        import pandas as pd

        return pd.DataFrame([{"prompt_id": s.prompt.id, "kind": s.prompt.kind, "prompt": s.prompt.text,
                              "prompt_tokens": len(s.prompt_ids), "continuation_tokens": len(s.continuation_ids),
                              "reference_continuation": s.continuation_text} for s in self.sequences])


def run_reference(cfg: Any, conf: Any, path: str | None = None, prompts: list[Prompt] | None = None,
                  run: Any = None, target: Any = None) -> Reference:
    """Load the reference model and its greedy continuation of every prompt (max_new_tokens).
    With `target`, the target proposes them and the reference checks them teacher-forced, and
    generates only where it would have chosen otherwise (reference_continuations): the same
    continuations, one forward each instead of token-by-token generation. With `run` (a
    SectionRun) the engine is started through it, so its start time lands in engine_starts."""
    from ...engines.base import Sampling

    path = path or model_path(cfg)
    prompts = prompts if prompts is not None else load_prompts(conf)
    t0 = time.perf_counter()
    if run is not None:
        # planned against the memory it may use; a fallback (bfloat16, on the device) is recorded
        longest = max((len(p.text) for p in prompts), default=0) + conf.max_new_tokens  # chars >= tokens
        # the target starts while it is loaded: on the host, its weights and KV cache stay free
        target_bytes = 0
        if cfg.target.device == "cpu" and cfg.target.engine in ("vllm", "hf"):
            from ...reference_model import DTYPE_BYTES, num_parameters

            kv = (cfg.target.kv_cache_memory_bytes or 0) if cfg.target.engine == "vllm" else 0
            target_bytes = num_parameters(path) * DTYPE_BYTES.get(cfg.model.dtype, 4) + kv
        eng = run.reference("reference", device=conf.reference_device, dtype=conf.reference_dtype,
                            max_tokens=min(longest, cfg.model.max_model_len or longest),
                            alongside_target=True, target_bytes=target_bytes)
    else:
        eng = _hf_engine(path, conf.reference_device, conf.reference_dtype, cfg.model.trust_remote_code)
    load_s = time.perf_counter() - t0
    tok = eng.tokenizer()
    t1 = time.perf_counter()
    prompt_ids = []
    for p in prompts:
        ids = list(tok(p.text, add_special_tokens=True)["input_ids"])
        if not ids:
            raise ValueError(f"prompt {p.id!r} tokenizes to nothing")
        prompt_ids.append(ids)
    plan = getattr(eng, "plan", None)
    ref = Reference(engine=eng, sequences=[], device=plan.device if plan else conf.reference_device,
                    dtype=plan.dtype if plan else conf.reference_dtype, load_s=load_s, generate_s=0.0,
                    loaded_as=plan.describe() if plan else None)
    if target is not None:
        ref.sequences = reference_continuations(ref, target, prompts, prompt_ids, conf)
    else:
        for p, ids in zip(prompts, prompt_ids):
            g = eng.generate([ids], Sampling(max_tokens=conf.max_new_tokens, temperature=0.0))[0]
            ref.sequences.append(RefSequence(prompt=p, prompt_ids=ids, continuation_ids=list(g.token_ids),
                                             continuation_text=g.text))
        ref.reference_generated_tokens = sum(len(s.continuation_ids) for s in ref.sequences)
    ref.generate_s = time.perf_counter() - t1
    return ref


def _eos_ids(engine: Any) -> set[int]:
    eos = engine.model.generation_config.eos_token_id
    return set(eos if isinstance(eos, list) else [eos] if eos is not None else [])


def reference_continuations(ref: Reference, target: Any, prompts: list[Prompt], prompt_ids: list[list[int]],
                            conf: Any) -> list[RefSequence]:
    """The reference's greedy continuations, proposed by the target and checked by the reference.

    The target continues every prompt greedily (one batched call, or requests to its server).
    One reference forward over prompt + proposal gives the reference's own choice at each
    position: up to the first position where it differs, greedy generation on the reference
    would have produced exactly the proposal (same context, same choice). From there (or past a
    proposal that ended before the reference would stop) the reference generates the rest
    itself. The result is the reference's greedy continuation, as generating it token by token
    gives, at the cost of one forward where the two agree; those rows are kept for the
    teacher-forced step. A target that fails here leaves the reference to generate alone."""
    from ...engines.base import Sampling

    eng, n_new = ref.engine, conf.max_new_tokens
    tok = eng.tokenizer()
    eos = _eos_ids(eng)
    try:
        proposals = [list(g.token_ids)[:n_new] for g in
                     target.generate(prompt_ids, Sampling(max_tokens=n_new, temperature=0.0))]
        ref.target_continuations = proposals
    except Exception as exc:  # noqa: BLE001 - the reference then generates every token itself
        log.warning("the target did not propose continuations (%s: %s); the reference generates them",
                    type(exc).__name__, exc)
        proposals = [[] for _ in prompt_ids]
    seqs: list[RefSequence] = []
    generated = verified = 0
    for p, ids, prop in zip(prompts, prompt_ids, proposals):
        agree = 0
        if prop:
            full = ids + prop
            # rows predicting each proposed token, plus the row after it; at least the rows the
            # teacher-forced window compares (the cached forward then serves that step too)
            start, end = _window(RefSequence(p, ids, prop, ""), conf)
            keep = max(len(prop) + 1, end - start + 1)
            choice = ref.logits(full, keep)[-(len(prop) + 1):].argmax(-1).tolist()
            while agree < len(prop) and choice[agree] == prop[agree]:
                agree += 1
        cont = prop[:agree]
        verified += agree
        finished = len(cont) >= n_new or (cont and cont[-1] in eos)
        if not finished:  # the reference diverges here, or goes on past a shorter proposal
            g = eng.generate([ids + cont], Sampling(max_tokens=n_new - len(cont), temperature=0.0))[0]
            cont = cont + list(g.token_ids)
            generated += len(g.token_ids)
        text = tok.decode([t for t in cont if t not in eos], skip_special_tokens=True)
        seqs.append(RefSequence(prompt=p, prompt_ids=ids, continuation_ids=cont, continuation_text=text))
    ref.continuations_from = "target_verified" if ref.target_continuations is not None else "reference"
    ref.reference_generated_tokens, ref.target_tokens_verified = generated, verified
    return seqs


def open_target(cfg: Any, path: str | None = None) -> Any:
    """The engine under test, as params describe it (engine, device, model dtype), outside a section
    run (the benchmarks and device check; the notebook opens it with `run.engine("target")`)."""
    from ... import engines

    return engines.create(cfg, path or model_path(cfg))


def model_vocab_size(model_path: str | Path) -> int | None:
    """The vocabulary size in the model's config.json (a multimodal model's text_config); None
    when the folder has no such entry."""
    try:
        conf = json.loads((Path(model_path) / "config.json").read_text())
    except (OSError, ValueError):
        return None
    v = conf.get("vocab_size") or (conf.get("text_config") or {}).get("vocab_size")
    return int(v) if v else None


def wants_full_vocab(cfg: Any) -> bool:
    conf = cfg.sections.precision
    return bool(conf.enabled and conf.deployment.full_vocab_positions)


def shared_server_overrides(cfg: Any, model_path: Any) -> dict[str, Any]:
    """The run's shared server returns every vocabulary entry's logprob when asked (vLLM's
    max_logprobs: a cap on requests, no effect on any figure), so the full-vocabulary step reads
    the served target and no offline engine of the same configuration starts for it."""
    vocab = model_vocab_size(model_path) if wants_full_vocab(cfg) else None
    return {"max_logprobs": vocab} if vocab else {}


def target_served(run: Any) -> bool:
    """A vllm target read through the run's shared server (target_via auto with one, or server)."""
    via = run.conf.target_via
    if run.cfg.target.engine != "vllm" or via == "offline":
        return False
    return via == "server" or run.shared_server_url() is not None


def open_target_engine(run: Any, reference: Reference | None = None) -> Any:
    """The target engine as params describe it. A vllm target is read through the run's shared
    server when it has one (no second start of the same configuration); otherwise an offline
    engine that may return every vocabulary entry's logprob (max_logprobs = vocab size, from the
    model's config; no effect on numerics) so the full-vocabulary step can run on it. Opened
    before the reference's continuations: the target proposes them."""
    config = getattr(getattr(getattr(reference, "engine", None), "model", None), "config", None)
    vocab = int(config.vocab_size) if config is not None else model_vocab_size(run.model().path)
    full = bool(run.conf.deployment.full_vocab_positions and vocab)
    if target_served(run):
        stack = contextlib.ExitStack()
        # the shared server (started with max_logprobs for this step), else one served here with it
        over = {"max_logprobs": vocab} if full and not run.shared_server_url() and not run.cfg.server.url else {}
        url = stack.enter_context(run.served("target", **over))
        try:
            eng = run.engine("target", engine="openai", base_url=url, concurrency=run.conf.server_concurrency)
        except BaseException:
            stack.close()
            raise
        eng.owned_server = stack  # closing the engine leaves the block (a server served here stops)
        return eng
    over: dict[str, Any] = {}
    if run.cfg.target.engine == "vllm" and full:
        over["max_logprobs"] = vocab
    return run.engine("target", **over)


def _has_logits(target: Any) -> bool:
    """hf-style targets expose the model: full logits and hidden states are available."""
    return getattr(target, "model", None) is not None and hasattr(target, "device")


# --------------------------------------------------------------------------- teacher forced


def _window(seq: RefSequence, conf: Any) -> tuple[int, int]:
    """[start, end) of compared positions; position j predicts token j+1 of the sequence."""
    L = len(seq.ids)
    end = L - 1
    start = 0 if conf.positions == "all" else max(0, len(seq.prompt_ids) - 1)
    start = max(start, end - conf.max_positions)
    return start, end


def _forward(engine: Any, ids: list[int], keep: int, hidden: bool) -> tuple[Any, list[Any] | None]:
    """Logits of the last `keep` positions ([keep, V], float on cpu) and hidden states of the
    same positions (one [keep, H] tensor per layer), one forward pass. logits_to_keep avoids
    materialising vocab x full-length logits."""
    import torch

    x = torch.tensor([ids], device=engine.device)
    with torch.inference_mode():
        try:
            out = engine.model(input_ids=x, logits_to_keep=keep, output_hidden_states=hidden)
        except TypeError:  # architectures without logits_to_keep
            out = engine.model(input_ids=x, output_hidden_states=hidden)
        logits = out.logits[0, -keep:].float().cpu()
        hs = [h[0, -keep:].float().cpu() for h in out.hidden_states] if hidden else None
    return logits, hs


@dataclass
class TeacherForcedResult:
    scope: str  # precision_metrics.SCOPE_FULL | SCOPE_RETURNED
    rows: list[dict[str, Any]]  # one per compared position
    per_prompt: list[dict[str, Any]]
    summary: dict[str, Any]
    hidden_layers: list[dict[str, Any]]  # empty unless hf target and hidden_states on
    wall_s: float

    def table(self) -> Any:
        import pandas as pd

        return pd.DataFrame(self.per_prompt)

    def summary_table(self) -> Any:
        import pandas as pd

        return pd.DataFrame([{"metric": k, "value": v} for k, v in self.summary.items()])

    def hidden_table(self) -> Any:
        import pandas as pd

        return pd.DataFrame(self.hidden_layers)


def _clean(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if hasattr(v, "item"):
        return _clean(v.item())
    return v


def teacher_forced(reference: Reference, target: Any, conf: Any) -> TeacherForcedResult:
    """Score the target on the reference's sequences; see module docstring."""
    from ...engines.base import Sampling

    # a missing input is the earlier step's result (skipped or failed there), not a new failure
    if reference is None:
        raise SectionSkipped("needs the reference sequences (step 'reference' produced none)",
                             zh="需要参考基线的序列（步骤 'reference' 未产出任何序列）")
    if target is None:
        raise SectionSkipped("needs the target engine (step 'target' did not open one)",
                             zh="需要被测目标的引擎（步骤 'target' 未打开引擎）")
    t0 = time.perf_counter()
    full = _has_logits(target)
    scope = pm.SCOPE_FULL if full else pm.SCOPE_RETURNED
    want_hidden = full and conf.hidden_states
    acc = pm.HiddenStateAccumulator()
    returned: list[Any] = []
    if not full:
        # one batched request: the target reads each reference sequence and returns top-N
        # logprobs per position (vLLM prompt_logprobs); max_tokens=1 is the minimum it allows
        from ...engines.openai_engine import PromptLogprobsUnsupported

        try:
            gens = target.generate([s.ids for s in reference.sequences],
                                   Sampling(max_tokens=1, temperature=0.0, prompt_logprobs=conf.target_logprobs,
                                            detokenize=False))
        except PromptLogprobsUnsupported as exc:  # a server that is not vLLM: greedy agreement still measures
            raise SectionSkipped(f"{exc}; the free-running greedy comparison measures this target instead",
                                 zh=f"该服务不提供 prompt logprobs（vLLM 的 completions 扩展）：{exc}；"
                                 "改由自由生成（贪心）对比衡量此目标") from exc
        for s, g in zip(reference.sequences, gens):
            if not g.prompt_logprobs:
                raise RuntimeError(f"target engine {getattr(target, 'name', '?')!r} returned no prompt logprobs: "
                                   "teacher-forced comparison needs prompt_logprobs support")
            if list(g.prompt_token_ids) != s.ids or len(g.prompt_logprobs) != len(s.ids):
                raise RuntimeError(f"prompt {s.prompt.id}: target saw {len(g.prompt_token_ids)} tokens, reference "
                                   f"sequence has {len(s.ids)}: the comparison would be misaligned")
            returned.append(g.prompt_logprobs)
    rows: list[dict[str, Any]] = []
    per_prompt: list[dict[str, Any]] = []
    for si, s in enumerate(reference.sequences):
        start, end = _window(s, conf)
        n = end - start
        if n <= 0:
            continue
        keep = n + 1  # logits of positions start..L-1; the last one predicts past the sequence
        if want_hidden:
            ref_logits, ref_hs = _forward(reference.engine, s.ids, keep, want_hidden)
        else:
            ref_logits, ref_hs = reference.logits(s.ids, keep), None
        ref_logits = ref_logits[:n]
        next_tokens = s.ids[start + 1: end + 1]
        if full:
            tgt_logits, tgt_hs = _forward(target, s.ids, keep, want_hidden)
            m = pm.full_vocab_metrics(ref_logits, tgt_logits[:n], next_tokens, k=conf.top_k)
            prompt_rows = [{key: _clean(m[key][i]) for key in m} for i in range(n)]
            if want_hidden:
                acc.add(ref_hs, tgt_hs)
            del tgt_logits, tgt_hs
        else:
            prompt_rows = []
            for i in range(n):
                entries = returned[si][start + i + 1]
                if entries is None:
                    raise RuntimeError(f"prompt {s.prompt.id}: no target logprobs at position {start + i}")
                prompt_rows.append({k: _clean(v) for k, v in pm.returned_entries_metrics(
                    ref_logits[i], entries, next_tokens[i], k=conf.top_k).items()})
        for i, r in enumerate(prompt_rows):
            r.update(prompt_id=s.prompt.id, position=start + i, next_token=next_tokens[i],
                     in_continuation=start + i >= len(s.prompt_ids) - 1)
        rows.extend(prompt_rows)
        ps = pm.summarize_positions(prompt_rows, scope)
        per_prompt.append({"prompt_id": s.prompt.id, "kind": s.prompt.kind, **{k: v for k, v in ps.items() if k != "scope"}})
        del ref_logits, ref_hs
    summary = pm.summarize_positions(rows, scope)
    summary["num_prompts"] = len(per_prompt)
    if scope == pm.SCOPE_RETURNED:
        summary["target_logprobs_requested"] = conf.target_logprobs
    return TeacherForcedResult(scope=scope, rows=rows, per_prompt=per_prompt, summary=summary,
                               hidden_layers=acc.rows(), wall_s=time.perf_counter() - t0)


# --------------------------------------------------------------------------- full vocabulary (vLLM)


def full_vocab_rows(ref_logits: Any, target_logprobs: Any) -> list[dict[str, Any]]:
    """Per position: centred cosine, KL(ref || target) and top-1 match of the reference's [P, V]
    logits against the target's [P, V] full-vocabulary logprobs.

    vLLM's logprobs are a float32 log_softmax: over 151,936 tokens their mass is 1 only to ~1e-7,
    enough to make the KL of two near-equal distributions negative (-9.4e-8 measured on the
    Qwen2-0.5B shape). Renormalised in float64, KL is >= 0 up to float64 rounding (what is left
    is clipped, a real excursion raises), and the centred cosine is unchanged (a constant shift
    per position)."""
    import torch

    r = torch.as_tensor(ref_logits).double()
    t = torch.as_tensor(target_logprobs).double()
    t = t - torch.logsumexp(t, -1, keepdim=True)
    r_lp = torch.log_softmax(r, -1)
    rc, tc = r_lp - r_lp.mean(-1, keepdim=True), t - t.mean(-1, keepdim=True)
    cos = (rc * tc).sum(-1) / (rc.norm(dim=-1) * tc.norm(dim=-1))
    kl = pm._clip_rounding((r_lp.exp() * (r_lp - t)).sum(-1).numpy(), 0.0, float("inf"), "full_vocab kl")
    return [{"cosine": float(cos[i]), "kl": float(kl[i]), "top1_match": bool(int(r[i].argmax()) == int(t[i].argmax()))}
            for i in range(r.shape[0])]


def _full_vocab_entries(target: Any, ids: list[int], vocab: int) -> list[Any]:
    """Every vocabulary entry's prompt logprob at each position of `ids` ({token id: logprob} per
    position, None at the first), from an offline vLLM engine or a served one (vLLM's
    prompt_logprobs extension; the server's max_logprobs must cover the vocabulary)."""
    from ...engines import vllm_compat
    from ...engines.base import Sampling
    from ...engines.openai_engine import PromptLogprobsUnsupported

    if getattr(target, "llm", None) is not None:
        sp = vllm_compat.sampling_params(max_tokens=1, temperature=0.0, prompt_logprobs=vocab, detokenize=False)
        out = target.llm.generate([{"prompt_token_ids": ids}], sp, use_tqdm=False)[0]
        return [None if e is None else {t: lp.logprob for t, lp in e.items()} for e in out.prompt_logprobs]
    try:
        g = target.generate([ids], Sampling(max_tokens=1, temperature=0.0, prompt_logprobs=vocab, detokenize=False))[0]
    except PromptLogprobsUnsupported as exc:  # a server that is not vLLM
        raise SectionSkipped(f"{exc}: the full-vocabulary comparison needs vLLM's prompt logprobs",
                             zh=f"{exc}：全词表比较需要 vLLM 的 prompt logprobs") from exc
    except RuntimeError as exc:
        if "HTTP 400" in str(exc) and "logprobs" in str(exc):
            raise SectionSkipped(
                f"the server returns fewer logprobs per position than the vocabulary ({vocab}): start it with "
                f"--max-logprobs {vocab} (the run's shared server is); it said: {str(exc)[:160]}",
                zh=f"该服务每个位置返回的 logprobs 少于词表大小（{vocab}）：需以 --max-logprobs {vocab} 启动"
                   "（本次运行的共享服务即如此启动）") from exc
        raise
    return list(g.prompt_logprobs or [])


def full_vocab(reference: Reference | None, target: Any, conf: Any) -> dict[str, Any]:
    """The target's full-vocabulary prompt logprobs for a bounded number of positions, against
    the reference's full logits: KL and centred cosine over the whole vocabulary (logprobs are
    logits minus one constant per position, so the centred cosine is exactly that of the
    logits). One request per sequence, its first FULL_VOCAB_PER_REQUEST positions (so at most
    that many x the number of sequences); the entries become float32 rows at once, so memory is
    positions x vocab x 4 bytes. The target is an offline vLLM engine or a served vLLM model."""
    import numpy as np

    from ...engines import vllm_compat

    if not conf.deployment.full_vocab_positions:
        raise SectionSkipped("precision.deployment.full_vocab_positions is 0", zh="precision.deployment.full_vocab_positions 为 0")
    served = getattr(target, "name", None) == "openai"
    if reference is None or (getattr(target, "llm", None) is None and not served):
        raise SectionSkipped("needs the reference and a vLLM target, offline or served (hf targets are compared "
                             "over the full vocabulary in the teacher-forced step already)",
                             zh="需要参考模型和 vLLM 目标（离线或服务）（hf 目标已在 teacher-forced 步骤中做全词表比较）")
    budget = conf.deployment.full_vocab_positions
    if served:  # the width of the reference's logits: the server returns that many entries per position
        vocab = int(reference.engine.model.get_output_embeddings().weight.shape[0])
    else:
        vocab = int(vllm_compat.vllm_config(target.llm).model_config.get_vocab_size())
    t0 = time.perf_counter()
    rows: list[dict[str, float]] = []
    peak_bytes = 0
    for s in reference.sequences:
        if len(rows) >= budget:
            break
        # at most FULL_VOCAB_PER_REQUEST positions per request: vLLM hands back one Python object per
        # (position, token), ~100 bytes each (8 x 151,936 tokens: ~120 MB at once for a Qwen
        # vocabulary; a server's JSON answer is about as large)
        take = min(budget - len(rows), FULL_VOCAB_PER_REQUEST, len(s.ids) - 1)
        ids = s.ids[: take + 1]
        entries = _full_vocab_entries(target, ids, vocab)
        tgt = np.full((take, vocab), -np.inf, dtype=np.float32)
        for i in range(take):
            entry = entries[i + 1]
            if entry is None or len(entry) < vocab:
                raise RuntimeError(f"prompt {s.prompt.id}: {len(entry or {})} logprobs at position {i + 1}, "
                                   f"expected the whole vocabulary ({vocab})")
            tgt[i, list(entry.keys())] = list(entry.values())
        del entries
        peak_bytes = max(peak_bytes, tgt.nbytes)
        ref_logits, _ = _forward(reference.engine, ids, take + 1, False)
        rows.extend(full_vocab_rows(ref_logits[:take], tgt))
    n = len(rows)
    cos_v = [r["cosine"] for r in rows]
    result = {
        "num_positions": n, "vocab_size": vocab, "wall_s": time.perf_counter() - t0, "peak_bytes": peak_bytes,
        "mean_cosine_centered": float(np.mean(cos_v)) if n else None,
        "min_cosine_centered": float(np.min(cos_v)) if n else None,
        "mean_kl": float(np.mean([r["kl"] for r in rows])) if n else None,
        "max_kl": float(np.max([r["kl"] for r in rows])) if n else None,
        "top1_agreement": sum(r["top1_match"] for r in rows) / n if n else None,
    }
    pm.validate_ranges(result, "full_vocab")
    return result


# --------------------------------------------------------------------------- free running


@dataclass
class FreeRunResult:
    rows: list[dict[str, Any]]
    summary: dict[str, Any]

    def table(self) -> Any:
        import pandas as pd

        cols = ["prompt_id", "token_agreement", "first_divergence", "common_text", "reference_from_divergence",
                "target_from_divergence"]
        return pd.DataFrame([{c: r[c] for c in cols} for r in self.rows])


def free_running(reference: Reference, target: Any, conf: Any) -> FreeRunResult:
    """Greedy continuation on the target from the reference's prompt ids; compare token by token."""
    from ...engines.base import Sampling

    if not conf.free_running:
        raise SectionSkipped("free_running is off in params", zh="参数文件中已关闭 free_running")
    if reference is None or target is None:
        raise SectionSkipped("needs the reference sequences and the target engine (steps 'reference', 'target')",
                             zh="需要参考基线的序列和被测目标的引擎（步骤 'reference'、'target'）")
    tok = reference.engine.tokenizer()
    if reference.target_continuations is not None:  # the same greedy request, already answered
        outs = reference.target_continuations
    else:
        outs = [list(g.token_ids) for g in target.generate([s.prompt_ids for s in reference.sequences],
                                                           Sampling(max_tokens=conf.max_new_tokens, temperature=0.0))]
    rows = []
    agree = compared = prefix = 0
    for s, out in zip(reference.sequences, outs):
        c = pm.compare_continuations(s.continuation_ids, out)
        d = c.first_divergence
        agree += c.num_agree
        compared += c.num_compared
        prefix += c.prefix_match
        rows.append({
            "prompt_id": s.prompt.id, "kind": s.prompt.kind, "reference_tokens": len(s.continuation_ids),
            "target_tokens": len(out), "token_agreement": c.token_agreement, "prefix_match": c.prefix_match,
            "first_divergence": d,
            "common_text": tok.decode(s.continuation_ids[: c.prefix_match], skip_special_tokens=True),
            "reference_from_divergence": "" if d is None else tok.decode(s.continuation_ids[d:], skip_special_tokens=True),
            "target_from_divergence": "" if d is None else tok.decode(out[d:], skip_special_tokens=True),
            "reference_ids": s.continuation_ids, "target_ids": list(out),
        })
    summary = {
        "num_prompts": len(rows),
        "num_prompts_diverged": sum(r["first_divergence"] is not None for r in rows),
        "free_token_agreement": agree / compared if compared else None,
        "free_prefix_agreement": prefix / compared if compared else None,
        "num_compared_tokens": compared,
    }
    return FreeRunResult(rows=rows, summary=summary)


# --------------------------------------------------------------------------- verdict / record


@dataclass
class Verdict:
    passed: bool | None
    checks: list[pm.Check] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "checks": [c.as_dict() for c in self.checks]}

    def table(self) -> Any:
        import pandas as pd

        rows = [{**c.as_dict(), "result": {True: "pass", False: "FAIL", None: "not measured"}[c.passed]}
                for c in self.checks]
        return pd.DataFrame(rows, columns=["metric", "measured", "op", "threshold", "result"])


def verdict(tf: TeacherForcedResult | None, fr: FreeRunResult | None, conf: Any,
            fv: dict[str, Any] | None = None) -> Verdict:
    """Each threshold that is set becomes one check; unmeasured metrics are 'not measured'. On a
    top-N target the cosine limit applies to the full-vocabulary step's centred cosine (`fv`)."""
    th = conf.thresholds
    s = tf.summary if tf else {}
    full = tf is not None and tf.scope == pm.SCOPE_FULL
    checks: list[pm.Check] = []
    if tf is not None:
        checks.append(pm.check("num_nonfinite_positions", s.get("num_nonfinite_positions"), "==", 0))
    if th.min_top1_agreement is not None:
        checks.append(pm.check("top1_agreement", s.get("top1_agreement"), ">=", th.min_top1_agreement))
    if th.min_topk_overlap is not None:
        checks.append(pm.check("topk_overlap", s.get("topk_overlap"), ">=", th.min_topk_overlap))
    if th.min_mean_cosine is not None:
        # centred cosine on a top-N subset is a different quantity: never checked against this limit
        if full or not (fv and fv.get("mean_cosine_centered") is not None):
            checks.append(pm.check("mean_cosine", s.get("mean_cosine") if full else None, ">=", th.min_mean_cosine))
        else:
            checks.append(pm.check("mean_cosine_centered", fv["mean_cosine_centered"], ">=", th.min_mean_cosine))
    if th.max_mean_kl is not None:
        key = "mean_kl" if full else "mean_kl_returned_renorm"
        checks.append(pm.check(key, s.get(key), "<=", th.max_mean_kl))
    if th.max_mean_abs_ref_logprob_diff is not None:
        checks.append(pm.check("mean_abs_ref_logprob_diff", s.get("mean_abs_ref_logprob_diff"), "<=",
                               th.max_mean_abs_ref_logprob_diff))
    if th.min_free_token_agreement is not None:
        checks.append(pm.check("free_token_agreement", fr.summary.get("free_token_agreement") if fr else None, ">=",
                               th.min_free_token_agreement))
    return Verdict(passed=pm.overall(checks), checks=checks)


def record(run: Any, reference: Reference | None, tf: TeacherForcedResult | None, fr: FreeRunResult | None,
           v: Verdict | None, target: Any = None, fv: dict[str, Any] | None = None) -> dict[str, Any]:
    """Validate every value, then store metrics and per-position / per-prompt sidecars."""
    metrics: dict[str, Any] = {}
    if reference is not None:
        metrics["reference"] = reference.info()
    if target is not None and hasattr(target, "info"):
        info = {k: v2 for k, v2 in target.info().items() if isinstance(v2, (str, int, float, bool)) or v2 is None}
        metrics["target"] = info
    if tf is not None:
        metrics["teacher_forced"] = {**tf.summary, "wall_s": tf.wall_s}
        if tf.hidden_layers:
            metrics["hidden_states"] = {"note": HIDDEN_LAYER_NOTE, "layers": tf.hidden_layers}
    if fr is not None:
        metrics["free_running"] = fr.summary
    if fv is not None:
        metrics["full_vocab"] = fv
    if v is not None:
        metrics["verdict"] = v.as_dict()
    pm.validate_ranges(metrics)
    if tf is not None:
        pm.validate_ranges(tf.rows, "positions")
        pm.validate_ranges(tf.per_prompt, "per_prompt")
    for k, val in metrics.items():
        run.add(k, val)
    if tf is not None:
        run.save_rows("positions", tf.rows)
        run.save_rows("prompts", tf.per_prompt)
    if fr is not None:
        run.save_rows("free_running", fr.rows)
    return metrics


# --------------------------------------------------------------------------- plots


def plot_hidden_states(tf: TeacherForcedResult | None, path: str | Path, lang: str | None = None) -> Path:
    """Norm per layer (reference vs target, log scale) and relative difference per layer.
    lang: en|zh; by default the language of the run whose artifacts/ folder `path` is in."""

    if tf is None or not tf.hidden_layers:
        raise SectionSkipped("no hidden states (target is not an hf engine, or hidden_states is off)",
                             zh="没有隐藏状态（被测目标不是 hf 引擎，或 hidden_states 已关闭）")
    from ... import plotting

    word = plotting.word
    layers = [r["layer"] for r in tf.hidden_layers]
    with plotting.style(lang or plotting.language(path)) as (plt, lang):
        fig, ((a, b),) = plotting.figure(plt, 3.8, ncols=2)
        a.plot(layers, [r["ref_mean_norm"] for r in tf.hidden_layers], "o-", label=word(lang, "reference"))
        a.plot(layers, [r["target_mean_norm"] for r in tf.hidden_layers], "x--", label=word(lang, "target"))
        plotting.log_scale(a, "y")
        a.set_xlabel(word(lang, "layer_axis"))
        a.set_ylabel(word(lang, "norm_axis"))
        a.set_title(word(lang, "hidden_norm"))
        rel = [r["rel_diff"] if r["rel_diff"] else float("nan") for r in tf.hidden_layers]
        b.plot(layers, rel, "o-", color="tab:red")
        if any(x > 0 for x in rel if not math.isnan(x)):
            plotting.log_scale(b, "y")
        b.set_xlabel(word(lang, "layer_axis"))
        b.set_ylabel(word(lang, "rel_axis"))
        b.set_title(word(lang, "hidden_rel"))
        plotting.legend_below(fig, *a.get_legend_handles_labels())
        return plotting.save(fig, path)


# prompt lines in muted tab10 colours without its red, which marks the flips alone
_PROMPT_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
_FLIP = {"marker": "X", "ms": 10, "color": "#d62728", "mec": "black", "mew": 0.8, "ls": "none", "zorder": 5}


def plot_positions(tf: TeacherForcedResult | None, path: str | Path, lang: str | None = None) -> Path:
    """KL (or the renormalised top-N KL) per position, one line per prompt; top-1 flips marked.
    lang: en|zh; by default the language of the run whose artifacts/ folder `path` is in."""
    if tf is None:
        raise SectionSkipped("needs the teacher-forced comparison (step 'teacher_forced' produced none)",
                             zh="需要教师强制（teacher-forced）对比结果（步骤 'teacher_forced' 未产出结果）")
    if not tf.rows:
        raise RuntimeError("no teacher-forced rows to plot")
    from matplotlib.lines import Line2D

    from ... import plotting

    word = plotting.word
    key = "kl" if tf.scope == pm.SCOPE_FULL else "kl_returned_renorm"
    by_prompt: dict[str, list[dict[str, Any]]] = {}
    for r in tf.rows:
        by_prompt.setdefault(r["prompt_id"], []).append(r)
    with plotting.style(lang or plotting.language(path)) as (plt, lang):
        fig, ((ax,),) = plotting.figure(plt, 4.4)
        flips: list[tuple[float, float]] = []
        for i, (pid, rs) in enumerate(by_prompt.items()):
            xs = [r["position"] for r in rs]
            ys = [max(r[key], 1e-12) if r[key] is not None else float("nan") for r in rs]
            ax.plot(xs, ys, "-", lw=1.2, alpha=0.8, color=_PROMPT_COLOURS[i % len(_PROMPT_COLOURS)], label=pid)
            flips += [(x, y) for x, y, r in zip(xs, ys, rs) if not r["top1_match"]]
        if flips:
            ax.plot(*zip(*flips), **_FLIP)
        plotting.log_scale(ax, "y")
        ax.set_xlabel(word(lang, "position_axis"))
        ax.set_ylabel(word(lang, "kl_full" if key == "kl" else "kl_returned"))
        ax.set_title(word(lang, "positions"))
        handles, labels = ax.get_legend_handles_labels()
        flip_handle = Line2D([], [], **_FLIP)
        plotting.legend_below(fig, [flip_handle, *handles], [word(lang, "flips", n=len(flips)), *labels], ncol=5)
        return plotting.save(fig, path)


# --------------------------------------------------------------------------- teardown / display


def close(*objs: Any) -> None:
    """Release the reference model and the target engine (their memory, worker processes)."""
    for o in objs:
        eng = getattr(o, "engine", o)
        if eng is not None and hasattr(eng, "close"):
            eng.close()


def show(obj: Any, what: str = "table") -> Any:
    """obj.<what>() for display in the notebook, or a one-line note when the step produced nothing."""
    if obj is None:
        return "not measured (the step that produces it failed or was skipped; see the record's steps)"
    return getattr(obj, what)()


def show_image(path: Any) -> Any:
    """An inline image for the notebook, or a note when the plot step produced none."""
    if path is None or not Path(path).is_file():
        return "no plot (see the record's steps for why)"
    from IPython.display import Image

    return Image(filename=str(path))
