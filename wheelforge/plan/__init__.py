"""The plan: everything `invoke wheels` will run, computed before anything runs: every
source of the selected cells resolved, every build with its key, and the version each
built wheel must have.

What `make_plan` gives: for each cell and component the resolved source, the rendered
environment, the steps, the dependencies and a content-addressed key (below); a component
with the same key in several cells is one build shared by them. Each cell also has its
runtime-dependency lock (plan/runtime_lock.py), and `runtime_apt`, `runtime_env` and
`extra_indexes` give its runtime system packages, its run-time environment (two runtime
components that set one variable differently are refused: one image has one environment)
and the indexes its index sources come from. The data types are core/types.py; the
recipes come from recipes/; git rewrites are --git-rewrite's first, then the matrix's own.

Resolving: each recipe's source becomes exactly one tree. On the nightly channel a git
source with a branch becomes the commit at the branch head (plan/fetch.py); otherwise it
is its pin, and a git source with a branch only is refused on the stable channel. An
sdist is its pinned version and sha256; an index source its pins (from a nightly index
on the nightly channel: its unpinned names and the day, since unpinned nightly wheels
change every day); a local checkout (--src, `path:`) its folder and a fingerprint of its
state (HEAD plus uncommitted changes, else its files' sizes and times).

Keys: a build's key changes when, and only when, something that reaches the output
changes: the recipe, the resolved source (never the mirror URL, a branch name or where a
checkout lies), the base image, the Python version, the values of the cell placeholders
the recipe uses (an arch list only matters to a component whose env mentions it), the
build files (docker/Dockerfile.wheels, docker/build-component.py), and the dependencies'
keys. What only checks or uses the output (expected versions, runtime_env, runtime apt
packages, smoke checks) is not in it. A cell's runtime-dependency step has a key of its
own (`step_key`): its lock's sha256, its components' keys, the runtime image, Python,
runtime apt packages, indexes and the build files.

Versions are part of the contract: what each built wheel's version must be. A recipe
states the version its wheels must have (``outputs.version``); an index source's pins
(``name==version``) and an sdist's ``version`` state theirs. For one build, every wheel
gets an expectation:

- a pinned source (the stable channel, or a git source with no branch): exactly that
  version (PEP 440 ``==``, so ``2.11.0`` accepts ``2.11.0+rocm7.2``);
- a branch head (the nightly channel): that version or a later one. A build that fell
  back to a default version (setuptools_scm with no tag: ``0.1.dev1+g<commit>``; a
  ``fallback_version``) is earlier than the release it was cut after, so it is caught;
- a local checkout (``--src``, ``path:``): no expectation; it is the user's tree.

The recipe's ``{version}`` placeholder is what a pretend version should be
(``SETUPTOOLS_SCM_PRETEND_VERSION: "{version}"``): sources are fetched as one commit
without tags, and a source's own .dockerignore may leave ``.git`` out of the build
context, so a VCS-derived version cannot come from git history in the build. On a
branch head it is the stated version with ``.post1.dev0+g<commit>``: later than the
release, and naming the commit it was built from.

`invoke wheels` checks every built wheel (``gate``) before any set is swapped in; a
wrong version is refused in one line with its likely cause (``cause``).
"""

from __future__ import annotations

import errno
import hashlib
import json
import re
import subprocess
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from packaging.version import InvalidVersion, Version

from wheelforge.core import wheelset
from wheelforge.core.settings import ROOT
from wheelforge.core.terminal import UserError
from wheelforge.core.types import (
    Build,
    Cell,
    Expectation,
    GitSource,
    IndexSource,
    Inputs,
    PathSource,
    Plan,
    Recipe,
    Resolved,
    SdistSource,
)
from wheelforge.plan import fetch, runtime_lock
from wheelforge.recipes import check_graph, closure, load, matrix_rewrites
from wheelforge.recipes.component import builds_on
from wheelforge.recipes.matrix import select

