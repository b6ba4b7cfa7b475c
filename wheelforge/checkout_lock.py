"""One `invoke wheels` per checkout at a time.

Two builds in one checkout share `.cache/exports`, `.cache/sources` and the
staging folders under wheels/, and each clears what it takes for leftovers of
an interrupted run: they would delete each other's work in progress. A second
build therefore refuses at once, in one line naming the holder's pid. The lock
is `fcntl.flock` on `.cache/wheels.lock`: the kernel releases it when the
holder exits in any way (Ctrl-C, a crash, kill -9), so it never goes stale.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from .errors import UserError


@contextlib.contextmanager
def held(path: Path, *, what: str = "invoke wheels") -> Iterator[None]:
    """Hold the lock at `path` for the block, or raise UserError if another process has it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            message = (f"{what}: another build is running in this checkout (pid {holder}, "
                       f"holding {path}); wait for it to finish, or stop it")
            raise UserError(message) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
