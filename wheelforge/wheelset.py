"""A cell's wheel set on disk: wheels/<cell>/*.whl plus manifest.json.

A set is assembled in a hidden temporary folder next to its final place and
swapped in with one atomic rename-exchange at the very end, so an interrupted
or failed build leaves the previous wheels/<cell>/ exactly as it was.

The checks of a set are those of docker/wheelset-check.py, the script the runtime
image runs before pip sees a wheel; this module loads that same file, so the host
and the image can never disagree: a manifest's shape, wheel file names, and every
wheel opened (sound zip, safe member paths, every member in RECORD with its hash).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path
from types import ModuleType

from . import wheelname
from .errors import UserError
from .settings import DOCKER_DIR

MANIFEST = "manifest.json"
CHECK_SCRIPT = DOCKER_DIR / "wheelset-check.py"


@functools.cache
def _checks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("wheelforge_wheelset_check", CHECK_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _refused_as_user_error(fn, *args):
    try:
        return fn(*args)
    except _checks().Refused as exc:
        raise UserError(str(exc)) from None


def parse_wheel_name(name: str) -> tuple[str, str]:
    """(distribution, version) of a wheel file name as written in it (the wheel spec's
    form, strictly: read by wheelname.parse, and accepted by the image's own check)."""
    try:
        wheel = wheelname.parse(name) if _checks().parse_wheel_name(name) else None
    except ValueError:
        wheel = None
    if wheel is None:
        raise UserError(f"{name!r}: not a wheel file name ({wheelname.FORM}); rebuild it")
    return wheel.distribution, wheel.version


def check_wheel(path: Path) -> None:
    """Open one wheel: sound zip, safe member paths, every member in RECORD with its hash."""
    parse_wheel_name(path.name)
    _refused_as_user_error(_checks().check_wheel, path, path.name)


def verify(cell_dir: Path) -> dict:
    """The set in `cell_dir` is exactly its manifest, every wheel opened and checked."""
    data = read_manifest(cell_dir)
    _refused_as_user_error(_checks().check_files, cell_dir, data)
    return data


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
    """Write the staged set's manifest, then check the set against it (`verify`)."""
    (stage / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    verify(stage)


def read_manifest(cell_dir: Path) -> dict:
    """The manifest of a set, its shape checked (one line per problem)."""
    if not (cell_dir / MANIFEST).exists():
        raise UserError(f"{cell_dir}: no wheel set here (no {MANIFEST}); run "
                        f"`invoke wheels --cells {cell_dir.name}` first")
    return _refused_as_user_error(_checks().read_manifest, cell_dir)


PLANNED = ".planned"  # wheels/.planned/<cell>: the plan the last `invoke wheels` began


def plan_id(keys: dict[str, str]) -> str:
    """A short name for a cell's plan: the cache key of each of its components."""
    text = json.dumps(sorted(keys.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def manifest_plan_id(manifest: dict) -> str:
    return plan_id({name: c.get("key", "") for name, c in manifest["components"].items()})


def record_planned(root: Path, cell_id: str, planned: str) -> None:
    """Note the plan a build of `cell_id` begins (written atomically, before it builds)."""
    folder = root / PLANNED
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{cell_id}.tmp"
    tmp.write_text(planned + "\n")
    os.replace(tmp, folder / cell_id)


def require_planned(cell_dir: Path, manifest: dict) -> None:
    """The set in `cell_dir` is the one the last `invoke wheels` for its cell planned: after
    a failed build the previous set stays, but no image is made from it unnoticed."""
    note = cell_dir.parent / PLANNED / cell_dir.name
    if not note.is_file():
        return
    expected, found = note.read_text().strip(), manifest_plan_id(manifest)
    if found != expected:
        raise UserError(f"{cell_dir}: this set is from plan {found}, but the last `invoke "
                        f"wheels` for {cell_dir.name} planned {expected} and did not finish; "
                        f"run `invoke wheels --cells {cell_dir.name}` (or delete {note} to "
                        f"use this set)")


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
