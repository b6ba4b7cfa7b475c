"""The GPU-target audit as a gate: `invoke wheels` audits each staged set before it is
swapped in, and Dockerfile.clean audits the set again before it installs anything.

A recipe that compiles one arch too few fails the wheels step (before any image can
exist), naming the file and the missing arch; the previous wheel set stays intact.
CPU cells (x86-64-v2/v3 "archs") are never judged.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT, build_demo, copy_recipes
from tests.unit.test_gpucode import HIP, HOST, bundle, host_elf
from wheelforge.audit import gpu
from wheelforge.core import engine, wheelset
from wheelforge.core.terminal import UserError

pytestmark = pytest.mark.one_engine  # nothing engine-specific (see tests/conftest.py)

STACK = "rocm6.4-sid"
FAT = f"stable-{STACK}-py3.14-gfx942-gfx950-default"
# hipsaxpy's step turns the cell's archs into --offload-arch flags; the broken variant
# keeps only the first arch (gfx942;gfx950 -> gfx942).
EVERY_ARCH = "${GPU_ARCHS//;/ }"
FIRST_ARCH_ONLY = "${GPU_ARCHS%%;*}"
BROKEN_WHEEL = "hipsaxpy-0.1.0-cp314-cp314-linux_x86_64.whl"
FINDING = f"{BROKEN_WHEEL}: hipsaxpy/libhipsaxpy.so: bundle 1: missing gfx950"


def _tree(folder: Path) -> dict[str, str]:
    """Every file under `folder` with its sha256 (what "intact" means)."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# --- the gate on crafted staged sets: no engine -------------------------------------------

def _wheel(folder: Path, name: str, members: dict[str, bytes]) -> Path:
    path = folder / name
    with zipfile.ZipFile(path, "w") as zf:
        for member, data in members.items():
            zf.writestr(member, data)
    return path


def _library(ids: list[str]) -> bytes:
    return host_elf([(".hip_fatbin", bundle(ids))])


def _manifest(cell: str, archs: list[str], wheels: dict[str, str]) -> dict:
    """wheels: {wheel file: recipe file}."""
    return {"cell": cell, "archs": archs, "components": {
        Path(recipe).stem: {"recipe": recipe, "wheels": [{"file": name}]}
        for name, recipe in wheels.items()}}


def test_gate_stops_a_set_missing_an_arch_naming_file_arch_and_recipe(tmp_path, capsys):
    stage = tmp_path / ".staging-cell-x"
    stage.mkdir()
    _wheel(stage, "good-1-py3-none-any.whl",
           {"good/libgood.so": _library([HOST, HIP + "gfx942", HIP + "gfx950"])})
    _wheel(stage, "thin-1-py3-none-any.whl",
           {"thin/libthin.so": _library([HOST, HIP + "gfx942:xnack-"])})
    manifest = _manifest("cell", ["gfx942", "gfx950"],
                         {"good-1-py3-none-any.whl": "recipes/good.yaml",
                          "thin-1-py3-none-any.whl": "recipes/thin.yaml"})
    with pytest.raises(UserError) as caught:
        gpu.gate(stage, manifest)
    message = str(caught.value)
    assert message == (
        "wheels: GPU-target audit of cell: thin-1-py3-none-any.whl: thin/libthin.so: "
        f"bundle 1: missing gfx950; nothing was swapped in ({tmp_path / 'cell'} is "
        "unchanged); make recipes/thin.yaml build its GPU code for every arch of the cell "
        "(gfx942;gfx950)")
    assert caught.value.exit_code == 1
    err = capsys.readouterr().err.splitlines()
    # the finding lines first, then the wheel x arch table
    assert err[0] == "thin-1-py3-none-any.whl: thin/libthin.so: bundle 1: missing gfx950"
    assert err[1].split() == ["wheel", "gpu", "files", "bundles", "kernels", "partial",
                              "kernels", "gfx942", "b/k", "gfx950", "b/k"]
    assert [line.split() for line in err[3:]] == [
        ["good-1-py3-none-any.whl", "1", "1", "0", "0", "1/0", "1/0"],
        ["thin-1-py3-none-any.whl", "1", "1", "0", "0", "1/0", "0/0"]]


