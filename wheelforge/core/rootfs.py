"""Root filesystems: the base images this project makes with debootstrap, and a runtime
image's root as a folder for the link audit (with the pyelftools wheel that audit needs
inside an image build).

Base images (`ensure_images`, `make_image`, `ensure_roots`): the demo stacks name images
that no registry can give this host, which this project makes itself (`docker import` of a
minbase debootstrap root); production stacks name real images, pulled as usual. The Debian
mirror is the host's own (the first main-archive entry of its apt sources), or
WHEELFORGE_DEBIAN_MIRROR; when the host's apt is told not to check Valid-Until (a mirror
serving snapshots), the root's apt is told so too. Each root is kept as a gzip-compressed
tar file (about 40% of the root's size; `docker import` reads it as it is) under
.cache/base, named by what went into it, so an engine that lost the image (or a second
engine with its own storage) imports the same root again in seconds instead of
bootstrapping a moving suite such as sid anew. A root is bootstrapped under a file lock
(another process may be making the same one) and renamed into place only when complete;
`ensure_roots` makes the roots alone, without an engine.

A runtime image's root (`root_for`, `extract`): the part of its filesystem that the link
audit reads, as a folder. The image is never started: ``docker create`` makes a container
of it, ``docker export`` streams its filesystem, which tarfile reads as it comes (``r|``),
and the container is removed again. Kept: regular files and symlinks whose names contain
``.so`` (shared objects), every symlink (tiny; a merged-/usr image's ``/lib -> usr/lib``
must stay a link), the Python interpreters under /usr/bin and /usr/local/bin, and
/etc/ld.so.conf with /etc/ld.so.conf.d/*. Hard links are kept as hard links; one whose
first name was not kept (its data went by) is filled by a second pass over the export.
The folder is cached as .cache/image-roots/<image id>/ and made atomically: written into a
temporary folder beside it and renamed into place, so a stopped run leaves no half root.
`Prefetch` extracts the roots in a background thread while the components build; an image
that fails there is extracted again by the audit, which reports the error.

The pyelftools wheel (`tools_context`): Dockerfile.clean's link audit runs without network,
so `invoke image` passes the pinned pure-Python wheel, downloaded once into .cache/tools
and checked against its sha256, as the `tools` build context.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from wheelforge.core import engine, settings
from wheelforge.core.settings import BASE_IMAGES, CACHE, ROOT
from wheelforge.core.terminal import UserError

APT_SOURCES = Path("/etc/apt")


@dataclass(frozen=True, kw_only=True)
class BaseSpec:
    suite: str
    packages: tuple[str, ...]
    what: str  # one line for people


_ROCM_BUILD = ("python3", "python3-dev", "python3-venv", "build-essential", "hipcc",
               "rocm-device-libs-21", "libamdhip64-dev", "git", "ca-certificates", "pkg-config")


# Images this project can make without a registry.
MADE_HERE: dict[str, BaseSpec] = {
    "wheelforge-demo/bookworm:base": BaseSpec(
        suite="bookworm", packages=("python3", "python3-venv", "ca-certificates"),
        what="Debian 12 with Python"),
    # Debian's own ROCm packages (HIP 6.4, hipcc on clang 21): the compiler image ...
    "wheelforge-demo/rocm6.4-sid:build": BaseSpec(
        suite="sid", packages=_ROCM_BUILD, what="Debian sid with hipcc and the HIP headers"),
    # ... and the runtime: the HIP runtime library and what it needs, no compiler.
    "wheelforge-demo/rocm6.4-sid:runtime": BaseSpec(
        suite="sid", packages=("python3", "python3-venv", "ca-certificates", "libamdhip64-6"),
        what="Debian sid with the HIP runtime (libamdhip64.so.6), no compiler"),
}


_SKIP_SUITE = re.compile(r"(-security|/updates)$")


def ensure_images(refs: set[str], *, refresh: bool = False) -> None:
    """Make each image of `refs` that is missing locally and that we know how to make."""
    for ref in sorted(refs):
        if ref in MADE_HERE and (refresh or not engine.image_exists(ref)):
            make_image(ref, refresh=refresh)


def debian_mirror(apt_dir: Path = APT_SOURCES) -> str:
    """WHEELFORGE_DEBIAN_MIRROR, else the first main-archive URL of the host's apt sources."""
    override = settings.get("WHEELFORGE_DEBIAN_MIRROR")
    if override:
        return override.rstrip("/")
    files = [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*"))]
    for file in files:
        if not file.is_file() or file.suffix not in (".list", ".sources"):
            continue
        try:
            text = file.read_text(errors="replace")
        except OSError:
            continue
        entries = _deb822(text) if file.suffix == ".sources" else _one_line(text)
        for url, suites in entries:
            if url.startswith(("http://", "https://", "ftp://", "file:/")) and not all(
                    _SKIP_SUITE.search(s) for s in suites):
                return url.rstrip("/")
    raise UserError(f"no Debian mirror in {apt_dir}/sources.list or {apt_dir}/sources.list.d/; "
                    f"set WHEELFORGE_DEBIAN_MIRROR=URL of a Debian archive")


def _one_line(text: str) -> Iterator[tuple[str, list[str]]]:
    for line in text.splitlines():
        line = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()  # no [options]
        if len(line) >= 3 and line[0] == "deb":
            yield line[1], [line[2]]


def _deb822(text: str) -> Iterator[tuple[str, list[str]]]:
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            key, value = line.split(":", 1)
            fields[key.strip().lower()] = value.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        if fields.get("enabled", "yes").lower() in ("no", "false", "0"):
            continue
        for url in fields.get("uris", "").split():
            yield url, fields.get("suites", "").split()


def _apt_settings() -> str:
    """The host's apt setting that the image's apt needs too: the mirror serves snapshots
    whose Release files are past their Valid-Until when the host says not to check it."""
    if shutil.which("apt-config") is None:
        return ""
    out = subprocess.run(["apt-config", "dump", "Acquire::Check-Valid-Until"],
                         capture_output=True, text=True, check=False).stdout
    if re.search(r'^Acquire::Check-Valid-Until "(false|0|no)";', out, re.M):
        return 'Acquire::Check-Valid-Until "false";\n'
    return ""


def root_tar(ref: str, mirror: str, apt_conf: str) -> Path:
    spec = MADE_HERE[ref]
    identity = json.dumps([spec.suite, sorted(spec.packages), mirror, apt_conf])
    slug = re.sub(r"[^A-Za-z0-9._-]", "_", ref.split("/", 1)[-1])
    return BASE_IMAGES / f"{slug}-{hashlib.sha256(identity.encode()).hexdigest()[:12]}.tgz"


def ensure_roots(refs: set[str]) -> None:
    """Bootstrap the cached root of each image of `refs` we know how to make (no engine)."""
    for ref in sorted(refs & MADE_HERE.keys()):
        ensure_root(ref)


def ensure_root(ref: str, *, refresh: bool = False) -> Path:
    """The cached root of `ref`, bootstrapped first when there is none."""
    mirror, apt_conf = debian_mirror(), _apt_settings()
    tar = root_tar(ref, mirror, apt_conf)
    BASE_IMAGES.mkdir(parents=True, exist_ok=True)
    with _locked(tar.with_suffix(".lock")):  # another process may be making the same root
        if refresh or not tar.is_file():
            _bootstrap(ref, mirror, apt_conf, tar)
    return tar  # complete: it is renamed into place only once written


def make_image(ref: str, *, refresh: bool = False) -> None:
    """Import `ref` from its cached root, bootstrapping the root first when there is none."""
    tar = ensure_root(ref, refresh=refresh)
    engine.say(f"base image: importing {ref} from {tar.relative_to(ROOT)}")
    started = time.monotonic()
    with tar.open("rb") as stream:
        imported = subprocess.run([engine.DOCKER, "import", "-", ref], stdin=stream,
                                  capture_output=True, check=False)
    if imported.returncode != 0:
        raise UserError(f"{ref}: docker import failed: {engine.last_line(imported.stderr)}")
    engine.say(f"base image: {ref} ready (import {time.monotonic() - started:.0f}s)")


def _bootstrap(ref: str, mirror: str, apt_conf: str, tar: Path) -> None:
    spec = MADE_HERE[ref]
    if shutil.which("debootstrap") is None:
        raise UserError(f"{ref}: debootstrap is not installed; run ci/setup-host.sh")
    engine.say(f"base image: making {ref} with debootstrap ({spec.suite}, minbase, {mirror})")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(dir=BASE_IMAGES, prefix=".root-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        proc = subprocess.run(
            ["debootstrap", "--variant=minbase", f"--include={','.join(spec.packages)}",
             spec.suite, str(rootfs), mirror], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise UserError(f"{ref}: debootstrap {spec.suite} failed: "
                            f"{engine.last_line(proc.stdout)}; check access to {mirror} "
                            f"(WHEELFORGE_DEBIAN_MIRROR overrides the host's apt sources)")
        if apt_conf:
            (rootfs / "etc/apt/apt.conf.d/50wheelforge-snapshot").write_text(apt_conf)
        shutil.rmtree(rootfs / "var/cache/apt/archives", ignore_errors=True)
        (rootfs / "var/cache/apt/archives/partial").mkdir(parents=True)
        versions = subprocess.run(
            ["dpkg-query", f"--admindir={rootfs}/var/lib/dpkg", "-W",
             "-f=${Package} ${Version}\\n"], capture_output=True, text=True, check=False)
        partial = tar.with_name(f".{tar.name}.partial")
        subprocess.run(["tar", "-C", str(rootfs), "--numeric-owner",
                        "--use-compress-program=gzip -1", "-cf", str(partial), "."], check=True)
        partial.rename(tar)  # complete or absent
        tar.with_suffix(".packages").write_text(versions.stdout)
    engine.say(f"base image: {spec.suite} root for {ref} bootstrapped and saved in "
               f"{time.monotonic() - started:.0f}s")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


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
