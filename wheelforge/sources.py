"""Fetch each planned source onto the host, once, as the `src` context of its build.

Git sources are fetched at exactly the planned commit (with submodules when the
recipe asks), sdists are downloaded and checked against their pinned sha256,
local checkouts are used in place. A source directory appears under its final
name only when it is complete, so an interrupted fetch leaves nothing behind
that a later build could take for a good tree.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from . import gitrefs, settings
from .errors import UserError
from .model import Build, Resolved


def index_url() -> str:
    """The PEP 691 (JSON simple API) index sdists come from: pip's own choice.

    WHEELFORGE_INDEX_URL overrides; else PIP_INDEX_URL, pip's configured
    `index-url`, or pip's built-in default, in the order pip itself uses them.
    """
    for value in (settings.current().index_url, os.environ.get("PIP_INDEX_URL")):
        if value:
            return value.rstrip("/")
    proc = subprocess.run([sys.executable, "-m", "pip", "config", "list"],
                          capture_output=True, text=True, check=False)
    for line in proc.stdout.splitlines():  # e.g. global.index-url='https://mirror/simple'
        key, _, value = line.partition("=")
        if key.rpartition(".")[2] == "index-url" and value.strip("'\""):
            return value.strip("'\"").rstrip("/")
    from pip._internal.models.index import PyPI  # pip's own default, not a copy of it

    return PyPI.simple_url.rstrip("/")


def source_dir(cache: Path, build: Build) -> Path | None:
    """Where the build's source tree lies (or will lie); None when it has none."""
    src = build.source
    if src.kind == "path":
        return Path(src.path)
    if src.kind == "git":
        return cache / f"{build.component}-git-{src.commit[:16]}{'-sub' if src.submodules else ''}"
    if src.kind == "sdist":
        return cache / f"{src.name}-{src.version}-{src.sha256[:12]}"
    return None


def fetch(cache: Path, build: Build, *, rewrites: gitrefs.Rewrites) -> Path | None:
    """Make the source tree of `build` exist under `cache`; return its path."""
    dest = source_dir(cache, build)
    if dest is None or build.source.kind == "path" or dest.is_dir():
        return dest
    cache.mkdir(parents=True, exist_ok=True)
    # The owner's pid is in the name, so that clean_partial never takes a live fetch's tree.
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.{os.getpid()}.", dir=cache))
    try:
        if build.source.kind == "git":
            _fetch_git(build.source, tmp, rewrites=rewrites, who=build.recipe_file)
        else:
            _fetch_sdist(build.source, tmp, who=build.recipe_file)
        try:
            tmp.rename(dest)
        except OSError:
            if not dest.is_dir():  # else another process completed the same tree first
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def clean_partial(cache: Path) -> None:
    """Remove what interrupted fetches left: hidden trees whose owning process is gone."""
    if not cache.is_dir():
        return
    for leftover in cache.glob(".*"):
        pid = leftover.name.rsplit(".", 2)[-2] if leftover.name.count(".") >= 3 else ""
        if pid.isdigit() and _alive(int(pid)):
            continue
        shutil.rmtree(leftover, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fetch_git(src: Resolved, dest: Path, *, rewrites: gitrefs.Rewrites, who: str) -> None:
    def git(*args: str, timeout: float = 3600) -> None:
        proc = gitrefs.run_git(list(args), rules=rewrites, cwd=str(dest), timeout=timeout)
        if proc.returncode != 0:
            reason = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise UserError(f"{who}: git {args[0]} of {src.fetch_url} at {src.commit[:12]} "
                            f"failed ({reason}); check the URL, the pin and --git-rewrite")

    git("init", "-q")
    git("remote", "add", "--", "origin", src.url)  # rewritten by insteadOf, like the submodules
    probe = gitrefs.run_git(["fetch", "-q", "--depth", "1", "origin", src.commit],
                            rules=rewrites, cwd=str(dest), timeout=3600)
    if probe.returncode != 0:  # servers that refuse fetching a commit by hash
        git("fetch", "-q", "--tags", "origin", "+refs/heads/*:refs/remotes/origin/*")
    git("-c", "advice.detachedHead=false", "checkout", "-q", src.commit)
    if src.submodules:
        git("submodule", "update", "--init", "--recursive", "--depth", "1")


def _fetch_sdist(src: Resolved, dest: Path, *, who: str) -> None:
    index = index_url()
    url = f"{index}/{src.name}/"
    request = urllib.request.Request(url, headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            files = json.load(response).get("files", [])
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise UserError(f"{who}: cannot read {url} ({exc}); check the network, or set "
                        f"WHEELFORGE_INDEX_URL to a mirror") from None
    match = [f for f in files if f.get("hashes", {}).get("sha256") == src.sha256]
    if not match:
        names = [f["filename"] for f in files
                 if f.get("filename", "").startswith(f"{src.name}-{src.version}.")]
        raise UserError(f"{who}: no file of {src.name} on {index} has the pinned sha256 "
                        f"{src.sha256[:12]}... (sdists of {src.version}: "
                        f"{', '.join(names) or 'none'}); fix source.sha256 or source.version")
    archive = dest / match[0]["filename"]
    try:
        urllib.request.urlretrieve(match[0]["url"], archive)  # noqa: S310
    except (urllib.error.URLError, OSError) as exc:
        raise UserError(f"{who}: cannot download {match[0]['url']} ({exc})") from None
    if hashlib.sha256(archive.read_bytes()).hexdigest() != src.sha256:
        raise UserError(f"{who}: {archive.name} does not match the pinned sha256; refusing it")
    unpack_sdist(archive, dest)
    archive.unlink()


def unpack_sdist(archive: Path, dest: Path) -> None:
    """Unpack an sdist's single top directory's contents into `dest`."""
    tmp = dest / ".unpack"
    if archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(tmp)
    else:
        with tarfile.open(archive) as tf:
            tf.extractall(tmp, filter="data")
    tops = list(tmp.iterdir())
    root = tops[0] if len(tops) == 1 and tops[0].is_dir() else tmp
    for item in root.iterdir():
        item.rename(dest / item.name)
    shutil.rmtree(tmp)
