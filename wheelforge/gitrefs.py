"""Git URLs and refs: mirror rewriting and branch -> commit resolution.

Rewrites work like git's `url.<base>.insteadOf <prefix>`: the longest matching
prefix wins. They point production recipes at mirrors on air-gapped hosts, and
the tests at local repositories. The same rules are handed to every git command
(`-c url.<base>.insteadOf=<prefix>`), so submodules follow them too.

Only https, http, ssh, git and file URLs (and scp-like user@host:path) may appear in a
rule: git's other transports (`ext::` runs a command) are refused. git's own
policy for the file protocol stays in force (`protocol.file.allow=user`: a
top-level fetch may read a local repository, a submodule may not; see
CVE-2022-39253). A submodule is allowed the file protocol only when its URL was
rewritten by a configured rule to a `file://` mirror, so a hostile `.gitmodules`
can never read the host's own repositories.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterable, Sequence

from .errors import UserError

LS_REMOTE_TIMEOUT_S = 60
Rewrites = tuple[tuple[str, str], ...]  # (base, instead_of) pairs
# A URL or the start of one (fullmatch): the transports above, no part starting with '-'.
URL_PREFIX_RE = re.compile(
    r"(?:https?|ssh|git|file)://[A-Za-z0-9._~:/@%+=?&\[\]-]{0,2000}"
    r"|[A-Za-z0-9][A-Za-z0-9._-]{0,200}@[A-Za-z0-9][A-Za-z0-9._-]{0,253}:[A-Za-z0-9._~/%+-]{0,2000}")


def parse_rewrites(items: Iterable[str], *, origin: str = "--git-rewrite") -> Rewrites:
    """`BASE=PREFIX` items: URLs starting with PREFIX are fetched from BASE instead."""
    out = []
    for item in items:
        base, sep, prefix = item.partition("=")
        if not sep or not base or not prefix:
            raise UserError(f"{origin} {item!r}: write MIRROR=ORIGINAL, e.g. "
                            f"file:///srv/mirrors/=https://github.com/")
        for what, value in (("MIRROR", base), ("ORIGINAL", prefix)):
            if not URL_PREFIX_RE.fullmatch(value) or re.search(r"[/:@]-", value):
                raise UserError(f"{origin} {item!r}: {what} {value!r} is not an https, http, "
                                f"ssh, git or file URL (other transports are refused, no part "
                                f"may start with '-'); fix it")
        out.append((base, prefix))
    return tuple(out)


def rewrite(url: str, rules: Rewrites) -> str:
    best = None
    for base, prefix in rules:
        if url.startswith(prefix) and (best is None or len(prefix) > len(best[1])):
            best = (base, prefix)
    return url if best is None else best[0] + url[len(best[1]):]


def file_mirror(url: str, rules: Rewrites) -> bool:
    """True when a configured rule rewrites `url` to a `file://` mirror (and not outside it)."""
    best = None
    for base, prefix in rules:
        if url.startswith(prefix) and (best is None or len(prefix) > len(best[1])):
            best = (base, prefix)
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
