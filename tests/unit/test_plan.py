"""Plans and cache keys: a key changes when, and only when, something reaching the output does.

The small set (tests/unit/conftest.py: small_recipes) is
    base <- kern (env uses {archs}) <- app
    base <- ck   (env uses the variant's {enable_ck})
    other        (an sdist, related to nothing)
over 2 arch sets x 2 variants.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import wheelforge.plan
from tests.unit.conftest import (
    PIN_C,
    ROOT,
    keys,
    make_plan,
    run_invoke,
    small_matrix,
    small_recipes,
    write_set,
)
from wheelforge.core import types
from wheelforge.core.terminal import UserError
from wheelforge.plan import fetch
from wheelforge.recipes import load

ALL = {"base", "kern", "ck", "app", "other"}
G942_CKFREE = "stable-base-py3.12-gfx942-ckfree"
G950_CKFREE = "stable-base-py3.12-gfx950-ckfree"
G942_FULL = "stable-base-py3.12-gfx942-full"


def plan_keys(tmp_path: Path, recipes: dict[str, Any], matrix: dict[str, Any] | None = None,
              **kw: Any) -> dict[tuple[str, str], str]:
    return keys(make_plan(write_set(tmp_path / "recipes", recipes, matrix), **kw))


def changed_components(old: dict, new: dict) -> set[str]:
    assert old.keys() == new.keys()
    return {component for (cell, component), key in old.items() if new[(cell, component)] != key}


# --- determinism --------------------------------------------------------------------------

def test_same_inputs_same_keys(tmp_path: Path):
    directory = write_set(tmp_path / "recipes", small_recipes())
    first, second = keys(make_plan(directory)), keys(make_plan(directory))
    assert first == second
    assert all(re.fullmatch(r"[0-9a-f]{64}", k) for k in first.values())


def test_keys_do_not_depend_on_the_process(tmp_path: Path):
    """Another interpreter with another hash seed computes the same keys."""
    directory = write_set(tmp_path / "recipes", small_recipes())
    script = ("import json, sys; from pathlib import Path; from wheelforge.plan import make_plan; "
              "from wheelforge.core.types import Inputs; "
              "pl = make_plan(Inputs(recipes_dir=Path(sys.argv[1])), channel='stable', "
              "cells_glob=None); print(json.dumps(sorted(b.key for b in pl.builds.values())))")
    outs = []
    for seed in ("1", "2"):
        proc = subprocess.run([sys.executable, "-c", script, str(directory)], cwd=ROOT,
                              env={**os.environ, "PYTHONHASHSEED": seed}, capture_output=True,
                              text=True, check=True)
        outs.append(json.loads(proc.stdout))
    assert outs[0] == outs[1] == sorted(b.key for b in make_plan(directory).builds.values())


# --- what changes a key -------------------------------------------------------------------

def edit_step(recipes, matrix):
    recipes["base"]["steps"].append("make check")


def edit_env(recipes, matrix):
    recipes["kern"]["env"]["OPT"] = "2"


def edit_pin(recipes, matrix):
    recipes["base"]["source"]["pin"] = PIN_C


def edit_dependency_pin(recipes, matrix):
    recipes["kern"]["source"]["pin"] = PIN_C


def edit_base_image(recipes, matrix):
    matrix["stacks"]["base"]["build_image"] = "example.invalid/build:2"


def edit_apt(recipes, matrix):
    recipes["ck"]["apt"] = ["zlib1g-dev"]


def edit_sdist_version(recipes, matrix):
    recipes["other"]["source"]["version"] = "1.1"


def edit_python(recipes, matrix):
    matrix["python"] = ["3.13"]


@pytest.mark.parametrize(("edit", "changed"), [
    (edit_step, {"base", "kern", "ck", "app"}),
    (edit_env, {"kern", "app"}),
    (edit_pin, {"base", "kern", "ck", "app"}),
    (edit_dependency_pin, {"kern", "app"}),
    (edit_base_image, ALL),
    (edit_apt, {"ck"}),
    (edit_sdist_version, {"other"}),
], ids=lambda v: v.__name__ if callable(v) else None)
def test_change_reaches_the_component_and_its_dependents(
        tmp_path: Path, edit: Callable, changed: set[str]):
    recipes, matrix = small_recipes(), small_matrix()
    old = plan_keys(tmp_path, recipes, matrix)
    edit(recipes, matrix)
    new = plan_keys(tmp_path, recipes, matrix)
    assert changed_components(old, new) == changed


def test_python_version_changes_every_key(tmp_path: Path):
    recipes, matrix = small_recipes(), small_matrix()
    old = plan_keys(tmp_path, recipes, matrix)
    edit_python(recipes, matrix)
    new = plan_keys(tmp_path, recipes, matrix)
    assert not set(old.values()) & set(new.values())


def test_description_does_not_change_keys(tmp_path: Path):
    recipes = small_recipes()
    old = plan_keys(tmp_path, recipes)
    for recipe in recipes.values():
        recipe["description"] = "reworded"
    assert plan_keys(tmp_path, recipes) == old


def test_mirror_does_not_change_keys(tmp_path: Path):
    recipes = small_recipes()
    old = plan_keys(tmp_path, recipes)
    rules = (("file:///srv/mirrors/", "https://example.invalid/"),)
    directory = write_set(tmp_path / "recipes", recipes)
    p = make_plan(directory, rewrites=rules)
    assert keys(p) == old
    base = p.builds[p.cell_targets[G942_CKFREE]["base"]]
    assert base.source.fetch_url == "file:///srv/mirrors/base.git"  # the mirror is used


# --- cells share what does not depend on them ------------------------------------------------

def test_arch_dependent_and_independent_components(tmp_path: Path):
    p = make_plan(write_set(tmp_path / "recipes", small_recipes()), cells="*-ckfree")
    k = keys(p)
    assert k[(G942_CKFREE, "kern")] != k[(G950_CKFREE, "kern")]
    assert k[(G942_CKFREE, "app")] != k[(G950_CKFREE, "app")]  # through kern
    assert k[(G942_CKFREE, "base")] == k[(G950_CKFREE, "base")]
    base_builds = [b for b in p.builds.values() if b.component == "base"]
    assert len(base_builds) == 1
    assert base_builds[0].cells == (G942_CKFREE, G950_CKFREE)
    assert base_builds[0].archs == ()
    kern = p.builds[p.cell_targets[G950_CKFREE]["kern"]]
    assert kern.archs == ("gfx950",)
    assert dict(kern.env)["GPU_ARCHS"] == "gfx950"
    assert kern.cells == (G950_CKFREE,)


def test_variant_var_changes_only_the_components_using_it(tmp_path: Path):
    k = plan_keys(tmp_path, small_recipes())
    differ = {c for c in ALL if k[(G942_CKFREE, c)] != k[(G942_FULL, c)]}
    assert differ == {"ck"}


def test_plan_counts_shared_builds(tmp_path: Path):
    """4 cells: base/other once, ck once per variant, kern/app once per arch set."""
    p = make_plan(write_set(tmp_path / "recipes", small_recipes()))
    assert len(p.cells) == 4
    per_component = {}
    for build in p.builds.values():
        per_component[build.component] = per_component.get(build.component, 0) + 1
    assert per_component == {"base": 1, "other": 1, "ck": 2, "kern": 2, "app": 2}
    # build order: every dependency's target comes before its dependents
    order = list(p.builds)
    for build in p.builds.values():
        assert all(order.index(dep) < order.index(build.target) for dep in build.deps)


# --- pins per channel -------------------------------------------------------------------------

def test_unpinned_source_on_the_stable_channel(tmp_path: Path):
    recipes = small_recipes()
    del recipes["kern"]["source"]["pin"]
    directory = write_set(tmp_path / "recipes", recipes)
    with pytest.raises(UserError) as caught:
        make_plan(directory, channel="stable")
    assert str(caught.value) == ("recipes/kern.yaml:3: source: kern: unpinned source for the "
                                 "stable channel (branch 'main' only); add source.pin with the "
                                 "full commit")


def test_only_selects_a_closure(tmp_path: Path):
    directory = write_set(tmp_path / "recipes", small_recipes())
    p = wheelforge.plan.make_plan(types.Inputs(recipes_dir=directory, only=("app",)),
                                  channel="stable", cells_glob=None)
    assert {b.component for b in p.builds.values()} == {"base", "kern", "app"}
    with pytest.raises(UserError) as caught:
        wheelforge.plan.make_plan(types.Inputs(recipes_dir=directory, only=("ap",)),
                                  channel="stable", cells_glob=None)
    assert str(caught.value) == "--only ap: no such component (did you mean 'app'?)"


# --- invoke plan on the production recipes ------------------------------------------------------

@pytest.fixture
def no_network(tmp_path: Path) -> dict[str, str]:
    """An environment in which git and HTTP fail: a plan that needs them fails too."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_git = bin_dir / "git"
    fake_git.write_text("#!/bin/sh\necho 'git must not run' >&2\nexit 99\n")
    fake_git.chmod(0o755)
    dead = "http://127.0.0.1:9"
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "http_proxy": dead,
            "https_proxy": dead, "HTTP_PROXY": dead, "HTTPS_PROXY": dead,
            "WHEELFORGE_GIT_REWRITES": ""}


