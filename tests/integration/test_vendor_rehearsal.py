"""The vendor rehearsal: what AMD publishes on PyPI (amd-aiter, amd-mori, flydsl) and
PyPI's Triton, through the real pipeline and every gate production goes through, for the
gfx942, gfx950 and fat cells (demo/vendor/recipes). A gate that would reject production
fails here first.

The wheels are pinned by sha256 and downloaded by the build (pip, in the build image);
its runtime image is Debian unstable's (Python 3.14, HIP 6.4) while the wheels are for
Python 3.12 and ROCm 7. So the rehearsal goes as far as this runtime allows: the version
check, the GPU-target audit (AITER's kernels for one arch only are counted, not failed)
and the lock pass; the link audit then stops the set, naming what this runtime lacks
(libamdhip64.so.7: Debian ships .so.6), and nothing is swapped in. The image step is
not reached: the cp312 wheels would need a Python 3.12 runtime image.
"""

from __future__ import annotations

import pytest

from tests.conftest import ROOT, run_invoke

# What it proves does not depend on the engine release: `make test` runs it once.
pytestmark = [pytest.mark.integration, pytest.mark.one_engine]

VENDOR = ROOT / "demo" / "vendor" / "recipes"


def test_amds_published_wheels_pass_every_gate_this_runtime_can_judge(engine, tmp_path):
    wheels = tmp_path / "wheels"
    proc = run_invoke("wheels", "--recipes", str(VENDOR), "--progress", "plain",
                      env={"WHEELFORGE_WHEELS": str(wheels)}, timeout=2400)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out[-4000:]
    last = proc.stderr.strip().splitlines()[-1]
    # how far it got: every wheel at its pinned version and sha256; the lock (made for
    # manylinux_2_39, which amd-mori needs) downloaded; the GPU-target audit passed ...
    assert "GPU-target audit of stable-vendor-sid-py3.12-gfx942-vendor" in out, out[-4000:]
    assert "missing gfx" not in out and "no kernels for" not in out
    assert "numpy-" in out and "pandas-" in out  # the lock's downloads, link-audited too
    # ... and the link audit stopped it, naming what this runtime lacks
    assert last.startswith("error: wheels: link audit of stable-vendor-sid-py3.12-gfx942-vendor "
                           "against wheelforge-demo/rocm6.4-sid:runtime: "), last
    assert "nothing was swapped in" in last
    assert ("amd_mori-1.2.4-cp312-cp312-manylinux_2_39_x86_64.whl: mori/libmori_shmem.so: "
            "missing library libamdhip64.so.7") in out
    assert ("flydsl-0.5.0-cp312-cp312-manylinux_2_27_x86_64.whl: "
            "flydsl/_mlir/_mlir_libs/libfly_jit_runtime.so: missing library "
            "libamdhip64.so.7") in out
    assert "Traceback" not in proc.stderr
    assert not list(wheels.glob("stable-*"))  # nothing swapped in
