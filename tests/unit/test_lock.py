"""Runtime-dependency locks: parsing, the requirement check, plan and keys (no engine)."""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from pathlib import Path

import pytest

from wheelforge import cli, jobs
from wheelforge.core import types
from wheelforge.core.terminal import UserError
from wheelforge.plan import make_plan, runtime_lock, step_key

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "demo" / "recipes"
HASH = "0" * 64


def wheel(folder: Path, name: str, version: str, requires: list[str]) -> Path:
    """A minimal wheel with a METADATA file."""
    path = folder / f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + "".join(
        f"Requires-Dist: {r}\n" for r in requires)
    with zipfile.ZipFile(path, "w") as whl:
        whl.writestr(f"{name.replace('-', '_')}-{version}.dist-info/METADATA", meta)
    return path


def lock_file(tmp: Path, text: str, python: str = "3.11") -> types.Lock:
    recipes = tmp / "recipes"
    path = runtime_lock.path_of(recipes, "cpu", python)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return runtime_lock.locate(recipes, "cpu", python)


def test_parse_reads_pins_across_continuation_lines_and_comments(tmp_path):
    found = lock_file(tmp_path, f"# header\nNumPy==2.4.6 \\\n    --hash=sha256:{HASH} \\\n"
                                f"    --hash=sha256:{'1' * 64}\n    # via x\n"
                                f"six==1.17.0 --hash=sha256:{HASH}  # via y\n")
    assert found.pins == (("numpy", "2.4.6"), ("six", "1.17.0"))
    assert found.sha256 == hashlib.sha256(found.path.read_bytes()).hexdigest()


@pytest.mark.parametrize("entry", ["numpy>=2 --hash=sha256:" + HASH, "numpy==2.4.6",
                                   "numpy==2.* --hash=sha256:" + HASH, "not a req!!"])
def test_parse_refuses_anything_but_exact_hashed_pins_with_file_and_line(tmp_path, entry):
    with pytest.raises(UserError) as exc:
        lock_file(tmp_path, f"# made by invoke lock\n{entry}\n")
    assert ":2: " in str(exc.value) and "run invoke lock" in str(exc.value)
    assert "\n" not in str(exc.value)


def test_a_missing_lock_has_no_sha256_and_plan_says_so(tmp_path):
    found = runtime_lock.locate(tmp_path, "cpu", "3.11")
    assert not found.exists and "missing: run invoke lock" in found.label()


def test_check_passes_when_the_lock_or_the_set_meets_every_applying_requirement(tmp_path):
    wheels = [wheel(tmp_path, "engine", "1.0", ["numpy>=1.9", "core==2.0",
                                                "pytest; extra == 'tests'",
                                                "winlib; sys_platform == 'win32'",
                                                "oldlib; python_version < '3.8'"]),
              wheel(tmp_path, "core", "2.0", [])]
    found = lock_file(tmp_path, f"numpy==2.4.6 --hash=sha256:{HASH}\n")
    runtime_lock.check("cell-a", wheels, found)


def test_check_names_the_missing_requirement_and_invoke_lock_in_one_line(tmp_path):
    wheels = [wheel(tmp_path, "engine", "1.0", ["numpy>=1.9", "six"])]
    found = lock_file(tmp_path, f"numpy==2.4.6 --hash=sha256:{HASH}\n")
    with pytest.raises(UserError) as exc:
        runtime_lock.check("cell-a", wheels, found)
    message = str(exc.value)
    assert "engine-1.0-py3-none-any.whl requires six" in message and "lacks" in message
    assert "run invoke lock" in message and "--cells cell-a" in message
    assert "\n" not in message


def test_check_refuses_a_pin_outside_the_requirement_and_a_pinned_own_component(tmp_path):
    wheels = [wheel(tmp_path, "engine", "1.0", ["numpy<2"])]
    with pytest.raises(UserError, match=r"pins numpy==2\.4\.6"):
        runtime_lock.check("c", wheels, lock_file(tmp_path, f"numpy==2.4.6 --hash=sha256:{HASH}\n"))
    with pytest.raises(UserError, match="pins engine, which the set builds"):
        runtime_lock.check("c", wheels, lock_file(tmp_path, f"numpy==1.26.4 --hash=sha256:{HASH}\n"
                                                  f"engine==1.0 --hash=sha256:{HASH}\n"))


def test_check_refuses_an_own_component_at_another_version(tmp_path):
    wheels = [wheel(tmp_path, "engine", "1.0", ["core==2.1"]), wheel(tmp_path, "core", "2.0", [])]
    with pytest.raises(UserError, match="requires core==2.1, the set builds core 2.0"):
        runtime_lock.check("c", wheels, runtime_lock.locate(tmp_path, "cpu", "3.11"))


