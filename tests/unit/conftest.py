"""Helpers for the unit tests: small recipe sets written to tmp_path, local git repos.

Nothing here needs a Docker engine or the network. Recipe sets are written from
Python dicts (yaml.safe_dump), so a test states only what it changes.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

import wheelforge.plan
from wheelforge.core import settings, types

ROOT = settings.ROOT
PIN_A = "a" * 40
PIN_B = "b" * 40
PIN_C = "c" * 40
SHA256 = "c667d3180513422f9c7545be5eec5d296dcbb357e06f72ed39cc683797556e69"
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "wheelforge tests", "GIT_AUTHOR_EMAIL": "tests@wheelforge.invalid",
    "GIT_COMMITTER_NAME": "wheelforge tests", "GIT_COMMITTER_EMAIL": "tests@wheelforge.invalid",
}


def small_matrix() -> dict[str, Any]:
    """Two arch sets x two variants (ENABLE_CK-like `enable_ck`), one stack, one Python."""
    return {
        "channels": ["stable", "nightly"],
        "stacks": {"base": {"build_image": "example.invalid/build:1",
                            "runtime_image": "example.invalid/runtime:1",
                            "builder_apt": ["git"]}},
        "python": ["3.12"],
        "known_archs": ["gfx942", "gfx950"],
        "archs": {"gfx942": ["gfx942"], "gfx950": ["gfx950"]},
        "variants": {"ckfree": {"vars": {"enable_ck": "0"}},
                     "full": {"vars": {"enable_ck": "1"}}},
        "repository": "example.invalid/runtime",
    }


def git_recipe(name: str, pin: str = PIN_A, *, depends: list[str] | None = None,
               env: dict[str, str] | None = None, steps: list[str] | None = None,
               **extra: Any) -> dict[str, Any]:
    """A wheel-producing recipe from a pinned git source."""
    data: dict[str, Any] = {
        "name": name, "description": f"the {name} component",
        "source": {"git": f"https://example.invalid/{name}.git", "branch": "main", "pin": pin},
        "steps": steps or ["pip wheel --no-deps -w \"$OUT\" ."],
        "outputs": {"wheels": [name]},
    }
    if depends:
        data["depends"] = depends
    if env:
        data["env"] = env
    data.update(extra)
    return data


def small_recipes() -> dict[str, dict[str, Any]]:
    """base <- kern (arch-dependent) <- app;  base <- ck (variant-dependent);  other (alone)."""
    return {
        "base": git_recipe("base", PIN_A),
        "kern": git_recipe("kern", PIN_B, depends=["base"],
                           env={"GPU_ARCHS": "{archs}", "OPT": "1"}),
        "ck": git_recipe("ck", PIN_C, depends=["base"], env={"ENABLE_CK": "{enable_ck}"}),
        "app": git_recipe("app", PIN_A, depends=["kern"]),
        "other": {"name": "other", "source": {"sdist": "other", "version": "1.0",
                                              "sha256": SHA256},
                  "steps": ["pip wheel --no-deps -w \"$OUT\" ."],
                  "outputs": {"wheels": ["other"]}},
    }


def write_set(directory: Path, recipes: dict[str, dict[str, Any]],
              matrix: dict[str, Any] | None = None) -> Path:
    """Write matrix.yaml and one NAME.yaml per recipe into `directory` (made fresh)."""
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("*.yaml"):
        old.unlink()
    (directory / "matrix.yaml").write_text(yaml.safe_dump(matrix or small_matrix()))
    for name, data in recipes.items():
        (directory / f"{name}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return directory


def make_plan(directory: Path, *, channel: str | None = "stable", cells: str | None = None,
              rewrites: tuple[tuple[str, str], ...] = ()) -> types.Plan:
    return wheelforge.plan.make_plan(types.Inputs(recipes_dir=directory, rewrites=rewrites),
                                     channel=channel, cells_glob=cells)


def keys(plan: types.Plan) -> dict[tuple[str, str], str]:
    """(cell id, component) -> cache key."""
    return {(cell, name): plan.builds[target].key
            for cell, targets in plan.cell_targets.items() for name, target in targets.items()}


@pytest.fixture
def recipe_set(tmp_path: Path) -> Callable[..., Path]:
    """`recipe_set(recipes=None, matrix=None)` writes a set to tmp_path/recipes."""

    def write(recipes: dict[str, dict[str, Any]] | None = None,
              matrix: dict[str, Any] | None = None) -> Path:
        return write_set(tmp_path / "recipes", copy.deepcopy(recipes or small_recipes()),
                         matrix)

    return write


def git(*args: str, cwd: Path) -> str:
    """Run git with a fixed identity and no user/system config; return stdout."""
    env = {**os.environ, **GIT_IDENTITY, "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_CONFIG_GLOBAL": os.devnull}
    proc = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          check=True)
    return proc.stdout.strip()


def make_repo(path: Path) -> str:
    """A repository with one commit on `main`, an annotated tag v1.0 and a light tag
    v1.0-light; returns the head commit."""
    path.mkdir(parents=True)
    git("init", "-q", "-b", "main", cwd=path)
    commit_file(path, "README", "first\n")
    git("tag", "-a", "v1.0", "-m", "release 1.0", cwd=path)
    git("tag", "v1.0-light", cwd=path)
    return git("rev-parse", "HEAD", cwd=path)


def commit_file(repo: Path, name: str, text: str) -> str:
    (repo / name).write_text(text)
    git("add", name, cwd=repo)
    git("commit", "-q", "-m", f"write {name}", cwd=repo)
    return git("rev-parse", "HEAD", cwd=repo)


def run_invoke(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`invoke ARGS` in the repository root, as a user would run it."""
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT,
                          env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          timeout=120, check=False)
