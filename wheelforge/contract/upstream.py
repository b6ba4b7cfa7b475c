"""Upstream's own files, read statically for `invoke check`: a planned source's tree, what
its build is called and requires, and what it reads from the environment.

The tree (`source_tree`): the check reads a source's contract from upstream's own
top-level files. A submodule that cannot be fetched from here (a host without access to
it, a mirror that lacks it) is named in a warning and the tree is read without its
submodules; a top-level source that cannot be fetched is an error (UserError). Each
submodule listed in `.gitmodules` is probed at the commit the tree records for it
(`--depth 1`, into a scratch repository), with the same rewrites and file-protocol rule
as `invoke wheels` (plan/fetch.py). Trees are fetched into the check's own folder, which
no build clears while it fetches (a build clears the build cache's unfinished fetches when
it starts), and then handed to the build cache whole, with one rename.

Names, versions and requirements (`dist_name`, `pyproject_build_requires`,
`requirements_file`): names and versions come from PKG-INFO (an sdist's own metadata,
authoritative), pyproject.toml, setup.cfg, or a literal `name=` in setup.py found with
`ast` (also through a variable assigned once, or an environment read, whose variable the
recipe may set); build requirements from pyproject.toml and requirements files (`-r`
followed). A value that cannot be read without running code is reported as unknown,
never guessed.

Environment reads (`build_files`, `env_reads`): variables come from the files a build
runs: setup.py (at the top and in the folders the steps name), the Python files the
steps name, and the modules these import from the tree (400 files at most); shell build
scripts (those the recipe's steps name, build*.sh in the top two levels, and the scripts
they call, one level deep); and CMake files (5000 at most). In Python, a literal name
handed to a function that reads the variable its argument names counts too.

Nothing here runs upstream code; contract/computed.py runs the parts that must be run.
"""

from __future__ import annotations

import ast
import configparser
import posixpath
import re
import shutil
import tempfile
import tomllib
from dataclasses import dataclass, replace
from email.parser import HeaderParser
from pathlib import Path

from wheelforge.core import types
from wheelforge.core.terminal import UserError
from wheelforge.core.types import Build
from wheelforge.core.wheelset import canonical
from wheelforge.plan.fetch import fetch, file_mirror, run_git, source_dir

ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


_CMAKE_ENV_RE = re.compile(r"ENV\{([A-Za-z_][A-Za-z0-9_]*)\}")


_SHELL_VAR_RE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")


_SKIP_DIRS = {".git", "node_modules", "__pycache__"}


MAX_PY_FILES = 400


MAX_CMAKE_FILES = 5000


def _env_key(node: ast.AST) -> ast.expr | None:
    """The key expression of an environment read, else None."""
    if isinstance(node, ast.Subscript) and is_environ(node.value):
        return node.slice
    if isinstance(node, ast.Call) and is_env_call(node.func) and node.args:
        return node.args[0]
    if (isinstance(node, ast.Compare) and len(node.ops) == 1
            and isinstance(node.ops[0], (ast.In, ast.NotIn)) and is_environ(node.comparators[0])):
        return node.left
    return None


@dataclass(frozen=True)
class _PyScan:
    reads: frozenset[str]  # literal keys
    helpers: frozenset[str]  # functions that read a variable named by an argument
    calls: tuple[tuple[str, frozenset[str]], ...]  # (function, UPPER_CASE strings in its args)


