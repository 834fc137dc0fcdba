"""transformers engine: any device/dtype the seam supports, full logits available.

Prompts run one at a time: per-prompt timings stay exact and greedy output does not depend on
padding (batched left-padded generation can change greedy tokens at low precision).
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

from .base import Engine, Generation, Sampling, Timing

_DTYPES = {"float32": "float32", "float16": "float16", "bfloat16": "bfloat16"}


def torch_device(kind: str, index: int = 0) -> str:
    if kind == "npu":
        import torch_npu  # noqa: F401  - registers the "npu" device with torch

        return f"npu:{index}"
    if kind == "cuda":
        return f"cuda:{index}"
    return "cpu"


class _StepClock:
    """LogitsProcessor that notes the wall time of each decoding step.

    transformers calls logits processors once per generated token, right after the forward pass
    that produced it, so the first call marks the first token (TTFT) and the gaps are ITLs.
    On cuda/npu the forward pass is only queued when the processor runs: without `sync` the
    stamp would fall before the prefill finished and its time would land in the first gap, so
    the device is synchronised before each stamp (one sync per token; the CPU needs none).
    """

    def __init__(self, sync: Any = None) -> None:
        self.times: list[float] = []
        self._sync = sync

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        if self._sync is not None:
            self._sync()
        self.times.append(time.perf_counter())
        return scores


class HFEngine(Engine):
    name = "hf"

    def __init__(self, model_path: str | Path, device: str = "cpu", dtype: str = "float32",
                 trust_remote_code: bool = False, device_index: int = 0, **model_kwargs: Any):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.device_kind = device
        self.device = torch_device(device, device_index)
        self.dtype_name = "float32" if dtype == "auto" else _DTYPES[dtype]
        t0 = time.perf_counter()
        self._tok = AutoTokenizer.from_pretrained(str(model_path), trust_remote_code=trust_remote_code)
        # `device_map` (the reference's disk offload): accelerate places and streams the weights,
        # and the model must not be moved after; its offload folder is this engine's and goes at close
        self._offload_folder = model_kwargs.get("offload_folder")
        self.model = AutoModelForCausalLM.from_pretrained(
            str(model_path), dtype=getattr(torch, self.dtype_name), trust_remote_code=trust_remote_code,
            **model_kwargs,
        )
        if "device_map" not in model_kwargs:
            self.model = self.model.to(self.device)
        self.model.eval()
        self.load_s = time.perf_counter() - t0
        self.model_path = str(model_path)

    # ------------------------------------------------------------------ helpers

    def tokenizer(self) -> Any:
        return self._tok

    def _encode(self, prompt: str | list[int]) -> list[int]:
        if isinstance(prompt, str):
            return list(self._tok(prompt, add_special_tokens=True)["input_ids"])
        return list(prompt)

    def _backend(self) -> Any:
        """torch.cuda / torch.npu for an accelerator, None on the CPU (nothing to wait for)."""
        import torch

        return {"cuda": getattr(torch, "cuda", None), "npu": getattr(torch, "npu", None)}.get(self.device_kind)

    def _sync(self) -> None:
        backend = self._backend()
        if backend is not None:
            backend.synchronize()

    @staticmethod
    def _topk(logprobs_row: Any, k: int, must_include: int | None = None) -> dict[int, float]:
        vals, idx = logprobs_row.float().topk(k)
        out = {int(i): float(v) for i, v in zip(idx.tolist(), vals.tolist())}
        if must_include is not None and must_include not in out:
            out[int(must_include)] = float(logprobs_row[must_include])
        return out

    def forward_logits(self, token_ids: list[int], output_hidden_states: bool = False) -> Any:
        """One teacher-forced forward pass: returns the model output (logits [1, T, V])."""
        import torch

        with torch.inference_mode():
            ids = torch.tensor([token_ids], device=self.device)
            return self.model(input_ids=ids, output_hidden_states=output_hidden_states)

    # ------------------------------------------------------------------ API

    def _generate_one(self, prompt: str | list[int], sampling: Sampling) -> Generation:
        import torch
        from transformers import LogitsProcessorList

        ids = self._encode(prompt)
        clock = _StepClock(self._sync if self._backend() is not None else None)
        gen_kwargs: dict[str, Any] = dict(
            max_new_tokens=sampling.max_tokens,
            do_sample=sampling.temperature > 0,
            logits_processor=LogitsProcessorList([clock]),
            return_dict_in_generate=True,
            output_logits=sampling.logprobs is not None,
            pad_token_id=self._tok.pad_token_id if self._tok.pad_token_id is not None else self._tok.eos_token_id,
        )
        if sampling.temperature > 0:
            gen_kwargs.update(temperature=sampling.temperature, top_p=sampling.top_p)
            if sampling.top_k:
                gen_kwargs["top_k"] = sampling.top_k
            if sampling.seed is not None:
                torch.manual_seed(sampling.seed)
        else:
            # explicit: the model's generation_config may carry sampling defaults
            gen_kwargs.update(temperature=None, top_p=None, top_k=None)
        if sampling.ignore_eos:
            gen_kwargs["min_new_tokens"] = sampling.max_tokens
        if sampling.stop:
            gen_kwargs.update(stop_strings=sampling.stop, tokenizer=self._tok)
        input_ids = torch.tensor([ids], device=self.device)
        self._sync()
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = self.model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), **gen_kwargs)
        self._sync()
        t1 = time.perf_counter()
        new_ids = out.sequences[0, len(ids):].tolist()
        eos = self.model.generation_config.eos_token_id
        eos_set = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        finish = "stop" if new_ids and new_ids[-1] in eos_set else "length"
        text = self._tok.decode([t for t in new_ids if t not in eos_set], skip_special_tokens=True)
        if sampling.stop:
            # transformers stops after the token that completes a stop string but keeps it in the
            # text; vLLM (and the OpenAI API) cut the text before the stop string and say "stop".
            # Same convention here, so hf outputs compare equal to vLLM's for the same tokens.
            cuts = [i for i in (text.find(st) for st in sampling.stop if st) if i >= 0]
            if cuts:
                text, finish = text[: min(cuts)], "stop"
        logprobs = None
        if sampling.logprobs is not None:
            logprobs = [self._topk(torch.log_softmax(step[0].float(), -1), max(sampling.logprobs, 1), tok)
                        for step, tok in zip(out.logits, new_ids)]
        prompt_lps = None
        if sampling.prompt_logprobs is not None:
            prompt_lps = self.prompt_logprobs(ids, sampling.prompt_logprobs)
        return Generation(
            prompt=prompt if isinstance(prompt, str) else None,
            prompt_token_ids=ids,
            text=text,
            token_ids=new_ids,
            finish_reason=finish,
            timing=Timing(start_s=t0, end_s=t1, ttft_s=(clock.times[0] - t0) if clock.times else None),
            logprobs=logprobs,
            prompt_logprobs=prompt_lps,
            usage={"prompt_tokens": len(ids), "completion_tokens": len(new_ids)},
            extra={"token_times_s": [t - t0 for t in clock.times]},
        )

    def prompt_logprobs(self, ids: list[int], k: int) -> list[dict[int, float] | None]:
        import torch

        logits = self.forward_logits(ids).logits[0].float()
        lps = torch.log_softmax(logits, -1)
        # position i's distribution predicts token i+1; like vLLM, entry 0 is None
        return [None] + [self._topk(lps[i - 1], max(k, 1), ids[i]) for i in range(1, len(ids))]

    def generate(self, prompts: list[str] | list[list[int]], sampling: Sampling) -> list[Generation]:
        return [self._generate_one(p, sampling) for p in prompts]

    def apply_chat_template(self, conversation: list[dict[str, str]]) -> list[int]:
        ids = self._tok.apply_chat_template(conversation, add_generation_prompt=True, tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "keys"):  # transformers 5 may return a BatchEncoding
            ids = ids["input_ids"]
        return list(ids)

    def chat(self, conversations: list[list[dict[str, str]]], sampling: Sampling) -> list[Generation]:
        return [self._generate_one(self.apply_chat_template(c), sampling) for c in conversations]

    def info(self) -> dict[str, Any]:
        params = sum(p.numel() for p in self.model.parameters())
        weight_bytes = sum(p.numel() * p.element_size() for p in self.model.parameters())
        out = {"engine": "hf", "device": self.device, "dtype": self.dtype_name, "load_s": self.load_s,
               "num_parameters": params, "weights_bytes": weight_bytes}
        placed = getattr(self.model, "hf_device_map", None)
        if self._offload_folder and placed:  # modules per place: {"cpu": 9, "disk": 19}
            out["offloaded_modules"] = dict(Counter(str(v) for v in placed.values()))
        return out

    def close(self) -> None:
        import gc
        import shutil

        self.model = None  # type: ignore[assignment]
        gc.collect()
        if self._offload_folder:
            shutil.rmtree(self._offload_folder, ignore_errors=True)
        backend = self._backend()
        if backend is not None:  # give the cached blocks back (cuda and npu alike)
            backend.empty_cache()
