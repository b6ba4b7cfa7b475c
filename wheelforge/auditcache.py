"""What the GPU-target audit read from a wheel, kept by the wheel's sha256.

A rebuild whose components all come from cache re-exports byte-identical wheels,
and cells share wheels (the runtime dependencies of two CPU cells, a component
built once for both): each is read once, not once per cell and run. An entry is
keyed by the wheel's sha256 (from the manifest) and by the source of the reading
code (gpucode.py, elfread.py, audit.py), so a changed reader never sees an old
entry. Only what was read is kept (members and their blobs); judging against a
cell's archs happens afresh each time. An entry that cannot be read is ignored
and the wheel is read again; a cache that cannot be written is skipped.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import gpucode
from .gpujudge import Member

_READERS = ("gpucode.py", "elfread.py", "audit.py")


@functools.cache
def code_version() -> str:
    digest = hashlib.sha256()
    for name in _READERS:
        digest.update((Path(__file__).parent / name).read_bytes())
    return digest.hexdigest()[:16]


def cached(folder: Path | None, sha256: str | None, read: Callable[[], Any],
           rebuild: Callable[[list], Any]) -> Any:
    """``read()`` (a WheelReport) through the cache entry for ``sha256``.

    ``rebuild(members)`` turns a stored entry back into a report; entries are written
    only for reports without a ``problem``.
    """
    if folder is None or not sha256 or len(sha256) != 64:
        return read()
    entry = folder / f"{sha256}-{code_version()}.json"
    try:
        return rebuild(_members(json.loads(entry.read_text())))
    except (OSError, ValueError, TypeError, KeyError):
        pass
    report = read()
    if not report.problem:
        write_json(entry, [{"path": m.path, "blobs": [
            {"kind": b.kind, "where": b.where, "targets": list(b.targets),
             "problem": b.problem, "detail": b.detail} for b in m.blobs]}
            for m in report.members])
    return report


def _members(data: list) -> list:
    return [Member(str(m["path"]), tuple(gpucode.Blob(
        str(b["kind"]), str(b["where"]), tuple(map(str, b["targets"])), str(b["problem"]),
        str(b["detail"])) for b in m["blobs"])) for m in data]


def write_json(entry: Path, data: Any) -> None:
    """Write one cache entry atomically (a temporary file renamed into place); a cache
    that cannot be written is skipped. The link audit keeps its passed sets with it too."""
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=entry.parent, prefix=".tmp-")
    except OSError:
        return
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f)
        os.replace(tmp, entry)
    except OSError:
        Path(tmp).unlink(missing_ok=True)
