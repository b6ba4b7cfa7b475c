"""Wheels on the host: how their file names are read, and a cell's wheel set on disk,
wheels/<cell>/*.whl plus manifest.json.

File names: everything the host side reads from a wheel file name goes through `parse`
(the wheel spec's name form, as `packaging` reads it: the installers' own rules), names
are compared by `canonical` (PEP 503) and versions by `version` (PEP 440). Exceptions, on
purpose: code that runs inside images with only the standard library keeps its own stdlib
reading -- docker/build-component.py, docker/wheelset-check.py (which also asks pip's
vendored `packaging` where the image's Python has pip), docker/record-check.py, and the
smoke suite (wheelforge/smoke/), which runs in the runtime image.

Checks: the checks of a set are those of docker/wheelset-check.py, the script the runtime
image runs before pip sees a wheel. This module loads that same file, so the host and the
image can never disagree, and a set the host accepts is one the image accepts: a
manifest's shape, wheel file names, and every wheel opened (sound zip, safe member paths,
every member in RECORD with its hash).

Writing: a set is assembled in a hidden staging folder next to its final place and swapped
in with one atomic rename-exchange (renameat2) at the very end, so an interrupted or failed
build leaves the previous wheels/<cell>/ exactly as it was. Where the C library has no
renameat2, the old set is first renamed aside (.old-<cell>). `clean_stale` removes what
interrupted builds left behind, never a finished set.

The plan a set is from: before it builds, `invoke wheels` notes each cell's plan (a short
hash of its components' keys) in wheels/.planned/<cell>. `require_planned` refuses a set
that is not from that plan: after a failed build the previous set stays, but no image is
made from it unnoticed (deleting the note accepts it).
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
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from wheelforge.core.settings import DOCKER_DIR
from wheelforge.core.terminal import UserError

FORM = "dist-version-python-abi-platform.whl"


@dataclass(frozen=True)
class WheelName:
    file: str
    distribution: str  # as the file name writes it (e.g. msgpack_numpy)
    version: str  # as the file name writes it (e.g. 1.0_rc1)
    name: str  # canonical: msgpack-numpy
    parsed_version: Version  # 1.0rc1
    tags: frozenset[str]  # python-abi-platform, one per combination


def parse(file: str) -> WheelName:
    """The parts of a wheel file name; ValueError (naming the problem) when it is none."""
    if not isinstance(file, str) or "/" in file or "\\" in file:
        raise ValueError(f"{file!r} is not a wheel file name ({FORM})")
    try:
        name, parsed_version, _build, tags = parse_wheel_filename(file)
    except (InvalidWheelFilename, InvalidVersion) as exc:
        raise ValueError(f"{file!r} is not a wheel file name ({FORM}): {exc}") from None
    distribution, version = file.split("-", 2)[:2]
    return WheelName(file=file, distribution=distribution, version=version, name=str(name),
                     parsed_version=parsed_version, tags=frozenset(map(str, tags)))


def canonical(name: str) -> str:
    """A distribution name as installers compare it (PEP 503): Amd_Aiter -> amd-aiter."""
    return str(canonicalize_name(name))


def version(text: str) -> Version | None:
    """A PEP 440 version, or None when `text` is not one."""
    try:
        return Version(text)
    except InvalidVersion:
        return None


def same_version(a: str, b: str) -> bool:
    """Equal as PEP 440 versions (1.0 == 1.0.0, 1.0_rc1 == 1.0rc1); text compared when
    either is not a version."""
    va, vb = version(a), version(b)
    return va == vb if va is not None and vb is not None else a == b


def distribution_of(word: str) -> str:
    """The canonical distribution of a wheel named in a command (a path or a glob such
    as dist/foo-*.whl): read by `parse` when it is a whole file name, else its first
    field."""
    base = word.rsplit("/", 1)[-1]
    try:
        return parse(base).name
    except ValueError:
        return canonical(base.split("-", 1)[0])


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
    form, strictly: read by `parse`, and accepted by the image's own check)."""
    try:
        wheel = parse(name) if _checks().parse_wheel_name(name) else None
    except ValueError:
        wheel = None
    if wheel is None:
        raise UserError(f"{name!r}: not a wheel file name ({FORM}); rebuild it")
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