def test_invoke_plan_stable_json_is_pinned_and_offline(no_network: dict[str, str]):
    proc = run_invoke("plan", "--channel", "stable", "--json", env=no_network)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    _, recipes = load(types.Inputs())
    assert len(data["cells"]) == 6
    git_builds = [b for b in data["builds"].values() if b["source"]["kind"] == "git"]
    assert {b["component"] for b in git_builds} == {
        "aiter", "atom", "flydsl", "llvm-mlir", "mori"}
    for build in git_builds:
        assert re.fullmatch(r"[0-9a-f]{40}", build["source"]["commit"]), build["component"]
        assert build["source"]["commit"] == recipes[build["component"]].source.pin
    assert set(data["bake"]["target"]) == set(data["builds"])


def test_invoke_plan_nightly_needs_the_network(no_network: dict[str, str]):
    """The same environment does stop a plan that resolves branches (the test above can fail)."""
    proc = run_invoke("plan", "--channel", "nightly", "--json", env=no_network)
    assert proc.returncode == 2
    assert len(proc.stderr.splitlines()) == 1
    assert proc.stderr.startswith("error: recipes/")


def test_the_demo_set_makes_its_git_repositories_first_and_no_other_set_does(monkeypatch):
    made = []
    monkeypatch.setattr(fetch, "make_repos", lambda: made.append(1) or {})
    fetch.ensure_demo_repos(types.Inputs(recipes_dir=ROOT / "demo" / "recipes"))
    assert made == [1]
    fetch.ensure_demo_repos(types.Inputs())
    assert made == [1]
