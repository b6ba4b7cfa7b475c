"""Is a recipe's pin on its branch? Asked of git, with the branch's commits only.

The branch is fetched into a bare repository under `work` with `--filter=tree:0`
(commits, no trees or blobs) where the server allows it; a local file:// mirror
is allowed it through a git configuration made here, which includes the user's
own. Then `git merge-base --is-ancestor PIN BRANCH` answers.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from . import gitrefs


def pin_on_branch(url: str, pin: str, branch: str, *, rules: gitrefs.Rewrites,
                  work: Path) -> str | None:
    """None when `pin` is an ancestor of `branch` at `url`, else the problem in words."""
    repo = work / f"{hashlib.sha256(url.encode()).hexdigest()[:16]}.git"
    fetch_url = gitrefs.rewrite(url, rules)

    env = {**gitrefs.git_env(), "GIT_CONFIG_GLOBAL": str(_commits_only_config(work))}

    def git(*args: str) -> tuple[int, str]:
        proc = subprocess.run(["git", *gitrefs.git_config_args(rules), "-C", str(repo), *args],
                              env=env, capture_output=True, text=True, timeout=3600,
                              check=False)
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        return proc.returncode, (lines[-1] if lines else "no output")

    if not (repo / "HEAD").exists():
        tmp = repo.with_name(repo.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for args in (["init", "-q", "--bare"], ["config", "core.repositoryformatversion", "1"],
                     ["config", "extensions.partialClone", "origin"],
                     ["remote", "add", "--", "origin", url],
                     ["config", "remote.origin.promisor", "true"],
                     ["config", "remote.origin.partialclonefilter", "tree:0"]):
            gitrefs.run_git(["-C", str(tmp), *args])
        tmp.rename(repo)
    # Commits only (no trees, no blobs) where the server allows it: enough for ancestry.
    code, why = git("fetch", "-q", "--no-tags", "--filter=tree:0", "origin",
                    f"+refs/heads/{branch}:refs/heads/{branch}")
    if code != 0:
        return (f"source.pin: cannot fetch branch {branch!r} from {fetch_url} ({why}) to check "
                f"that it contains the pin; fix source.branch or --git-rewrite")
    code, _ = git("cat-file", "-e", f"{pin}^{{commit}}")
    if code != 0:
        code, why = git("fetch", "-q", "--no-tags", "--filter=tree:0", "origin", pin)
        if code != 0:
            return (f"pin {pin[:12]} is not on branch {branch!r} and cannot be fetched from "
                    f"{fetch_url} ({why}); pin a commit of {branch}")
    code, why = git("merge-base", "--is-ancestor", pin, f"refs/heads/{branch}")
    if code == 0:
        return None
    if code == 1:
        return (f"pin {pin[:12]} is not reachable from branch {branch!r} at {fetch_url} "
                f"(git merge-base --is-ancestor); pin a commit of {branch} or change "
                f"source.branch")
    return f"pin {pin[:12]}: git merge-base failed ({why})"


def _commits_only_config(work: Path) -> Path:
    """The user's global git config plus: a local (file://) mirror may serve commits only.

    A file:// server is a local git process that reads this configuration; without
    it, it sends every blob of the branch's history (and fails on an incomplete mirror).
    """
    own = os.environ.get("GIT_CONFIG_GLOBAL") or str(Path.home() / ".gitconfig")
    path = work / "gitconfig"
    text = (f"[include]\n\tpath = {own}\n[uploadpack]\n\tallowFilter = true\n"
            f"\tallowAnySHA1InWant = true\n")
    if not path.is_file() or path.read_text() != text:
        work.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".gitconfig.{os.getpid()}")
        tmp.write_text(text)
        tmp.replace(path)
    return path
