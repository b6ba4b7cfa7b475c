"""Plan: resolve every source of the selected cells and give each build a cache key.

The plan is everything `invoke wheels` will run, computed before anything runs:
for each cell and component the resolved source (a branch becomes a commit), the
rendered environment, the steps, the dependencies and a content-addressed key.
The key changes when, and only when, something that reaches the output changes:
the recipe, the resolved source, the base image, the Python version, the values
of the cell placeholders the recipe uses (an arch list only matters to a
component whose env mentions it), the build files, and the dependencies' keys.
A component with the same key in several cells is one build shared by them.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from . import gitrefs, graph
from .errors import UserError, did_you_mean
from .matrix import Cell, Matrix, load_matrix
from .recipes import GitSource, IndexSource, PathSource, Recipe, SdistSource, display_path, load_dir

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "docker" / "Dockerfile.wheels"
BUILD_FILES = (DOCKERFILE, ROOT / "docker" / "build-component.py")


@dataclass(frozen=True, kw_only=True)
class Resolved:
    """A source pinned to exactly one tree."""

    kind: str
    url: str = ""  # as written in the recipe (git, index)
    fetch_url: str = ""  # after --git-rewrite
    ref: str = ""  # what the recipe asked for: a pin, a branch, a version
    commit: str = ""  # git commit
    submodules: bool = False
    name: str = ""  # sdist distribution name
    version: str = ""
    sha256: str = ""
    packages: tuple[str, ...] = ()  # index requirements
    path: str = ""  # local checkout
    fingerprint: str = ""  # local checkout state (HEAD + changes)

    def identity(self) -> dict:
        """What reaches the output: never the mirror URL, never where it lies on disk."""
        data = asdict(self)
        data.pop("fetch_url")
        if self.kind == "git":  # the commit is the tree; a branch or tag name is a label
            data.pop("ref")
        if self.kind == "path":
            data.pop("path")
        return data

    def label(self) -> str:
        if self.kind == "git":
            return f"{self.url}@{self.commit[:12]}" + (f" ({self.ref})" if self.ref else "")
        if self.kind == "sdist":
            return f"sdist {self.name}=={self.version}"
        if self.kind == "index":
            return f"{self.url} {' '.join(self.packages)}"
        return f"local {self.path} ({self.fingerprint[:12]})"


@dataclass(frozen=True, kw_only=True)
class Build:
    """One component build, shared by every cell in which its key is the same."""

    component: str
    key: str
    target: str  # bake target name
    recipe_file: str
    source: Resolved
    build_image: str
    runtime_image: str
    python: str
    apt: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    steps: tuple[str, ...]
    deps: tuple[str, ...]  # bake targets of direct dependencies
    wheels: tuple[str, ...]
    prefix: bool
    imports: tuple[str, ...]
    runtime: bool
    archs: tuple[str, ...]  # the arch list, when the recipe uses it; else ()
    mem_per_job_gb: float
    cells: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Plan:
    channel: str | None
    cells: tuple[Cell, ...]
    builds: dict[str, Build]  # target -> build, in build order
    cell_targets: dict[str, dict[str, str]]  # cell id -> component -> target
    rewrites: gitrefs.Rewrites  # --git-rewrite first, then the matrix's own
    matrix: Matrix = field(repr=False)


@dataclass(frozen=True, kw_only=True)
class Inputs:
    """What the user chose: where recipes live and how to reach sources."""

    recipes_dir: Path = ROOT / "recipes"
    recipe_overrides: dict[str, Path] = field(default_factory=dict)
    rewrites: gitrefs.Rewrites = ()
    src_overrides: dict[str, Path] = field(default_factory=dict)  # --src NAME=PATH
    only: tuple[str, ...] = ()
    today: _dt.date = field(default_factory=lambda: _dt.datetime.now(_dt.UTC).date())


def load(inputs: Inputs) -> tuple[Matrix, dict[str, Recipe]]:
    matrix_file = inputs.recipes_dir / "matrix.yaml"
    if not matrix_file.is_file():
        raise UserError(f"{matrix_file}: no build matrix; create it or pass --recipes DIR")
    root = ROOT if inputs.recipes_dir.resolve().is_relative_to(ROOT) else inputs.recipes_dir.parent
    matrix = load_matrix(matrix_file, display=display_path(matrix_file, root))
    recipes = load_dir(inputs.recipes_dir, display_root=root,
                       extra_variables=matrix.variant_variables,
                       overrides=inputs.recipe_overrides)
    graph.check(recipes)
    for name in inputs.src_overrides:
        if name not in recipes:
            raise UserError(f"--src {name}=...: no component {name!r}{did_you_mean(name, recipes)}")
    return matrix, recipes


def make_plan(inputs: Inputs, *, channel: str | None, cells_glob: str | None) -> Plan:
    matrix, recipes = load(inputs)
    inputs = replace(inputs, rewrites=(*inputs.rewrites, *matrix_rewrites(matrix)))
    cells = matrix.select(cells_glob, channel)
    order = graph.closure(recipes, list(inputs.only)) if inputs.only else graph.check(recipes)
    resolved = _resolve_all(recipes, order, cells, inputs)
    files_hash = _files_hash()
    builds: dict[str, Build] = {}
    cell_targets: dict[str, dict[str, str]] = {}
    for cell in cells:
        targets: dict[str, str] = {}
        for name in order:
            build = _build_for(recipes[name], cell, resolved[(name, cell.channel)],
                               [builds[targets[d]] for d in recipes[name].depends], files_hash)
            if build.target in builds:
                old = builds[build.target]
                build = replace(old, cells=(*old.cells, cell.id))
            builds[build.target] = build
            targets[name] = build.target
        cell_targets[cell.id] = targets
    return Plan(channel=channel, cells=tuple(cells), builds=builds, cell_targets=cell_targets,
                rewrites=inputs.rewrites, matrix=matrix)


def matrix_rewrites(matrix: Matrix) -> gitrefs.Rewrites:
    items = [item.replace("{root}", str(ROOT)) for item in matrix.git_rewrites]
    return gitrefs.parse_rewrites(items, origin=f"{matrix.file}: git_rewrites:")


def _build_for(recipe: Recipe, cell: Cell, source: Resolved, deps: list[Build],
               files_hash: str) -> Build:
    values = cell.var()
    env = tuple((k, v.format_map(values)) for k, v in recipe.env)
    uses_archs = bool(recipe.variables & {"archs", "archs_comma", "arch"})
    apt = tuple(dict.fromkeys((*cell.stack.builder_apt, *recipe.apt)))
    identity = {
        "component": recipe.name, "source": source.identity(), "apt": apt, "env": env,
        "steps": recipe.steps, "wheels": recipe.wheels, "prefix": recipe.prefix,
        "build_image": cell.stack.build_image, "python": cell.python,
        "deps": sorted(d.key for d in deps), "build_files": files_hash,
    }
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    return Build(
        component=recipe.name, key=key,
        target=f"{re.sub(r'[^A-Za-z0-9_-]', '_', recipe.name)}-{key[:12]}",
        recipe_file=recipe.file, source=source, build_image=cell.stack.build_image,
        runtime_image=cell.stack.runtime_image, python=cell.python, apt=apt, env=env,
        steps=recipe.steps, deps=tuple(d.target for d in deps), wheels=recipe.wheels,
        prefix=recipe.prefix, imports=recipe.imports, runtime=recipe.runtime,
        archs=cell.archs if uses_archs else (), mem_per_job_gb=recipe.mem_per_job_gb,
        cells=(cell.id,),
    )


def _resolve_all(recipes: dict[str, Recipe], order: list[str], cells: list[Cell],
                 inputs: Inputs) -> dict[tuple[str, str], Resolved]:
    channels = sorted({c.channel for c in cells})
    jobs = {(n, ch): (recipes[n], ch) for n in order for ch in channels}
    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = {k: pool.submit(_resolve, r, ch, inputs) for k, (r, ch) in jobs.items()}
        return {k: f.result() for k, f in futures.items()}


def _resolve(recipe: Recipe, channel: str, inputs: Inputs) -> Resolved:
    local = inputs.src_overrides.get(recipe.name)
    src = recipe.source
    if local is not None or isinstance(src, PathSource):
        path = local if local is not None else (inputs.recipes_dir.parent / src.path)
        return Resolved(kind="path", path=str(path.resolve()), fingerprint=fingerprint(path))
    who = f"{recipe.file}: {recipe.name}"
    if isinstance(src, GitSource):
        fetch_url = gitrefs.rewrite(src.url, inputs.rewrites)
        if channel == "nightly" and src.branch:
            commit = gitrefs.resolve_branch(src.url, src.branch, rules=inputs.rewrites, who=who)
            ref = src.branch
        elif src.pin:
            commit, ref = src.pin, src.tag or ""
        else:
            raise UserError(f"{recipe.file}:{recipe.line_of_source}: source: {recipe.name}: "
                            f"unpinned source for the {channel} channel (branch "
                            f"{src.branch!r} only); add source.pin with the full commit")
        return Resolved(kind="git", url=src.url, fetch_url=fetch_url, ref=ref, commit=commit,
                        submodules=src.submodules)
    if isinstance(src, SdistSource):
        return Resolved(kind="sdist", name=src.name, version=src.version, sha256=src.sha256,
                        ref=src.version)
    assert isinstance(src, IndexSource)
    if channel == "nightly" and src.nightly_url:
        names = src.nightly_packages or tuple(p.split("==")[0] for p in src.packages)
        # Unpinned nightly wheels change every day: the day is part of what is built.
        return Resolved(kind="index", url=src.nightly_url, packages=names,
                        ref=f"nightly {inputs.today.isoformat()}")
    return Resolved(kind="index", url=src.url, packages=src.packages)


def fingerprint(path: Path) -> str:
    """A local checkout's state: its HEAD plus any uncommitted change, else its files."""
    if not path.is_dir():
        raise UserError(f"--src {path}: not a directory; give the path of a checkout")
    git = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True,
                         text=True, check=False)
    digest = hashlib.sha256()
    if git.returncode == 0:
        digest.update(git.stdout.encode())
        for args in (["diff", "HEAD", "--binary"], ["status", "--porcelain", "--untracked=all"]):
            out = subprocess.run(["git", "-C", str(path), *args], capture_output=True,
                                 check=False)
            digest.update(out.stdout)
        return digest.hexdigest()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        stat = file.stat()
        digest.update(f"{file.relative_to(path)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _files_hash() -> str:
    digest = hashlib.sha256()
    for file in BUILD_FILES:
        digest.update(file.read_bytes() if file.exists() else b"")
    return digest.hexdigest()
