"""allreduce: the collective library (NCCL, which is RCCL on ROCm) sums across all GPUs.

One worker process per GPU, rendezvous on 127.0.0.1 at a free port, every wait
bounded: the check never hangs.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ._allreduce_worker import RESULT_PREFIX
from .context import Context
from .report import Outcome, failed, one_line, passed, skipped

ALLREDUCE_BYTES = 1 << 30
QUICK_ALLREDUCE_BYTES = 4 << 20
TIMEOUT_S = 300

Launch = Callable[[int, str, str, int, float], list[dict[str, Any]]]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def package_root() -> Path:
    """The folder to put on PYTHONPATH so that this package imports under its name."""
    depth = len((__package__ or "smoke").split("."))
    return Path(__file__).resolve().parents[depth]


def launch_workers(world: int, backend: str, device: str, nbytes: int,
                   timeout: float = TIMEOUT_S) -> list[dict[str, Any]]:
    """Run ``world`` worker processes; their results, one dict per rank.

    Raises RuntimeError (after killing every worker) on a timeout or a worker error.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(package_root()), env.get("PYTHONPATH", "")) if p)
    env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()),
               WORLD_SIZE=str(world), SMOKE_DIST_BACKEND=backend, SMOKE_DIST_DEVICE=device,
               SMOKE_DIST_BYTES=str(nbytes), SMOKE_DIST_TIMEOUT=str(int(timeout)),
               PYTHONDONTWRITEBYTECODE="1")
    module = f"{__package__}._allreduce_worker"
    with contextlib.ExitStack() as stack:
        procs: list[tuple[subprocess.Popen[bytes], Any]] = []
        stack.callback(_kill, procs)  # on any exit: no worker outlives the check
        for rank in range(world):
            log = stack.enter_context(tempfile.TemporaryFile())
            proc = subprocess.Popen(
                [sys.executable, "-m", module], stdout=log, stderr=subprocess.STDOUT,
                env={**env, "RANK": str(rank), "LOCAL_RANK": str(rank)},
                start_new_session=True)
            procs.append((proc, log))
        deadline = time.monotonic() + timeout
        while True:
            codes = [proc.poll() for proc, _ in procs]
            if all(c is not None for c in codes) or any(c not in (None, 0) for c in codes):
                break  # all done, or one rank failed and the others would wait for it
            if time.monotonic() > deadline:
                raise RuntimeError(f"all-reduce workers did not finish within {timeout:.0f} s "
                                   "(killed)")
            time.sleep(0.1)
        _kill(procs)
        results, errors = [], []
        for rank, (proc, log) in enumerate(procs):
            log.seek(0)
            output = log.read().decode("utf-8", "replace")
            lines = [ln for ln in output.splitlines() if ln.startswith(RESULT_PREFIX)]
            if proc.returncode != 0 or not lines:
                errors.append(f"rank {rank} exited {proc.returncode}: "
                              f"{one_line(output[-500:], 300)}")
            else:
                results.append(json.loads(lines[-1][len(RESULT_PREFIX):]))
        if errors:
            raise RuntimeError("; ".join(errors))
        return results


def _kill(procs: Sequence[tuple[subprocess.Popen[bytes], Any]]) -> None:
    """Kill the workers still running (each in its own session, with its children)."""
    for proc, _ in procs:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def verify_allreduce(results: Sequence[dict[str, Any]], world: int) -> list[str]:
    """Problems with the ranks' results: each rank contributed rank+1 (sum
    world*(world+1)/2) to a small all-reduce and 1.0 to a large one (sum world)."""
    want_small, want_big = world * (world + 1) / 2, float(world)
    problems = []
    ranks = sorted(r.get("rank", -1) for r in results)
    if ranks != list(range(world)):
        problems.append(f"results from ranks {ranks}, want 0..{world - 1}")
    for r in results:
        if not r.get("min") == r.get("max") == want_small:
            problems.append(f"rank {r.get('rank')}: sum in [{r.get('min')}, {r.get('max')}], "
                            f"want {want_small:g}")
        if not r.get("big_min") == r.get("big_max") == want_big:
            problems.append(f"rank {r.get('rank')}: large sum in [{r.get('big_min')}, "
                            f"{r.get('big_max')}], want {want_big:g}")
    return problems


def check_allreduce(ctx: Context, launch: Launch = launch_workers,
                    timeout: float = TIMEOUT_S) -> Outcome:
    """Proves an all-reduce across every visible GPU gives the exact sum on every rank;
    measures bus bandwidth. ``--device cpu``: two CPU processes over gloo.
    ``launch`` replaces the worker processes (tests plant a wrong sum)."""
    torch = ctx.torch()
    device = ctx.gpu_device()
    if device == "cuda":
        world = torch.cuda.device_count()
        if world < 2:
            return skipped(f"needs at least 2 GPUs, {world} visible")
        backend = "nccl"
    else:
        world, backend = 2, "gloo"
    nbytes = QUICK_ALLREDUCE_BYTES if ctx.quick else ALLREDUCE_BYTES
    results = launch(world, backend, device, nbytes, timeout)
    problems = verify_allreduce(results, world)
    metrics: dict[str, Any] = {"world": world, "backend": backend, "bytes": nbytes}
    if problems:
        return failed("all-reduce gave wrong sums: " + "; ".join(problems), metrics)
    busbw = min(float(r.get("busbw_gbps", 0.0)) for r in results)
    metrics["busbw_gbps"] = busbw
    metrics["algbw_gbps"] = min(float(r.get("algbw_gbps", 0.0)) for r in results)
    lib = "RCCL" if getattr(torch.version, "hip", None) and backend == "nccl" else backend
    return passed(f"{world}-way {lib} all-reduce exact; bus bandwidth {busbw:.1f} GB/s at "
                  f"{nbytes / 2**20:.0f} MiB", metrics, ("world", "busbw_gbps"))
