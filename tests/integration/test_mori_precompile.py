"""MORI's kernels, precompiled into its wheel by the production recipe's own step, on the
real amd-mori 1.2.4 wheel from PyPI: upstream's mori.jit.precompile() (its Python, run
here) with a stand-in toolchain whose hipcc, llvm-link and opt write their -o file. No
GPU, no ROCm: what is proven is the cache mechanism the image relies on (where upstream
writes, what a second run and the installed wheel find), not the kernels' code.

The wheel is for CPython 3.12 and this Python may be another: it is installed under a
py3-none-any name. Only mori/jit (pure Python) and mori/_jit-sources are used.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from tests.integration.test_audit_vendor import MORI, fetch
from wheelforge.core import wheelset

pytestmark = [pytest.mark.integration, pytest.mark.one_engine]

ROOT = Path(__file__).resolve().parents[2]
RECIPE = yaml.safe_load((ROOT / "recipes" / "mori.yaml").read_text())
PRECOMPILE_STEP = RECIPE["steps"][-1]
ARCHS = ("gfx942", "gfx950")
NICS = ("mlx5", "bnxt")
# upstream's precompile list at 1.2.4 (mori/jit/__init__.py precompile)
KERNELS = {"shmem_kernels", "ep_intranode", "ep_internode", "ep_internode_v1",
           "ep_internode_v1ll", "ep_async_ll", "ep_local_expert_count", "cast_kernel",
           "scatter_gather", "ccl_kernels"}
# A stand-in compiler: writes its -o file (opt prints what mori's bitcode check looks for);
# FAIL_ON names a source it refuses, like a compile error.
TOOL = """#!/bin/sh
out=""; for a in "$@"; do case "$a" in *"${FAIL_ON:-@none@}"*) exit 1;; esac; done
while [ $# -gt 0 ]; do [ "$1" = -o ] && out="$2"; shift; done
symbol=_ZN4mori5shmem15globalGpuStatesE
if [ "$out" = - ]; then echo $symbol; else echo $symbol > "$out"; fi
"""


def toolchain(folder: Path, script: str = TOOL) -> Path:
    (folder / "bin").mkdir(parents=True)
    for tool in ("hipcc", "llvm-link", "opt"):
        (folder / "bin" / tool).write_text(script)
        (folder / "bin" / tool).chmod(0o755)
    return folder


def venv(folder: Path, *packages: str) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
    if packages:
        subprocess.run([folder / "bin" / "pip", "install", "-q", *packages], check=True)
    return folder


@pytest.fixture(scope="module")
def build_venv(tmp_path_factory) -> Path:
    """The builder's venv: pip, and wheel at the version the builder pins."""
    return venv(tmp_path_factory.mktemp("mori") / "venv", "wheel==0.45.1")


def run_step(tmp: Path, build_venv: Path, **env: str) -> tuple[subprocess.CompletedProcess, Path]:
    """The recipe's precompile step, run as the builder runs it (bash -e -o pipefail in the
    source tree) on a $OUT holding the wheel as `python3 -m build` left it."""
    out, src = tmp / "out", tmp / "src"
    out.mkdir()
    src.mkdir()
    shutil.copy(fetch(MORI), out / "amd_mori-1.2.4-py3-none-any.whl")
    proc = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", PRECOMPILE_STEP], cwd=src, text=True,
        capture_output=True,
        env={**os.environ, "PATH": f"{build_venv / 'bin'}:{os.environ['PATH']}",
             "OUT": str(out), "MORI_GPU_ARCHS": ";".join(ARCHS),
             "MORI_PRECOMPILE_NICS": " ".join(NICS), **env})
    return proc, out


def test_every_kernel_of_each_arch_and_nic_is_packed_and_found_by_the_installed_wheel(
        tmp_path, build_venv):
    tools = toolchain(tmp_path / "rocm")
    proc, out = run_step(tmp_path, build_venv, ROCM_PATH=str(tools))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # the compiler ran (the first run), and the check run found everything cached
    assert "Compiling" in proc.stdout and "SKIPPED" not in proc.stdout
    [wheel] = out.glob("*.whl")
    wheelset.check_wheel(wheel)  # repacked: RECORD lists the cache, with hashes
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    for arch in ARCHS:
        for nic in NICS:
            packed = {Path(n).stem for n in names if n.endswith(".hsaco")
                      and n.startswith(f"mori/_jit-cache/{arch}_{nic}_")
                      and "/latest/" not in n}
            assert packed == KERNELS, (arch, nic)
    # the image's view: the wheel installed, MORI_JIT_CACHE_DIR at the packed cache (the
    # recipe's runtime_env, in this venv), and a toolchain that can compile nothing
    runtime = venv(tmp_path / "runtime")
    installable = tmp_path / "amd_mori-1.2.4-py3-none-any.whl"
    shutil.copy(wheel, installable)
    subprocess.run([runtime / "bin" / "pip", "install", "-q", "--no-deps", str(installable)],
                   check=True)
    site = next((runtime / "lib").glob("python*/site-packages"))
    cache_dir = RECIPE["runtime_env"]["MORI_JIT_CACHE_DIR"]
    assert cache_dir.endswith("/site-packages/mori/_jit-cache")
    nothing = toolchain(tmp_path / "nothing", "#!/bin/sh\nexit 1\n")
    for arch in ARCHS:
        found = subprocess.run(
            [runtime / "bin" / "python", "-c", "import mori.jit; mori.jit.precompile()"],
            cwd=tmp_path, text=True, capture_output=True, check=True,
            env={**os.environ, "ROCM_PATH": str(nothing), "MORI_GPU_ARCHS": arch,
                 "MORI_DEVICE_NIC": "bnxt", "MORI_JIT_CACHE_DIR": str(site / "mori/_jit-cache")})
        assert "SKIPPED" not in found.stdout and "Compiling" not in found.stdout, found.stdout
        assert found.stdout.count(f"/_jit-cache/{arch}_bnxt_") == len(KERNELS) + 1  # + bitcode


def test_a_kernel_that_does_not_compile_fails_the_step_naming_arch_and_nic(tmp_path, build_venv):
    """upstream's precompile prints SKIPPED and exits 0 when a kernel fails: the step fails."""
    tools = toolchain(tmp_path / "rocm")
    proc, out = run_step(tmp_path, build_venv, ROCM_PATH=str(tools), FAIL_ON="cast_kernel.hip")
    assert proc.returncode == 1
    assert "SKIPPED" in proc.stdout
    assert proc.stderr.strip().splitlines()[-1] == (
        f"mori precompile for gfx942/mlx5 (ROCM_PATH={tools}): a kernel was skipped, above")
    assert [p.name for p in out.iterdir()] == ["amd_mori-1.2.4-py3-none-any.whl"]  # unpacked
