from nbtools import code, md, parameters, write

write("06_report.ipynb", [
    md("""
# 06 · Report

Turns this run's records into the published report. It measures nothing: every figure comes from
`records/*.json` of this run, and every table of the model card names the record (and notebook)
it came from.

* **Model facts** — architecture, parameters counted from the weight files, layers, heads, KV
  heads, vocabulary, context, dtype: read from the model's own `config.json` (taken from the smoke
  record when it has them, otherwise read here and stored in this section's record).
* **Verdicts** — one line per section: pass / fail / check / measured (no threshold) / not measured.
* **Not measured** — every skipped or failed section and step with the reason its record gives,
  and the hardware this host does not have.
* **Verify** — `ascendeval verify` recomputes the summary figures from the raw per-request and
  per-item rows and checks every record for impossible values; a problem fails this step.
* **Model card** — `README.md` and `README.html` of the run (language from params); the runner
  adds `report.html` (card plus every section in one file) and `outputs/index.html` after this.
"""),
    parameters(),
    code("""
import ascendeval
from ascendeval import report

run = ascendeval.open_section("report", params_file, run_dir)
data = report.load_run(run.run_dir)
print(f"run directory: {run.run_dir}")
print(f"records: {', '.join(sorted(data.records)) or 'none'}; language: {run.conf.language}")
"""),
    md("## Model facts"),
    code("""
facts = run.step("model_facts", report.model_facts_step, run, data)
run.show("model_facts", report.facts_table(facts))
"""),
    md("## Verdicts per section"),
    code("""
run.show("verdicts", report.verdict_table(data, run.conf.language))
"""),
    md("## Not measured, skipped or failed — and why"),
    code("""
run.show("not_measured", report.not_measured_table(data, run.conf.language))
"""),
    md("## Verify: summaries recomputed from the raw rows"),
    code("""
checked = run.step("verify", report.verify_step, run)
run.show("verify", checked)
"""),
    md("## Model card"),
    code("""
card = run.step("model_card", report.card_step, run, data)
run.show("model_card", card)
"""),
    md("## Index of all runs"),
    code("""
index = run.step("index", report.index_step, run)
run.show("index", index)
"""),
    md("""
A section marked *not measured* printed no figure: nothing is ever filled in with 0. To check a
published report later, run `ascendeval verify <run directory>`.
"""),
    code("""
record = run.finish()
"""),
])
