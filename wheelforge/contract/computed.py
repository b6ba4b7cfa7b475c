"""The contract checks that compute what upstream's build will really do, running its cheap
parts where reading is not enough.

Reading files alone would let wrong versions and unmet build requirements through; these
checks work on the source tree exactly as the build context will present it:

- the version: setuptools_scm is run on the tree (with the build's environment, so a
  pretend version counts), after the tree's own .dockerignore is applied the way
  BuildKit applies it to a named context (a dropped ``.git`` means no history at all);
  a static version (PKG-INFO, ``[project] version``, setup.cfg, a literal in setup.py)
  is read as it is; otherwise the expression setup.py passes as ``setup(version=...)`` is
  evaluated after only setup.py's imports, function definitions and the top-level
  assignments that call none of its own functions (setup() itself never runs). The
  result must meet the build's expectation (plan/__init__.py). Each run has
  SCM_TIMEOUT_S (120 s); a version that cannot be computed here is a warning, and
  `invoke wheels` checks the built wheel instead;
- the build requirements: ``[build-system] requires`` (when a step builds without
  isolation) and the requirements files the steps install, evaluated with
  ``packaging`` against the versions the cell's set will contain;
- the ABI pins: packages whose binary interface crosses modules (pybind11, nanobind)
  are pinned with ``==`` in the steps, to the version upstream pins where it does;
- the run-time environment: a build variable that a variant sets and that the
  component's own packages (those its recipe imports, read statically) also read at run
  time must be in ``runtime_env`` too (else the image runs with upstream's default:
  AITER's ENABLE_CK is 1 unless set); a ``runtime_env`` variable that they never read is
  a warning.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import InvalidVersion, Version

from wheelforge.contract import upstream
from wheelforge.core.types import Build
from wheelforge.plan import cause

# Packages whose C++ ABI is shared between separately built modules (prebuilt and JIT
# modules, or two extensions that pass objects to each other): one version everywhere.
ABI_PACKAGES = ("pybind11", "nanobind")


PACKAGING_FILES = ("pyproject.toml", "setup.cfg", "setup.py", "PKG-INFO")


SCM_TIMEOUT_S = 120


Say = Callable[[str, tuple, str], object]  # finding(level, recipe keys, message)


@dataclass(frozen=True)
class Computed:
    version: str | None  # None: cannot be computed here
    how: str


def context_drops(tree: Path, names: Iterable[str]) -> list[str]:
    """Which of the tree's top-level `names` its own .dockerignore leaves out of the build
    context (BuildKit applies a named context's .dockerignore: patterns in order, `!`
    re-includes, the last match wins; a pattern naming a folder drops what is under it)."""
    ignore = tree / ".dockerignore"
    if not ignore.is_file():
        return []
    patterns = []
    for raw in upstream.read_text(ignore).splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
        pattern = re.sub(r"^(\*\*/)+", "", pattern)
        patterns.append((negate, pattern))
    dropped = []
    for name in names:
        verdict = False
        for negate, pattern in patterns:
            first = pattern.split("/", 1)[0]
            if "/" not in pattern.rstrip("/") and fnmatch.fnmatchcase(name, first):
                verdict = not negate
        if verdict:
            dropped.append(name)
    return dropped


def uses_scm(tree: Path) -> bool:
    text = upstream.read_text(tree / "pyproject.toml")
    return ("[tool.setuptools_scm]" in text or "setuptools_scm" in text
            or "use_scm_version" in upstream.read_text(tree / "setup.py"))


def computed_version(b: Build, tree: Path) -> Computed:
    """The version `b`'s build will give its wheel, computed on the tree as presented."""
    if uses_scm(tree):
        return _scm_version(b, tree)
    name = upstream.dist_name(tree)
    if name is not None and name.version:
        return Computed(name.version, f"read from {name.file}")
    if (tree / "setup.py").is_file():
        return _setup_py_version(b, tree)
    return Computed(None, "not computable here (neither setuptools_scm nor a static version)")


