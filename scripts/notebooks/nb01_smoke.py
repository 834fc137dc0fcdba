from nbtools import code, md, parameters, write

write("01_smoke.ipynb", [
    md("""
# 01 · Load & smoke test

Does the model load on the target, answer sensibly, and answer the same way twice?

* **Dummy-weights gate** — the engine starts with random weights (`load_format=dummy`): checks the
  engine, kernels and memory in seconds before real weights are read. Its text is meaningless.
* **Real-weights gate** — load time and process memory with the real weights.
* **Prompts** — ten varied prompts (English, Chinese, code, arithmetic), each run alone, greedy,
  so each latency is that prompt's own.
* **Chat** — one conversation through the model's chat template.
* **Determinism** — the prompts twice as one greedy batch; any differing token is reported.
* **Served** — the same prompts through `/v1/completions` and `/v1/chat/completions` of a served
  model with the same settings; `same_as_offline` compares token ids with the offline run.
"""),
    parameters(),
    code("""
import ascendeval
from ascendeval import smoke

run = ascendeval.open_section("smoke", params_file, run_dir)
print(f"run directory: {run.run_dir}")
print(f"model: {run.cfg.model.id} on {run.cfg.target.engine}/{run.cfg.target.device}")
"""),
    md("## Model"),
    code("""
model = run.step("resolve_model", smoke.resolve_model, run)
run.show("resolve_model", model)
"""),
    md("## Dummy-weights gate"),
    code("""
gate = run.step("dummy_gate", smoke.dummy_gate, run)
run.show("dummy_gate", gate)
"""),
    md("## Real-weights gate: load time and memory"),
    code("""
loaded = run.step("load", smoke.load, run)
run.show("load", loaded)
"""),
    md("## Prompts, one at a time (greedy)"),
    code("""
prompts = run.step("prompts", smoke.run_prompts, run, loaded)
run.show("prompts", prompts)
"""),
    md("## Chat template"),
    code("""
chat = run.step("chat", smoke.run_chat, run, loaded)
run.show("chat", chat)
"""),
    md("## Determinism: two greedy runs"),
    code("""
det = run.step("determinism", smoke.determinism, run, loaded)
run.show("determinism", det)
"""),
    code("""
run.step("close_engine", smoke.close, loaded)
"""),
    md("## Through the OpenAI API of a served model"),
    code("""
served = run.step("served", smoke.served, run, prompts)
run.show("served", served)
"""),
    md("""
Greedy decoding is deterministic only where the kernels are: a differing token between the two
runs, or between offline and served output, points at batch-dependent numerics on this target.
"""),
    code("""
record = run.finish()
"""),
])
