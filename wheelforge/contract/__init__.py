"""Source contract checks (`invoke check`): each recipe against upstream's own files at the
planned source, before a long build.

Every planned source is fetched the way `invoke wheels` fetches it (same cache) and read
statically (contract/upstream.py); the cheap parts of the build that decide its version and
requirements are run (contract/computed.py). A source is read once per component, however
many cells share it; `--skip NAME` leaves a component unread, with one `skipped` line.

Findings: each finding is one line, the recipe's file:line (of the key concerned) first,
and each source ends with one `ok` line saying what was read.

- ERROR: a source that cannot be fetched; a declared output that upstream does not
  produce (or upstream has no Python packaging at all); a pin that its branch does not
  contain; a version the build would not give its wheels, or no `outputs.version` for a
  git source; a build requirement that the versions the cell's set will contain do not
  meet (one line per requirement, not per cell); an ABI package (pybind11, nanobind)
  installed unpinned or pinned off upstream's pin; a build variable set from the variant
  that upstream also reads at run time but `runtime_env` lacks; an index source's packages
  or wheel files that do not match the recipe (recipes/component.py).
- WARNING: a submodule that cannot be fetched; an output whose upstream name cannot be
  read statically; a variable the recipe sets that nothing reads (compilers' and standard
  tools' variables aside); a build requirement no step provides; a version that cannot be
  computed here; a setuptools_scm source whose own .dockerignore drops `.git` while the
  recipe sets no pretend version; a `runtime_env` variable nothing reads at run time.

`invoke wheels` runs the ERROR part first (`require_no_errors`): each error on its own
line, then a UserError.

A pin on its branch (`pin_on_branch`) is asked of git, with the branch's commits only: the
branch is fetched into a bare repository under `work` with `--filter=tree:0` (commits, no
trees or blobs) where the server allows it; a local file:// mirror is allowed it through a
git configuration made here, which includes the user's own. Then `git merge-base
--is-ancestor PIN BRANCH` answers.
"""

from __future__ import annotations

import ast
import hashlib
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement

from wheelforge.contract import upstream
from wheelforge.contract.computed import (
    build_requirements,
    check_abi_pins,
    check_requirements,
    check_runtime_env,
    check_version,
)
from wheelforge.core import types, wheelset
from wheelforge.core.settings import ROOT
from wheelforge.core.terminal import UserError, did_you_mean
from wheelforge.core.types import Build, Inputs, Plan
from wheelforge.plan import fetch
from wheelforge.recipes.component import check_index_pins
from wheelforge.recipes.yamlschema import Mapping, line_at, load


