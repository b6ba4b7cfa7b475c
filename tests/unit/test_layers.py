"""The house: one package per stage of the flow, imports that only point back down the
flow, no circles, no function-local or aliased imports of the package's own modules, a
narrow `invoke wheels`, and a runtime-image build context that holds the audit."""

from __future__ import annotations

import ast
from pathlib import Path

from wheelforge.core import settings

ROOT = settings.ROOT
PACKAGE = ROOT / "wheelforge"
# The flow, in order: a module may import its own stage or an earlier one, never a later one.
# core is shared (types, settings, the engine); jobs runs whole commands across stages;
# cli is what tasks.py calls to turn options into inputs and print a plan.
STAGES = ("core", "recipes", "plan", "contract", "audit", "build", "image", "smoke", "publish",
          "jobs", "cli")
# The modules the runtime image's build runs (Dockerfile.clean), with only the standard
# library and pyelftools there.
IMAGE_AUDITS = ("wheelforge.audit.gpu", "wheelforge.audit.links")
# Imported where it is used, and only there: it imports triton, which only a GPU smoke has.
OPTIONAL = {"wheelforge.smoke._triton_kernels"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_of(path: Path) -> str:
    name = module_name(path)
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def imports_in(node: ast.AST, package: str) -> set[str]:
    """Absolute names one import statement names; `from X import n` gives X and X.n."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names}
    if not isinstance(node, ast.ImportFrom):
        return set()
    if node.level:
        parts = package.split(".")
        base = parts[: len(parts) - node.level + 1]
        module = ".".join([*base, *([node.module] if node.module else [])])
    else:
        module = node.module or ""
    return {module} | {f"{module}.{alias.name}" for alias in node.names}


def imported_by(source: str, package: str, where: str = "<text>") -> set[str]:
    """Every absolute name `source`, a module of `package`, imports, at any depth."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(source, where)):
        out |= imports_in(node, package)
    return out


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def own(names: set[str], known: dict[str, Path]) -> set[str]:
    """The package's modules among imported names (`from pkg import mod` names mod)."""
    return {n for n in names if n in known}


def needs(node: ast.AST, importer: str, package: str, known: dict[str, Path]) -> set[str]:
    """The modules whose code must have run for this import statement of `importer` to
    succeed: `from pkg import mod` needs mod, and pkg only when importer is outside pkg
    (inside, pkg is already being set up); `from mod import name` needs mod."""
    names = own(imports_in(node, package), known)
    modules_named = {n for n in names if n.rpartition(".")[0] in names}
    out = set(modules_named)
    for n in names - modules_named:
        inside = importer == n or importer.startswith(n + ".")
        if not (inside and any(m.startswith(n + ".") for m in modules_named)):
            out.add(n)
    return out - {importer}


def top_level_imports(path: Path, known: dict[str, Path]) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    out: set[str] = set()
    for node in tree.body:
        out |= needs(node, module_name(path), package_of(path), known)
    return out


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: top_level_imports(path, known) for name, path in known.items()}


def stage_of(name: str) -> str:
    return name.split(".")[1] if name.count(".") else "core"


def python_files() -> list[Path]:
    """The repository's own Python files (not .cache/, wheels/ or hidden folders)."""
    tops = [p for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith(".")
            and p.name not in ("wheels", "node_modules")]
    return sorted([*ROOT.glob("*.py"), *(f for top in tops for f in top.rglob("*.py"))])


def closure(start: list[str], edges: dict[str, set[str]], *, packages: bool = True) -> set[str]:
    """`start` and everything it imports; with `packages`, every package a module lies in
    too (Python runs each package's __init__ first)."""
    seen: set[str] = set()
    todo = list(start)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        parents = [name.rsplit(".", k)[0] for k in range(1, name.count(".") + 1)]
        todo += [p for p in parents if p in edges and packages] + sorted(edges.get(name, ()))
    return seen


def test_every_form_of_import_is_seen():
    for source, package in [("from .cli import WHEELS", "wheelforge"),
                            ("from . import cli", "wheelforge"),
                            ("from .. import cli", "wheelforge.smoke"),
                            ("from ..cli import guarded", "wheelforge.smoke"),
                            ("import wheelforge.cli", "bench"),
                            ("from wheelforge import cli", ""),
                            ("def f():\n    from wheelforge.cli import inputs", "wheelforge")]:
        assert "wheelforge.cli" in imported_by(source, package), source
    assert "wheelforge.cli" not in imported_by("from . import client, jobs", "wheelforge")


def test_each_module_lies_in_a_stage_and_imports_only_its_own_or_an_earlier_one():
    order = {stage: i for i, stage in enumerate(STAGES)}
    late = []
    for name, imported in graph().items():
        if name == "wheelforge":
            continue
        assert stage_of(name) in order, f"{name}: not in a stage of {STAGES}"
        late += [f"{name} imports {other}" for other in sorted(imported)
                 if other != "wheelforge" and order[stage_of(other)] > order[stage_of(name)]]
    assert not late, "imports that run up the flow:\n" + "\n".join(late)


