"""Link audit speed and memory: amd-mori 1.2.4 (and flydsl 0.5.0) and a demo ROCm cell,
against the demo ROCm runtime image (wheelforge-demo/rocm6.4-sid:runtime).

    python3 bench/linkaudit_bench.py              # needs the engine and the demo base images
    python3 bench/linkaudit_bench.py --no-demo    # vendor wheels only (no demo build)
    python3 bench/linkaudit_bench.py --share      # + its share of `invoke wheels` on the demo

With --share, every stable demo cell is built (build_demo, as `invoke wheels` does, the
engine's cache as it is, no image root cached) and the link audit of each cell's set is
timed apart, its image root cached; the share is their sum, plus the time the build still
waited for the image roots it extracts while the components build, over the build's wall
time. The cold extraction of each root is given beside it. Goal
(recorded, never asserted): under 5% of `invoke wheels` on the demo set.

Each case runs in a fresh interpreter: wall time of linkaudit.audit (the image root
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.integration.test_audit_vendor import FLYDSL, MORI, fetch  # noqa: E402

IMAGE = "wheelforge-demo/rocm6.4-sid:runtime"
FAT = "stable-rocm6.4-sid-py3.14-gfx942-gfx950-default"
CHILD = """
import json, resource, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from wheelforge import linkaudit
began = time.perf_counter()
result = linkaudit.audit([Path(p) for p in sys.argv[3:]], sys.argv[2])
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
    from wheelforge import baseimages, imageroot

    baseimages.ensure_images({IMAGE})
    with tempfile.TemporaryDirectory(dir=ROOT / ".cache") as scratch:
        began = time.perf_counter()
        imageroot.extract(IMAGE, cache=Path(scratch))
        cold = round(time.perf_counter() - began, 1)
    root = imageroot.extract(IMAGE)
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
    """The link audit's time on every stable demo cell against the demo build's wall time.

    The build starts with no image root cached (the cache is moved aside and put back), so
    `invoke wheels` extracts them itself, in the background while the components build
    (imageroot.Prefetch); what it adds is the time it then waited for them."""
    from tests.conftest import build_demo
    from wheelforge import imageroot, wheelset

    waited: list[float] = []
    wait = imageroot.Prefetch.wait

    def timed_wait(self) -> None:
        started = time.perf_counter()
        wait(self)
        waited.append(time.perf_counter() - started)

    imageroot.Prefetch.wait = timed_wait
    aside = imageroot.ROOTS.with_name("image-roots.aside")
    with tempfile.TemporaryDirectory() as tmp:
        if imageroot.ROOTS.exists():
            imageroot.ROOTS.rename(aside)
        try:
            began = time.perf_counter()
            build = build_demo(Path(tmp) / "wheels", Path(tmp) / "exports", cells="stable-*")
            build_s = time.perf_counter() - began
            cells, cold = {}, {}
            for cell_dir in sorted(p for p in build.out.iterdir() if p.is_dir()):
                image = wheelset.read_manifest(cell_dir)["runtime_image"]
                if image not in cold:
                    with tempfile.TemporaryDirectory(dir=ROOT / ".cache") as scratch:
                        started = time.perf_counter()
                        imageroot.extract(image, cache=Path(scratch))
                        cold[image] = round(time.perf_counter() - started, 1)
                cells[cell_dir.name] = measure(imageroot.extract(image),
                                               sorted(cell_dir.glob("*.whl")))
        finally:
            imageroot.Prefetch.wait = wait
            if aside.exists():
                shutil.rmtree(imageroot.ROOTS, ignore_errors=True)
                aside.rename(imageroot.ROOTS)
    audit_s = sum(c["seconds"] for c in cells.values())
    return {"demo_build_seconds": round(build_s, 1), "cells": cells,
            "link_audit_seconds": round(audit_s, 2),
            "share_percent": round(100 * audit_s / build_s, 2),
            "cold_root_extraction_seconds": cold,
            "waited_for_roots_seconds": round(sum(waited), 2),
            "share_percent_with_cold_roots": round(
                100 * (audit_s + sum(waited)) / build_s, 2),
            "goal": "under 5% of invoke wheels on the demo set"}


if __name__ == "__main__":
    main()
