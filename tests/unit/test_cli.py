"""The command line: no automatic short flags; `-h` is help in every task; options documented."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import tasks  # noqa: E402

TASKS = sorted(tasks.ns.task_names)


def _arguments(name: str):
    return tasks.ns[name].get_arguments()


@pytest.mark.parametrize("name", TASKS)
def test_every_option_is_long_only_and_documented(name):
    for argument in _arguments(name):
        assert all(len(n) > 1 for n in argument.names), (name, argument.names)
        assert argument.help, f"invoke {name}: option --{argument.name} has no help text"


@pytest.mark.parametrize("name", TASKS)
def test_dash_h_prints_help_and_runs_nothing(name, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "invoke", name, "-h"], cwd=ROOT, text=True,
                          capture_output=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Usage: inv[oke] [--core-opts] " + name), proc.stdout
    for argument in _arguments(name):
        assert f"--{argument.name.replace('_', '-')}" in proc.stdout, (name, argument.name)


def test_one_letter_never_means_two_things():
    """No task has a one-letter flag today; if one is chosen, it means the same everywhere."""
    meaning: dict[str, str] = {}
    for name in TASKS:
        for argument in _arguments(name):
            for flag in (n for n in argument.names if len(n) == 1):
                assert meaning.setdefault(flag, argument.name) == argument.name, (name, flag)
