"""The layering: the command-line layer (wheelforge/app.py) is imported by tasks.py (and
tests) only; the flow (pipeline.py) and every other module never import it."""

from __future__ import annotations

import ast
from pathlib import Path

from wheelforge import settings

ROOT = settings.ROOT
CLI = "wheelforge.app"


def imported(path: Path) -> set[str]:
    """Absolute names of every module `path` imports (relative imports resolved)."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    return imported_by(path.read_text(), package, str(path))


def imported_by(source: str, package: str, where: str = "<text>") -> set[str]:
    """Absolute names `source`, a module of `package`, imports; `from X import n` gives
    both X and X.n (n may be a module)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(source, where)):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = parts[: len(parts) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            out.add(module)
            out |= {f"{module}.{alias.name}" for alias in node.names}
    return out


def python_files() -> list[Path]:
    """The repository's own Python files (not .cache/, wheels/ or hidden folders)."""
    tops = [p for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith(".")
            and p.name not in ("wheels", "node_modules")]
    return sorted([*ROOT.glob("*.py"), *(f for top in tops for f in top.rglob("*.py"))])


def test_every_form_of_import_is_seen():
    for source, package in [("from .app import WHEELS", "wheelforge"),
                            ("from . import app", "wheelforge"),
                            ("from .. import app", "wheelforge.smoke"),
                            ("from ..app import guarded", "wheelforge.smoke"),
                            ("import wheelforge.app", "bench"),
                            ("from wheelforge import app as cli", ""),
                            ("def f():\n    from wheelforge.app import inputs", "wheelforge")]:
        assert CLI in imported_by(source, package), source
    assert CLI not in imported_by("from . import application, pipeline", "wheelforge")


def test_only_tasks_and_tests_import_the_command_line_layer():
    importers = sorted(str(p.relative_to(ROOT)) for p in python_files()
                       if p.name != "app.py" and CLI in imported(p))
    allowed = [p for p in importers if p == "tasks.py" or p.startswith("tests/")]
    assert importers == allowed, f"only tasks.py may import {CLI}: {importers}"
    assert "tasks.py" in importers


def test_the_flow_and_the_package_never_import_the_command_line_layer():
    for path in sorted((ROOT / "wheelforge").rglob("*.py")):
        if path.name == "app.py" and path.parent.name == "wheelforge":
            continue
        assert CLI not in imported(path), f"{path.relative_to(ROOT)} imports {CLI}"


def test_the_runtime_image_build_context_holds_the_audit_and_what_it_imports():
    """Dockerfile.clean runs `python -m wheelforge.audit` from the build context, which
    .dockerignore cuts down to a few files: every wheelforge module the audit imports at
    module level (the import closure) must be let in, or the image build fails."""
    allowed = {line[1:] for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.startswith("!")}
    todo, seen = ["wheelforge.audit"], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        relative = name.replace(".", "/") + ".py"
        assert relative in allowed, f"{relative} is not let in by .dockerignore"
        path = ROOT / relative
        tree = ast.parse(path.read_text())
        for node in tree.body:  # module level only: lazy imports are optional there
            names = imported_by(ast.unparse(node), "wheelforge") if isinstance(
                node, (ast.Import, ast.ImportFrom)) else set()
            todo += [n for n in names if n.startswith("wheelforge.")
                     and (ROOT / (n.replace(".", "/") + ".py")).is_file()]
    assert "wheelforge/__init__.py" in allowed
    assert {"wheelforge.audit", "wheelforge.gpucode", "wheelforge.settings"} <= seen