def test_there_is_no_import_circle():
    edges = graph()
    circles = []
    for name in edges:
        reach = closure(sorted(edges[name]), edges, packages=False)
        if name in reach:
            circles.append(name)
    assert not circles, f"modules in an import circle: {sorted(circles)}"


def test_the_package_imports_its_own_modules_at_module_level_and_by_their_names():
    """No import of a wheelforge module inside a function or an `if` (TYPE_CHECKING), so
    the graph above is the whole truth; no `as` that renames one to dodge a clash."""
    known = modules()
    hidden, renamed = [], []
    for path in python_files():
        tree = ast.parse(path.read_text(), str(path))
        top = set(map(id, tree.body))
        inside = path.is_relative_to(PACKAGE)
        package = package_of(path) if inside else ""
        for node in ast.walk(tree):
            names = own(imports_in(node, package), known)
            if not names or names & OPTIONAL:
                continue
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            if inside and id(node) not in top:
                hidden.append(where)
            if any(alias.asname for alias in node.names):
                renamed.append(where)
    assert not hidden, f"imports of wheelforge modules below module level: {hidden}"
    assert not renamed, f"wheelforge imports renamed with `as`: {renamed}"


def test_only_tasks_and_tests_import_the_command_line_layer_and_the_jobs():
    for layer in ("wheelforge.cli", "wheelforge.jobs"):
        importers = sorted(str(p.relative_to(ROOT)) for p in python_files()
                           if module_name(p) != layer and layer in imported_by(
                               p.read_text(), package_of(p) if p.is_relative_to(PACKAGE)
                               else ""))
        allowed = [p for p in importers if p in ("tasks.py",) or p.startswith(("tests/",
                                                                               "bench/"))]
        assert importers == allowed, f"only tasks.py may import {layer}: {importers}"
        assert "tasks.py" in importers
    assert "wheelforge.jobs" not in graph()["wheelforge.cli"]


def wheels_task_imports() -> list[str]:
    """What `invoke wheels` imports: tasks.py's module level and the `wheels` task's body."""
    tree = ast.parse((ROOT / "tasks.py").read_text())
    nodes = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    task = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "wheels")
    nodes += [n for n in ast.walk(task) if isinstance(n, (ast.Import, ast.ImportFrom))]
    known = modules()
    return sorted(set().union(*(own(imports_in(n, ""), known) for n in nodes)))


def test_following_invoke_wheels_means_reading_the_stages_it_runs_and_no_more():
    reach = closure(wheels_task_imports(), graph())
    code = {n for n in reach if len(ast.parse(modules()[n].read_text()).body) > 1}
    assert not any(stage_of(n) in ("image", "smoke", "publish", "jobs") for n in reach), reach
    assert len(code) <= 25, sorted(code)


def test_the_runtime_image_build_context_holds_the_audits_and_what_they_import():
    """Dockerfile.clean runs `python -m wheelforge.audit.gpu` and `.links` from the build
    context, which .dockerignore cuts down to a few files: each module they import, and
    each package they lie in, must be let in, or the image build fails."""
    allowed = {line[1:] for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.startswith("!")}
    dockerfile = (ROOT / "docker" / "Dockerfile.clean").read_text()
    for audit in IMAGE_AUDITS:
        assert f"-m {audit} " in dockerfile
    known = modules()
    needed = closure(list(IMAGE_AUDITS), graph())
    missing = sorted(str(known[n].relative_to(ROOT)) for n in needed
                     if str(known[n].relative_to(ROOT)) not in allowed)
    assert not missing, f"not let in by .dockerignore: {missing}"
    assert {"wheelforge.audit.gpucode", "wheelforge.core.settings"} <= needed
    # the standard library and pyelftools only: nothing that needs the engine or packaging
    assert not {"wheelforge.core.engine", "wheelforge.core.types",
                "wheelforge.core.wheelset"} & needed
    third_party = {name.split(".")[0] for module in needed
                   for name in imported_by(known[module].read_text(), package_of(known[module]))}
    assert not {"pydantic", "pydantic_core", "yaml", "packaging"} & third_party


def test_the_runtime_image_audits_run_as_scripts_with_the_standard_library(tmp_path: Path):
    """As Dockerfile.clean runs them: `python -s -m MODULE` over a wheel, from the filtered
    context only (each module's whole body defined before its `__main__` block runs)."""
    import shutil
    import subprocess
    import sys
    import zipfile

    context = tmp_path / "context"
    allowed = [line[1:] for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.startswith("!wheelforge/")]
    for relative in allowed:
        (context / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / relative, context / relative)
    wheel = tmp_path / "demo-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("demo/__init__.py", "")
        zf.writestr("demo-1.0.dist-info/RECORD", "")
    for module, args in [("wheelforge.audit.gpu", ["--archs", "gfx942"]),
                         ("wheelforge.audit.links", ["--root", str(tmp_path)])]:
        proc = subprocess.run([sys.executable, "-s", "-m", module, *args, str(wheel)],
                              cwd=tmp_path, env={"PYTHONPATH": str(context)},
                              capture_output=True, text=True, check=False)
        if module.endswith("links") and "elftools" in proc.stderr:
            continue  # pyelftools is not importable here; the image build brings it
        assert proc.returncode == 0, (module, proc.stdout, proc.stderr)