def pin_on_branch(url: str, pin: str, branch: str, *, rules: types.Rewrites,
                  work: Path) -> str | None:
    """None when `pin` is an ancestor of `branch` at `url`, else the problem in words."""
    repo = work / f"{hashlib.sha256(url.encode()).hexdigest()[:16]}.git"
    fetch_url = fetch.rewrite(url, rules)

    env = {**fetch.git_env(), "GIT_CONFIG_GLOBAL": str(_commits_only_config(work))}

    def git(*args: str) -> tuple[int, str]:
        proc = subprocess.run(["git", *fetch.git_config_args(rules), "-C", str(repo), *args],
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
            fetch.run_git(["-C", str(tmp), *args])
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


# Variables read by compilers and standard tools, not by upstream's own files: never warned.
STANDARD_VARIABLES = frozenset({
    "CC", "CXX", "CPP", "LD", "AR", "NM", "RANLIB", "CFLAGS", "CXXFLAGS", "CPPFLAGS", "LDFLAGS",
    "HIPCC", "HIPFLAGS", "MAX_JOBS", "PKG_CONFIG_PATH", "PATH", "LD_LIBRARY_PATH",
    "LIBRARY_PATH", "CPATH", "PYTHONPATH", "MAKEFLAGS", "NINJAFLAGS", "SOURCE_DATE_EPOCH",
    "CCACHE_DIR", "ROCM_PATH", "ROCM_HOME", "HIP_PATH", "HIP_PLATFORM", "HIP_CLANG_PATH",
    "TMPDIR", "HOME",
})


STANDARD_PREFIXES = ("CMAKE_", "PIP_", "SETUPTOOLS_SCM_PRETEND_VERSION", "CCACHE_")


ALWAYS_PROVIDED = frozenset({"pip"})  # plus the builder's BUILD_TOOLS (_builder_tools)


BUILDER_SCRIPT = ROOT / "docker" / "build-component.py"


_NON_ISOLATED = re.compile(r"--no-build-isolation|--no-isolation|setup\.py\s+(bdist_wheel|"
                           r"build|install|develop|bdist_egg)|-m\s+build\s+(.*\s)?-n\b")


_REQ_FILE = re.compile(r"(^|/)requirements[\w.-]*\.txt$")


_PIP_VALUE_OPTIONS = {"-c", "--constraint", "-i", "--index-url", "--extra-index-url", "-f",
                      "--find-links", "-t", "--target", "--prefix", "--root", "-e",
                      "--editable", "--cache-dir", "--src", "--platform", "--python-version",
                      "--only-binary", "--no-binary", "--progress-bar", "-w", "--wheel-dir"}


@dataclass(frozen=True, kw_only=True)
class Finding:
    level: str  # ERROR, WARNING, or ok (a summary line)
    file: str
    line: int
    component: str
    message: str

    def text(self) -> str:
        return f"{self.file}:{self.line}: {self.level}: {self.component}: {self.message}"


def check_recipes(p: Plan, ins: Inputs, *, cache: Path, work: Path,
                  skip: tuple[str, ...] = ()) -> list[Finding]:
    """Every finding for the planned builds, one source (per component) read once.
    A component in `skip` is not read: one `skipped` line says so."""
    components = {b.component for b in p.builds.values()}
    for name in skip:
        if name not in components:
            raise UserError(f"--skip {name}: no planned component {name!r}"
                            f"{did_you_mean(name, components)}; planned: "
                            f"{', '.join(sorted(components))}")
    seen: set[tuple[str, str]] = set()
    out: list[Finding] = []
    ran: dict[str, _Ran] = {}  # target -> what the run checks computed
    for b in p.builds.values():
        ident = (b.component, repr(sorted(b.source.identity().items())))
        if ident in seen or b.component in seen:
            continue
        seen.add(ident)
        if b.component in skip:
            seen.add(b.component)
            out.append(Finding(level="skipped", file=b.recipe_file,
                               line=_recipe(b, ins).line("source"), component=b.component,
                               message=f"not checked (--skip {b.component}): "
                               f"{b.source.label()}"))
            continue
        out += _check_build(b, p, ins, cache=cache, work=work, ran=ran)
    return out + _check_set_requirements(p, ins, ran)


def require_no_errors(p: Plan, ins: Inputs, *, cache: Path, work: Path, say) -> None:
    """The ERROR part, before a build: print each error line, then fail."""
    errors = [f for f in check_recipes(p, ins, cache=cache, work=work) if f.level == "ERROR"]
    if not errors:
        return
    for f in errors[:-1]:
        say(f"error: {f.text()}")
    more = f" (and {len(errors) - 1} more above; `invoke check` lists all)" if len(
        errors) > 1 else ""
    raise UserError(errors[-1].text() + more, exit_code=1)


class _Recipe:
    """A recipe file's key lines, read again from the file the plan loaded."""

    def __init__(self, path: Path, display: str) -> None:
        self.file = display
        self.data: Mapping = load(path, display=display)

    def line(self, *keys: str | int) -> int:
        return line_at(self.data, keys)


def _recipe(b: Build, ins: Inputs) -> _Recipe:
    path = ins.recipe_overrides.get(b.component) or ins.recipes_dir / f"{b.component}.yaml"
    return _Recipe(path, b.recipe_file)


@dataclass(frozen=True)
class _Ran:
    version: str | None  # what the build will produce, as computed
    requirements: list  # (Requirement, where): what its build requires


def _check_set_requirements(p: Plan, ins: Inputs, ran: dict[str, _Ran]) -> list[Finding]:
    """Each build's requirements against the versions its cells' sets will contain."""
    out: list[Finding] = []
    for cell in p.cells:
        targets = p.cell_targets[cell.id]
        have: dict[str, str] = {}
        for target in targets.values():
            b = p.builds[target]
            computed = ran[target].version if target in ran else None
            for name, spec, _ in b.versions:
                version = computed or spec.lstrip("=<>~!")
                have[name] = version
        for target in targets.values():
            if target not in ran:
                continue
            b = p.builds[target]
            r = _recipe(b, ins)
            others = {k: v for k, v in have.items()
                      if k not in {upstream.normalize(w) for w in b.wheels}}
            check_requirements(
                ran[target].requirements, others,
                lambda level, keys, message, b=b, r=r, cell=cell.id: out.append(Finding(
                    level=level, file=r.file, line=r.line(*keys), component=b.component,
                    message=f"{message} (cell {cell})")))
    unique: dict[str, Finding] = {}
    for f in out:  # one line per requirement, not one per cell
        unique.setdefault(f.message.rsplit(" (cell ", 1)[0], f)
    return list(unique.values())


def _check_build(b: Build, p: Plan, ins: Inputs, *, cache: Path, work: Path,
                 ran: dict[str, _Ran]) -> list[Finding]:
    r = _recipe(b, ins)
    src_node = r.data.get("source") or {}

    def finding(level: str, keys: tuple, message: str) -> Finding:
        return Finding(level=level, file=r.file, line=r.line(*keys), component=b.component,
                       message=message)

    out: list[Finding] = []
    if b.source.kind == "index":
        return check_index_pins(b, finding, b.source.url or fetch.index_url())
    if (b.source.kind == "git" and src_node.get("branch")
            and src_node.get("pin") == b.source.commit):
        problem = pin_on_branch(b.source.url, b.source.commit, str(src_node["branch"]),
                                rules=p.rewrites, work=work)
        if problem:
            out.append(finding("ERROR", ("source", "pin"), problem))
    try:
        tree, problems = upstream.source_tree(cache, b, rewrites=p.rewrites, work=work)
    except UserError as exc:
        return [*out, finding("ERROR", ("source",), f"cannot fetch the source: {exc}")]
    out += [finding("WARNING", ("source", "submodules"), problem) for problem in problems]
    assert tree is not None
    at = b.source.commit[:12] if b.source.kind == "git" else (
        f"{b.source.name} {b.source.version}" if b.source.kind == "sdist" else str(tree))
    mentioned = _mentioned(tree, b.steps)
    out += _check_outputs(b, tree, mentioned, at, finding)
    files = upstream.build_files(tree, mentioned)
    out += _check_env(b, tree, files, finding)
    out += _check_requirements(b, p, tree, finding)

    def say(level: str, keys: tuple, message: str) -> None:
        out.append(finding(level, keys, message))

    computed = check_version(b, tree, say)
    non_isolated = any(_NON_ISOLATED.search(s) for s in b.steps)
    req_files = [w for s in b.steps for w in _words(s)
                 if _REQ_FILE.search(w) and (tree / w).is_file()]
    upstream_reqs = build_requirements(b, tree, non_isolated, req_files)
    ran[b.target] = _Ran(computed.version, upstream_reqs)
    templates = {str(k): str(v) for k, v in (r.data.get("env") or {}).items()}
    check_runtime_env(b, templates, p.matrix.variant_variables, tree, say)
    check_abi_pins(
        [(req, i) for i, step in enumerate(b.steps)
         for _, _, word in _pip_installs(_words(step)) if (req := _requirement(word))],
        upstream_reqs, say)
    name = upstream.dist_name(tree)
    label = (f"upstream {name.name or '(name unknown)'} {name.version or ''} ({name.file})"
             if name else "no Python packaging")
    out.append(finding("ok", ("source",), f"{label.replace('  ', ' ')} at {at}; read "
                       f"{len(files.python)} Python, {len(files.shell)} shell, "
                       f"{len(files.cmake)} CMake files"))
    return out


def _check_outputs(b: Build, tree: Path, mentioned: list[str], at: str, finding) -> list[Finding]:
    if not b.wheels:
        return []
    env = dict(b.env)
    produced: dict[str, str] = {}  # normalized -> how it was read
    unknown: list[str] = []
    roots = ["."] + [m for m in mentioned if (tree / m).is_dir()]
    for root in dict.fromkeys(roots):
        name = upstream.dist_name(tree / root)
        if name is None:
            continue
        where = name.file if root == "." else f"{root}/{name.file}"
        value = env.get(name.env_var) if name.env_var and name.env_var in env else name.name
        if value:
            how = (f"${name.env_var}={value} (recipe env)" if name.env_var in env else
                   f"{value!r} ({where})")
            produced[upstream.normalize(value)] = how
        else:
            unknown.append(f"{where}: {name.why or 'no name'}")
    out = []
    for i, wheel in enumerate(b.wheels):
        if upstream.normalize(wheel) in produced:
            continue
        if unknown:
            out.append(finding("WARNING", ("outputs", "wheels", i),
                               f"outputs.wheels {wheel!r}: the upstream name is unknown "
                               f"statically ({'; '.join(unknown)}); not checked"))
        elif produced:
            names = ", ".join(produced.values())
            out.append(finding("ERROR", ("outputs", "wheels", i),
                               f"outputs.wheels {wheel!r} is not produced upstream at {at}: "
                               f"it builds {names}; fix outputs.wheels or the source"))
        else:
            out.append(finding("ERROR", ("outputs", "wheels", i),
                               f"outputs.wheels {wheel!r}: upstream has no Python packaging "
                               f"(PKG-INFO, pyproject.toml, setup.cfg, setup.py) at {at}; "
                               f"fix outputs.wheels or the source"))
    return out


def _check_env(b: Build, tree: Path, files: upstream.BuildFiles, finding) -> list[Finding]:
    reads = upstream.env_reads(tree, files)
    in_steps = set().union(*(upstream.shell_env_reads(s) for s in b.steps))
    out = []
    for key, _ in b.env:
        if (key in STANDARD_VARIABLES or key.startswith(STANDARD_PREFIXES) or key in reads
                or key in in_steps):
            continue
        searched = list(files.all())
        shown = ", ".join(searched[:4]) + (f" (+{len(searched) - 4} more)"
                                           if len(searched) > 4 else "")
        out.append(finding("WARNING", ("env", key),
                           f"env {key} is set but nothing reads it (searched: "
                           f"{shown or 'no build files'}; and the recipe's steps)"
                           f"{did_you_mean(key, reads)}; remove it or fix its name"))
    return out


def _check_requirements(b: Build, p: Plan, tree: Path, finding) -> list[Finding]:
    declared: dict[str, str] = {}  # normalized name -> where it is declared
    if any(_NON_ISOLATED.search(s) for s in b.steps):
        for name in upstream.pyproject_build_requires(tree) or []:
            declared.setdefault(upstream.normalize(name), "pyproject.toml [build-system]")
    provided = set(ALWAYS_PROVIDED) | _builder_tools() | _dependency_outputs(b, p)
    for apt in (b.apt or ()):
        provided.add(upstream.normalize(re.sub(r"^python3-|3$", "", apt.split("=")[0])))
    derived: dict[str, tuple[Path, re.Pattern | None]] = {}
    for step in b.steps:
        words = _words(step)
        files = [w for w in words if _REQ_FILE.search(w) and (tree / w).is_file()]
        exclude = _grep_exclude(words)
        for f in files:
            for name in upstream.requirements_file(tree / f):
                declared.setdefault(upstream.normalize(name), f)
        if files and ">" in " ".join(words):
            target = words[-1] if words[-2:-1] == [">"] else words[-1].lstrip(">")
            derived[target] = (tree / files[0], exclude)
        for name, req_file, _ in _pip_installs(words):
            if req_file is None:
                provided.add(upstream.normalize(name))
            elif req_file in derived:
                src, excl = derived[req_file]
                provided |= {upstream.normalize(n) for n in upstream.requirements_file(src, excl)}
            elif (tree / req_file).is_file():
                provided |= {upstream.normalize(n)
                             for n in upstream.requirements_file(tree / req_file)}
    return [finding("WARNING", ("steps",), f"build requirement {name!r} ({where}) is not "
                    f"provided: no step installs it and no dependency outputs it; add it to "
                    f"a pip install step or to depends")
            for name, where in sorted(declared.items()) if name not in provided]


def _builder_tools() -> set[str]:
    """What the builder installs before every recipe's steps: BUILD_TOOLS in its script."""
    try:
        module = ast.parse(BUILDER_SCRIPT.read_text())
    except (OSError, SyntaxError):
        return set()
    for node in module.body:
        if (isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id ==
                                                 "BUILD_TOOLS" for t in node.targets)
                and isinstance(node.value, (ast.Tuple, ast.List))):
            return {upstream.normalize(n) for n in (upstream.requirement_name(e.value) for e
                    in node.value.elts if isinstance(e, ast.Constant)) if n}
    return set()


