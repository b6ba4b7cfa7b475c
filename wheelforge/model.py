"""The plan's data model: resolved sources, builds, the plan itself, the user's inputs.

Frozen dataclasses only; how they are made lives beside them: loading.py (recipes
and matrix), resolution.py (sources to exact trees), keys.py (a build and its
key), plan.py (all of it for the selected cells).
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from . import gitrefs, versions
from .matrix import Cell, Matrix
from .recipes import SmokeCheck
from .settings import RECIPES

if TYPE_CHECKING:
    from .lock import Lock


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
    # (wheel name, PEP 440 specifier, where it comes from) per output wheel (versions.py);
    # not in the key: a check of the output, not an input of the build
    versions: tuple[tuple[str, str, str], ...] = ()
    # set in the runtime image (rendered recipe runtime_env); not in the key: no build uses it
    runtime_env: tuple[tuple[str, str], ...] = ()
    smoke: tuple[SmokeCheck, ...] = ()  # the recipe's own checks in the runtime image
    jit: tuple[tuple[str, object], ...] = ()  # where its JIT modules are (jitcoverage.py)

    def expected_versions(self) -> dict[str, versions.Expectation]:
        return {name: versions.Expectation(spec, why) for name, spec, why in self.versions}


@dataclass(frozen=True, kw_only=True)
class Plan:
    channel: str | None
    cells: tuple[Cell, ...]
    builds: dict[str, Build]  # target -> build, in build order
    cell_targets: dict[str, dict[str, str]]  # cell id -> component -> target
    rewrites: gitrefs.Rewrites  # --git-rewrite first, then the matrix's own
    matrix: Matrix = field(repr=False)
    # cell id -> the runtime-dependency lock its runtime-deps step downloads (lock.py)
    locks: dict[str, Lock] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, kw_only=True)
class Inputs:
    """What the user chose: where recipes live and how to reach sources."""

    recipes_dir: Path = RECIPES
    recipe_overrides: dict[str, Path] = field(default_factory=dict)
    rewrites: gitrefs.Rewrites = ()
    src_overrides: dict[str, Path] = field(default_factory=dict)  # --src NAME=PATH
    only: tuple[str, ...] = ()
    today: _dt.date = field(default_factory=lambda: _dt.datetime.now(_dt.UTC).date())
