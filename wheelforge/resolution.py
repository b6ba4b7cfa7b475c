"""Resolve each recipe's source to exactly one tree: a branch becomes a commit."""

from __future__ import annotations

import errno
import hashlib
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from . import gitrefs
from .errors import UserError
from .matrix import Cell
from .model import Inputs, Resolved
from .recipes import GitSource, IndexSource, PathSource, Recipe, SdistSource


def resolve_all(recipes: dict[str, Recipe], order: list[str], cells: list[Cell],
                 inputs: Inputs) -> dict[tuple[str, str], Resolved]:
    channels = sorted({c.channel for c in cells})
    jobs = {(n, ch): (recipes[n], ch) for n in order for ch in channels}
    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = {k: pool.submit(resolve, r, ch, inputs) for k, (r, ch) in jobs.items()}
        return {k: f.result() for k, f in futures.items()}


def resolve(recipe: Recipe, channel: str, inputs: Inputs) -> Resolved:
    local = inputs.src_overrides.get(recipe.name)
    src = recipe.source
    if local is not None or isinstance(src, PathSource):
        given = local if local is not None else (inputs.recipes_dir.parent / src.path)
        who = (f"--src {recipe.name}={local}" if local is not None else
               f"{recipe.file}:{recipe.line_of_source}: source: path {src.path}")
        path = local_tree(given, who)
        return Resolved(kind="path", path=str(path), fingerprint=fingerprint(path))
    who = f"{recipe.file}: {recipe.name}"
    if isinstance(src, GitSource):
        fetch_url = gitrefs.rewrite(src.url, inputs.rewrites)
        if channel == "nightly" and src.branch:
            commit = gitrefs.resolve_branch(src.url, src.branch, rules=inputs.rewrites, who=who)
            ref = src.branch
        elif src.pin:
            commit, ref = src.pin, src.tag or ""
        else:
            raise UserError(f"{recipe.file}:{recipe.line_of_source}: source: {recipe.name}: "
                            f"unpinned source for the {channel} channel (branch "
                            f"{src.branch!r} only); add source.pin with the full commit")
        return Resolved(kind="git", url=src.url, fetch_url=fetch_url, ref=ref, commit=commit,
                        submodules=src.submodules)
    if isinstance(src, SdistSource):
        return Resolved(kind="sdist", name=src.name, version=src.version, sha256=src.sha256,
                        ref=src.version)
    assert isinstance(src, IndexSource)
    if channel == "nightly" and src.nightly_url:
        names = src.nightly_packages or tuple(p.split("==")[0] for p in src.packages)
        # Unpinned nightly wheels change every day: the day is part of what is built.
        return Resolved(kind="index", url=src.nightly_url, packages=names,
                        ref=f"nightly {inputs.today.isoformat()}")
    return Resolved(kind="index", url=src.url or "", packages=src.packages,
                    wheel_sha256=src.sha256)


def local_tree(path: Path, who: str) -> Path:
    """A local checkout's folder, resolved; else one line (missing, a symlink loop, a file)."""
    try:
        real = path.resolve(strict=True)
    except RuntimeError:  # Python before 3.13: a symlink loop
        real = None
        why = "a symlink loop"
    except OSError as exc:
        real = None
        why = "a symlink loop" if exc.errno == errno.ELOOP else exc.strerror
    if real is None:
        raise UserError(f"{who}: cannot be read ({why}); give the folder of a checkout")
    if not real.is_dir():
        raise UserError(f"{who}: not a folder; give the folder of a checkout")
    return real


def fingerprint(path: Path) -> str:
    """A local checkout's state: its HEAD plus any uncommitted change, else its files."""
    if not path.is_dir():
        raise UserError(f"--src {path}: not a directory; give the path of a checkout")
    git = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True,
                         text=True, check=False)
    digest = hashlib.sha256()
    if git.returncode == 0:
        digest.update(git.stdout.encode())
        for args in (["diff", "HEAD", "--binary"], ["status", "--porcelain", "--untracked=all"]):
            out = subprocess.run(["git", "-C", str(path), *args], capture_output=True,
                                 check=False)
            digest.update(out.stdout)
        return digest.hexdigest()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        stat = file.stat()
        digest.update(f"{file.relative_to(path)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()
