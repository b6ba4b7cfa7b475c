"""The GPU-target audit on real vendor wheels, downloaded with pip (pinned sha256, cached in
.cache/vendor-wheels/, never committed). The numbers were measured on these exact files."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from wheelforge.audit import gpu, gpucode, jit
from wheelforge.core import wheelset
from wheelforge.recipes import component

# What it proves does not depend on the engine release: `make test` runs it once.
pytestmark = [pytest.mark.integration, pytest.mark.one_engine]

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "vendor-wheels"
PLATFORMS = [f"manylinux_2_{n}_x86_64" for n in range(17, 40)] + ["manylinux2014_x86_64"]
ARCHS = ("gfx942", "gfx950")


@dataclass(frozen=True)
class Vendor:
    requirement: str
    file: str
    sha256: str


MORI = Vendor("amd-mori==1.2.4", "amd_mori-1.2.4-cp312-cp312-manylinux_2_39_x86_64.whl",
              "52dd1ee81e3f0485e4ddc90e99b42dba64ceb2500ee08564a7ba2f9d1a5ef98c")
AITER = Vendor("amd-aiter==0.1.7.post2.dev18", "amd_aiter-0.1.7.post2.dev18-py3-none-any.whl",
               "fe139d74438217c35e87e3b961166bac8db2d381eadccb371da2e63615f05a31")
FLYDSL = Vendor("flydsl==0.5.0", "flydsl-0.5.0-cp312-cp312-manylinux_2_27_x86_64.whl",
                "32725cab43e62929e61c034389fb44e97f036cd989bd0c105c69cdcb14d211b1")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(vendor: Vendor) -> Path:
    """The wheel from the cache, downloaded by pip when missing; its sha256 must match."""
    path = CACHE / vendor.file
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps",
                        "--only-binary=:all:", "--python-version", "3.12", *platforms,
                        "-d", str(CACHE), vendor.requirement], check=True,
                       stdout=subprocess.DEVNULL)
    assert sha256(path) == vendor.sha256, f"{path}: not the pinned file"
    return path


def test_mori_hip_bundles_in_shared_libraries() -> None:
    result = gpu.audit_paths([fetch(MORI)], ARCHS)
    [wheel] = result.manifest_targets().values()
    assert (wheel["files"], wheel["bundles"], wheel["kernels"]) == (2, 2, 0)
    assert wheel["archs"] == {"gfx942": {"bundles": 2, "kernels": 0},
                              "gfx950": {"bundles": 2, "kernels": 0}}
    assert wheel["single_arch_kernels"] == 0 and wheel["targets"] == ["gfx942", "gfx950"]
    members = {m.path: m.blobs for m in result.wheels[0].members}
    assert sorted(members) == ["mori/libmori_pybinds.so", "mori/umbp_standalone_server"]
    assert result.findings == [] and wheel["partial_kernels"] == 0 and wheel["trees"] == {}
    # judged against an arch it was not built for, every bundle is a finding (and only
    # they: they already name gfx90a)
    assert gpu.audit_paths([fetch(MORI)], ("gfx90a",)).findings == [
        f"{MORI.file}: mori/libmori_pybinds.so: bundle 1: missing gfx90a",
        f"{MORI.file}: mori/umbp_standalone_server: bundle 1: missing gfx90a"]


def test_aiter_kernels_for_one_arch_by_design_pass_every_cell() -> None:
    """AITER ships kernels in aiter_meta/hsa/gfx942/ and aiter_meta/hsa/gfx950/, some for
    one arch only by design, and gfx950-only fp4 Triton AOT kernels outside any arch
    folder: counted per arch, never a finding; the tree has kernels for both archs."""
    path = fetch(AITER)
    # kernels without code for the arch: 270 lack gfx942 (158 in aiter_meta/hsa, the
    # 112 fp4 .hsaco files), 219 lack gfx950
    for archs, without in [(("gfx942",), {"gfx942": 270}), (("gfx950",), {"gfx950": 219}),
                           (ARCHS, {"gfx942": 270, "gfx950": 219})]:
        result = gpu.audit_paths([path], archs)
        assert result.findings == [], (archs, result.findings[:5])
        [wheel] = result.manifest_targets().values()
        assert (wheel["files"], wheel["bundles"], wheel["kernels"]) == (2613, 0, 1551)
        assert wheel["archs"] == {"gfx942": {"bundles": 0, "kernels": 1281},
                                  "gfx950": {"bundles": 0, "kernels": 1332}}
        assert wheel["kernels_without"] == without, archs
        assert wheel["partial_kernels"] == sum(without.values())
        assert wheel["trees"] == {"aiter_meta/hsa": ["gfx942", "gfx950"]}
    assert wheel["single_arch_kernels"] == 489
    assert "489 (270 lack gfx942, 219 lack gfx950)" in result.table()
    fp4 = [m for m in result.wheels[0].members if m.path.startswith(
        "aiter/ops/triton/configs/gemm/aot/") and m.path.endswith(".hsaco")]
    assert len(fp4) == 112 and {b.targets for m in fp4 for b in m.blobs} == {("gfx950",)}
    assert gpu.main([str(path), "--archs", "gfx942"]) == 0


def test_aiter_without_its_gfx950_tree_fails_gfx950_cells(tmp_path) -> None:
    """The same wheel repacked without every member under a gfx950 folder: the tree
    lacks gfx950 (the fp4 kernels outside it do not stand in for it)."""
    thin = tmp_path / AITER.file
    with zipfile.ZipFile(fetch(AITER)) as src, zipfile.ZipFile(thin, "w") as dst:
        for info in src.infolist():
            if "gfx950" not in info.filename.split("/")[:-1]:
                dst.writestr(info, src.read(info), compress_type=zipfile.ZIP_STORED)
    finding = f"{AITER.file}: aiter_meta/hsa/<arch>: no kernels for gfx950"
    for archs in (("gfx950",), ARCHS):
        assert gpu.audit_paths([thin], archs).findings == [finding], archs
    result = gpu.audit_paths([thin], ("gfx942",))
    assert result.findings == []
    [wheel] = result.manifest_targets().values()
    assert (wheel["files"], wheel["kernels"], wheel["kernels_without"]) == (
        1393, 1393, {"gfx942": 112})
    assert wheel["trees"] == {"aiter_meta/hsa": ["gfx942"]}


def test_flydsl_has_no_gpu_code_and_its_llvm_gives_no_false_positive() -> None:
    path = fetch(FLYDSL)
    result = gpu.audit_paths([path], ARCHS)
    [wheel] = result.manifest_targets().values()
    assert wheel["files"] == 0 and result.findings == []
    # the bundled LLVM library really carries a bundle magic as plain bytes
    with zipfile.ZipFile(path) as zf, zf.open(
            "flydsl/_mlir/_mlir_libs/libFlyPythonCAPI.so.24.0git") as f:
        seen, tail = False, b""
        while chunk := f.read(1 << 22):
            seen = seen or gpucode.CCOB_MAGIC in tail + chunk
            tail = chunk[-8:]
    assert seen


def test_jit_coverage_of_the_published_aiter_wheel_shows_it_compiles_everything_at_first_use():
    """AMD's amd-aiter 0.1.7.post2.dev18 lists 65 modules in aiter/jit/optCompilerConfig.json
    and carries none of them prebuilt: every module but the 7 tuning ones compiles at first
    use. Read with the production recipe's own `jit` declaration."""

    recipe = component.load_recipe(ROOT / "recipes" / "aiter.yaml", display="recipes/aiter.yaml",
                                   extra_variables=frozenset({"enable_ck"}))
    spec = dict(recipe.jit)
    found = jit.read("aiter", fetch(AITER), spec)
    assert (len(found.listed), len(found.never), len(found.prebuilt)) == (65, 7, 0)
    assert len(found.missing(ARCHS)) == 58 and "module_aiter_enum" in found.missing(ARCHS)


@pytest.mark.parametrize("vendor", [MORI, AITER, FLYDSL], ids=["mori", "aiter", "flydsl"])
def test_vendor_wheels_open_clean_as_the_image_build_checks_them(vendor, capsys) -> None:
    """Dockerfile.clean and `invoke wheels` open every wheel and check each member against
    RECORD. amd_mori 1.2.4 was retagged by hand (linux -> manylinux_2_39): its WHEEL no
    longer matches RECORD's hash. That is one note, not a refusal; any other member that
    does not match its hash still fails."""

    wheelset.check_wheel(fetch(vendor))
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note:")]
    if vendor is MORI:
        assert notes == [f"note: {MORI.file}: 'amd_mori-1.2.4.dist-info/WHEEL' was edited after "
                         "amd_mori-1.2.4.dist-info/RECORD was written (its tags were changed "
                         "to the file name's); accepted: it holds only tags, and installers "
                         "read the name"]
    else:
        assert notes == []
