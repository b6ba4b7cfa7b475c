"""The ROCm demo stack: Debian's hipcc builds real gfx942/gfx950 code through the pipeline.

Nothing runs on a GPU here (there is none): the GPU code is compiled, read back from
the wheels by the audit, and the runtime image imports the extensions, which load the
HIP runtime library without a GPU.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import CPU_COMPONENTS, ROOT, DemoBuild, build_demo, copy_recipes, run_invoke
from wheelforge.audit import gpu
from wheelforge.core import rootfs, types
from wheelforge.core.engine import DOCKER, docker
from wheelforge.core.terminal import UserError
from wheelforge.image import build_image
from wheelforge.plan import fetch, make_plan
from wheelforge.recipes import load

pytestmark = [pytest.mark.integration, pytest.mark.one_engine]

STACK = "rocm6.4-sid"
ROCM_CELLS = {
    f"stable-{STACK}-py3.14-gfx942-default": ("gfx942",),
    f"stable-{STACK}-py3.14-gfx950-default": ("gfx950",),
    f"stable-{STACK}-py3.14-gfx942-gfx950-default": ("gfx942", "gfx950"),
}
FAT = f"stable-{STACK}-py3.14-gfx942-gfx950-default"
HIP = {"hipsaxpy", "hipblend"}
# The hipsaxpy step that turns the cell's archs into --offload-arch flags, and a broken
# variant of it that keeps only the first arch (gfx942;gfx950 -> gfx942).
EVERY_ARCH = "${GPU_ARCHS//;/ }"
FIRST_ARCH_ONLY = "${GPU_ARCHS%%;*}"


def _manifest(build: DemoBuild, cell: str) -> dict:
    return json.loads((build.out / cell / "manifest.json").read_text())


# --- the matrix and the recipes: no engine needed -------------------------------------

def test_recipe_pins_are_the_demo_sources_commits():
    """demo/hip/<name> becomes <name>.git with a fixed commit; the recipes pin exactly it
    (a changed source needs a new pin, else this fails)."""
    commits = fetch.make_repos()
    for name in HIP:
        text = (ROOT / "demo" / "recipes" / f"{name}.yaml").read_text()
        assert f"pin: {commits[f'{name}.git']}" in text, name
    assert fetch.make_repos() == commits  # the same on every call


def test_plan_lists_cpu_and_rocm_cells():
    proc = run_invoke("plan", "--recipes", "demo/recipes", "--list", "--channel", "stable")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["stable-bookworm-py3.11-x86-64-v2-default",
                                   "stable-bookworm-py3.11-x86-64-v3-default", *ROCM_CELLS]


def test_components_are_limited_to_their_stacks():
    p = make_plan(types.Inputs(recipes_dir=ROOT / "demo" / "recipes"),
                  channel="stable", cells_glob=None)
    for cell in p.cells:
        names = set(p.cell_targets[cell.id])
        if cell.stack.name == STACK:
            assert names == HIP, cell.id
            assert cell.stack.runtime_toolchain == "forbidden"
        else:
            assert names == CPU_COMPONENTS
    for cell, archs in ROCM_CELLS.items():
        build = p.builds[p.cell_targets[cell]["hipsaxpy"]]
        assert build.archs == archs and dict(build.env)["GPU_ARCHS"] == ";".join(archs)


def _line(file: str, start: str) -> int:
    """The line of demo recipe `file` that begins with `start`."""
    lines = (ROOT / "demo" / "recipes" / file).read_text().splitlines()
    return next(n for n, line in enumerate(lines, 1) if line.startswith(start))


@pytest.mark.parametrize(("file", "old", "new", "message"), [
    ("hipblend.yaml", "stacks: [rocm6.4-sid]", "stacks: [rocm6.4-sd]",
     rf"^hipblend\.yaml:{_line('hipblend.yaml', 'stacks:')}: stacks: no stack named "
     r"'rocm6\.4-sd' in the matrix \(did you mean "
     r"'rocm6\.4-sid'\?\); stacks: bookworm, rocm6\.4-sid$"),
    ("hipsaxpy.yaml", "stacks: [rocm6.4-sid]", "stacks: [bookworm]",
     rf"^hipblend\.yaml:{_line('hipblend.yaml', 'depends:')}: depends: 'hipsaxpy' is not "
     r"built for stack 'rocm6\.4-sid' "),
    ("matrix.yaml", "archs: [gfx942, gfx950, gfx942-gfx950]",
     "archs: [gfx942, gfx905, gfx942-gfx950]",
     r"^matrix\.yaml:\d+: stacks\.rocm6\.4-sid\.archs\[1\]: no arch set named 'gfx905'"),
    ("matrix.yaml", "runtime_toolchain: forbidden", "runtime_toolchain: yes",
     r"^matrix\.yaml:\d+: stacks\.rocm6\.4-sid\.runtime_toolchain: 'yes': write allowed or "
     r"forbidden"),
    ("matrix.yaml", 'python: ["3.14"]', "python: []",
     r"^matrix\.yaml:\d+: stacks\.rocm6\.4-sid\.python: lists nothing"),
])
def test_stack_keys_are_validated_strictly(tmp_path, file, old, new, message):
    recipes = copy_recipes(tmp_path / "recipes", {file: (old, new)})
    with pytest.raises(UserError) as caught:
        load(types.Inputs(recipes_dir=recipes))
    text = str(caught.value).replace(f"{recipes.relative_to(tmp_path)}/", "")
    assert re.search(message, text), text
    assert "\n" not in text


# --- real builds ----------------------------------------------------------------------

def test_rocm_cells_carry_bundles_for_exactly_their_archs(rocm_build):
    for cell, archs in ROCM_CELLS.items():
        manifest = _manifest(rocm_build, cell)
        assert set(manifest["components"]) == HIP
        assert manifest["runtime_deps"] == []
        result = gpu.audit_set(rocm_build.out / cell)
        assert result.ok, result.findings
        assert {Path(w.name).name.split("-")[0] for w in result.wheels} == HIP
        for wheel in result.wheels:
            units = wheel.units()
            assert [u.kind for u in units] == ["bundle"], wheel.name  # one TU, one bundle
            # every arch of the cell in the bundle, and no other
            assert sorted(units[0].targets) == sorted(archs), (cell, wheel.name)


def test_fat_cell_bundles_hold_both_archs_and_hipblend_is_compressed(rocm_build):
    result = gpu.audit_set(rocm_build.out / FAT)
    kinds = {}
    for wheel in result.wheels:
        for member in wheel.members:
            for blob in member.blobs:
                assert set(blob.targets) == {"gfx942", "gfx950"}, (member.path, blob)
                kinds[member.path] = blob.kind
    assert kinds == {"hipsaxpy/libhipsaxpy.so": "bundle",
                     "hipblend/libhipblend.so": "compressed bundle (zstd)"}


def test_one_arch_too_few_is_stopped_by_the_audit(engine, tmp_path):
    """A recipe that passes only the first arch of gfx942;gfx950 to hipcc compiles, and
    the audit of `invoke wheels` names the bundle that lacks gfx950 and its recipe (and
    nothing of hipblend, which is right); no wheel set appears."""
    recipes = copy_recipes(tmp_path / "recipes", {"hipsaxpy.yaml": (EVERY_ARCH, FIRST_ARCH_ONLY)})
    with pytest.raises(UserError) as caught:
        build_demo(tmp_path / "wheels", tmp_path / "exports", recipes=recipes, cells=FAT)
    message = str(caught.value)
    assert ("hipsaxpy-0.1.0-cp314-cp314-linux_x86_64.whl: hipsaxpy/libhipsaxpy.so: bundle 1: "
            "missing gfx950;") in message
    assert "more" not in message and "hipsaxpy.yaml" in message and "hipblend" not in message
    assert not (tmp_path / "wheels" / FAT).exists()


def test_runtime_image_imports_the_hip_extensions_without_a_gpu(rocm_build):
    tag = f"wheelforge-test/runtime:{FAT}"
    built = build_image(rocm_build.out / FAT, tag=tag)
    assert built.tag == tag
    script = (
        "import array, hipblend, hipsaxpy\n"
        "maps = open('/proc/self/maps').read()\n"
        "assert 'libamdhip64.so.6' in maps and 'hipsaxpy/libhipsaxpy.so' in maps, maps\n"
        "print('devices', hipsaxpy.device_count(), hipblend.device_count())\n"
        "x, y = array.array('f', [1, 2]), array.array('f', [1, 1])\n"
        "try:\n"
        "    hipblend.axpby(2.0, x, 3.0, y)\n"
        "except RuntimeError as exc:\n"
        "    print('no gpu:', exc)\n")
    out = docker(["run", "--rm", "--network=none", tag, "python", "-c", script],
                 what=f"{tag} ").stdout.decode()
    assert "devices 0 0" in out
    assert "no gpu: hipblend: no ROCm-capable device is detected" in out
    for compiler in ("hipcc", "clang-21", "gcc", "cc"):  # the toolchain stayed behind
        which = subprocess.run([DOCKER, "run", "--rm", "--network=none", tag, "which",
                                compiler], capture_output=True, check=False)
        assert which.returncode != 0, compiler


def test_debian_mirror_comes_from_the_apt_sources(tmp_path, monkeypatch):
    """First main-archive entry: sources.list, then sources.list.d/ in order; security
    suites, disabled stanzas, deb-src and other file names do not count."""
    monkeypatch.delenv("WHEELFORGE_DEBIAN_MIRROR", raising=False)
    listd = tmp_path / "sources.list.d"
    listd.mkdir()
    (listd / "a.sources").write_text(
        "Types: deb\nURIs: http://security.mirror.invalid/debian-security\n"
        "Suites: trixie-security\nComponents: main\n\n"
        "# a comment\nTypes: deb\nURIs: http://off.mirror.invalid/debian\nSuites: trixie\n"
        "Enabled: no\n\n"
        "Types: deb deb-src\nURIs: http://main.mirror.invalid/debian/\nSuites: trixie\n")
    (listd / "b.list").write_text("deb [arch=amd64] http://second.mirror.invalid/debian sid main\n")
    (listd / "c.list.disabled").write_text("deb http://disabled.mirror.invalid/debian sid main\n")
    assert rootfs.debian_mirror(tmp_path) == "http://main.mirror.invalid/debian"
    (tmp_path / "sources.list").write_text(
        "deb-src http://src.mirror.invalid/debian sid main\n"
        "deb http://first.mirror.invalid/debian bookworm main  # the main archive\n")
    assert rootfs.debian_mirror(tmp_path) == "http://first.mirror.invalid/debian"
    monkeypatch.setenv("WHEELFORGE_DEBIAN_MIRROR", "http://override.mirror.invalid/debian/")
    assert rootfs.debian_mirror(tmp_path) == "http://override.mirror.invalid/debian"


def test_no_apt_sources_is_one_line_error(tmp_path, monkeypatch):
    monkeypatch.delenv("WHEELFORGE_DEBIAN_MIRROR", raising=False)
    with pytest.raises(UserError) as caught:
        rootfs.debian_mirror(tmp_path)
    assert str(caught.value) == (
        f"no Debian mirror in {tmp_path}/sources.list or {tmp_path}/sources.list.d/; "
        f"set WHEELFORGE_DEBIAN_MIRROR=URL of a Debian archive")
