"""GPU-target audit speed: per vendor wheel, and its share of a demo `invoke wheels` run.

    python3 bench/audit_bench.py                # both parts
    python3 bench/audit_bench.py --only vendor  # wheels from .cache/vendor-wheels/ (the
                                                # integration test downloads them)
    python3 bench/audit_bench.py --only demo    # needs the engine and the demo base images

vendor (goal: flydsl < 3 s and < 150 MB peak): each wheel is audited in a fresh
interpreter: wall time of audit_paths, and the process's peak resident memory
(ru_maxrss, interpreter included).

demo (goal: auditing adds under 5% to `invoke wheels` on the demo set): the stable
demo cells (CPU and ROCm) are built twice the way `invoke wheels` builds them (into a
scratch folder, with their own exports), timing each run's wall clock and the audit
gate inside it. Both runs are all build-cache hits (after a first build), where the
audit's share is largest; the first starts with an empty audit cache (every wheel
read), the second finds each wheel's entry (audit/gpu.py). Each built set is then
audited again in a fresh interpreter (import included, no audit cache).

Results go to bench/results/audit.json (a part not run keeps its last results).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import wheelforge.plan.fetch
from wheelforge import cli
from wheelforge.audit import gpu
from wheelforge.build import bake, build_sets, held
from wheelforge.core import engine, settings, types
from wheelforge.core.terminal import UserError
from wheelforge.plan import make_plan

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.integration.test_audit_vendor import AITER, FLYDSL, MORI, fetch  # noqa: E402

CHILD = """
import json, resource, sys, time
from wheelforge.audit import gpu
began = time.perf_counter()
result = gpu.audit_paths([sys.argv[1]], ("gfx942", "gfx950"))
seconds = time.perf_counter() - began
[targets] = result.manifest_targets().values()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": round(seconds, 3), "peak_rss_mb": round(peak, 1),
                  "files": targets["files"], "bundles": targets["bundles"],
                  "kernels": targets["kernels"], "findings": len(result.findings)}))
"""


def measure(path: Path, runs: int = 3) -> dict:
    samples = [json.loads(subprocess.run([sys.executable, "-c", CHILD, str(path)], cwd=ROOT,
                                         check=True, capture_output=True, text=True).stdout)
               for _ in range(runs)]
    best = min(samples, key=lambda s: s["seconds"])
    return {**best, "runs": runs, "seconds_all": [s["seconds"] for s in samples],
            "size_mb": round(path.stat().st_size / 2**20, 1)}


def vendor_part() -> dict:
    results = {}
    for vendor in (MORI, AITER, FLYDSL):
        path = fetch(vendor)
        results[vendor.file] = measure(path)
        print(vendor.file, results[vendor.file])
    fly = results[FLYDSL.file]
    return {"goal": "flydsl < 3 s and < 150 MB peak",
            "goal_met": fly["seconds"] < 3 and fly["peak_rss_mb"] < 150, "wheels": results}


SET_CHILD = """
import json, sys, time
began = time.perf_counter()
from wheelforge.audit import gpu
result = gpu.audit_set(sys.argv[1])
print(json.dumps({"seconds": round(time.perf_counter() - began, 3),
                  "findings": len(result.findings)}))
"""


def demo_part(cells: str, runs: int = 2) -> dict:
    wheelforge.plan.fetch.make_repos()
    plan = make_plan(types.Inputs(recipes_dir=settings.DEMO_RECIPES),
                     channel="stable", cells_glob=cells)
    gate, spent = gpu.gate, {}

    def timed_gate(stage: Path, manifest: dict, **_: object) -> dict:
        began = time.perf_counter()
        try:  # an audit cache of this run's own: the first run starts without one
            return gate(stage, manifest, cache=scratch / "audit-cache")
        finally:
            spent[manifest["cell"]] = time.perf_counter() - began

    gpu.gate = timed_gate  # build/__init__.py calls audit.gate: the real gate, timed
    scratch = Path(tempfile.mkdtemp(prefix="audit-bench-", dir=settings.CACHE))
    build = bake.Options(sources=settings.SOURCES, exports=scratch / "exports",
                         ca_bundle=cli.ca_bundle_path("auto"))
    out: dict = {"cells": [c.id for c in plan.cells], "runs": []}
    try:
        # one build per checkout, as `invoke wheels` (the sources folder is shared)
        with held(settings.WHEELS_LOCK, what="audit bench"), \
                engine.engine_running():
            for _ in range(runs):
                spent.clear()
                began = time.perf_counter()
                rows = build_sets(plan, build, out_root=scratch / "wheels")
                wall = time.perf_counter() - began
                audit_s = sum(spent.values())
                run = {"wall_seconds": round(wall, 2), "audit_seconds": round(audit_s, 3),
                       "audit_share_pct": round(100 * audit_s / wall, 2),
                       "audit_seconds_per_cell": {c: round(s, 3) for c, s in spent.items()},
                       "cache_hits": sum(bool(r.cached) for r in rows), "components": len(rows)}
                out["runs"].append(run)
                print("demo run", run)
        out["fresh_interpreter"] = {}
        for cell in plan.cells:
            folder = scratch / "wheels" / cell.id
            samples = [json.loads(subprocess.run(
                [sys.executable, "-c", SET_CHILD, str(folder)], cwd=ROOT, check=True,
                capture_output=True, text=True).stdout) for _ in range(3)]
            out["fresh_interpreter"][cell.id] = {
                "seconds": min(s["seconds"] for s in samples),
                "wheels": len(list(folder.glob("*.whl"))),
                "set_mb": round(sum(w.stat().st_size for w in folder.glob("*.whl")) / 2**20, 2),
                "findings": samples[0]["findings"]}
            print(cell.id, out["fresh_interpreter"][cell.id])
    finally:
        gpu.gate = gate
        shutil.rmtree(scratch, ignore_errors=True)
    worst = max(r["audit_share_pct"] for r in out["runs"])
    out.update(goal="auditing adds under 5% to invoke wheels on the demo set",
               goal_met=worst < 5, worst_share_pct=worst)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=("vendor", "demo"))
    parser.add_argument("--cells", default=None, help="demo cells (default: every stable one)")
    args = parser.parse_args()
    dest = ROOT / "bench" / "results" / "audit.json"
    out = json.loads(dest.read_text()) if dest.exists() else {}
    out.update(machine=platform.node(), python=platform.python_version())
    if args.only in (None, "vendor"):
        out.update(vendor_part())
    if args.only in (None, "demo"):

        try:
            out["demo"] = demo_part(args.cells)
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return exc.exit_code
    dest.write_text(json.dumps(out, indent=2, sort_keys=True) + "\n")
    print(f"wrote {dest.relative_to(ROOT)}; vendor goal met: {out.get('goal_met')}; "
          f"demo goal met: {out.get('demo', {}).get('goal_met')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