DOCKERFILE = ROOT / "docker" / "Dockerfile.wheels"


BUILD_FILES = (DOCKERFILE, ROOT / "docker" / "build-component.py")


def build_for(recipe: Recipe, cell: Cell, source: Resolved, deps: list[Build],
              files_hash: str) -> Build:
    values = {**cell.var(), "version": placeholder(recipe, cell.channel, source.commit)}
    env = tuple((k, v.format_map(values)) for k, v in recipe.env)
    uses_archs = bool(recipe.variables & {"archs", "archs_comma", "arch"})
    apt = tuple(dict.fromkeys((*cell.stack.builder_apt, *recipe.apt)))
    identity = {
        "component": recipe.name, "source": source.identity(), "apt": apt, "env": env,
        "steps": recipe.steps, "wheels": recipe.wheels, "prefix": recipe.prefix,
        "build_image": cell.stack.build_image, "python": cell.python,
        "deps": sorted(d.key for d in deps), "build_files": files_hash,
        # in the SPEC build arg, hence in BuildKit's key: so in ours. MAX_JOBS itself is not
        # (the builder computes it; see docker/build-component.py).
        "mem_per_job_gb": recipe.mem_per_job_gb,
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
        runtime_apt=recipe.runtime_apt, step_lines=recipe.step_lines, cells=(cell.id,),
        runtime_env=tuple((k, v.format_map(values)) for k, v in recipe.runtime_env),
        smoke=recipe.smoke, jit=recipe.jit,
        versions=tuple((name, e.spec, e.why) for name, e in sorted(expected(
            recipe, cell.channel, source.kind, source.packages).items())),
    )


def files_hash() -> str:
    digest = hashlib.sha256()
    for file in BUILD_FILES:
        digest.update(file.read_bytes() if file.exists() else b"")
    return digest.hexdigest()


