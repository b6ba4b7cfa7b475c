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
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from . import gitrefs
from .errors import UserError
from .plan import Build, Resolved

# A PEP 691 (JSON simple API) index: PyPI, or a mirror of it.
INDEX_URL = os.environ.get("WHEELFORGE_INDEX_URL", "https://pypi.org/simple").rstrip("/")


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
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=cache))
    try:
        if build.source.kind == "git":
            _fetch_git(build.source, tmp, rewrites=rewrites, who=build.recipe_file)
        else:
            _fetch_sdist(build.source, tmp, who=build.recipe_file)
        tmp.rename(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def clean_partial(cache: Path) -> None:
    """Remove what an interrupted fetch left (hidden temporary directories)."""
    if cache.is_dir():
        for leftover in cache.glob(".*"):
            shutil.rmtree(leftover, ignore_errors=True)


def _fetch_git(src: Resolved, dest: Path, *, rewrites: gitrefs.Rewrites, who: str) -> None:
    def git(*args: str, timeout: float = 3600) -> None:
        proc = gitrefs.run_git(list(args), rules=rewrites, cwd=str(dest), timeout=timeout)
        if proc.returncode != 0:
            reason = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise UserError(f"{who}: git {args[0]} of {src.fetch_url} at {src.commit[:12]} "
                            f"failed ({reason}); check the URL, the pin and --git-rewrite")

    git("init", "-q")
    git("remote", "add", "origin", src.url)  # rewritten by insteadOf, like the submodules
    probe = gitrefs.run_git(["fetch", "-q", "--depth", "1", "origin", src.commit],
                            rules=rewrites, cwd=str(dest), timeout=3600)
    if probe.returncode != 0:  # servers that refuse fetching a commit by hash
        git("fetch", "-q", "--tags", "origin", "+refs/heads/*:refs/remotes/origin/*")
    git("-c", "advice.detachedHead=false", "checkout", "-q", src.commit)
    if src.submodules:
        git("submodule", "update", "--init", "--recursive", "--depth", "1")


def _fetch_sdist(src: Resolved, dest: Path, *, who: str) -> None:
    url = f"{INDEX_URL}/{src.name}/"
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
        raise UserError(f"{who}: no file of {src.name} on {INDEX_URL} has the pinned sha256 "
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
