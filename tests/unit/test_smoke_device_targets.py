"""The device check fails when the image's wheels carry no code for the GPU it runs on
(the manifest's gpu_targets, written by the GPU-target audit); planted manifests."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest

from tests.unit.test_smoke import fake_torch, run_cli, status_of
from wheelforge.smoke.checks_device import check_device, missing_code
from wheelforge.smoke.context import Context


def manifest(gpu_targets: dict) -> dict:
    return {"cell": "c", "archs": [], "components": {}, "gpu_targets": gpu_targets}


def entry(**archs: int) -> dict:
    return {"files": 1, "bundles": 1, "kernels": 0, "targets": sorted(archs),
            "archs": {a: {"bundles": n, "kernels": 0} for a, n in archs.items()}}


NO_GPU_CODE = {"files": 0, "bundles": 0, "kernels": 0, "targets": [], "archs": {}}


def test_wheel_without_code_for_the_gpu_fails_in_one_line() -> None:
    ctx = Context(manifest=manifest({"mori.whl": entry(gfx942=2), "aiter.whl": entry(gfx950=3),
                                     "flydsl.whl": NO_GPU_CODE}))
    outcome = check_device(ctx, torch_module=fake_torch("gfx950:sramecc+:xnack-"))
    assert outcome.status == "fail"
    assert "no code for gfx950 in mori.whl" in outcome.reason
    assert "aiter.whl" not in outcome.reason and "flydsl" not in outcome.reason
    assert "invalid device function" in outcome.reason
    assert "\n" not in outcome.reason


def test_code_for_the_gpu_in_every_wheel_passes() -> None:
    ctx = Context(archs=("gfx942",),
                  manifest=manifest({"mori.whl": entry(gfx942=2, gfx950=2),
                                     "flydsl.whl": NO_GPU_CODE}))
    outcome = check_device(ctx, torch_module=fake_torch("gfx942:sramecc+:xnack-"))
    assert outcome.status == "pass"
    assert "GPU code of 1 wheel(s) covers it" in outcome.reason


def test_counts_of_zero_are_no_code() -> None:
    assert missing_code(["gfx942"], {"w.whl": entry(gfx942=0)}) == ["no code for gfx942 in w.whl"]


def test_manifest_without_gpu_targets_keeps_the_arch_check_only() -> None:
    ctx = Context(manifest={"cell": "c", "archs": [], "components": {}})
    assert check_device(ctx, torch_module=fake_torch("gfx90a")).status == "pass"


def test_cuda_gpus_are_not_judged_by_gfx_targets() -> None:
    ctx = Context(manifest=manifest({"mori.whl": entry(gfx942=1)}))
    torch = fake_torch(None, hip=None)
    torch.version.cuda = "12.4"
    assert check_device(ctx, torch_module=torch).status == "pass"


def test_cli_exits_1_on_a_manifest_without_code_for_the_gpu(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(manifest({"mori.whl": entry(gfx942=2)})))
    planted = functools.partial(check_device, torch_module=fake_torch("gfx950"))
    code, out, _ = run_cli(["--manifest", str(path), "--only", "device"], capsys,
                           device=planted)
    assert code == 1
    assert status_of(out, "device") == "FAIL"