def _dependency_outputs(b: Build, p: Plan) -> set[str]:
    out, todo, seen = set(), list(b.deps), set()
    while todo:
        target = todo.pop()
        if target in seen or target not in p.builds:
            continue
        seen.add(target)
        out |= {upstream.normalize(w) for w in p.builds[target].wheels}
        todo += p.builds[target].deps
    return out


def _pip_installs(words: list[str]) -> list[tuple[str, str | None, str]]:
    """(name, None, word) for each requirement a `pip install` names; ('', FILE, word) for
    each -r FILE."""
    out: list[tuple[str, str | None, str]] = []
    i = 0
    while i < len(words) - 1:
        if words[i].split("/")[-1] in ("pip", "pip3") and words[i + 1] == "install":
            i += 2
            while i < len(words) and words[i] not in ("&&", "||", ";", "|"):
                w = words[i]
                if w in ("-r", "--requirement") and i + 1 < len(words):
                    out.append(("", words[i + 1], w))
                    i += 1
                elif w.startswith("--requirement="):
                    out.append(("", w.split("=", 1)[1], w))
                elif w in _PIP_VALUE_OPTIONS:
                    i += 1
                elif w.endswith(".whl"):
                    out.append((wheelset.distribution_of(w), None, w))
                elif not w.startswith(("-", "/", ".", "$")) and "/" not in w:
                    name = upstream.requirement_name(w)
                    if name:
                        out.append((name, None, w))
                i += 1
        i += 1
    return out


def _requirement(word: str):
    """A requirement a step names as a word (pybind11==3.0.4), or None."""
    try:
        return Requirement(word) if word and not word.endswith(".whl") else None
    except InvalidRequirement:
        return None


def _grep_exclude(words: list[str]) -> re.Pattern | None:
    if "grep" not in words:
        return None
    args = words[words.index("grep") + 1:]
    flags = [w for w in args if w.startswith("-")]
    if not any("v" in f for f in flags if not f.startswith("--")):
        return None
    pattern = next((w for w in args if not w.startswith("-")), None)
    try:
        return re.compile(pattern) if pattern else None
    except re.error:
        return None


def _words(step: str) -> list[str]:
    try:
        return shlex.split(step, comments=True)
    except ValueError:
        return step.split()


def _mentioned(tree: Path, steps: tuple[str, ...]) -> list[str]:
    """Paths in the steps that exist in the tree (scripts run, directories built)."""
    out = []
    for step in steps:
        for word in _words(step):
            word = word.removeprefix("./").rstrip("/")
            if (word and word != "." and not word.startswith(("/", "$", "-"))
                    and ".." not in word.split("/") and (tree / word).exists()):
                out.append(word)
    return list(dict.fromkeys(out))
