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

from wheelforge import audit, gpucode

pytestmark = pytest.mark.integration

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
    result = audit.audit_paths([fetch(MORI)], ARCHS)
    [wheel] = result.manifest_targets().values()
    assert (wheel["files"], wheel["bundles"], wheel["kernels"]) == (2, 2, 0)
    assert wheel["archs"] == {"gfx942": {"bundles": 2, "kernels": 0},
                              "gfx950": {"bundles": 2, "kernels": 0}}
    assert wheel["single_arch_kernels"] == 0 and wheel["targets"] == ["gfx942", "gfx950"]
    members = {m.path: m.blobs for m in result.wheels[0].members}
    assert sorted(members) == ["mori/libmori_pybinds.so", "mori/umbp_standalone_server"]
    assert result.findings == []
    # judged against an arch it was not built for, every bundle is a finding
    assert len(audit.audit_paths([fetch(MORI)], ("gfx90a",)).findings) == 2


def test_aiter_code_objects_in_per_arch_folders() -> None:
    result = audit.audit_paths([fetch(AITER)], ARCHS)
    [wheel] = result.manifest_targets().values()
    assert (wheel["files"], wheel["bundles"], wheel["kernels"]) == (2613, 0, 1551)
    assert wheel["archs"] == {"gfx942": {"bundles": 0, "kernels": 1281},
                              "gfx950": {"bundles": 0, "kernels": 1332}}
    assert wheel["single_arch_kernels"] == 489
    findings = result.findings
    assert len(findings) == 489
    assert sum(f.endswith("missing gfx942") for f in findings) == 270
    assert sum(f.endswith("missing gfx950") for f in findings) == 219
    assert (f"{AITER.file}: kernel aiter_meta/hsa/<arch>/topksoftmax/topksoftmax_4x256x8.co: "
            "missing gfx950") in findings


def test_flydsl_has_no_gpu_code_and_its_llvm_gives_no_false_positive() -> None:
    path = fetch(FLYDSL)
    result = audit.audit_paths([path], ARCHS)
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
