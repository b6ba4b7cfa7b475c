"""Link audit speed and memory: amd-mori 1.2.4 (and flydsl 0.5.0) and a demo ROCm cell,
against the demo ROCm runtime image (wheelforge-demo/rocm6.4-sid:runtime).

    python3 bench/linkaudit_bench.py              # needs the engine and the demo base images
    python3 bench/linkaudit_bench.py --no-demo    # vendor wheels only (no demo build)
    python3 bench/linkaudit_bench.py --share      # + its share of `invoke wheels` on the demo

With --share, every stable demo cell is built twice (build_demo, as `invoke wheels`
does, the engine's cache as it is): first with no image root and no kept audit, then as
a no-op rebuild; what the link audit adds is timed inside each build (the gate of each
cell, plus what the build still waited for the image roots it extracts while the
components build), over the build's wall time. Goal
(recorded, never asserted): under 5% of `invoke wheels` on the demo set.

Each case runs in a fresh interpreter: wall time of links.audit (the image root
already extracted: .cache/image-roots/) and the process's peak resident memory
(ru_maxrss, interpreter included). The root extraction itself is timed once, cold, into a
scratch cache. Goal (recorded, never asserted): amd-mori under 2 s and 200 MB.
Results: bench/results/linkaudit.json.
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

from wheelforge.audit import links
from wheelforge.core import rootfs, settings

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.integration.test_audit_vendor import FLYDSL, MORI, fetch  # noqa: E402

IMAGE = "wheelforge-demo/rocm6.4-sid:runtime"
FAT = "stable-rocm6.4-sid-py3.14-gfx942-gfx950-default"
CHILD = """
import json, resource, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from wheelforge.audit import links
began = time.perf_counter()
result = links.audit([Path(p) for p in sys.argv[3:]], sys.argv[2])
print(json.dumps({"seconds": round(time.perf_counter() - began, 3),
                  "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                                       / 1024, 1),
                  "elf_files": sum(len(w.elf_files) for w in result.wheels),
                  "findings": len(result.findings)}))
"""


def measure(root: Path, wheels: list[Path]) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(ROOT), str(root),
                          *map(str, wheels)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--no-demo", action="store_true", help="skip the demo cell build")
    parser.add_argument("--share", action="store_true",
                        help="also time the audit of every demo cell against the build")
    args = parser.parse_args()

    rootfs.ensure_images({IMAGE})
    with tempfile.TemporaryDirectory(dir=ROOT / ".cache") as scratch:
        began = time.perf_counter()
        rootfs.extract(IMAGE, cache=Path(scratch))
        cold = round(time.perf_counter() - began, 1)
    root = rootfs.extract(IMAGE)
    results: dict = {"machine": platform.platform(), "image": IMAGE,
                     "root_extraction_cold_seconds": cold, "goal": "amd-mori < 2 s, < 200 MB",
                     "cases": {}}
    for vendor in (MORI, FLYDSL):
        results["cases"][vendor.file] = measure(root, [fetch(vendor)])
    if not args.no_demo:
        from tests.conftest import build_demo

        with tempfile.TemporaryDirectory() as tmp:
            build = build_demo(Path(tmp) / "wheels", Path(tmp) / "exports", cells=FAT)
            results["cases"][FAT] = measure(root, sorted((build.out / FAT).glob("*.whl")))
    if args.share:
        results["share_of_invoke_wheels"] = share()
    out = ROOT / "bench" / "results" / "linkaudit.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


def share() -> dict:
    """What the link audit adds to `invoke wheels` on every stable demo cell, timed inside
    the build: the gate of each cell (links.gate) plus the time the build waited for
    the image roots it extracts while the components build (rootfs.Prefetch).

    Two builds: the first with no image root and no kept audit (both caches moved aside
    and put back after), so every cell is audited and both roots are extracted; the second
    a no-op rebuild of the same sets, whose audits were kept by wheel sha256."""
    from tests.conftest import build_demo

    spent = {"gate": 0.0, "wait": 0.0}

    def timed(name: str, fn):
        def run(*args, **kwargs):
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - started
        return run

    gate, wait = links.gate, rootfs.Prefetch.wait
    links.gate = timed("gate", gate)
    rootfs.Prefetch.wait = timed("wait", wait)
    caches = (rootfs.ROOTS, settings.LINK_AUDIT_CACHE)
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for cache in caches:
            if cache.exists():
                cache.rename(cache.with_name(cache.name + ".aside"))
        try:
            for run in ("first build", "no-op rebuild"):
                spent.update(gate=0.0, wait=0.0)
                began = time.perf_counter()
                build_demo(Path(tmp) / "wheels", Path(tmp) / "exports", cells="stable-*")
                build_s = time.perf_counter() - began
                added = spent["gate"] + spent["wait"]
                runs[run] = {"build_seconds": round(build_s, 1),
                             "gate_seconds": round(spent["gate"], 2),
                             "waited_for_roots_seconds": round(spent["wait"], 2),
                             "share_percent": round(100 * added / build_s, 2)}
        finally:
            links.gate, rootfs.Prefetch.wait = gate, wait
            for cache in caches:
                aside = cache.with_name(cache.name + ".aside")
                if aside.exists():
                    shutil.rmtree(cache, ignore_errors=True)
                    aside.rename(cache)
    return {"runs": runs, "goal": "under 5% of invoke wheels on the demo set"}


if __name__ == "__main__":
    main()
