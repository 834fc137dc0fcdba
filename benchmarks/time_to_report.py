"""Time to report: the whole workbook, per model, with each section's wall time and peak memory.

Runs `ascendeval run` on each params file (default: the 7 M demo model and the 494 M Qwen2-0.5B
shape), at the profile the params name or at `--profile`, and prints per section: status, wall
time (the runner's own, from run.json) and the peak resident memory of the run's whole process
tree while that section ran (the runner, the notebook's kernel, its engines, the reference model
and any server: sampled every 0.25 s with psutil, summed over processes; a section is the span
between the runner's "(i/N) section ..." lines on stderr). Also printed: the engine starts of
each section (records' engine_starts) and, with `--compare RUN_DIR` (one per params file, in
order), whether every section's verdict equals that earlier run's.

    python benchmarks/time_to_report.py [PARAMS ...] [--profile quick|standard|full]
        [--compare RUN_DIR ...] [--run-id-prefix ttr]

Wall times on a shared machine are noisy; compare runs made on a quiet host.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PARAMS = ["params/tiny-qwen2.yaml", "params/qwen2-0.5b-shape-cpu.yaml"]
SECTION_LINE = re.compile(r"^\[[^\]]+\] \(\d+/\d+\) (\w+) \.\.\.")


def tree_rss(pid: int) -> int:
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def run_workbook(params: Path, run_id: str) -> tuple[Path | None, dict[str, int], float, str]:
    """(run dir, peak tree RSS per section, wall s, stderr tail) of one `ascendeval run`."""
    cmd = [sys.executable, "-m", "ascendeval.cli", "run", str(params), "--run-id", run_id, "--no-progress"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    current = {"section": "start"}
    peaks: dict[str, int] = {}
    lines: list[str] = []
    done = threading.Event()

    def read_stderr() -> None:
        for line in proc.stderr:  # type: ignore[union-attr]
            lines.append(line.rstrip())
            m = SECTION_LINE.match(line)
            if m:
                current["section"] = m.group(1)
            if line.startswith("["):
                print("   ", line.rstrip(), file=sys.stderr, flush=True)

    def sample() -> None:
        while not done.is_set():
            s = current["section"]
            peaks[s] = max(peaks.get(s, 0), tree_rss(proc.pid))
            done.wait(0.25)

    threads = [threading.Thread(target=read_stderr, daemon=True), threading.Thread(target=sample, daemon=True)]
    for t in threads:
        t.start()
    stdout = proc.stdout.read()  # type: ignore[union-attr]
    proc.wait()
    done.set()
    for t in threads:
        t.join(timeout=5)
    wall = time.perf_counter() - t0
    m = re.search(r"(\S+/" + re.escape(run_id) + r")\b", stdout + "\n".join(lines))
    run_dir = Path(m.group(1)) if m else None
    if run_dir is None or not (run_dir / "run.json").is_file():
        hits = list((ROOT / "outputs").glob(f"*/{run_id}/run.json"))
        run_dir = hits[0].parent if hits else None
    return run_dir, peaks, wall, "\n".join(lines[-5:])


def verdicts(run_dir: Path) -> dict[str, str]:
    from ascendeval import report, sections

    data = report.load_run(run_dir)
    return {s: report.section_verdict(data, s, "en").state for s in sections.JUDGED}


def engine_starts(run_dir: Path) -> dict[str, list[str]]:
    out = {}
    for rec in sorted((run_dir / "records").glob("*.json")):
        starts = json.loads(rec.read_text()).get("metrics", {}).get("engine_starts") or []
        out[rec.stem] = [f"{s['label']}:{s['engine']}{'(shared)' if s.get('shared') else ''}"
                         + (f" {s['wall_s']:.1f}s" if isinstance(s.get("wall_s"), (int, float)) else "")
                         for s in starts]
    return out


def report_one(params: str, run_dir: Path | None, peaks: dict[str, int], wall: float, tail: str,
               compare: Path | None) -> None:
    print(f"\n## {params}")
    if run_dir is None:
        print(f"no run directory found; last lines:\n{tail}")
        return
    man = json.loads((run_dir / "run.json").read_text())
    prof = next((json.loads(p.read_text()).get("params", {}).get("profile", {}).get("name")
                 for p in (run_dir / "records").glob("*.json")), None)
    print(f"run {run_dir}  profile {prof}  status {man.get('status')}  total {man.get('wall_s', wall):.1f} s "
          f"(benchmark wall {wall:.1f} s)")
    shared = man.get("shared_server") or {}
    if shared.get("start_wall_s") is not None:
        print(f"shared server: start {shared['start_wall_s']:.1f} s, users {', '.join(shared.get('users', []))}")
    print(f"{'section':<12} {'status':<8} {'wall s':>8} {'peak tree RSS GiB':>18}")
    for s in man.get("sections", []):
        peak = peaks.get(s["section"])
        print(f"{s['section']:<12} {s['status']:<8} {s['wall_s']:>8.1f} "
              f"{'' if peak is None else f'{peak / 2**30:>18.2f}'}")
    starts = engine_starts(run_dir)
    for sec, items in starts.items():
        if items:
            print(f"  starts {sec}: {', '.join(items)}")
    mine = verdicts(run_dir)
    print("verdicts:", ", ".join(f"{k} {v}" for k, v in mine.items()))
    if compare is not None:
        theirs = verdicts(compare)
        diff = {k: (theirs.get(k), v) for k, v in mine.items() if theirs.get(k) != v}
        print(f"verdicts vs {compare.name}: " + ("all equal" if not diff else
                                                    "; ".join(f"{k}: {a} -> {b}" for k, (a, b) in diff.items())))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("params", nargs="*", default=DEFAULT_PARAMS)
    ap.add_argument("--profile", choices=["quick", "standard", "full"], default=None,
                    help="run at this profile (a copy of each params file with `profile:` set)")
    ap.add_argument("--compare", nargs="*", default=[], help="earlier run directories, one per params file")
    ap.add_argument("--run-id-prefix", default="ttr")
    args = ap.parse_args()
    stamp = time.strftime("%H%M%S")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, pf in enumerate(args.params):
            path = (ROOT / pf) if not Path(pf).is_absolute() else Path(pf)
            if args.profile:
                data = yaml.safe_load(path.read_text(encoding="utf-8"))
                data["profile"] = args.profile
                path = Path(tmp) / path.name
                path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
            run_id = f"{args.run_id_prefix}-{stamp}-{i}"
            print(f"running {pf} ({run_id}) ...", file=sys.stderr, flush=True)
            results.append((pf, *run_workbook(path, run_id)))
    for i, (pf, run_dir, peaks, wall, tail) in enumerate(results):
        compare = Path(args.compare[i]) if i < len(args.compare) else None
        report_one(pf, run_dir, peaks, wall, tail, compare)
    return 0


if __name__ == "__main__":
    sys.exit(main())
