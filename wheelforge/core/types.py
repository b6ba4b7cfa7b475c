"""The data every stage passes on: the matrix and its cells, recipes and their sources,
resolved sources, builds, the plan, the user's inputs, runtime-dependency locks, a
recipe's smoke checks and the version a built wheel must have.

Frozen dataclasses only; how they are made lives in the stage that makes them:
recipes/ (matrix and recipes, loaded and validated), plan/ (sources resolved to exact
trees, builds and their keys, the plan for the selected cells, the locks).
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import asdict, dataclass, field
from pathlib import Path

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from wheelforge.core.settings import RECIPES

Rewrites = tuple[tuple[str, str], ...]  # (base, instead_of) pairs


@dataclass(frozen=True, kw_only=True)
class Lock:
    """The lock a cell uses: where it is, its sha256 ("" when missing) and its pins."""

    stack: str
    python: str
    path: Path
    display: str  # the path as users see it (relative to the checkout)
    recipes: str  # the recipe directory, as `--recipes` takes it
    sha256: str = ""
    pins: tuple[tuple[str, str], ...] = ()  # (canonical name, version)

    @property
    def exists(self) -> bool:
        return bool(self.sha256)

    def pinned(self) -> dict[str, str]:
        return dict(self.pins)

    def label(self) -> str:
        return (f"{self.display} (sha256 {self.sha256[:12]}, {len(self.pins)} pins)"
                if self.exists else f"{self.display} (missing: run invoke lock)")


@dataclass(frozen=True, kw_only=True)
class Stack:
    name: str
    build_image: str
    runtime_image: str
    builder_apt: tuple[str, ...]
    runtime_apt: tuple[str, ...]
    python: tuple[str, ...] = ()  # this stack's Python versions; () = the matrix's `python`
    archs: tuple[str, ...] = ()  # this stack's arch set names; () = every arch set
    runtime_toolchain: str = "forbidden"  # `allowed`: its runtime image may hold a compiler
    jit_coverage: str = "report"  # `required`: a module compiled at first use refuses the set


@dataclass(frozen=True, kw_only=True)
class Cell:
    id: str
    channel: str
    stack: Stack
    python: str
    arch: str  # the arch set's name
    archs: tuple[str, ...]  # its members
    variant: str
    variables: tuple[tuple[str, str], ...]  # every placeholder value for recipes' env
    runner: tuple[str, ...]

    def var(self) -> dict[str, str]:
        return dict(self.variables)


@dataclass(frozen=True, kw_only=True)
class Matrix:
    file: str
    channels: tuple[str, ...]
    stacks: tuple[Stack, ...]
    pythons: tuple[str, ...]
    known_archs: tuple[str, ...]
    archs: tuple[tuple[str, tuple[str, ...]], ...]
    variants: tuple[tuple[str, tuple[tuple[str, str], ...]], ...]
    runners: tuple[tuple[str, tuple[str, ...]], ...]
    repository: str  # image repository name (without registry host)
    variant_variables: frozenset[str]
    git_rewrites: tuple[str, ...] = ()  # MIRROR=ORIGINAL; {root} is the repository root

    @property
    def default_arch(self) -> str:
        return self.archs[0][0]

    @property
    def default_variant(self) -> str:
        return self.variants[0][0]

    def pythons_of(self, stack: Stack) -> tuple[str, ...]:
        return stack.python or self.pythons

    def archs_of(self, stack: Stack) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """The arch sets a stack builds, in the matrix's order."""
        return tuple(a for a in self.archs if not stack.archs or a[0] in stack.archs)

    def cells(self, channel: str | None = None) -> list[Cell]:
        out = []
        for ch in self.channels if channel is None else (channel,):
            for stack in self.stacks:
                for python in self.pythons_of(stack):
                    for arch, members in self.archs_of(stack):
                        for variant, vars_ in self.variants:
                            values = {
                                "archs": ";".join(members), "archs_comma": ",".join(members),
                                "arch": arch, "python": python, "stack": stack.name,
                                "channel": ch, "variant": variant, **dict(vars_),
                            }
                            out.append(Cell(
                                id=f"{ch}-{stack.name}-py{python}-{arch}-{variant}",
                                channel=ch, stack=stack, python=python, arch=arch,
                                archs=members, variant=variant,
                                variables=tuple(sorted(values.items())),
                                runner=dict(self.runners).get(arch, ()),
                            ))
        return out


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
    wheel_sha256: tuple[tuple[str, str], ...] = ()  # index: (wheel file, sha256) pins
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
        if not self.wheel_sha256:  # absent, as before the field existed: keys stay the same
            data.pop("wheel_sha256")
        return data

    def label(self) -> str:
        if self.kind == "git":
            return f"{self.url}@{self.commit[:12]}" + (f" ({self.ref})" if self.ref else "")
        if self.kind == "sdist":
            return f"sdist {self.name}=={self.version}"
        if self.kind == "index":
            return f"{self.url or 'pip index'} {' '.join(self.packages)}"
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
    runtime_apt: tuple[str, ...] = ()  # not in the key: nothing of the build uses it
    step_lines: tuple[int, ...] = ()  # each step's line in recipe_file; not in the key
    cells: tuple[str, ...] = ()
    # (wheel name, PEP 440 specifier, where it comes from) per output wheel (plan/__init__.py);
    # not in the key: a check of the output, not an input of the build
    versions: tuple[tuple[str, str, str], ...] = ()
    # set in the runtime image (rendered recipe runtime_env); not in the key: no build uses it
    runtime_env: tuple[tuple[str, str], ...] = ()
    smoke: tuple[SmokeCheck, ...] = ()  # the recipe's own checks in the runtime image
    jit: tuple[tuple[str, object], ...] = ()  # where its JIT modules are (audit/jit.py)

    def expected_versions(self) -> dict[str, Expectation]:
        return {name: Expectation(spec, why) for name, spec, why in self.versions}


