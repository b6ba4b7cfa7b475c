"""How much disk a command fills at its peak, phase by phase: the test command above all.

    python3 bench/disk_footprint.py                    # runs `make test`
    python3 bench/disk_footprint.py -- make test WHEELFORGE_TEST_ENGINES=oldest
    python3 bench/disk_footprint.py --label "after the change" -- make test

Samples the used bytes of the filesystem holding the repository every `--every`
seconds while the command runs, and passes its output through. A line of the
command's own starting with `== ` (the Makefile's `== integration tests on the ...
engine` headers) opens a new phase. For each phase it records the peak growth over the
used bytes at the command's start and the growth at the phase's end; for the whole
command, the peak, what is left at its end, its duration and exit code. The figures
count everything written to that filesystem meanwhile, by anything on the machine, so
run it on an otherwise idle machine. One record is appended to
bench/results/disk_footprint.json.

tests/diskspace.py's figures (the free space an integration pass asks for) are these
peaks with a margin.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "disk_footprint.json"
GIB = 2**30


class Sampler(threading.Thread):
    """Used bytes of one filesystem, as growth over the start, peak per phase."""

    def __init__(self, path: Path, every: float):
        super().__init__(daemon=True)
        self.path, self.every = path, every
        usage = shutil.disk_usage(path)
        self.start_used, self.start_free = usage.used, usage.free
        self.t0 = time.monotonic()
        self.phases: list[dict] = []
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.open_phase("start")

    def grown(self) -> float:
        return round((shutil.disk_usage(self.path).used - self.start_used) / GIB, 2)

    def open_phase(self, name: str) -> None:
        with self.lock:
            grown = self.grown()
            if self.phases:
                self.phases[-1]["peak_gib"] = max(self.phases[-1]["peak_gib"], grown)
                self.phases[-1]["end_gib"] = grown
            self.phases.append({"phase": name, "start_s": round(time.monotonic() - self.t0),
                                "peak_gib": grown})

    def sample(self) -> None:
        with self.lock:
            self.phases[-1]["peak_gib"] = max(self.phases[-1]["peak_gib"], self.grown())

    def run(self) -> None:
        while not self.stopped.wait(self.every):
            self.sample()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--every", type=float, default=2.0, help="seconds between samples")
    parser.add_argument("--label", default="", help="what this run measures (recorded)")
    parser.add_argument("--no-record", action="store_true",
                        help="print the result only; do not append it to the results file")
    parser.add_argument("command", nargs="*", default=["make", "test"])
    args = parser.parse_args()

    sampler = Sampler(ROOT, args.every)
    sampler.start()
    proc = subprocess.Popen(args.command, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, bufsize=1)
    assert proc.stdout is not None
    for line in proc.stdout:
        sys.stdout.write(line)
        if line.startswith("== "):
            sampler.open_phase(line[3:].strip()[:160])
    code = proc.wait()
    sampler.stopped.set()
    sampler.join()
    sampler.open_phase("end")
    left = sampler.phases.pop()["peak_gib"]
    record = {
        "date": datetime.date.today().isoformat(),
        "label": args.label,
        "command": " ".join(args.command),
        "exit_code": code,
        "seconds": round(time.monotonic() - sampler.t0),
        "machine": f"{platform.machine()}, {shutil.disk_usage(ROOT).total / GIB:.0f} GiB disk",
        "start_free_gib": round(sampler.start_free / GIB, 1),
        "peak_gib": max(p["peak_gib"] for p in sampler.phases),
        "left_at_end_gib": left,
        "phases": sampler.phases,
    }
    print(json.dumps(record, indent=2))
    if not args.no_record:
        runs = json.loads(RESULTS.read_text()) if RESULTS.is_file() else []
        runs.append(record)
        RESULTS.write_text(json.dumps(runs, indent=2) + "\n")
        print(f"recorded in {RESULTS.relative_to(ROOT)}")
    return code


if __name__ == "__main__":
    sys.exit(main())
