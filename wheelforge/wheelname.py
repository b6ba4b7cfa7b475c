"""Wheel file names, distribution names and versions, read one way on the host.

Everything the host side reads from a wheel file name goes through `parse` (the
wheel spec's name form, as `packaging` reads it: the installers' own rules), names
are compared by `canonical` (PEP 503) and versions by `version` (PEP 440).

Exceptions, on purpose: code that runs inside images with only the standard
library keeps its own stdlib reading -- docker/build-component.py,
docker/wheelset-check.py (which also asks pip's vendored `packaging` where the
image's Python has pip), docker/record-check.py, and the smoke suite
(wheelforge/smoke/), which runs in the runtime image. wheelset.py loads
docker/wheelset-check.py, so a set the host accepts is one the image accepts.
"""

from __future__ import annotations

from dataclasses import dataclass

from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

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
