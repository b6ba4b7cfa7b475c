"""The demo recipe set's git sources: local repositories made from a real sdist.

The demo builds real third-party code. Most of it comes from PyPI sdists; two
components come from git, the way AITER or FlyDSL do: `python-lz4` (the lz4
Python binding) with its C library `lz4-c` as a git submodule. Both repositories
are made here from the pinned lz4 sdist with fixed authors and dates, so their
commits are the same on every machine and the demo recipes can pin them.
The demo recipes name them by https URLs under demo.wheelforge.invalid, and
demo/recipes/matrix.yaml rewrites that prefix to these local repositories,
the same mechanism a mirror or an air-gapped host uses.

The ROCm stack's components are this project's own small HIP libraries
(demo/hip/<name>), and demo/py/scmext is a pybind11 extension versioned by
setuptools_scm whose .dockerignore drops .git (as MORI's does); each becomes a
repository `<name>.git` with one commit of that tree (tag v0.1.0), again with fixed
authors and dates, remade whenever the tree changes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from . import sources
from .errors import UserError
from .model import Resolved
from .settings import DEMO_GIT as REPOS
from .settings import ROOT

TREES = (ROOT / "demo" / "hip" / "hipsaxpy", ROOT / "demo" / "hip" / "hipblend",
         ROOT / "demo" / "py" / "scmext", ROOT / "demo" / "py" / "jitdemo")
DEMO_URL = "https://demo.wheelforge.invalid/"
LZ4_SDIST = Resolved(kind="sdist", name="lz4", version="4.4.4",
                     sha256="070fd0627ec4393011251a094e08ed9fdcc78cb4e7ab28f507638eee4e39abda")
_IDENTITY = {
    "GIT_AUTHOR_NAME": "wheelforge demo", "GIT_AUTHOR_EMAIL": "demo@wheelforge.invalid",
    "GIT_COMMITTER_NAME": "wheelforge demo", "GIT_COMMITTER_EMAIL": "demo@wheelforge.invalid",
    "GIT_AUTHOR_DATE": "2025-04-01T00:00:00+00:00",
    "GIT_COMMITTER_DATE": "2025-04-01T00:00:00+00:00",
}


def make_repos(dest: Path = REPOS) -> dict[str, str]:
    """Create (or find) every demo repository; return name.git -> head commit."""
    return {**_lz4_repos(dest), **{f"{tree.name}.git": make_tree_repo(tree, dest)
                                   for tree in TREES}}


def make_tree_repo(tree: Path, dest: Path = REPOS) -> str:
    """`dest/<tree name>.git` holding one commit (tag v0.1.0) of `tree`; its commit id."""
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / f"{tree.name}.git"
    with tempfile.TemporaryDirectory(prefix=".demo-", dir=dest) as tmp:
        work = Path(tmp) / tree.name
        shutil.copytree(tree, work, ignore=shutil.ignore_patterns(
            "__pycache__", "*.pyc", "build", "*.egg-info"))
        commit = _commit_tree(work, f"{tree.name} 0.1.0", "v0.1.0")
        if (target / "HEAD").exists() and _git(target, "rev-parse", "HEAD") == commit:
            return commit
        _run(["git", "clone", "-q", "--bare", str(work), str(Path(tmp) / target.name)])
        shutil.rmtree(target, ignore_errors=True)
        (Path(tmp) / target.name).rename(target)
    return commit


def _lz4_repos(dest: Path) -> dict[str, str]:
    wanted = ("lz4-c.git", "python-lz4.git")
    if all((dest / name / "HEAD").exists() for name in wanted):
        return {name: _git(dest / name, "rev-parse", "HEAD") for name in wanted}
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".demo-", dir=dest) as tmp:
        work = Path(tmp)
        sdist = work / "sdist"
        sdist.mkdir()
        sources._fetch_sdist(LZ4_SDIST, sdist, who="demo sources")  # noqa: SLF001
        lib = work / "lz4-c"
        (sdist / "lz4libs").rename(lib)
        c_commit = _commit_tree(lib, "lz4 C library as bundled by python-lz4 4.4.4", "v1.9.4")
        py = sdist
        (py / ".gitmodules").write_text(
            f'[submodule "lz4libs"]\n\tpath = lz4libs\n\turl = {DEMO_URL}lz4-c.git\n')
        py_commit = _commit_tree(py, "python-lz4 4.4.4", "v4.4.4",
                                 gitlinks={"lz4libs": c_commit})
        for name, tree in (("lz4-c.git", lib), ("python-lz4.git", py)):
            tmp_bare = work / name
            _run(["git", "clone", "-q", "--bare", str(tree), str(tmp_bare)])
            target = dest / name
            shutil.rmtree(target, ignore_errors=True)
            tmp_bare.rename(target)
    return {"lz4-c.git": c_commit, "python-lz4.git": py_commit}


def _commit_tree(tree: Path, message: str, tag: str, *,
                 gitlinks: dict[str, str] | None = None) -> str:
    _git(tree, "init", "-q", "-b", "main")
    _git(tree, "add", "-A", "-f")
    for path, commit in (gitlinks or {}).items():  # a submodule at a fixed commit
        _git(tree, "update-index", "--add", "--cacheinfo", f"160000,{commit},{path}")
    _git(tree, "commit", "-q", "--no-gpg-sign", "-m", message)
    _git(tree, "tag", tag)
    return _git(tree, "rev-parse", "HEAD")


def _git(repo: Path, *args: str) -> str:
    return _run(["git", "-C", str(repo), "-c", "core.autocrlf=false", *args])


def _run(cmd: list[str]) -> str:
    env = {**os.environ, **_IDENTITY}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise UserError(f"demo sources: {' '.join(cmd[:4])} failed: {proc.stderr.strip()}")
    return proc.stdout.strip()
