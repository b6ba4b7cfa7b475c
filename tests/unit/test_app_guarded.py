"""A task whose reader goes away (`invoke plan | head`) stops quietly: no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent

# A guarded task printing far more than a pipe holds (64 KiB), one line at a time.
TASK = """
import sys
from wheelforge import cli

@cli.guarded
def task():
    for i in range(200000):
        print(f"line {i} " + "x" * 40)
    {tail}

task()
"""


@pytest.mark.parametrize("tail", ["", "raise SystemExit(0)"])
def test_closed_pipe_exits_quietly(tail):
    proc = subprocess.Popen([sys.executable, "-c", TASK.replace("{tail}", tail)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = proc.stdout.readline()
    proc.stdout.close()  # what `head -1` does after its line
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141
    assert first == b"line 0 " + b"x" * 40 + b"\n"
    assert err == ""


def test_closed_pipe_after_the_last_write_exits_quietly():
    """Output still in the buffer when the task returns is flushed inside the guard."""
    script = ("import os, sys\nfrom wheelforge import cli\n"
              "@cli.guarded\ndef task():\n    print('short')\n"
              "    r, w = os.pipe()\n    os.close(r)\n    os.dup2(w, 1)\n"  # nobody reads fd 1
              "task()\n")
    buffered = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          env=buffered, timeout=120, check=False)
    assert proc.stderr.decode() == ""
    assert proc.returncode == 141