def test_gate_passes_and_returns_the_manifest_targets(tmp_path, capsys):
    stage = tmp_path / "stage"
    stage.mkdir()
    _wheel(stage, "fat-1-py3-none-any.whl",
           {"fat/libfat.so": _library([HOST, HIP + "gfx942", HIP + "gfx950"]),
            "fat/__init__.py": b""})
    _wheel(stage, "pure-1-py3-none-any.whl", {"pure/__init__.py": b"x = 1\n"})
    targets = gpu.gate(stage, _manifest("gpu-cell", ["gfx942", "gfx950"], {}))
    assert targets["fat-1-py3-none-any.whl"]["targets"] == ["gfx942", "gfx950"]
    assert targets["fat-1-py3-none-any.whl"]["archs"] == {
        "gfx942": {"bundles": 1, "kernels": 0}, "gfx950": {"bundles": 1, "kernels": 0}}
    assert targets["pure-1-py3-none-any.whl"]["files"] == 0
    out = capsys.readouterr().out
    assert out.startswith("GPU-target audit of gpu-cell (bundles/kernels per arch; judged "
                          "against gfx942;gfx950):\n")
    assert re.search(r"^fat-1-py3-none-any\.whl\s+1\s+1\s+0\s+0\s+1/0\s+1/0$", out, re.M), out


def test_cpu_cell_archs_are_not_judged(tmp_path, capsys):
    """x86-64-v2 is a CPU arch set: not a gfx name, so nothing is judged against it, not
    even GPU code that would lack it; a CPU set without GPU code prints no table."""
    assert gpu.gpu_archs(["x86-64-v2", "gfx942", "x86-64-v3", 7]) == ("gfx942",)
    stage = tmp_path / "stage"
    stage.mkdir()
    _wheel(stage, "lz4-4-cp311-cp311-linux_x86_64.whl", {"lz4/_block.so": b"\x7fELF" + bytes(60),
                                                         "lz4/__init__.py": b""})
    assert gpu.gate(stage, _manifest("cpu", ["x86-64-v2"], {})) == {
        "lz4-4-cp311-cp311-linux_x86_64.whl": {
            "files": 0, "bundles": 0, "kernels": 0, "single_arch_kernels": 0,
            "partial_kernels": 0, "kernels_without": {}, "trees": {}, "unreadable": 0,
            "targets": [], "archs": {}}}
    assert capsys.readouterr() == ("", "")
    _wheel(stage, "odd-1-py3-none-any.whl", {"odd/lib.so": _library([HOST, HIP + "gfx942"])})
    result = gpu.audit_set(stage, ["x86-64-v2"])
    assert result.ok and result.findings == []
    assert [w.archs for w in result.wheels] == [(), ()]
    gpu.gate(stage, _manifest("cpu", ["x86-64-v2"], {}))  # reported, not judged
    assert "not judged" in capsys.readouterr().out


def test_gate_keeps_what_it_read_by_sha256(tmp_path, capsys):
    """A wheel is read once per content (and reader version): a second gate over the same
    sha256 uses the entry; an entry that cannot be read is ignored and written anew."""
    stage, cache = tmp_path / "stage", tmp_path / "cache"
    stage.mkdir()
    wheel = _wheel(stage, "fat-1-py3-none-any.whl",
                   {"fat/libfat.so": _library([HOST, HIP + "gfx942", HIP + "gfx950"])})
    manifest = {"cell": "c", "archs": ["gfx942", "gfx950"], "components": {},
                "runtime_deps": [wheelset.wheel_entry(wheel)]}
    first = gpu.gate(stage, manifest, cache=cache)
    [entry] = cache.iterdir()
    assert entry.name.startswith(manifest["runtime_deps"][0]["sha256"])
    assert gpu.gate(stage, manifest, cache=cache) == first
    # the entry is what the second gate used: one that says gfx942 only fails it
    stored = json.loads(entry.read_text())
    stored[0]["blobs"][0]["targets"] = ["gfx942"]
    entry.write_text(json.dumps(stored))
    with pytest.raises(UserError, match="bundle 1: missing gfx950"):
        gpu.gate(stage, manifest, cache=cache)
    entry.write_text("{not json")
    assert gpu.gate(stage, manifest, cache=cache) == first
    assert json.loads(entry.read_text())[0]["blobs"][0]["targets"] == ["gfx942", "gfx950"]
    capsys.readouterr()


# --- real builds ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def good_set(rocm_build, tmp_path_factory) -> Path:
    """The demo's fat ROCm cell, built correctly (a copy of the session's): the set a broken
    build must not touch."""
    root = tmp_path_factory.mktemp("gate") / "wheels"
    shutil.copytree(rocm_build.out / FAT, root / FAT)
    return root