def step_key(plan: Plan, cell: Cell) -> str:
    """The key of a cell's runtime-dependency step: its lock, its wheels, its base."""

    identity = {
        "lock_sha256": plan.locks[cell.id].sha256, "runtime_image": cell.stack.runtime_image,
        "python": cell.python, "runtime_apt": runtime_apt(plan, cell.id),
        "extra_indexes": extra_indexes(plan, cell.id),
        "components": sorted(plan.builds[t].key for t in plan.cell_targets[cell.id].values()),
        "build_files": [hashlib.sha256(f.read_bytes()).hexdigest() for f in BUILD_FILES],
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


__all__ = ["Build", "Inputs", "Plan", "Resolved", "load", "make_plan"]


def make_plan(inputs: Inputs, *, channel: str | None, cells_glob: str | None) -> Plan:
    matrix, recipes = load(inputs)
    inputs = replace(inputs, rewrites=(*inputs.rewrites, *matrix_rewrites(matrix)))
    cells = select(matrix, cells_glob, channel)
    order = closure(recipes, list(inputs.only)) if inputs.only else check_graph(recipes)
    resolved = resolve_all(recipes, order, cells, inputs)
    hashed = files_hash()
    builds: dict[str, Build] = {}
    cell_targets: dict[str, dict[str, str]] = {}
    for cell in cells:
        targets: dict[str, str] = {}
        for name in (n for n in order if builds_on(recipes[n], cell.stack.name)):
            build = build_for(recipes[name], cell, resolved[(name, cell.channel)],
                              [builds[targets[d]] for d in recipes[name].depends], hashed)
            if build.target in builds:
                old = builds[build.target]
                build = replace(old, cells=(*old.cells, cell.id))
            builds[build.target] = build
            targets[name] = build.target
        cell_targets[cell.id] = targets
    return Plan(channel=channel, cells=tuple(cells), builds=builds, cell_targets=cell_targets,
                rewrites=inputs.rewrites, matrix=matrix,
                locks={c.id: runtime_lock.locate(inputs.recipes_dir, c.stack.name, c.python)
                       for c in cells})


def resolve_all(recipes: dict[str, Recipe], order: list[str], cells: list[Cell],
                inputs: Inputs) -> dict[tuple[str, str], Resolved]:
    channels = sorted({c.channel for c in cells})
    jobs = {(n, ch): (recipes[n], ch) for n in order for ch in channels}
    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = {k: pool.submit(resolve, r, ch, inputs) for k, (r, ch) in jobs.items()}
        return {k: f.result() for k, f in futures.items()}


def resolve(recipe: Recipe, channel: str, inputs: Inputs) -> Resolved:
    local = inputs.src_overrides.get(recipe.name)
    src = recipe.source
    if local is not None or isinstance(src, PathSource):
        given = local if local is not None else (inputs.recipes_dir.parent / src.path)
        who = (f"--src {recipe.name}={local}" if local is not None else
               f"{recipe.file}:{recipe.line_of_source}: source: path {src.path}")
        path = local_tree(given, who)
        return Resolved(kind="path", path=str(path), fingerprint=fingerprint(path))
    who = f"{recipe.file}: {recipe.name}"
    if isinstance(src, GitSource):
        fetch_url = fetch.rewrite(src.url, inputs.rewrites)
        if channel == "nightly" and src.branch:
            commit = fetch.resolve_branch(src.url, src.branch, rules=inputs.rewrites, who=who)
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
    return Resolved(kind="index", url=src.url or "", packages=src.packages,
                    wheel_sha256=src.sha256)


def local_tree(path: Path, who: str) -> Path:
    """A local checkout's folder, resolved; else one line (missing, a symlink loop, a file)."""
    try:
        real = path.resolve(strict=True)
    except RuntimeError:  # Python before 3.13: a symlink loop
        real = None
        why = "a symlink loop"
    except OSError as exc:
        real = None
        why = "a symlink loop" if exc.errno == errno.ELOOP else exc.strerror
    if real is None:
        raise UserError(f"{who}: cannot be read ({why}); give the folder of a checkout")
    if not real.is_dir():
        raise UserError(f"{who}: not a folder; give the folder of a checkout")
    return real


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


# What setuptools_scm makes of a tree without a tag: 0.1.dev<N>+g<commit>[.d<date>]
# (0.0.1.dev<N>+g<commit> from setuptools_scm 9 on).
SCM_UNTAGGED = re.compile(r"0\.(0\.)?1\.dev\d+(\+g[0-9a-f]+.*)?")


def branch_head(recipe: Recipe, channel: str) -> bool:
    """Whether the build is of a branch head (nightly) rather than a pin."""
    src = recipe.source
    return isinstance(src, GitSource) and channel == "nightly" and bool(src.branch)


def placeholder(recipe: Recipe, channel: str, commit: str) -> str:
    """The value of `{version}` for one build ('' when the recipe states none)."""
    if recipe.version is None:
        return ""
    if branch_head(recipe, channel):
        return f"{recipe.version}.post1.dev0+g{commit[:9]}"
    return recipe.version


def expected(recipe: Recipe, channel: str, source_kind: str,
             packages: Iterable[str] = ()) -> dict[str, Expectation]:
    """Normalized wheel name -> its expectation, for one build of `recipe`.

    `source_kind` and `packages` are the resolved source's (a nightly index source has
    unpinned packages: no expectation from them)."""
    if source_kind == "path":
        return {}
    out: dict[str, Expectation] = {}
    for req in packages:
        name, sep, version = req.partition("==")
        if sep:
            out[wheelset.canonical(name)] = Expectation(f"=={version}", "source.packages")
    src = recipe.source
    if source_kind == "sdist":
        out.setdefault(wheelset.canonical(src.name), Expectation(f"=={src.version}",
                                                                 "source.version"))
    if recipe.version is not None:
        op = ">=" if branch_head(recipe, channel) else "=="
        for wheel in recipe.wheels:
            out.setdefault(wheelset.canonical(wheel),
                           Expectation(f"{op}{recipe.version}", "outputs.version"))
    return out


def cause(actual: str, expectation: Expectation) -> str:
    """The likely reason a built version differs from what the recipe expects."""
    if SCM_UNTAGGED.fullmatch(actual):
        return ("setuptools_scm found no tag: sources are fetched as one commit without tags "
                "(and a source's own .dockerignore may drop .git); set "
                "SETUPTOOLS_SCM_PRETEND_VERSION: \"{version}\" in the recipe's env")
    try:
        later = Version(actual) > Version(expectation.spec.lstrip("=<>~!"))
    except InvalidVersion:
        return "the build wrote a version that is not PEP 440"
    if later:
        return ("the pinned commit is not the release the recipe names: fix the pin or "
                f"{expectation.why}")
    return ("the build fell back to a default version (e.g. setuptools_scm's "
            "fallback_version when .git is absent from the build context) or builds an "
            f"older release: set the version explicitly, or fix the pin or {expectation.why}")


def mismatches(expectations: Mapping[str, Expectation],
               wheels: Iterable[Path]) -> list[tuple[str, str, Expectation]]:
    """(wheel file, its version, expectation) for each wheel whose version is not allowed."""
    bad = []
    for path in wheels:
        wheel = wheelset.parse(path.name)
        want = expectations.get(wheel.name)
        if want is not None and not want.allows(str(wheel.parsed_version)):
            bad.append((path.name, str(wheel.parsed_version), want))
    return bad


def gate(checks: Iterable[tuple[str, str, Mapping[str, Expectation], list[Path]]]) -> None:
    """Refuse the build when a wheel's version is not the one its recipe expects.

    `checks`: (component, recipe file, expectations, its built wheels) per build. One
    line: the component, the wheel, expected and actual versions and the likely cause."""
    for component, recipe_file, expectations, wheels in checks:
        for file, version, want in mismatches(expectations, wheels):
            raise UserError(
                f"{recipe_file}: {component}: built {file} with version {version}, but "
                f"{want.why} expects {want.spec}; likely cause: {cause(version, want)}; "
                "nothing was swapped in", exit_code=1)


def runtime_apt(plan: Plan, cell_id: str) -> list[str]:
    """The cell's runtime system packages: its stack's and its runtime components'."""
    cell = next(c for c in plan.cells if c.id == cell_id)
    builds = [plan.builds[t] for t in plan.cell_targets[cell_id].values()]
    return sorted({*cell.stack.runtime_apt,
                   *(p for b in builds if b.runtime for p in b.runtime_apt)})


def runtime_env(plan: Plan, cell_id: str) -> dict[str, str]:
    """The cell's run-time environment: the runtime_env of its runtime components (e.g.
    ENABLE_CK=0 in a ckfree cell), which Dockerfile.clean sets in the image."""
    out: dict[str, tuple[str, str]] = {}
    for name, target in sorted(plan.cell_targets[cell_id].items()):
        b = plan.builds[target]
        for key, value in (b.runtime_env if b.runtime else ()):
            if key in out and out[key][1] != value:
                raise UserError(f"{b.recipe_file}: runtime_env.{key}: {value!r} differs from "
                                f"{out[key][1]!r} set by {out[key][0]} in cell {cell_id}; "
                                f"one image has one environment: make them agree")
            out[key] = (name, value)
    return {k: v for k, (_, v) in sorted(out.items())}


def extra_indexes(plan: Plan, cell_id: str) -> list[str]:
    """Indexes the cell's components come from: where their own pins live too."""
    builds = [plan.builds[t] for t in plan.cell_targets[cell_id].values()]
    return list(dict.fromkeys(b.source.url for b in builds
                              if b.source.kind == "index" and b.source.url))
