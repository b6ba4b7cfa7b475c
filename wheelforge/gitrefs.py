"""Git URLs and refs: mirror rewriting and branch -> commit resolution.

Rewrites work like git's `url.<base>.insteadOf <prefix>`: the longest matching
prefix wins. They point production recipes at mirrors on air-gapped hosts, and
the tests at local repositories. The same rules are handed to every git command
(`-c url.<base>.insteadOf=<prefix>`), so submodules follow them too.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterable, Sequence

from .errors import UserError

LS_REMOTE_TIMEOUT_S = 60
Rewrites = tuple[tuple[str, str], ...]  # (base, instead_of) pairs


def parse_rewrites(items: Iterable[str], *, origin: str = "--git-rewrite") -> Rewrites:
    """`BASE=PREFIX` items: URLs starting with PREFIX are fetched from BASE instead."""
    out = []
    for item in items:
        base, sep, prefix = item.partition("=")
        if not sep or not base or not prefix:
            raise UserError(f"{origin} {item!r}: write MIRROR=ORIGINAL, e.g. "
                            f"file:///srv/mirrors/=https://github.com/")
        out.append((base, prefix))
    return tuple(out)


def rewrite(url: str, rules: Rewrites) -> str:
    best = None
    for base, prefix in rules:
        if url.startswith(prefix) and (best is None or len(prefix) > len(best[1])):
            best = (base, prefix)
    return url if best is None else best[0] + url[len(best[1]):]


def git_config_args(rules: Rewrites) -> list[str]:
    """`-c` options that make git (and its submodule fetches) apply the same rewrites."""
    args = ["-c", "protocol.file.allow=always"]
    for base, prefix in rules:
        args += ["-c", f"url.{base}.insteadOf={prefix}"]
    return args


def git_env() -> dict[str, str]:
    """Never prompt for credentials: a missing login must fail, not hang CI."""
    return {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true",
            "SSH_ASKPASS": "true", "GIT_SSH_COMMAND": os.environ.get(
                "GIT_SSH_COMMAND", "ssh -o BatchMode=yes -o ConnectTimeout=20")}


def run_git(args: Sequence[str], *, rules: Rewrites = (), cwd: str | None = None,
            timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *git_config_args(rules), *args], cwd=cwd, env=git_env(),
                          capture_output=True, text=True, timeout=timeout, check=False)


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
    m = re.match(r"^([a-z]+://[^/]+/)", url)
    return m.group(1) if m else url


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "no output"
