"""A component's own checks: the `smoke:` entries of its recipe, from the manifest.

Each entry {name, run, gpu} of ``components[NAME]["smoke"]`` in manifest.json becomes a
check ``NAME:name``: ``run`` is a shell command, run with ``bash -c`` in the suite's
Python environment (its bin folder first in PATH, VIRTUAL_ENV set for a venv), in a
fresh temporary folder, with the suite's environment (FLYDSL_RUNTIME_RUN_ONLY=1 among
it). Exit 0 passes; anything else fails, with the command's last output lines in the
report. A ``gpu: true`` check runs only where there is a GPU; elsewhere it is skipped
("needs a GPU: ...").
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .context import NO_TORCH, Context
from .report import GPU_DEVICE, Outcome, Skip, failed, passed

TIMEOUT_SECONDS = 600.0
TAIL_LINES = 20
# Device nodes that show a GPU driver where torch is not installed to ask (the demo's
# ROCm images load the HIP runtime without torch): AMD's kfd, NVIDIA's control node.
GPU_NODES = ("/dev/kfd", "/dev/nvidiactl")


@dataclass(frozen=True)
class RecipeCheck:
    component: str
    name: str
    run: str
    gpu: bool = False

    @property
    def full_name(self) -> str:
        return f"{self.component}:{self.name}"


def from_manifest(manifest: Mapping[str, Any] | None) -> list[RecipeCheck]:
    """Every component's checks, components in name order, checks in recipe order."""
    out: list[RecipeCheck] = []
    for component, entry in sorted(((manifest or {}).get("components") or {}).items()):
        for item in entry.get("smoke") or []:
            out.append(RecipeCheck(component, item["name"], item["run"],
                                   bool(item.get("gpu", False))))
    return out


def present_gpu_nodes() -> tuple[str, ...]:
    return tuple(p for p in GPU_NODES if os.path.exists(p))


def gpu_missing(ctx: Context) -> str | None:
    """Why a GPU command cannot run here, or None when it can: the suite's device is a GPU,
    or torch is absent (nothing to ask) and a GPU driver's device node is present."""
    if ctx.device == GPU_DEVICE:
        return None
    if ctx.device is None and ctx.no_device_reason == NO_TORCH and ctx.gpu_nodes:
        return None
    if ctx.device is not None:
        return f"the suite's device is {ctx.device}"
    if ctx.no_device_reason == NO_TORCH:
        return f"{NO_TORCH} and no GPU device node ({', '.join(GPU_NODES)})"
    return ctx.no_device_reason


def command_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a command: the suite's, with its Python environment first."""
    env = dict(os.environ if environ is None else environ)
    bindir = os.path.dirname(sys.executable)
    if sys.prefix != sys.base_prefix:
        env["VIRTUAL_ENV"] = sys.prefix
        bindir = os.path.join(sys.prefix, "bin")
    env["PATH"] = os.pathsep.join([bindir, *[p for p in env.get("PATH", "").split(os.pathsep)
                                             if p and p != bindir]])
    return env


def run_command(command: str, *, timeout: float = TIMEOUT_SECONDS
                ) -> tuple[int | None, list[str]]:
    """(exit status or None on timeout, output lines) of ``bash -c command``."""
    shell = shutil.which("bash") or "/bin/sh"
    with tempfile.TemporaryDirectory(prefix="smoke-check-") as cwd:
        proc = subprocess.Popen([shell, "-c", command], cwd=cwd, env=command_env(),
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=timeout)
            code: int | None = proc.returncode
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid)
            out, _ = proc.communicate()
            code = None
    return code, out.decode("utf-8", "replace").splitlines()


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def make_check_fn(check: RecipeCheck, timeout: float = TIMEOUT_SECONDS):
    """The check function of one recipe check."""
    def run(ctx: Context) -> Outcome:
        if check.gpu:
            missing = gpu_missing(ctx)
            if missing is not None:
                if ctx.require_gpu:
                    return failed(f"--require-gpu: needs a GPU: {missing}")
                raise Skip(f"needs a GPU: {missing}")
        code, lines = run_command(check.run, timeout=timeout)
        tail = [line for line in lines if line.strip()][-TAIL_LINES:]
        last = tail[-1].strip() if tail else ""
        if code is None:
            return failed(f"timed out after {timeout:g}s" + (f": {last}" if last else ""),
                          {"exit": None}, ("exit",), tail)
        if code != 0:
            shown = " | ".join(t.strip() for t in tail[-3:]) or "no output"
            return failed(f"exit {code}: {shown}", {"exit": code}, ("exit",), tail)
        return passed(last or "exit 0", {"exit": 0}, ("exit",))
    run.__doc__ = f"{check.full_name}: {check.run}"
    return run