@pytest.mark.integration
def test_good_build_records_gpu_targets(good_set):
    manifest = json.loads((good_set / FAT / "manifest.json").read_text())
    targets = manifest["gpu_targets"]
    assert sorted(targets) == ["hipblend-0.1.0-cp314-cp314-linux_x86_64.whl", BROKEN_WHEEL]
    for entry in targets.values():
        assert entry["files"] == 1 and entry["bundles"] == 1
        assert entry["targets"] == ["gfx942", "gfx950"]
        assert entry["archs"] == {"gfx942": {"bundles": 1, "kernels": 0},
                                  "gfx950": {"bundles": 1, "kernels": 0}}


@pytest.mark.integration
def test_one_arch_too_few_fails_the_wheels_step_and_keeps_the_previous_set(
        good_set, tmp_path, capsys):
    before = _tree(good_set / FAT)
    recipes = copy_recipes(tmp_path / "recipes", {"hipsaxpy.yaml": (EVERY_ARCH,
                                                                    FIRST_ARCH_ONLY)})
    capsys.readouterr()
    with pytest.raises(UserError) as caught:
        build_demo(good_set, tmp_path / "exports", recipes=recipes, cells=FAT)
    message = str(caught.value)
    assert message.startswith(f"wheels: GPU-target audit of {FAT}: {FINDING}; nothing was "
                              f"swapped in ({good_set / FAT} is unchanged); make ")
    assert message.endswith("hipsaxpy.yaml build its GPU code for every arch of the cell "
                            "(gfx942;gfx950)")
    err = capsys.readouterr().err
    assert f"{FINDING}\n" in err
    assert err.index(FINDING) < err.index("gfx942 b/k")  # the finding, then the table
    # the previous set, byte for byte; no staging folder left behind
    assert _tree(good_set / FAT) == before
    assert sorted(p.name for p in good_set.iterdir() if p.name.startswith(".")) == [".planned"]
    # the broken wheel was built (the step did run) but is in no set
    broken = next((tmp_path / "exports").rglob(BROKEN_WHEEL))
    assert gpu.audit_paths([broken], ("gfx942", "gfx950")).findings == [
        f"{BROKEN_WHEEL}: hipsaxpy/libhipsaxpy.so: bundle 1: missing gfx950"]


@pytest.mark.integration
def test_runtime_image_build_audits_before_installing(good_set, tmp_path):
    """A set that reaches Dockerfile.clean with a wheel lacking an arch (put together by
    hand here from the broken build's export: `invoke wheels` never makes such a set)
    fails at the audit step, before pip; the good set builds by hand as before."""
    recipes = copy_recipes(tmp_path / "recipes", {"hipsaxpy.yaml": (EVERY_ARCH,
                                                                    FIRST_ARCH_ONLY)})
    with pytest.raises(UserError):
        build_demo(tmp_path / "unused", tmp_path / "exports", recipes=recipes, cells=FAT)
    broken = next((tmp_path / "exports").rglob(BROKEN_WHEEL))
    bad_set = tmp_path / "bad-set"
    shutil.copytree(good_set / FAT, bad_set)
    (bad_set / BROKEN_WHEEL).unlink()
    shutil.copy2(broken, bad_set / BROKEN_WHEEL)
    manifest = json.loads((bad_set / "manifest.json").read_text())
    manifest["components"]["hipsaxpy"]["wheels"] = [
        wheelset.wheel_entry(bad_set / BROKEN_WHEEL)]
    (bad_set / "manifest.json").write_text(json.dumps(manifest))

    def build_by_hand(folder: Path, tag: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [engine.DOCKER, "buildx", "build", "-f", "docker/Dockerfile.clean",
             "--build-context", f"wheels={folder}",
             "--build-arg", f"RUNTIME_IMAGE={manifest['runtime_image']}",
             "--progress=plain", "--load", "-t", tag, "."],
            cwd=ROOT, capture_output=True, text=True, timeout=1800, check=False)

    bad = build_by_hand(bad_set, "wheelforge-test/audit-gate:bad")
    assert bad.returncode != 0
    log = bad.stdout + bad.stderr
    assert f"wheels/{FINDING}" in log, log[-4000:]
    assert "audit: 2 wheel(s), 1 finding(s)" in log, log[-4000:]
    assert "Successfully installed" not in log  # the install step never ran
    assert not engine.image_exists("wheelforge-test/audit-gate:bad")
    good = build_by_hand(good_set / FAT, "wheelforge-test/audit-gate:good")
    engine.docker(["rmi", "-f", "wheelforge-test/audit-gate:good"], check=False)
    assert good.returncode == 0, (good.stdout + good.stderr)[-4000:]
    assert "audit: 2 wheel(s), no GPU code is missing an arch" in good.stdout + good.stderr
