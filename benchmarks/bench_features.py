"""Print the features A/B figures (prefix caching, ngram speculation, PD split, long context)
for a params file, with the section's own functions, outside papermill.

    .venv/bin/python benchmarks/bench_features.py params/tiny-qwen2.yaml [--only prefix,spec,split,long]

Speed-ups are printed next to the counters that back them; nothing here asserts a target.
"""

from __future__ import annotations

import argparse
import json
import tempfile


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("params")
    ap.add_argument("--only", default="prefix,spec,split,long,capacity",
                    help="comma list of: prefix, spec, split, disagg, long, capacity")
    ap.add_argument("--run-dir", default=None, help="default: a temporary directory")
    args = ap.parse_args()
    import ascendeval
    from ascendeval.sections.features import capacity, common, long_context, pd_split, prefix_cache, speculative

    only = set(args.only.split(","))
    run = ascendeval.open_section("features", args.params, args.run_dir or tempfile.mkdtemp(prefix="bench-features-"))
    main_eng = run.step("main_engine", common.start_main, run)
    plan = [("prefix", "prefix_caching", prefix_cache.prefix_caching), ("spec", "speculative", speculative.speculative),
            ("split", "pd_split", pd_split.prefill_decode_split),
            ("disagg", "disaggregated_prefill", pd_split.disaggregated_prefill),
            ("long", "long_context", long_context.long_context), ("capacity", "capacity", capacity.capacity)]
    try:
        for key, name, fn in plan:
            if key not in only:
                continue
            res = run.step(name, fn, run, main_eng)
            info = run.steps[name]
            print(f"\n## {name}: {info['status']} ({info['wall_s']:.1f} s){' - ' + info['reason'] if info['reason'] else ''}")
            if res is not None:
                print(res.table().to_string())
                print(json.dumps({k: v for k, v in run.metrics.get(name, {}).items()
                                  if not isinstance(v, (list, dict))}, indent=1, default=str))
    finally:
        common.close(main_eng)
    print(f"\nengine starts: {[(s['label'], round(s['wall_s'], 1)) for s in run.engine_starts]}")
    print(f"record: {run.run_dir}/records/features.json")
    run.finish()


if __name__ == "__main__":
    main()
