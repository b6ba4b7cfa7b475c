"""The part of a runtime image's filesystem that the link audit reads, as a folder.

The image is never started: ``docker create`` makes a container of it, ``docker export``
streams its filesystem, which tarfile reads as it comes (``r|``), and the container is
removed again. Kept: regular files and symlinks whose names contain ``.so`` (shared
objects), every symlink (tiny; a merged-/usr image's ``/lib -> usr/lib`` must stay a
link), the Python interpreters under /usr/bin and /usr/local/bin, and /etc/ld.so.conf
with /etc/ld.so.conf.d/*. Hard links are kept as hard links; one whose first name was not
kept (its data went by) is filled by a second pass over the export.

The folder is cached as .cache/image-roots/<image id>/ and made atomically: written into a
temporary folder beside it and renamed into place, so a stopped run leaves no half root.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path

from . import engine
from .errors import UserError
from .settings import CACHE

ROOTS = CACHE / "image-roots"
PYTHON_RE = re.compile(r"^usr/(local/)?bin/python\d(\.\d+)?$")
CONF_RE = re.compile(r"^etc/ld\.so\.conf(\.d/[^/]+)?$")


def wanted(name: str, member: tarfile.TarInfo) -> bool:
    """Whether the audit needs this member of an exported filesystem (name without '/')."""
    if member.issym():
        return True
    if not (member.isfile() or member.islnk()):
        return False
    return ".so" in name.rsplit("/", 1)[-1] or bool(PYTHON_RE.match(name) or
                                                    CONF_RE.match(name))


def root_for(spec: str) -> Path:
    """A folder given as the root as it is, else the cached root of image ``spec``."""
    if os.path.isdir(spec):
        return Path(spec)
    return extract(spec)


def extract(image: str, *, cache: Path = ROOTS) -> Path:
    """The audit's part of ``image``'s filesystem (cached by image ID)."""
    if not engine.image_exists(image):
        raise UserError(f"{image}: no such image here and no such folder; give a local image "
                        "(docker images) or a folder holding a root filesystem")
    image_id = engine.image_id(image).split(":")[-1]
    dest = cache / image_id
    if (dest / ".complete").is_file():
        return dest
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{image_id[:12]}-", dir=cache))
    try:
        container = engine.docker(["create", "--network=none", image, "/wheelforge-never-run"],
                                  what=f"{image} ").stdout.decode().strip()
        try:
            late = _unpack(container, tmp, None)
            if late:  # hard links whose first name was not kept: fill them in
                _unpack(container, tmp, late)
        finally:
            engine.docker(["rm", "-f", container], check=False)
        (tmp / ".complete").write_text(image_id + "\n")
        try:
            tmp.rename(dest)
        except OSError:  # another run made it first
            if not (dest / ".complete").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


class Prefetch:
    """Extract the roots of ``images`` in a background thread, while the components build;
    ``wait()`` before the link audit. Only a warm-up: an image that fails here is extracted
    again by the audit's own ``root_for``, which reports the error."""

    def __init__(self, images: Iterable[str]) -> None:
        self._thread = threading.Thread(target=self._run, args=(sorted(set(images)),),
                                        name="image-roots", daemon=True)
        self._thread.start()

    @staticmethod
    def _run(images: list[str]) -> None:
        for image in images:
            with contextlib.suppress(Exception):  # the audit's own extraction reports it
                extract(image)

    def wait(self) -> None:
        self._thread.join()


def _unpack(container: str, dest: Path, late: dict[str, list[str]] | None) -> dict:
    """One pass over the export. ``late``: {first name: [link names]} to fill this time."""
    proc = subprocess.Popen([engine.DOCKER, "export", container], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    kept: set[str] = set()
    missed: dict[str, list[str]] = {}
    try:
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            for member in tar:
                name = _clean(member.name)
                if not name or ".." in name.split("/"):
                    continue
                if late is not None:
                    if member.isfile() and name in late:
                        for link in late[name]:
                            _write(tar, member, dest / link)
                    continue
                if not wanted(name, member):
                    continue
                path = dest / name
                path.parent.mkdir(parents=True, exist_ok=True)
                if member.issym():
                    path.unlink(missing_ok=True)
                    os.symlink(member.linkname, path)
                elif member.islnk():
                    first = _clean(member.linkname)
                    if first in kept:
                        path.unlink(missing_ok=True)
                        os.link(dest / first, path)
                    else:
                        missed.setdefault(first, []).append(name)
                else:
                    _write(tar, member, path)
                    kept.add(name)
    finally:
        proc.stdout.close()
        err = proc.stderr.read()
        proc.wait()
    if proc.returncode != 0:
        raise UserError(f"docker export failed: {engine.last_line(err)}")
    return missed


def _clean(name: str) -> str:
    while name.startswith(("./", "/")):
        name = name.removeprefix(".").lstrip("/")
    return name


def _write(tar: tarfile.TarFile, member: tarfile.TarInfo, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    src = tar.extractfile(member)
    with open(path, "wb") as out:
        shutil.copyfileobj(src, out, 1 << 20)
    os.chmod(path, 0o644 | (member.mode & 0o111))


# pyelftools for Dockerfile.clean's link audit, which has no network: the pinned pure-Python
# wheel (ci/requirements.txt pins the same version) in a folder that `invoke image` passes as
# the `tools` build context; the audit imports it from the wheel file (PYTHONPATH).
PYELFTOOLS = ("pyelftools", "0.33",
              "f215ad5f47d3f1373a21496a6c9e0707c622840d0622f23ff7ce08678b020036")
TOOLS = CACHE / "tools"


def tools_context(folder: Path = TOOLS) -> Path:
    """The folder holding the pinned pyelftools wheel, downloaded by pip when missing."""
    import hashlib
    import sys

    name, version, sha256 = PYELFTOOLS
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    if not wheel.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=folder) as tmp:
            proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps",
                                   "--only-binary=:all:", "-d", tmp, f"{name}=={version}"],
                                  capture_output=True, text=True, check=False)
            got = Path(tmp) / wheel.name
            if proc.returncode != 0 or not got.is_file():
                raise UserError(f"{name}=={version}: pip download failed "
                                f"({engine.last_line(proc.stderr)}); put {wheel.name} in "
                                f"{folder} by hand")
            if hashlib.sha256(got.read_bytes()).hexdigest() != sha256:
                raise UserError(f"{got.name}: sha256 is not the pinned {sha256}")
            got.rename(wheel)
    return folder