# Runs the part of a setup.py that computes `setup(version=...)`, and nothing else: its
# imports, its function definitions and the top-level assignments that call none of its
# own functions (each on its own; one that fails is left out), then the version expression.
# The setup() call, other top-level calls, conditionals and classes never run.
_SETUP_VERSION = """
import ast, os, sys
path = os.path.join(sys.argv[1], "setup.py")
mod = ast.parse(open(path, encoding="utf-8").read())
own = {n.name for n in mod.body if isinstance(n, ast.FunctionDef)}
named = {t.id: n.value for n in mod.body if isinstance(n, ast.Assign)
         for t in n.targets if isinstance(t, ast.Name)}
expr = None
for n in mod.body:
    call = n.value if isinstance(n, ast.Expr) else None
    func = getattr(call, "func", None)
    if getattr(func, "id", getattr(func, "attr", "")) == "setup":
        expr = next((k.value for k in call.keywords if k.arg == "version"), None)
if isinstance(expr, ast.Name) and expr.id in named:
    expr = named[expr.id]
if expr is None:
    sys.exit("setup() has no version argument")
def calls_own(node):
    return any(isinstance(c, ast.Call) and getattr(c.func, "id", None) in own
               for c in ast.walk(node))
ns = {"__file__": path, "__name__": "__version_of_setup_py__"}
for n in mod.body:
    if isinstance(n, (ast.Import, ast.ImportFrom, ast.FunctionDef)) or (
            isinstance(n, ast.Assign) and not calls_own(n.value)):
        try:
            exec(compile(ast.Module([n], []), path, "exec"), ns)
        except Exception:
            pass
print(eval(compile(ast.Expression(expr), path, "eval"), ns))
"""


