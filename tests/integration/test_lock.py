"""Runtime-dependency locks on a real engine, real pip and real uv, with the demo set."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tests.conftest import CELLS, build_demo, copy_recipes, run_invoke
from wheelforge.core import settings
from wheelforge.core.terminal import UserError
from wheelforge.plan import runtime_lock

pytestmark = [pytest.mark.integration, pytest.mark.one_engine]

LOCK = "locks/bookworm-py3.11.txt"


def runtime_files(cell_dir: Path) -> dict[str, str]:
    manifest = json.loads((cell_dir / "manifest.json").read_text())
    return {w["file"]: hashlib.sha256((cell_dir / w["file"]).read_bytes()).hexdigest()
            for w in manifest["runtime_deps"]}


def test_runtime_deps_are_exactly_the_lock_and_byte_identical_across_builds(demo_build,
                                                                            tmp_path):
    first = {cell: runtime_files(demo_build.out / cell) for cell in CELLS}
    committed = runtime_lock.locate(settings.ROOT / "demo" / "recipes", "bookworm", "3.11")
    for cell, files in first.items():
        manifest = json.loads((demo_build.out / cell / "manifest.json").read_text())
        assert manifest["runtime_lock"]["sha256"] == committed.sha256
        # exactly the lock's distributions, at its versions, each file among its hashes
        assert {f.split("-")[0].lower(): f.split("-")[1] for f in files} == dict(committed.pins)
        assert all(f"sha256:{digest}" in committed.path.read_text() for digest in files.values())
    # Second build: the same pins under another lock header, so the runtime-deps step's
    # key (and its `lock` context) differs and BuildKit runs it again.
    recipes = copy_recipes(tmp_path / "recipes")
    with (recipes / LOCK).open("a") as f:
        f.write("# the same pins, another file: the runtime-deps step runs again\n")
    again = build_demo(tmp_path / "wheels", tmp_path / "exports", recipes=recipes,
                       cells="stable-bookworm-*")
    for cell in CELLS:
        manifest = json.loads((again.out / cell / "manifest.json").read_text())
        assert manifest["runtime_lock"]["sha256"] != committed.sha256
        assert manifest["runtime_lock"]["step_key"] != json.loads(
            (demo_build.out / cell / "manifest.json").read_text())["runtime_lock"]["step_key"]
        assert runtime_files(again.out / cell) == first[cell], cell


def test_a_wheel_set_needing_what_the_lock_lacks_stops_with_one_line(demo_build, tmp_path):
    recipes = copy_recipes(tmp_path / "recipes")
    (recipes / LOCK).write_text("# a lock without numpy\n")
    cell = CELLS[0]
    with pytest.raises(UserError) as exc:
        build_demo(tmp_path / "wheels", tmp_path / "exports", recipes=recipes, cells=cell)
    message = str(exc.value)
    assert "\n" not in message
    shown = runtime_lock.locate(recipes, "bookworm", "3.11").display
    assert f"wheels: {cell}: msgpack_numpy-0.4.8-py2.py3-none-any.whl requires numpy>=1.9.0, " \
           f"which {shown} lacks; run invoke lock" in message
    assert not (tmp_path / "wheels" / cell).exists()  # nothing swapped in


def test_invoke_lock_resolves_the_built_wheels_with_uv(demo_build, tmp_path):
    recipes = copy_recipes(tmp_path / "recipes")
    (recipes / LOCK).unlink()
    proc = run_invoke("lock", "--recipes", str(recipes), "--cells", "stable-bookworm-*",
                      env={"WHEELFORGE_WHEELS": str(demo_build.out)}, timeout=600)
    assert proc.returncode == 0, proc.stderr
    made = runtime_lock.locate(recipes, "bookworm", "3.11")
    text = made.path.read_text()
    assert set(dict(made.pins)) == {"numpy"}  # msgpack-numpy's only third-party need
    assert "with uv " in text and "--generate-hashes" in text and "#   numpy>=1.9.0" in text
    assert text.count("--hash=sha256:") > 1  # every file of the version, not one
    for cell in CELLS:  # the component wheels it was made from pass the build's check
        manifest = json.loads((demo_build.out / cell / "manifest.json").read_text())
        runtime_lock.check(cell, [demo_build.out / cell / w["file"] for c in
                                  manifest["components"].values() for w in c["wheels"]], made)


def test_with_no_lock_at_all_wheels_makes_it_and_says_so(demo_build, tmp_path, capsys):
    recipes = copy_recipes(tmp_path / "recipes")
    (recipes / LOCK).unlink()
    cell = CELLS[0]
    capsys.readouterr()
    build_demo(tmp_path / "wheels", tmp_path / "exports", recipes=recipes, cells=cell)
    made = runtime_lock.locate(recipes, "bookworm", "3.11")
    assert made.exists and "numpy" in made.pinned()
    assert (f"lock: {made.display}: there was none; made from the built wheels with uv "
            f"({len(made.pins)} pins): commit it") in capsys.readouterr().err
    manifest = json.loads((tmp_path / "wheels" / cell / "manifest.json").read_text())
    assert manifest["runtime_lock"]["sha256"] == made.sha256