def _scan_python(text: str) -> _PyScan | None:
    try:
        module = ast.parse(text)
    except (SyntaxError, ValueError):
        return None
    reads, helpers, calls = set(), set(), []
    for fn in (n for n in ast.walk(module) if isinstance(n, (ast.FunctionDef,
                                                             ast.AsyncFunctionDef))):
        for node in ast.walk(fn):
            key = _env_key(node)
            if key is not None and not isinstance(key, ast.Constant):
                helpers.add(fn.name)
    for node in ast.walk(module):
        key = _env_key(node)
        if isinstance(key, ast.Constant) and isinstance(key.value, str):
            reads.add(key.value)
        if isinstance(node, ast.Call):
            strings = {s.value for arg in [*node.args, *(k.value for k in node.keywords)]
                       for s in ast.walk(arg) if isinstance(s, ast.Constant)
                       and isinstance(s.value, str) and ENV_NAME_RE.match(s.value)}
            if strings and call_name(node.func):
                calls.append((call_name(node.func), frozenset(strings)))
    return _PyScan(frozenset(reads), frozenset(helpers), tuple(calls))


def python_env_reads(texts: list[str]) -> set[str]:
    """Variables Python sources read: os.environ[...], .get, .setdefault, getenv, `in`,
    and literal names handed to a function that reads the variable its argument names."""
    scans = [s for s in (_scan_python(t) for t in texts) if s is not None]
    helpers = set().union(*(s.helpers for s in scans)) if scans else set()
    out: set[str] = set()
    for scan in scans:
        out |= scan.reads
        for fn, strings in scan.calls:
            if fn in helpers:
                out |= strings
    return out


def cmake_env_reads(text: str) -> set[str]:
    """`$ENV{VAR}` and `if(DEFINED ENV{VAR})` in CMake code."""
    return set(_CMAKE_ENV_RE.findall(_strip_comments(text)))


def shell_env_reads(text: str) -> set[str]:
    """`$VAR` and `${VAR...}` in shell code."""
    return set(_SHELL_VAR_RE.findall(_strip_comments(text)))


def _strip_comments(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))


@dataclass(frozen=True, kw_only=True)
class BuildFiles:
    python: tuple[str, ...]
    shell: tuple[str, ...]
    cmake: tuple[str, ...]

    def all(self) -> tuple[str, ...]:
        return (*self.python, *self.shell, *self.cmake)


def build_files(tree: Path, mentioned: list[str]) -> BuildFiles:
    """setup.py files (root and `mentioned` dirs), the Python modules they import from the
    tree, shell scripts named in `mentioned` or called build*.sh, and every CMake file."""
    tree = tree.resolve()
    py: dict[Path, None] = {}
    shell: dict[Path, None] = {}
    starts = [tree / "setup.py"] + [tree / m / "setup.py" for m in mentioned]
    for m in mentioned:
        path = tree / m
        if path.is_file() and path.suffix == ".py":
            starts.append(path)
        elif path.is_file() and (path.suffix == ".sh" or _is_shell(path)):
            shell[path.resolve()] = None
    shell.update(dict.fromkeys(p for p in _walk(tree, 2) if re.match(r"build.*\.sh$", p.name)))
    for script in list(shell):  # scripts that build scripts run, one level
        for ref in re.findall(r"[\w./${}-]*\w+\.sh\b", read_text(script)):
            ref = re.sub(r"^(\$\{?\w+\}?)?/+", "", ref)  # $DIR/x.sh, $(dirname $0)/x.sh
            for base in (script.parent, tree):
                if (base / ref).is_file() and _inside(base / ref, tree):
                    shell[(base / ref).resolve()] = None
    bases = [tree, *_walk(tree, 2, dirs=True)]
    todo = [p.resolve() for p in starts if p.is_file() and _inside(p, tree)]
    while todo and len(py) < MAX_PY_FILES:
        path = todo.pop(0)
        if path in py:
            continue
        py[path] = None
        todo += [m for m in _imports(path, bases) if m not in py and _inside(m, tree)]
    cmake = [p for p in _walk(tree, 99) if p.name == "CMakeLists.txt" or p.suffix == ".cmake"]
    return BuildFiles(python=_rel(py, tree), shell=_rel(shell, tree),
                      cmake=_rel(cmake[:MAX_CMAKE_FILES], tree))