@dataclass(frozen=True, kw_only=True)
class Plan:
    channel: str | None
    cells: tuple[Cell, ...]
    builds: dict[str, Build]  # target -> build, in build order
    cell_targets: dict[str, dict[str, str]]  # cell id -> component -> target
    rewrites: Rewrites  # --git-rewrite first, then the matrix's own
    matrix: Matrix = field(repr=False)
    # cell id -> the runtime-dependency lock its runtime-deps step downloads (plan/runtime_lock.py)
    locks: dict[str, Lock] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, kw_only=True)
class Inputs:
    """What the user chose: where recipes live and how to reach sources."""

    recipes_dir: Path = RECIPES
    recipe_overrides: dict[str, Path] = field(default_factory=dict)
    rewrites: Rewrites = ()
    src_overrides: dict[str, Path] = field(default_factory=dict)  # --src NAME=PATH
    only: tuple[str, ...] = ()
    today: _dt.date = field(default_factory=lambda: _dt.datetime.now(_dt.UTC).date())


@dataclass(frozen=True, kw_only=True)
class GitSource:
    url: str
    pin: str | None  # full commit, used by the stable channel
    branch: str | None  # resolved to a commit at plan time by the nightly channel
    tag: str | None  # the human name of `pin`, informational
    submodules: bool
    kind: str = "git"


@dataclass(frozen=True, kw_only=True)
class SdistSource:
    name: str
    version: str
    sha256: str
    kind: str = "sdist"


@dataclass(frozen=True, kw_only=True)
class IndexSource:
    """Prebuilt wheels from a package index (e.g. PyTorch's ROCm index)."""

    url: str | None  # None: pip's configured index
    nightly_url: str | None
    packages: tuple[str, ...]  # pinned requirements (name==version) for the stable channel
    nightly_packages: tuple[str, ...]  # unpinned names for the nightly channel
    sha256: tuple[tuple[str, str], ...] = ()  # (wheel file, sha256): see recipes/component.py
    kind: str = "index"


@dataclass(frozen=True, kw_only=True)
class PathSource:
    path: str
    kind: str = "path"


Source = GitSource | SdistSource | IndexSource | PathSource


@dataclass(frozen=True, kw_only=True)
class SmokeCheck:
    """One check of a component in its runtime image: a shell command that must exit 0."""

    name: str
    run: str
    gpu: bool = False  # needs a GPU: skipped (and said) where the smoke has none


@dataclass(frozen=True, kw_only=True)
class Recipe:
    name: str
    file: str  # as shown in messages, e.g. recipes/aiter.yaml
    description: str
    source: Source
    depends: tuple[str, ...]
    apt: tuple[str, ...]
    env: tuple[tuple[str, str], ...]  # ordered KEY -> template
    steps: tuple[str, ...]
    wheels: tuple[str, ...]  # distribution names the build must produce
    version: str | None = None  # outputs.version: the version its wheels must have
    runtime_env: tuple[tuple[str, str], ...] = ()  # KEY -> template, set in the runtime image
    smoke: tuple[SmokeCheck, ...] = ()  # its own checks, run in the runtime image
    jit: tuple[tuple[str, object], ...] = ()  # modules, prebuilt, never (audit/jit.py)
    prefix: bool  # produces an install prefix (an intermediate artifact, not a wheel)
    imports: tuple[str, ...]  # modules the runtime image must import
    runtime: bool  # its wheels go into the runtime image
    mem_per_job_gb: float
    runtime_apt: tuple[str, ...] = ()  # system packages its wheels need at run time
    stacks: tuple[str, ...] = ()  # the matrix stacks it is built for; () = every stack
    line_of_stacks: int = 0
    line_of_depends: int = 0
    line_of_source: int = 0
    step_lines: tuple[int, ...] = ()  # the line of each step in `file`
    variables: frozenset[str] = field(default_factory=frozenset)  # placeholders env uses


@dataclass(frozen=True)
class Expectation:
    spec: str  # a PEP 440 specifier: "==0.1.20" or ">=0.1.20"
    why: str  # where it comes from: "outputs.version", "source.packages", ...

    def allows(self, version: str) -> bool:
        try:
            return SpecifierSet(self.spec).contains(Version(version), prereleases=True)
        except (InvalidSpecifier, InvalidVersion):
            return False
