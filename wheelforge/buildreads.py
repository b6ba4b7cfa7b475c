"""What an upstream build reads from the environment, found statically.

Environment variables come from the files a build runs: setup.py and the Python
modules it imports from the tree, shell build scripts (those the recipe's steps
name, build*.sh, and the scripts they call), and CMake files. Nothing here runs
upstream code.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

from .upstream import call_name, is_env_call, is_environ, read_text

ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CMAKE_ENV_RE = re.compile(r"ENV\{([A-Za-z_][A-Za-z0-9_]*)\}")
_SHELL_VAR_RE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")
_SKIP_DIRS = {".git", "node_modules", "__pycache__"}
MAX_PY_FILES = 400
MAX_CMAKE_FILES = 5000


# ---- environment variables ------------------------------------------------------------------

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


# ---- which files a build runs ----------------------------------------------------------------

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
