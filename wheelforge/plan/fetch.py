"""Sources onto the host: git (mirror rewrites, branch resolution, submodules), sdists and
local checkouts, each as the `src` context of its build; and the demo recipe set's own
local git repositories.

Fetching (`fetch`): each planned source is fetched onto the host once. Git sources at
exactly the planned commit (with submodules when the recipe asks; a server that refuses
to serve a commit by hash gets a fetch of all its branches), sdists downloaded and
checked against their pinned sha256, local checkouts used in place. A source directory
appears under its final name only when it is complete, so an interrupted fetch leaves
nothing behind that a later build could take for a good tree: it is fetched into a hidden
folder named with the fetching process's pid, which `clean_partial` removes once that
process is gone.

Git URLs and refs: rewrites work like git's `url.<base>.insteadOf <prefix>`: the longest
matching prefix wins. They point production recipes at mirrors on air-gapped hosts, and
the tests at local repositories. The same rules are handed to every git command
(`-c url.<base>.insteadOf=<prefix>`), so submodules follow them too. A branch is resolved
to a commit with `git ls-remote` of the rewritten URL (a branch, else a tag).

Only https, http, ssh, git and file URLs (and scp-like user@host:path) may appear in a
rule (recipes/matrix.py checks them as it reads them): git's other transports (`ext::`
runs a command) are refused. git's own policy for the file protocol stays in force
(`protocol.file.allow=user`: a top-level fetch may read a local repository, a submodule
may not; see CVE-2022-39253). A submodule is allowed the file protocol only when its URL
was rewritten by a configured rule to a `file://` mirror, so a hostile `.gitmodules` can
never read the host's own repositories; submodules are therefore updated one at a time.
git never prompts for credentials: a missing login fails instead of hanging CI.

The index (`index_url`, `pip_index`): sdists are found through the PEP 691 JSON simple API
of WHEELFORGE_INDEX_URL, else of the index pip is configured to use (PIP_INDEX_URL, else
the `index-url` of pip's configuration files, in pip's order), else of pip's default.
plan/runtime_lock.py reads pip's configured index through `pip_index` too.

The demo recipe set's git sources (`make_repos`): local repositories, made here. The demo
builds real third-party code. Most of it comes from PyPI sdists; two components come from
git, the way AITER or FlyDSL do: `python-lz4` (the lz4 Python binding) with its C library
`lz4-c` as a git submodule. Both repositories are made from the pinned lz4 sdist with
fixed authors and dates, so their commits are the same on every machine and the demo
recipes can pin them. The demo recipes name them by https URLs under
demo.wheelforge.invalid, and demo/recipes/matrix.yaml rewrites that prefix to these local
repositories, the same mechanism a mirror or an air-gapped host uses. The ROCm stack's
components are this project's own small HIP libraries (demo/hip/<name>); demo/py/scmext
is a pybind11 extension versioned by setuptools_scm whose .dockerignore drops .git (as
MORI's does), and demo/py/jitdemo a kernel library that compiles at first use unless its
wheel carries the kernel prebuilt. Each becomes a repository `<name>.git` with one commit
of that tree (tag v0.1.0), again with fixed authors and dates, remade whenever the tree
changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Sequence
from pathlib import Path

from wheelforge.core import settings, types
from wheelforge.core.settings import (
    DEMO_GIT,
    DEMO_RECIPES,
    ROOT,
)
from wheelforge.core.terminal import UserError
from wheelforge.core.types import Build, Inputs, Resolved, Rewrites

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


def make_repos(dest: Path = DEMO_GIT) -> dict[str, str]:
    """Create (or find) every demo repository; return name.git -> head commit."""
    return {**_lz4_repos(dest), **{f"{tree.name}.git": make_tree_repo(tree, dest)
                                   for tree in TREES}}


def make_tree_repo(tree: Path, dest: Path = DEMO_GIT) -> str:
    """`dest/<tree name>.git` holding one commit (tag v0.1.0) of `tree`; its commit id."""
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / f"{tree.name}.git"
    with tempfile.TemporaryDirectory(prefix=".demo-", dir=dest) as tmp:
        work = Path(tmp) / tree.name
        shutil.copytree(tree, work, ignore=shutil.ignore_patterns(
            "__pycache__", "*.pyc", "build", "*.egg-info"))
        commit = _commit_tree(work, f"{tree.name} 0.1.0", "v0.1.0")
        if (target / "HEAD").exists() and _repo_git(target, "rev-parse", "HEAD") == commit:
            return commit
        _run(["git", "clone", "-q", "--bare", str(work), str(Path(tmp) / target.name)])
        shutil.rmtree(target, ignore_errors=True)
        (Path(tmp) / target.name).rename(target)
    return commit


def _lz4_repos(dest: Path) -> dict[str, str]:
    wanted = ("lz4-c.git", "python-lz4.git")
    if all((dest / name / "HEAD").exists() for name in wanted):
        return {name: _repo_git(dest / name, "rev-parse", "HEAD") for name in wanted}
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".demo-", dir=dest) as tmp:
        work = Path(tmp)
        sdist = work / "sdist"
        sdist.mkdir()
        _fetch_sdist(LZ4_SDIST, sdist, who="demo sources")  # noqa: SLF001
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
    _repo_git(tree, "init", "-q", "-b", "main")
    _repo_git(tree, "add", "-A", "-f")
    for path, commit in (gitlinks or {}).items():  # a submodule at a fixed commit
        _repo_git(tree, "update-index", "--add", "--cacheinfo", f"160000,{commit},{path}")
    _repo_git(tree, "commit", "-q", "--no-gpg-sign", "-m", message)
    _repo_git(tree, "tag", tag)
    return _repo_git(tree, "rev-parse", "HEAD")


def _repo_git(repo: Path, *args: str) -> str:
    return _run(["git", "-C", str(repo), "-c", "core.autocrlf=false", *args])


def _run(cmd: list[str]) -> str:
    env = {**os.environ, **_IDENTITY}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise UserError(f"demo sources: {' '.join(cmd[:4])} failed: {proc.stderr.strip()}")
    return proc.stdout.strip()


LS_REMOTE_TIMEOUT_S = 60


def _rule(url: str, rules: Rewrites) -> tuple[str, str] | None:
    """The (base, prefix) rule with the longest prefix of `url`, as git picks its insteadOf."""
    return max(((b, p) for b, p in rules if url.startswith(p)), key=lambda r: len(r[1]),
               default=None)


def rewrite(url: str, rules: Rewrites) -> str:
    best = _rule(url, rules)
    return url if best is None else best[0] + url[len(best[1]):]


def file_mirror(url: str, rules: Rewrites) -> bool:
    """True when a configured rule rewrites `url` to a `file://` mirror (and not outside it)."""
    best = _rule(url, rules)
    if best is None or not best[0].startswith("file://"):
        return False
    rest = url[len(best[1]):]
    return ".." not in re.split(r"[/\\]", rest)


def git_config_args(rules: Rewrites, *, allow_file: bool = False) -> list[str]:
    """`-c` options that make git (and its submodule fetches) apply the same rewrites.

    `allow_file`: let submodules use the file protocol (only for a configured file:// mirror).
    """
    args = ["-c", "protocol.file.allow=always"] if allow_file else []
    for base, prefix in rules:
        args += ["-c", f"url.{base}.insteadOf={prefix}"]
    return args


def git_env() -> dict[str, str]:
    """Never prompt for credentials: a missing login must fail, not hang CI."""
    return {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true",
            "SSH_ASKPASS": "true", "GIT_SSH_COMMAND": os.environ.get(
                "GIT_SSH_COMMAND", "ssh -o BatchMode=yes -o ConnectTimeout=20")}


def run_git(args: Sequence[str], *, rules: Rewrites = (), cwd: str | None = None,
            timeout: float = 600, allow_file: bool = False) -> subprocess.CompletedProcess:
    """One git command with the rewrites. `submodule update` goes submodule by submodule
    (`update_submodules`), so that the file protocol is allowed for mirrors only."""
    args = list(args)
    if args[:2] == ["submodule", "update"] and cwd is not None and not allow_file:
        extra = [a for a in args[2:] if a not in ("--init", "--recursive", "-q", "--quiet")]
        return update_submodules(cwd, rules=rules, options=extra, timeout=timeout,
                                 recursive="--recursive" in args)
    return _git(args, rules=rules, cwd=cwd, timeout=timeout, allow_file=allow_file)


def _git(args: Sequence[str], *, rules: Rewrites = (), cwd: str | None = None,
         timeout: float = 600, allow_file: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *git_config_args(rules, allow_file=allow_file), *args],
                          cwd=cwd, env=git_env(), capture_output=True, text=True,
                          timeout=timeout, check=False)


def update_submodules(repo: str, *, rules: Rewrites, options: Sequence[str] = (),
                      timeout: float = 3600, recursive: bool = True,
                      ) -> subprocess.CompletedProcess:
    """`git submodule update --init` one submodule at a time (and theirs, when recursive).

    Each submodule's URL (as `git submodule init` resolved it, relative URLs included)
    decides: the file protocol only when a configured rule maps it to a file:// mirror.
    """
    init = _git(["submodule", "init", "-q"], rules=rules, cwd=repo)
    if init.returncode != 0:
        return init
    listed = _git(["config", "-z", "-f", ".gitmodules", "--get-regexp",
                   r"^submodule\..*\.path$"], cwd=repo)
    done = init
    for entry in filter(None, listed.stdout.split("\0")):
        key, _, path = entry.partition("\n")
        name = key[len("submodule."):-len(".path")]
        url = _git(["config", "--get", f"submodule.{name}.url"], cwd=repo).stdout.strip()
        done = _git(["submodule", "update", "--init", *options, "--", path], rules=rules,
                    cwd=repo, timeout=timeout, allow_file=file_mirror(url, rules))
        if done.returncode != 0:
            return done
        if recursive:
            done = update_submodules(os.path.join(repo, path), rules=rules, options=options,
                                     timeout=timeout)
            if done.returncode != 0:
                return done
    return done


def resolve_branch(url: str, branch: str, *, rules: Rewrites, who: str) -> str:
    """The commit at the head of `branch` (or tag) at `url`, via `git ls-remote`."""
    fetch_url = rewrite(url, rules)
    refs = [f"refs/heads/{branch}", f"refs/tags/{branch}", f"refs/tags/{branch}^{{}}"]
    try:
        proc = run_git(["ls-remote", "--", fetch_url, *refs], timeout=LS_REMOTE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise UserError(f"{who}: git ls-remote {fetch_url} timed out after "
                        f"{LS_REMOTE_TIMEOUT_S}s; check the network or add --git-rewrite "
                        f"MIRROR={_origin(url)}") from None
    if proc.returncode != 0:
        reason = _last_line(proc.stderr)
        raise UserError(f"{who}: cannot resolve branch {branch!r} at {fetch_url} ({reason}); "
                        f"check the network or add --git-rewrite MIRROR={_origin(url)}")
    found = {}
    for line in proc.stdout.splitlines():
        sha, _, ref = line.partition("\t")
        found[ref] = sha
    for ref in (refs[0], refs[2], refs[1]):  # branch, peeled tag, tag
        if ref in found:
            return found[ref]
    raise UserError(f"{who}: branch {branch!r} not found at {fetch_url}; "
                    f"check the branch name in the recipe")


def _origin(url: str) -> str:
    m = re.match(r"([a-z]+://[^/]+/)", url)
    return m.group(1) if m else url


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "no output"


def ensure_demo_repos(ins: Inputs) -> None:
    if ins.recipes_dir.resolve() == DEMO_RECIPES.resolve():
        make_repos()


def index_url() -> str:
    """The PEP 691 (JSON simple API) index sdists come from: WHEELFORGE_INDEX_URL, else
    pip's own choice (pip_index), else pip's built-in default."""
    value = settings.current().index_url or pip_index()
    if value:
        return value.rstrip("/")
    from pip._internal.models.index import PyPI  # pip's own default, not a copy of it

    return PyPI.simple_url.rstrip("/")


def pip_index() -> str | None:
    """The index pip is configured to use: PIP_INDEX_URL, else the `index-url` of pip's
    configuration files, in the order pip itself reads them; None for pip's default."""
    if os.environ.get("PIP_INDEX_URL", "").strip():
        return os.environ["PIP_INDEX_URL"].strip()
    proc = subprocess.run([sys.executable, "-m", "pip", "config", "list"],
                          capture_output=True, text=True, check=False)
    for line in proc.stdout.splitlines():  # e.g. global.index-url='https://mirror/simple'
        key, _, value = line.partition("=")
        if key.rpartition(".")[2] == "index-url" and value.strip("'\""):
            return value.strip("'\"")
    return None


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


def fetch(cache: Path, build: Build, *, rewrites: types.Rewrites) -> Path | None:
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


def _fetch_git(src: Resolved, dest: Path, *, rewrites: types.Rewrites, who: str) -> None:
    def git(*args: str, timeout: float = 3600) -> None:
        proc = run_git(list(args), rules=rewrites, cwd=str(dest), timeout=timeout)
        if proc.returncode != 0:
            reason = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise UserError(f"{who}: git {args[0]} of {src.fetch_url} at {src.commit[:12]} "
                            f"failed ({reason}); check the URL, the pin and --git-rewrite")

    git("init", "-q")
    git("remote", "add", "--", "origin", src.url)  # rewritten by insteadOf, like the submodules
    probe = run_git(["fetch", "-q", "--depth", "1", "origin", src.commit],
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