def _printed_version(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[str | None, str]:
    """(the last line `python ARGS` printed, '') when it exits 0; else (None, why)."""
    env = {**env, "PYTHONDONTWRITEBYTECODE": "1"}
    try:
        proc = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                              text=True, timeout=SCM_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"could not run ({exc})"
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        return None, (proc.stderr.strip().splitlines() or ["no output"])[-1][:200]
    return lines[-1].strip(), ""


def _setup_py_version(b: Build, tree: Path) -> Computed:
    version, why = _printed_version(["-c", _SETUP_VERSION, str(tree)], tree,
                                    {**os.environ, **dict(b.env)})
    if version is None:
        return Computed(None, f"not computable here: setup.py's version expression failed "
                              f"({why})")
    return Computed(version, "setup.py's version expression, run with the build's environment")


def _scm_version(b: Build, tree: Path) -> Computed:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SETUPTOOLS_SCM")}
    env.update(dict(b.env))
    with tempfile.TemporaryDirectory(prefix="wheelforge-scm-") as tmp:
        root, note = tree, "with the tree's .git"
        if ".git" in context_drops(tree, [".git"]):
            root, note = Path(tmp), "with .git dropped by the source's own .dockerignore"
            for name in PACKAGING_FILES:
                if (tree / name).is_file():
                    shutil.copy2(tree / name, root / name)
        elif not (tree / ".git").exists():
            note = "with no .git in the tree"
        version, why = _printed_version(["-m", "setuptools_scm"], root, env)
    if version is None:
        return Computed(None, f"setuptools_scm failed {note} ({why})")
    pretend = " and the recipe's pretend version" if any(
        k.startswith("SETUPTOOLS_SCM_PRETEND_VERSION") for k, _ in b.env) else ""
    return Computed(version, f"setuptools_scm, run {note}{pretend}")


def check_version(b: Build, tree: Path, say: Say) -> Computed:
    """The version finding of one build; returns what was computed."""
    computed = computed_version(b, tree)
    pretend = any(k.startswith("SETUPTOOLS_SCM_PRETEND_VERSION") for k, _ in b.env)
    if uses_scm(tree) and not pretend and ".git" in context_drops(tree, [".git"]):
        say("WARNING", ("source",), "the source's own .dockerignore drops .git from the "
            "build context (BuildKit applies a named context's .dockerignore), so "
            "setuptools_scm sees no git history; set SETUPTOOLS_SCM_PRETEND_VERSION: "
            "\"{version}\" in env")
    wants = b.expected_versions()
    if not b.wheels:
        return computed
    want = wants.get(upstream.normalize(b.wheels[0]))
    if want is None:
        if b.source.kind == "git":
            say("ERROR", ("outputs",), f"no outputs.version: state the version this pin "
                f"builds (here: {computed.version or 'unknown'}, {computed.how})")
        return computed
    if computed.version is None:
        say("WARNING", ("outputs", "version"), f"the version the build will produce is "
            f"{computed.how}; `invoke wheels` checks the built wheel against {want.spec}")
    elif not want.allows(computed.version):
        say("ERROR", ("outputs", "version"), f"the build will produce version "
            f"{computed.version} ({computed.how}), but {want.why} expects {want.spec}; "
            f"likely cause: {cause(computed.version, want)}")
    return computed


def build_requirements(b: Build, tree: Path, non_isolated: bool,
                       files: Iterable[str]) -> list[tuple[Requirement, str]]:
    """(requirement, where) for pyproject's build requires (when the build is not isolated)
    and each requirements file the steps install."""
    out: list[tuple[Requirement, str]] = []
    if non_isolated:
        data = upstream.toml(tree / "pyproject.toml") or {}
        for text in (data.get("build-system") or {}).get("requires") or []:
            out += _req(text, "pyproject.toml [build-system] requires")
    for file in files:
        for line in upstream.read_text(tree / file).splitlines():
            out += _req(line.split("#", 1)[0].strip(), file)
    return out


def _req(text: str, where: str) -> list[tuple[Requirement, str]]:
    if not text or text.startswith("-"):
        return []
    try:
        req = Requirement(text)
    except InvalidRequirement:
        return []
    if req.marker is not None and not req.marker.evaluate():
        return []
    return [(req, where)]


def check_requirements(reqs: list[tuple[Requirement, str]], set_versions: dict[str, str],
                       say: Say) -> None:
    """ERROR for each requirement naming a component of the set that its version misses."""
    for req, where in reqs:
        have = set_versions.get(upstream.normalize(req.name))
        if have is None or not req.specifier:
            continue
        try:
            ok = req.specifier.contains(Version(have), prereleases=True)
        except InvalidVersion:
            continue
        if not ok:
            say("ERROR", ("depends",), f"build requirement {req} ({where}) is not met: the "
                f"set builds {req.name} {have}; the build would stop with missing "
                f"dependencies. Align the two components' pins")


def check_abi_pins(step_reqs: list[tuple[Requirement, int]],
                   upstream_reqs: list[tuple[Requirement, str]], say: Say) -> None:
    """Each ABI package a step installs is pinned (==), to upstream's pin where it has one."""
    pinned_upstream = {upstream.normalize(r.name): (r, where) for r, where in upstream_reqs
                       if _exact(r)}
    for req, step in step_reqs:
        name = upstream.normalize(req.name)
        if name not in ABI_PACKAGES:
            continue
        theirs = pinned_upstream.get(name)
        if not _exact(req):
            hint = f"=={_exact(theirs[0])} as upstream's {theirs[1]} does" if theirs else \
                "==VERSION"
            say("ERROR", ("steps", step), f"{req.name} is not pinned ({req}): prebuilt and "
                f"run-time modules must share one {req.name} ABI; pin it {hint}")
        elif theirs and _exact(theirs[0]) != _exact(req):
            say("ERROR", ("steps", step), f"{req} differs from upstream's {theirs[0]} "
                f"({theirs[1]}); modules built by upstream's pin and ours would not share "
                f"one ABI; pin =={_exact(theirs[0])}")


def _exact(req: Requirement) -> str | None:
    specs = list(req.specifier)
    return specs[0].version if len(specs) == 1 and specs[0].operator in ("==", "===") else None


MAX_RUNTIME_PY_FILES = 5000


def runtime_reads(tree: Path, imports: Iterable[str]) -> tuple[set[str], int]:
    """Variables the component's own packages read at run time (the top-level packages its
    recipe imports, as they lie in the tree or under python/ or src/), and the number of
    Python files read."""
    texts: list[str] = []
    for top in dict.fromkeys(m.split(".")[0] for m in imports):
        for base in (tree, tree / "python", tree / "src"):
            folder = base / top
            if folder.is_dir():
                for path in sorted(folder.rglob("*.py"))[:MAX_RUNTIME_PY_FILES - len(texts)]:
                    texts.append(upstream.read_text(path))
                break
            if (base / f"{top}.py").is_file():
                texts.append(upstream.read_text(base / f"{top}.py"))
                break
    return upstream.python_env_reads(texts), len(texts)


def check_runtime_env(b: Build, env_templates: dict[str, str], variant_vars: Iterable[str],
                      tree: Path, say: Say) -> None:
    """A build variable that a variant sets and that upstream also reads at run time must be
    in runtime_env too (else the image runs with upstream's default: AITER's ENABLE_CK is
    1 unless set); a runtime_env variable that nothing reads at run time is a warning."""
    if not b.runtime or not b.imports:
        return
    reads, files = runtime_reads(tree, b.imports)
    if not files:
        return
    runtime = dict(b.runtime_env)
    variant_vars = set(variant_vars)
    for key, template in env_templates.items():
        uses = {name for name in re.findall(r"\{(\w+)\}", template) if name in variant_vars}
        if uses and key in reads and key not in runtime:
            say("ERROR", ("env", key), f"{key} is set from the variant ({template}) for the "
                f"build, and {', '.join(b.imports)} also read it at run time; add "
                f"runtime_env: {{{key}: \"{template}\"}}, or the image runs with upstream's "
                f"default")
    for key in runtime:
        if key not in reads:
            say("WARNING", ("runtime_env", key), f"runtime_env {key} is set but "
                f"{', '.join(b.imports)} never read it ({files} Python files searched); "
                f"remove it or fix its name")
