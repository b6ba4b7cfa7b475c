#!/usr/bin/env python3
"""Build benchmarks on the demo recipe set, on a real engine.

  cold build        every stable cell of the demo (two CPU, three ROCm) after `docker
                    buildx prune -af` (no BuildKit cache, no apt/pip cache mounts; sources
                    already fetched, base images present)
  no-op rebuild     the same again, RUNS times (median): every component must be a cache
                    hit; with a profile of where the last one spends its time (plan,
                    fetch, each bake wave, runtime deps, each audit, swap-in)
  one-pin change    liblz4 pinned to a new commit: which components rebuilt, and the time
  context size      what the engine receives as the build context (.dockerignore)
  clean image       Dockerfile.clean (--no-cache) against the plainest image build that
                    installs the same wheels in the same base (FROM base; RUN venv + pip
                    install --no-index), each run RUNS times, alternating (median), with
                    the median seconds of each part of Dockerfile.clean's step (its
                    `wheelforge-phase:` marks: checks, apt, venv, set check, pip install,
                    import checks, and the GPU-target and link audits, which run beside
                    the venv and the set check: `audits/...`, and the wait for them)
  size overhead     runtime image vs base image + installed wheels (du inside the images)

Writes bench/results/<date>.json and prints it; RESULTS.md has a dated section per run.
Run: python3 bench/build_bench.py   (make bench)
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import wheelforge.build  # noqa: E402
from tests import conftest  # noqa: E402
from tests.conftest import (  # noqa: E402
    CELLS,
    LZ4C_URL,
    build_demo,
    copy_recipes,
    new_lz4c_commit,
)
from wheelforge.audit import gpu, jit, links  # noqa: E402
from wheelforge.core import engine, rootfs, wheelset  # noqa: E402
from wheelforge.image import build_image, env_args  # noqa: E402
from wheelforge.plan import fetch  # noqa: E402

BASE = "wheelforge-demo/bookworm:base"
RUNS = 5


class Profile:
    """Seconds spent in named functions while it is on (each call of each one summed)."""

    def __init__(self, targets: list[tuple[object, str, str]]) -> None:
        self.targets = targets  # (owner, attribute, label)
        self.seconds: dict[str, float] = {}

    def __enter__(self) -> Profile:
        self.saved = [(owner, attr, getattr(owner, attr)) for owner, attr, _ in self.targets]
        for (owner, attr, label), (_, _, fn) in zip(self.targets, self.saved, strict=True):
            setattr(owner, attr, self._timed(label, fn))
        return self

    def __exit__(self, *exc: object) -> None:
        for owner, attr, fn in self.saved:
            setattr(owner, attr, fn)

    def _timed(self, label: str, fn):
        def wrapper(*args, **kwargs):
            start = time.monotonic()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[label] = self.seconds.get(label, 0.0) + time.monotonic() - start
        return wrapper


def noop_profile() -> Profile:
    return Profile([
        (conftest, "make_plan", "plan"),
        (fetch, "fetch", "fetch sources"),
        (wheelforge.build, "_bake_waves", "bake waves (every cache lookup)"),
        (wheelforge.build, "_timeline", "timeline"),
        (rootfs.Prefetch, "wait", "wait for image roots"),
        (wheelforge.build, "_runtime_deps", "runtime deps (lock check + bake)"),
        (gpu, "gate", "GPU-target audit"),
        (links, "gate", "link audit"),
        (jit, "gate", "JIT coverage"),
        (wheelset, "swap_in", "swap in"),
    ])


def timed(fn):
    start = time.monotonic()
    result = fn()
    return time.monotonic() - start, result


def context_bytes(wheels: Path) -> int:
    """Bytes of the main build context the engine received (after .dockerignore)."""
    proc = subprocess.run(
        ["docker", "buildx", "build", "-f", "docker/Dockerfile.clean", "--build-context",
         f"wheels={wheels}", "--build-arg", f"RUNTIME_IMAGE={BASE}",
         *env_args(wheelset.read_manifest(wheels)), "--progress=plain",
         "-o", "type=cacheonly", "."], cwd=ROOT, capture_output=True, text=True, check=False)
    sizes = re.findall(r"transferring context: ([0-9.]+)([kMG]?B)", proc.stderr)
    if not sizes:
        return -1
    number, unit = sizes[-1]
    return int(float(number) * {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}[unit])


def bare_image(wheels: Path) -> float:
    """The same wheels installed by the plainest image build: a venv and pip install."""
    reqs = " ".join(f"{w['distribution']}=={w['version']}" for c in
                    wheelset.read_manifest(wheels)["components"].values()
                    if c["runtime"] for w in c["wheels"])
    dockerfile = (f"FROM {BASE}\nRUN --mount=type=bind,from=wheels,target=/wheels "
                  f"python3 -m venv /opt/venv && /opt/venv/bin/pip install --no-index "
                  f"--find-links /wheels {reqs}\n")
    start = time.monotonic()
    subprocess.run(["docker", "buildx", "build", "-f", "-", "--build-context",
                    f"wheels={wheels}", "--no-cache", "--provenance=false", "--sbom=false",
                    "--load", "-t", "wheelforge-bench/bare:latest", "."], cwd=ROOT,
                   input=dockerfile, text=True, capture_output=True, check=True)
    return time.monotonic() - start


def main() -> None:
    results: dict = {"date": dt.date.today().isoformat(), "host": {
        "cores": os.cpu_count(), "docker": engine.docker(["version", "--format",
                                                          "{{.Server.Version}}"])
        .stdout.decode().strip()}}
    tmp = Path(tempfile.mkdtemp(prefix="wheelforge-bench-"))
    try:
        fetch.make_repos()
        rootfs.ensure_images({BASE})
        engine.docker(["buildx", "prune", "-af"], what="(prune) ")
        cold_s, cold = timed(lambda: build_demo(tmp / "wheels", tmp / "exports"))
        results["cold_build_s"] = round(cold_s, 1)
        results["cold_rows"] = [r.__dict__ for r in cold.rows]
        noops = []
        for _ in range(RUNS):
            profile = noop_profile()
            with profile:
                noop_s, noop = timed(lambda: build_demo(tmp / "wheels", tmp / "exports"))
            noops.append(noop_s)
            results["noop_all_cached"] = results.get("noop_all_cached", True) and all(
                r.cached for r in noop.rows)
        results["noop_rebuild_s"] = [round(x, 2) for x in noops]
        results["noop_fraction_of_cold"] = round(statistics.median(noops) / cold_s, 4)
        results["noop_profile_s"] = {k: round(v, 3) for k, v in profile.seconds.items()}
        results["noop_profile_s"]["rest"] = round(noops[-1] - sum(profile.seconds.values()), 3)
        commit, bare = new_lz4c_commit(tmp, "benchmark commit")
        recipes = copy_recipes(tmp / "recipes", {"liblz4.yaml": (
            fetch.make_repos()["lz4-c.git"], commit)})
        pin_s, pin = timed(lambda: build_demo(
            tmp / "wheels-pin", tmp / "exports", recipes=recipes,
            rewrites=((f"file://{bare}", LZ4C_URL),)))
        results["pin_change_rebuild_s"] = round(pin_s, 1)
        results["pin_change_rebuilt"] = sorted({f"{r.component}@{r.cell.split('-py')[1]}"
                                                for r in pin.rows if not r.cached})
        results["context_bytes"] = context_bytes(tmp / "wheels" / CELLS[0])
        clean, bare_t, phases = [], [], {}
        cell_dir = tmp / "wheels" / CELLS[0]
        for _ in range(RUNS):
            built = build_image(cell_dir, tag="wheelforge-bench/clean:latest", no_cache=True)
            clean.append(built.seconds)
            for name, seconds in built.phases:
                phases.setdefault(name, []).append(seconds)
            bare_t.append(bare_image(cell_dir))
        results["clean_phases_s"] = {k: round(statistics.median(v), 3) for k, v in phases.items()}
        built = build_image(cell_dir, tag="wheelforge-bench/clean:latest")
        results["clean_image_s"] = [round(x, 1) for x in clean]
        results["bare_install_s"] = [round(x, 1) for x in bare_t]
        results["clean_over_bare"] = round(statistics.median(clean) / statistics.median(bare_t), 3)
        overhead = built.size - built.base_size - built.installed_size
        results["image_bytes"] = {"image": built.size, "base": built.base_size,
                                  "installed_wheels": built.installed_size,
                                  "overhead": overhead,
                                  "overhead_pct": round(100 * overhead /
                                                        (built.base_size + built.installed_size),
                                                        2)}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out = ROOT / "bench" / "results" / f"{results['date']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: v for k, v in results.items() if k != "cold_rows"}, indent=2))


if __name__ == "__main__":
    with engine.engine_running():
        main()
