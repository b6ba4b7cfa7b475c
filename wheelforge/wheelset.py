"""A cell's wheel set on disk: wheels/<cell>/*.whl plus manifest.json.

A set is assembled in a hidden temporary folder next to its final place and
swapped in with one atomic rename-exchange at the very end, so an interrupted
or failed build leaves the previous wheels/<cell>/ exactly as it was.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from .errors import UserError

MANIFEST = "manifest.json"
_WHEEL_RE = re.compile(r"^(?P<dist>[^-]+)-(?P<version>[^-]+)(-\d[^-]*)?-[^-]+-[^-]+-[^-]+\.whl$")


def parse_wheel_name(name: str) -> tuple[str, str]:
    """(distribution, version) of a wheel file name."""
    match = _WHEEL_RE.match(name)
    if not match:
        raise UserError(f"{name}: not a wheel file name (dist-version-python-abi-platform.whl)")
    return match["dist"], match["version"]


def wheel_entry(path: Path) -> dict:
    dist, version = parse_wheel_name(path.name)
    return {"file": path.name, "distribution": dist, "version": version,
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "size": path.stat().st_size}


def staging(root: Path, cell_id: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".staging-{cell_id}-", dir=root))
    stage.chmod(0o755)
    return stage


def clean_stale(root: Path) -> None:
    """Remove what interrupted builds left behind (never a finished set)."""
    if root.is_dir():
        for leftover in list(root.glob(".staging-*")) + list(root.glob(".old-*")):
            shutil.rmtree(leftover, ignore_errors=True)


def add_file(stage: Path, source: Path) -> None:
    dest = stage / source.name
    if dest.exists():
        raise UserError(f"{source.name}: two components produce the same wheel file")
    try:
        os.link(source, dest)
    except OSError:
        shutil.copy2(source, dest)


def write_manifest(stage: Path, manifest: dict) -> None:
    (stage / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def read_manifest(cell_dir: Path) -> dict:
    path = cell_dir / MANIFEST
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{cell_dir}: no wheel set here (no {MANIFEST}); run "
                        f"`invoke wheels --cells {cell_dir.name}` first") from None
    except ValueError as exc:
        raise UserError(f"{path}: not valid JSON ({exc}); rebuild with invoke wheels") from None


def swap_in(stage: Path, final: Path) -> None:
    """Make `stage` become `final` atomically; the old set (if any) is removed after."""
    if not final.exists():
        os.rename(stage, final)
        return
    if _exchange(stage, final):
        shutil.rmtree(stage)  # now holds the old set
        return
    old = final.with_name(f".old-{final.name}")
    shutil.rmtree(old, ignore_errors=True)
    os.rename(final, old)
    os.rename(stage, final)
    shutil.rmtree(old)


def _exchange(a: Path, b: Path) -> bool:
    """renameat2(RENAME_EXCHANGE): swap two paths in one step (Linux 3.15+)."""
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    if not hasattr(libc, "renameat2"):
        return False
    at_fdcwd, rename_exchange = -100, 2
    result = libc.renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    return result == 0