def test_a_missing_lock_is_refused_only_when_the_set_needs_something(tmp_path):
    missing = runtime_lock.locate(tmp_path / "recipes", "cpu", "3.11")
    runtime_lock.check("c", [wheel(tmp_path, "core", "2.0", [])], missing)
    with pytest.raises(UserError, match="there is no lock .*run invoke lock"):
        runtime_lock.check("c", [wheel(tmp_path, "engine", "1.0", ["numpy"])], missing)


def test_markers_are_evaluated_for_the_cells_python(tmp_path):
    wheels = [wheel(tmp_path, "engine", "1.0", ["tomli; python_version < '3.11'"])]
    missing = runtime_lock.locate(tmp_path / "recipes", "cpu", "3.10")
    with pytest.raises(UserError, match="requires tomli"):
        runtime_lock.check("c", wheels, missing)
    runtime_lock.check("c", wheels, runtime_lock.locate(tmp_path / "recipes", "cpu", "3.14"))


def test_write_is_atomic_and_says_whether_it_changed(tmp_path):
    path = tmp_path / "locks" / "x.txt"
    assert runtime_lock.write(path, "a\n") is True
    assert runtime_lock.write(path, "a\n") is False
    assert path.read_text() == "a\n" and [p.name for p in path.parent.iterdir()] == ["x.txt"]


def _demo_copy(tmp_path: Path) -> Path:
    dest = tmp_path / "recipes"
    shutil.copytree(DEMO, dest)
    return dest


def test_plan_shows_each_cells_lock_and_the_step_key(tmp_path):
    recipes = _demo_copy(tmp_path)
    p = make_plan(types.Inputs(recipes_dir=recipes), channel="stable",
                  cells_glob="stable-bookworm-*")
    text = cli.with_locks(p, "cells...\nbake definition (x):\n{}", as_json=False)
    committed = (recipes / "locks" / "bookworm-py3.11.txt").read_bytes()
    assert text.index("bookworm-py3.11.txt (sha256 "
                      f"{hashlib.sha256(committed).hexdigest()[:12]}") < text.index("bake def")
    data = json.loads(cli.with_locks(p, json.dumps({"cells": []}), as_json=True))
    cell = data["runtime_deps"]["stable-bookworm-py3.11-x86-64-v2-default"]
    assert cell["lock_sha256"] == hashlib.sha256(committed).hexdigest()
    assert set(cell["pins"]) == {"numpy"} and len(cell["key"]) == 64


def test_the_lock_is_in_the_runtime_deps_key_and_in_no_component_key(tmp_path):
    recipes = _demo_copy(tmp_path)

    def plan_now():
        return make_plan(types.Inputs(recipes_dir=recipes), channel="stable",
                         cells_glob="stable-bookworm-py3.11-x86-64-v2-default")

    before = plan_now()
    with (recipes / "locks" / "bookworm-py3.11.txt").open("a") as f:
        f.write("# changed\n")
    after = plan_now()
    assert {b.key for b in before.builds.values()} == {b.key for b in after.builds.values()}
    cell = before.cells[0]
    assert step_key(before, cell) != step_key(after, after.cells[0])


def test_lock_without_built_wheels_is_one_line_naming_invoke_wheels(tmp_path):
    recipes = _demo_copy(tmp_path)
    with pytest.raises(UserError) as exc:
        jobs.lock(types.Inputs(recipes_dir=recipes), channel="stable",
                  cells="stable-bookworm-*", wheels_root=tmp_path / "wheels",
                  exports=tmp_path / "exports", say=lambda _line: None)
    assert "no built wheels for stack bookworm, Python 3.11" in str(exc.value)
    assert "run invoke wheels" in str(exc.value) and "\n" not in str(exc.value)


def test_the_committed_demo_locks_parse_and_are_made_by_invoke_lock():
    for path in sorted((DEMO / "locks").glob("*.txt")):
        text = path.read_text()
        assert text.startswith("# Runtime-dependency lock") and "invoke lock" in text
        runtime_lock.parse(text, str(path))
    assert dict(runtime_lock.locate(DEMO, "bookworm", "3.11").pins).keys() == {"numpy"}


@pytest.mark.parametrize(("files", "target"), [
    ([], "x86_64-manylinux_2_28"),
    (["lz4-4.4.4-cp311-cp311-linux_x86_64.whl", "x-1.0-py3-none-any.whl"],
     "x86_64-manylinux_2_28"),
    # AMD's amd-mori 1.2.4 exists for manylinux_2_39 only: a lock for 2_28 cannot hold it
    (["amd_mori-1.2.4-cp312-cp312-manylinux_2_39_x86_64.whl",
      "triton-3.5.1-cp312-cp312-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl"],
     "x86_64-manylinux_2_39"),
    (["psutil-7.2.2-cp36-abi3-manylinux2010_x86_64.manylinux_2_12_x86_64.whl"],
     "x86_64-manylinux_2_28"),
])
def test_the_lock_platform_is_the_newest_glibc_the_sets_own_wheels_need(files, target):
    assert runtime_lock.platform([Path(f) for f in files]) == target
