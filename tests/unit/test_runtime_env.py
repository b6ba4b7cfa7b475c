"""The run-time environment a recipe declares (runtime_env): loaded, rendered per cell,
merged per cell into the manifest, and checked against what upstream reads at run time."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.conftest import PIN_A, git_recipe, make_plan, write_set
from wheelforge.contract import computed
from wheelforge.core.terminal import UserError
from wheelforge.plan import runtime_env


def ck_set(tmp_path: Path, **runtime_env) -> Path:
    app = git_recipe("app", PIN_A, env={"ENABLE_CK": "{enable_ck}"}, imports=["app"])
    if runtime_env:
        app["runtime_env"] = runtime_env
    return write_set(tmp_path / "r", {"app": app})


def test_runtime_env_is_rendered_per_cell_and_merged(tmp_path):
    plan = make_plan(ck_set(tmp_path, ENABLE_CK="{enable_ck}"))
    envs = {c.id: runtime_env(plan, c.id) for c in plan.cells}
    assert {cell.rsplit("-", 1)[1]: env["ENABLE_CK"] for cell, env in envs.items()} == {
        "ckfree": "0", "full": "1"}


def test_two_components_disagreeing_is_one_line(tmp_path):
    one = git_recipe("one", PIN_A)
    two = git_recipe("two", PIN_A)
    one["runtime_env"], two["runtime_env"] = {"MODE": "a"}, {"MODE": "b"}
    plan = make_plan(write_set(tmp_path / "r", {"one": one, "two": two}))
    with pytest.raises(UserError, match=r"runtime_env.MODE: 'b' differs from 'a' set by one"):
        runtime_env(plan, plan.cells[0].id)


def test_runtime_env_needs_a_runtime_component(tmp_path):
    app = git_recipe("app", PIN_A, runtime=False)
    app["runtime_env"] = {"X": "1"}
    with pytest.raises(UserError, match="runtime_env: is for a component of the runtime image"):
        make_plan(write_set(tmp_path / "r", {"app": app}))


@pytest.mark.parametrize(("runtime_env", "found"), [
    ({}, [("ERROR", "ENABLE_CK is set from the variant ({enable_ck}) for the build, and app "
                    "also read it at run time")]),
    ({"ENABLE_CK": "{enable_ck}"}, []),
    ({"ENABLE_CK": "{enable_ck}", "UNREAD": "1"}, [("WARNING", "runtime_env UNREAD is set but "
                                                    "app never read it")]),
])
def test_a_variant_variable_upstream_reads_at_run_time_must_reach_the_image(
        tmp_path, runtime_env, found):
    tree = tmp_path / "tree"
    (tree / "app" / "jit").mkdir(parents=True)
    (tree / "app" / "jit" / "core.py").write_text(
        'import os\nENABLE_CK = int(os.environ.get("ENABLE_CK", "1")) != 0\n')
    plan = make_plan(ck_set(tmp_path, **runtime_env))
    build = next(iter(plan.builds.values()))
    said = []
    computed.check_runtime_env(build, {"ENABLE_CK": "{enable_ck}"}, {"enable_ck"}, tree,
                               lambda level, keys, message: said.append((level, message)))
    assert [(level, message) for level, message in said
            if not any(message.startswith(f[1]) and level == f[0] for f in found)] == []
    assert len(said) == len(found), said