def _rel(paths, tree: Path) -> tuple[str, ...]:
    return tuple(sorted({str(p.resolve().relative_to(tree)) for p in paths
                         if p.resolve().is_relative_to(tree)}))


def env_reads(tree: Path, files: BuildFiles) -> set[str]:
    reads = python_env_reads([read_text(tree / f) for f in files.python])
    for f in files.shell:
        reads |= shell_env_reads(read_text(tree / f))
    for f in files.cmake:
        reads |= cmake_env_reads(read_text(tree / f))
    return reads


def _imports(path: Path, bases: list[Path]) -> list[Path]:
    try:
        module = ast.parse(read_text(path))
    except (SyntaxError, ValueError):
        return []
    names: list[str] = []
    for node in ast.walk(module):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the file's own package
                base = path.parent
                for _ in range(node.level - 1):
                    base = base.parent
                stem = (node.module or "").replace(".", "/")
                for alias in node.names:
                    names.append(str((base / stem / alias.name).resolve()))
                    names.append(str((base / stem).resolve()))
                continue
            names += [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
    out = []
    for name in names:
        candidates = ([Path(name)] if name.startswith("/") else
                      [b / name.replace(".", "/") for b in (path.parent, *bases)])
        for c in candidates:
            for f in (c.with_name(c.name + ".py"), c / "__init__.py"):
                if f.is_file():
                    out.append(f.resolve())
    return out


def _walk(tree: Path, depth: int, *, dirs: bool = False) -> list[Path]:
    out, level = [], [tree]
    for _ in range(depth):
        nxt = []
        for d in level:
            try:
                entries = sorted(d.iterdir())
            except OSError:
                continue
            for e in entries:
                if e.is_dir() and not e.is_symlink() and e.name not in _SKIP_DIRS:
                    nxt.append(e)
                    if dirs:
                        out.append(e)
                elif e.is_file() and not dirs:
                    out.append(e)
        level = nxt
    return out


def _inside(path: Path, tree: Path) -> bool:
    return path.resolve().is_relative_to(tree.resolve())


def _is_shell(path: Path) -> bool:
    with path.open("rb") as f:
        first = f.readline(100)
    return first.startswith(b"#!") and (b"sh" in first.split(b"/")[-1])


@dataclass(frozen=True, kw_only=True)
class Submodule:
    path: str
    url: str  # as .gitmodules gives it, relative URLs resolved against the superproject
    commit: str


def listed(tree: Path, superproject_url: str) -> list[Submodule]:
    """The submodules `tree` (a git checkout) records: path, URL and commit."""
    config = run_git(["config", "-z", "-f", ".gitmodules", "--get-regexp",
                      r"^submodule\..*\.(path|url)$"], cwd=str(tree))
    entries: dict[str, dict[str, str]] = {}
    for entry in filter(None, config.stdout.split("\0")):
        key, _, value = entry.partition("\n")
        name, _, field = key[len("submodule."):].rpartition(".")
        entries.setdefault(name, {})[field] = value
    links = run_git(["ls-files", "-s", "-z"], cwd=str(tree))
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


def unfetchable(tree: Path, superproject_url: str, *, rules: types.Rewrites,
                work: Path) -> list[tuple[Submodule, str]]:
    """(submodule, git's last line) for each submodule that cannot be fetched."""
    out = []
    work.mkdir(parents=True, exist_ok=True)
    for sub in listed(tree, superproject_url):
        scratch = Path(tempfile.mkdtemp(prefix=".submodule-", dir=work))
        try:
            run_git(["init", "-q", "--bare"], cwd=str(scratch))
            proc = run_git(["fetch", "-q", "--depth", "1", "--", sub.url, sub.commit],
                           rules=rules, cwd=str(scratch), timeout=3600,
                           allow_file=file_mirror(sub.url, rules))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        if proc.returncode != 0:
            lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
            out.append((sub, lines[-1] if lines else f"git fetch exit {proc.returncode}"))
    return out


def source_tree(cache: Path, b: Build, *, rewrites: types.Rewrites,
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


def _fetch(cache: Path, b: Build, rewrites: types.Rewrites, work: Path) -> Path | None:
    dest = source_dir(cache, b)
    if dest is None or b.source.kind == "path" or dest.is_dir():
        return dest
    own = work / "sources"
    try:
        tree = fetch(own, b, rewrites=rewrites)
    except OSError:  # another check fetched the same tree first
        tree = source_dir(own, b)
        if tree is None or not tree.is_dir():
            raise
    assert tree is not None
    cache.mkdir(parents=True, exist_ok=True)
    try:
        tree.rename(dest)
    except OSError:  # the build cache got the same tree meanwhile: read that one
        return dest if dest.is_dir() else tree
    return dest


_REQ_NAME_RE = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


@dataclass(frozen=True, kw_only=True)
class DistName:
    """A distribution's name as upstream declares it; `name` None: not readable statically."""

    name: str | None
    version: str | None
    file: str  # where it was read, relative to the tree
    env_var: str | None = None  # the name is this variable's value when it is set
    why: str = ""  # why `name` is None


def normalize(name: str) -> str:
    """A distribution name as installers compare it (PEP 503): core/wheelset.py canonical."""
    return canonical(name)


def dist_name(tree: Path) -> DistName | None:
    """The distribution `tree` builds; None when it has no Python packaging at all."""
    pkg_info = tree / "PKG-INFO"
    if pkg_info.is_file():
        meta = HeaderParser().parsestr(pkg_info.read_text(encoding="utf-8", errors="replace"))
        if meta.get("Name"):
            return DistName(name=meta["Name"].strip(), version=(meta.get("Version") or None),
                            file="PKG-INFO")
    found = pyproject_name(tree)
    if found is not None and (found.name or found.why):
        return found
    cfg = setup_cfg_name(tree)
    if cfg is not None and cfg.name:
        return cfg
    if (tree / "setup.py").is_file():
        return setup_py_name((tree / "setup.py").read_text(encoding="utf-8", errors="replace"))
    return found or cfg


def pyproject_name(tree: Path) -> DistName | None:
    data = toml(tree / "pyproject.toml")
    if data is None:
        return None
    project = data.get("project") or {}
    poetry = (data.get("tool") or {}).get("poetry") or {}
    dynamic = project.get("dynamic") or []
    version = project.get("version") or poetry.get("version")
    if "version" in dynamic:
        version = None
    if "name" in dynamic:
        return DistName(name=None, version=version, file="pyproject.toml",
                        why="pyproject.toml lists name in [project] dynamic")
    name = project.get("name") or poetry.get("name")
    if isinstance(name, str) and name:
        return DistName(name=name, version=version if isinstance(version, str) else None,
                        file="pyproject.toml")
    return DistName(name=None, version=None, file="pyproject.toml")


def setup_cfg_name(tree: Path) -> DistName | None:
    path = tree / "setup.cfg"
    if not path.is_file():
        return None
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(path.read_text(encoding="utf-8", errors="replace"))
    except configparser.Error:
        return None
    name = parser.get("metadata", "name", fallback="").strip()
    version = parser.get("metadata", "version", fallback="").strip()
    if not name or name.startswith(("attr:", "file:")):
        return None
    return DistName(name=name, version=None if version.startswith(("attr:", "file:")) or not
                    version else version, file="setup.cfg")


def setup_py_name(text: str) -> DistName:
    """`setup(name=...)` in setup.py: a literal, a variable holding one, or an env read."""
    try:
        module = ast.parse(text)
    except SyntaxError as exc:
        return DistName(name=None, version=None, file="setup.py",
                        why=f"setup.py does not parse ({exc.msg}, line {exc.lineno})")
    assigned: dict[str, list[ast.expr]] = {}
    for node in ast.walk(module):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    assigned.setdefault(target.id, []).append(node.value)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value:
            assigned.setdefault(node.target.id, []).append(node.value)
    for node in ast.walk(module):
        if isinstance(node, ast.Call) and call_name(node.func) == "setup":
            kw = {k.arg: k.value for k in node.keywords if k.arg}
            if "name" not in kw:
                return DistName(name=None, version=None, file="setup.py",
                                why="setup() gets no literal name= (it comes from elsewhere)")
            name, env_var, why = _literal(kw["name"], assigned)
            version = _literal(kw["version"], assigned)[0] if "version" in kw else None
            return DistName(name=name, version=version, file="setup.py", env_var=env_var,
                            why=why)
    return DistName(name=None, version=None, file="setup.py", why="setup.py calls no setup()")


def _literal(node: ast.expr, assigned: dict[str, list[ast.expr]],
             depth: int = 0) -> tuple[str | None, str | None, str]:
    """(value, env var, why-unknown) of an expression, without evaluating anything."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value, None, ""
    if isinstance(node, ast.Name) and depth < 5:
        values = assigned.get(node.id, [])
        if len(values) == 1:
            return _literal(values[0], assigned, depth + 1)
        return None, None, (f"setup.py: name={node.id}, and {node.id} is assigned "
                            f"{len(values)} times" if values else
                            f"setup.py: name={node.id}, which is not assigned in setup.py")
    if isinstance(node, ast.Call) and node.args:
        key = node.args[0]
        if (is_env_call(node.func) and isinstance(key, ast.Constant)
                and isinstance(key.value, str)):
            default = node.args[1] if len(node.args) > 1 else None
            value = _literal(default, assigned, depth + 1)[0] if default is not None else None
            return value, key.value, "" if value else f"setup.py: name from ${key.value}"
    return None, None, f"setup.py: name={ast.unparse(node)} is not a literal"


def call_name(func: ast.expr) -> str:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return ""


def toml(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        return tomllib.loads(path.read_text(encoding="utf-8", errors="replace"))
    except tomllib.TOMLDecodeError:
        return None


def is_environ(node: ast.expr) -> bool:
    return ((isinstance(node, ast.Attribute) and node.attr == "environ")
            or (isinstance(node, ast.Name) and node.id == "environ"))


def is_env_call(func: ast.expr) -> bool:
    """os.getenv / getenv / os.environ.get / .setdefault / .pop."""
    if isinstance(func, ast.Name):
        return func.id == "getenv"
    if isinstance(func, ast.Attribute):
        if func.attr == "getenv":
            return True
        return func.attr in ("get", "setdefault", "pop", "__getitem__") and is_environ(func.value)
    return False


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def pyproject_build_requires(tree: Path) -> list[str] | None:
    data = toml(tree / "pyproject.toml")
    if data is None:
        return None
    reqs = (data.get("build-system") or {}).get("requires") or []
    return [n for n in (requirement_name(r) for r in reqs if isinstance(r, str)) if n]


def requirement_name(line: str) -> str | None:
    line = line.split("#", 1)[0].strip()
    if not line or line.startswith("-") or "://" in line:
        return None
    m = _REQ_NAME_RE.match(line)
    return m.group(1) if m else None


def requirements_file(path: Path, exclude: re.Pattern | None = None,
                      _seen: frozenset[Path] = frozenset()) -> list[str]:
    """Names in a requirements file (following -r), minus lines `exclude` matches."""
    out = []
    for raw in read_text(path).splitlines():
        line = raw.strip()
        if exclude is not None and exclude.search(raw):
            continue
        m = re.match(r"^(-r|--requirement)\s*(\S+)", line)
        if m:
            inner = (path.parent / m.group(2)).resolve()
            if inner not in _seen and inner.is_file():
                out += requirements_file(inner, exclude, _seen | {inner})
            continue
        name = requirement_name(line)
        if name:
            out.append(name)
    return out
