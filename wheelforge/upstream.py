"""Read an upstream source tree statically: what it is called and what it requires.

Nothing here runs upstream code. Names and versions come from PKG-INFO (an
sdist's own metadata, authoritative), pyproject.toml, setup.cfg, or a literal
`name=` in setup.py found with `ast`; build requirements from pyproject.toml and
requirements files. What a build reads from the environment is buildreads.py.
A value that cannot be read without running code is reported as unknown, never
guessed.
"""

from __future__ import annotations

import ast
import configparser
import re
import tomllib
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path

from .wheelname import canonical

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
    """A distribution name as installers compare it (PEP 503): wheelname.canonical."""
    return canonical(name)


# ---- names and versions -------------------------------------------------------------------

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


# ---- environment reads in setup.py (also used by buildreads.py) -------------------------

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


# ---- build requirements ---------------------------------------------------------------------

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
