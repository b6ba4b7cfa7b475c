"""Bring up the engine a build needs on this host.

An engine that already answers is reused and left running. Otherwise dockerd is
started with the containerd image store (needed for cache export, local outputs
and named contexts) and stopped again by whoever started it.

A scratch engine (the test suite's) starts on an empty data root of its own and
that root is removed when it stops: a run leaves no images or build cache behind,
and two runs, or two engine releases in one run, never share or pile up storage.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from . import engine
from .errors import UserError
from .settings import ENGINE_STATE as STATE


@contextlib.contextmanager
def engine_running(dockerd: str = "dockerd", *, scratch: bool = False) -> Iterator[bool]:
    """Yield with an engine that has buildx; stop it afterwards if we started it.

    Yields True when the engine was started here (and so belongs to this run).
    `dockerd` is the program to start when none answers: the system's, or another
    release's (e.g. one unpacked beside it), which then gets a data root and exec root
    of its own under the state folder, so two releases never share one. With
    `scratch`, an engine started here always gets its own roots, empty at the start
    and removed after it stops (an engine that already answered is left as it is).
    """
    process, own = None, None
    if not engine.reachable():
        if scratch or dockerd != "dockerd":
            own = STATE / "releases" / hashlib.sha256(dockerd.encode()).hexdigest()[:12]
        process = _start_dockerd(dockerd, own, fresh=scratch)
    try:
        if not engine.has_buildx():
            raise UserError("docker buildx is not installed; run ci/setup-host.sh "
                            "(Debian: apt-get install docker-buildx)")
        if engine.buildx_version() < engine.MIN_BUILDX:
            found = ".".join(map(str, engine.buildx_version()))
            need = ".".join(map(str, engine.MIN_BUILDX))
            raise UserError(f"docker buildx {found} is older than {need}, the oldest this "
                            f"project supports; install a newer docker-buildx (ci/setup-host.sh)")
        yield process is not None
    finally:
        if process is not None:
            _stop(process)
            if scratch:
                remove_root(own)


def remove_root(root: Path) -> None:
    """Delete a stopped engine's own root (data or exec root). Refused while anything
    is mounted under it (a dockerd killed with containers running): removing files
    through a bind mount would delete what it shows from the host."""
    if not root.exists():
        return
    prefix = str(root.resolve()) + "/"
    with open("/proc/self/mounts") as mounts:  # blanks in mount points read as octal \040
        points = [re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), line.split()[1])
                  for line in mounts]
    held = [point for point in points if (point + "/").startswith(prefix)]
    if held:
        raise UserError(f"engine root {root}: {held[0]} is still mounted ({len(held)} mount(s)); "
                        f"unmount them (umount -R) and delete {root} by hand")
    shutil.rmtree(root)
    engine.say(f"engine: removed {root}")


def dockerd_path(dockerd: str) -> str:
    """PATH for running `dockerd`: its own folder and the `bin` beside it first, so a
    release unpacked elsewhere runs its own containerd, runc and docker-init."""
    where = Path(shutil.which(dockerd) or dockerd).resolve().parent
    return f"{where}:{where.parent / 'bin'}:{os.environ.get('PATH', '')}"


def _start_dockerd(dockerd: str, own: Path | None, *, fresh: bool) -> subprocess.Popen:
    found = shutil.which(dockerd)
    if found is None:
        raise UserError(f"no Docker engine answers and {dockerd} is not installed; "
                        "run ci/setup-host.sh")
    if os.geteuid() != 0:
        raise UserError("no Docker engine answers; start one, or run as root so that "
                        "dockerd can be started here")
    if fresh and own is not None:  # what a killed run left behind
        remove_root(own)
    STATE.mkdir(parents=True, exist_ok=True)
    config = STATE / "daemon.json"
    config.write_text(json.dumps({"features": {"containerd-snapshotter": True}}))
    log = (STATE / "dockerd.log").open("ab")
    cmd, env = ["dockerd", "--config-file", str(config)], None
    if own is not None:  # roots of its own; another release's helpers first on PATH
        cmd = [found, "--config-file", str(config), "--data-root", str(own / "data"),
               "--exec-root", str(own / "exec"), "--pidfile", str(own / "dockerd.pid")]
        env = {**os.environ, "PATH": dockerd_path(found)}
    process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                               start_new_session=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise UserError(f"dockerd exited at start (code {process.returncode}); "
                            f"see {STATE / 'dockerd.log'}")
        if engine.reachable():
            engine.say(f"engine: started {dockerd} (containerd image store)")
            return process
        time.sleep(1)
    _stop(process)
    raise UserError(f"dockerd did not answer within 90s; see {STATE / 'dockerd.log'}")


def stop_group(process: subprocess.Popen, *, timeout: float = 60) -> None:
    """Stop the process group `process` leads (started with start_new_session=True):
    SIGTERM, up to `timeout` seconds for it to exit, then SIGKILL; the process is reaped."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _stop(process: subprocess.Popen) -> None:
    stop_group(process)
    engine.say("engine: stopped the dockerd started here")
