"""A planned source's tree for `invoke check`, and the submodules that cannot be fetched.

The check reads a source's contract from upstream's own top-level files: a
submodule that cannot be fetched from here (a host without access to it, a
mirror that lacks it) is named in a warning and the tree is read without its
submodules; a top-level source that cannot be fetched is an error (UserError).
Each submodule listed in `.gitmodules` is probed at the commit the tree records
for it (`--depth 1`, into a scratch repository), with the same rewrites and
file-protocol rule as `invoke wheels` (gitrefs.py).

Trees are fetched into the check's own folder, which no build clears while it
fetches (a build clears the build cache's unfinished fetches when it starts),
and then handed to the build cache whole, with one rename.
"""

from __future__ import annotations

import posixpath
import re
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from . import gitrefs, sources
from .errors import UserError
from .model import Build


@dataclass(frozen=True, kw_only=True)
class Submodule:
    path: str
    url: str  # as .gitmodules gives it, relative URLs resolved against the superproject
    commit: str


def listed(tree: Path, superproject_url: str) -> list[Submodule]:
    """The submodules `tree` (a git checkout) records: path, URL and commit."""
    config = gitrefs.run_git(["config", "-z", "-f", ".gitmodules", "--get-regexp",
                              r"^submodule\..*\.(path|url)$"], cwd=str(tree))
    entries: dict[str, dict[str, str]] = {}
    for entry in filter(None, config.stdout.split("\0")):
        key, _, value = entry.partition("\n")
        name, _, field = key[len("submodule."):].rpartition(".")
        entries.setdefault(name, {})[field] = value
    links = gitrefs.run_git(["ls-files", "-s", "-z"], cwd=str(tree))
    commits = {}
    for entry in filter(None, links.stdout.split("\0")):
        meta, _, path = entry.partition("\t")
        mode, sha = meta.split()[:2]
        if mode == "160000":
            commits[path] = sha
    return [Submodule(path=e["path"], url=resolve_url(e["url"], superproject_url),
                      commit=commits[e["path"]])
            for e in entries.values() if "path" in e and "url" in e and e["path"] in commits]


def resolve_url(url: str, superproject_url: str) -> str:
    """A `.gitmodules` URL; `./x` and `../x` are relative to the superproject's URL."""
    if not url.startswith(("./", "../")):
        return url
    base = superproject_url.rstrip("/")
    m = re.match(r"^([a-z+]+://[^/]*)(/.*)?$", base)
    host, path = (m.group(1), m.group(2) or "/") if m else ("", base)
    return host + posixpath.normpath(posixpath.join(path, url))


def unfetchable(tree: Path, superproject_url: str, *, rules: gitrefs.Rewrites,
                work: Path) -> list[tuple[Submodule, str]]:
    """(submodule, git's last line) for each submodule that cannot be fetched."""
    out = []
    work.mkdir(parents=True, exist_ok=True)
    for sub in listed(tree, superproject_url):
        scratch = Path(tempfile.mkdtemp(prefix=".submodule-", dir=work))
        try:
            gitrefs.run_git(["init", "-q", "--bare"], cwd=str(scratch))
            proc = gitrefs.run_git(["fetch", "-q", "--depth", "1", "--", sub.url, sub.commit],
                                   rules=rules, cwd=str(scratch), timeout=3600,
                                   allow_file=gitrefs.file_mirror(sub.url, rules))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        if proc.returncode != 0:
            lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
            out.append((sub, lines[-1] if lines else f"git fetch exit {proc.returncode}"))
    return out


def fetch(cache: Path, b: Build, *, rewrites: gitrefs.Rewrites,
          work: Path) -> tuple[Path | None, list[str]]:
    """(tree, one line per submodule that cannot be fetched); UserError when the top-level
    source cannot be fetched."""
    try:
        return _fetch(cache, b, rewrites, work), []
    except UserError as exc:
        if not b.source.submodules:
            raise
        tree = _fetch(cache, replace(b, source=replace(b.source, submodules=False)), rewrites,
                      work)
        assert tree is not None
        failed = unfetchable(tree, b.source.url, rules=rewrites, work=work)
        if not failed:
            return tree, [f"the submodules cannot be fetched ({exc}); read upstream's "
                          f"top-level files without them"]
        return tree, [f"submodule {sub.path} ({sub.url} at {sub.commit[:12]}) cannot be "
                      f"fetched ({why}); read upstream's top-level files without it"
                      for sub, why in failed]


def _fetch(cache: Path, b: Build, rewrites: gitrefs.Rewrites, work: Path) -> Path | None:
    dest = sources.source_dir(cache, b)
    if dest is None or b.source.kind == "path" or dest.is_dir():
        return dest
    own = work / "sources"
    try:
        tree = sources.fetch(own, b, rewrites=rewrites)
    except OSError:  # another check fetched the same tree first
        tree = sources.source_dir(own, b)
        if tree is None or not tree.is_dir():
            raise
    assert tree is not None
    cache.mkdir(parents=True, exist_ok=True)
    try:
        tree.rename(dest)
    except OSError:  # the build cache got the same tree meanwhile: read that one
        return dest if dest.is_dir() else tree
    return dest
