"""The GPU-target audit's rules on synthetic members: per-arch folder trees, kernels for
only some archs (counted, not failed), a wheel with no code for an arch, bundles."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.test_gpucode import HIP, HOST, bundle, code_object, host_elf, make_wheel
from wheelforge.audit import gpu, gpucode
from wheelforge.core.terminal import UserError

BOTH = ("gfx942", "gfx950")
W = "w-1-py3-none-any.whl"


def kernel(path: str, *targets: str) -> gpu.Member:
    return gpu.Member(path, (gpucode.Blob("code object", "", targets),))


def library(path: str, *targets: str, kind: str = "bundle", problem: str = "") -> gpu.Member:
    return gpu.Member(path, (gpucode.Blob(kind, "bundle 1", targets, problem),))


def judge(members: list[gpu.Member], archs: tuple[str, ...]) -> gpu.Result:
    return gpu.Result((gpu.WheelReport(W, tuple(members), archs),))


def info(result: gpu.Result) -> dict:
    return result.manifest_targets()[W]


AITER_LIKE = [kernel("pkg/hsa/gfx942/a.co", "gfx942"), kernel("pkg/hsa/gfx950/a.co", "gfx950"),
              kernel("pkg/hsa/gfx942/only942.co", "gfx942"),
              kernel("pkg/hsa/gfx950/only950.co", "gfx950:sramecc+:xnack-"),
              kernel("pkg/triton/aot/fp4.hsaco", "gfx950")]


@pytest.mark.parametrize("archs", [("gfx942",), ("gfx950",), BOTH])
def test_kernels_for_only_some_archs_are_counted_not_failed(archs) -> None:
    result = judge(AITER_LIKE, archs)
    assert result.findings == [] and result.ok
    wanted = {"gfx942": 2, "gfx950": 1}  # kernels without code for the arch
    assert info(result)["kernels_without"] == {a: wanted[a] for a in archs}
    assert info(result)["partial_kernels"] == sum(wanted[a] for a in archs)
    assert info(result)["trees"] == {"pkg/hsa": ["gfx942", "gfx950"]}
    assert info(result)["kernels"] == 4


def test_single_arch_kernel_outside_any_arch_folder_is_counted_not_failed() -> None:
    members = [library("pkg/lib.so", "gfx942", "gfx950"),
               kernel("pkg/triton/aot/fp4.hsaco", "gfx950")]
    result = judge(members, ("gfx942",))
    assert result.findings == []
    assert (info(result)["partial_kernels"], info(result)["kernels_without"]) == (
        1, {"gfx942": 1})
    assert "1 (1 lack gfx942)" in result.table()
    assert judge(members, BOTH).findings == []


def test_a_tree_missing_an_arch_is_one_finding_naming_wheel_tree_and_arch() -> None:
    members = [m for m in AITER_LIKE if "/gfx950/" not in m.path]
    for archs in (("gfx950",), BOTH):
        # the fp4 kernel outside the tree is for gfx950: no "no code" line, the tree's
        assert judge(members, archs).findings == [f"{W}: pkg/hsa/<arch>: no kernels for gfx950"]
    assert judge(members, ("gfx942",)).findings == []


def test_each_tree_is_judged_on_its_own_and_a_top_level_tree_is_named() -> None:
    members = [kernel("a/hsa/gfx942/k.co", "gfx942"), kernel("a/hsa/gfx950/k.co", "gfx950"),
               kernel("b/kernels/gfx942/k.co", "gfx942"), kernel("gfx950/top.co", "gfx950")]
    assert judge(members, BOTH).findings == [
        f"{W}: <arch>: no kernels for gfx942", f"{W}: b/kernels/<arch>: no kernels for gfx950"]
    assert info(judge(members, BOTH))["trees"] == {
        "": ["gfx950"], "a/hsa": ["gfx942", "gfx950"], "b/kernels": ["gfx942"]}


def test_a_folder_without_code_for_its_arch_does_not_count() -> None:
    """The gfx950 folder holds gfx942 code: misplaced, and the tree has no gfx950 kernel."""
    members = [kernel("hsa/gfx942/k.co", "gfx942"), kernel("hsa/gfx950/k.co", "gfx942")]
    assert judge(members, BOTH).findings == [
        f"{W}: hsa/gfx950/k.co is in folder gfx950 but holds gfx942",
        f"{W}: hsa/<arch>: no kernels for gfx950"]


def test_a_wheel_with_code_for_another_arch_only_fails_naming_the_arch() -> None:
    members = [kernel("pkg/triton/aot/fp4.hsaco", "gfx950"), kernel("pkg/x.co", "gfx950")]
    assert judge(members, ("gfx942",)).findings == [
        f"{W}: no code for gfx942 (its GPU code is for gfx950 only)"]
    assert judge(members, BOTH).findings == [
        f"{W}: no code for gfx942 (its GPU code is for gfx950 only)"]
    assert judge(members, ("gfx950",)).findings == []


def test_a_wheel_without_gpu_code_is_fine() -> None:
    result = judge([], BOTH)
    assert result.findings == [] and info(result)["files"] == 0
    assert (info(result)["partial_kernels"], info(result)["trees"]) == (0, {})


def test_a_bundle_missing_an_arch_fails_even_when_kernels_carry_it() -> None:
    members = [library("pkg/lib.so", "gfx942:xnack-"), kernel("pkg/k.co", "gfx950")]
    assert judge(members, BOTH).findings == [f"{W}: pkg/lib.so: bundle 1: missing gfx950"]
    # the bundle's finding names gfx950: no second line for the same arch
    assert judge([library("pkg/lib.so", "gfx942")], BOTH).findings == [
        f"{W}: pkg/lib.so: bundle 1: missing gfx950"]
    assert judge([library("pkg/lib.so", "gfx90a")], ("gfx942",)).findings == [
        f"{W}: pkg/lib.so: bundle 1: missing gfx942"]


def test_code_not_readable_here_is_a_note_and_may_hold_the_arch() -> None:
    zstd = library("pkg/lib.so", kind="compressed bundle (zstd)",
                   problem="compressed (zstd): not readable here")
    result = judge([zstd, kernel("pkg/k.co", "gfx942")], BOTH)
    assert result.findings == []
    assert result.notes == [f"{W}: pkg/lib.so: bundle 1: compressed (zstd): not readable here"]


def test_a_generic_target_folder_covers_both_archs() -> None:
    generic = [kernel("hsa/gfx9-4-generic/k.co", "gfx9-4-generic:xnack-")]
    result = judge(generic, BOTH)
    assert result.findings == [] and info(result)["partial_kernels"] == 0
    assert info(result)["trees"] == {"hsa": ["gfx9-4-generic"]}
    mixed = [kernel("hsa/gfx942/a.co", "gfx942"), kernel("hsa/gfx9-4-generic/b.co",
                                                         "gfx9-4-generic")]
    assert judge(mixed, BOTH).findings == []
    assert judge(mixed, ("gfx90a",)).findings == [f"{W}: hsa/<arch>: no kernels for gfx90a"]


def test_report_only_counts_against_the_archs_the_code_names() -> None:
    result = judge(AITER_LIKE + [kernel("g/gfx9-4-generic/k.co", "gfx9-4-generic")], ())
    assert result.findings == []
    assert info(result)["kernels_without"] == {"gfx942": 2, "gfx950": 1}


def test_real_wheel_tree_rules_and_the_gate_message(tmp_path: Path, capsys) -> None:
    """Bytes as a build writes them: a gfx942 folder, a gfx9-4-generic folder, a bundle;
    the gate's one-line message names the first finding."""
    stage = tmp_path / "stage"
    stage.mkdir()
    make_wheel(stage / W, {
        "w/hsa/gfx942/k.co": code_object(0x54C), "w/hsa/gfx942/only.co": code_object(0x54C),
        "w/hsa/gfx9-4-generic/g.co": code_object(0x0100055F, abiversion=4),
        "w/lib.so": host_elf([(".hip_fatbin", bundle([HOST, HIP + "gfx942", HIP + "gfx950"]))]),
        "w/aot/fp4.hsaco": code_object(0x54F)})
    manifest = {"cell": "c", "archs": list(BOTH), "components": {}}
    targets = gpu.gate(stage, manifest, cache=None)[W]
    assert (targets["partial_kernels"], targets["kernels_without"]) == (
        3, {"gfx942": 1, "gfx950": 2})
    assert targets["trees"] == {"w/hsa": ["gfx9-4-generic", "gfx942"]}
    out = capsys.readouterr().out
    assert "partial kernels" in out and "3 (1 lack gfx942, 2 lack gfx950)" in out
    (stage / W).unlink()
    make_wheel(stage / W, {"w/hsa/gfx942/k.co": code_object(0x54C),
                           "w/aot/fp4.hsaco": code_object(0x54F)})
    assert gpu.gate(stage, {**manifest, "archs": ["gfx942"]}, cache=None)[W]["files"] == 2
    with pytest.raises(UserError) as caught:
        gpu.gate(stage, manifest, cache=None)
    assert str(caught.value) == (
        f"wheels: GPU-target audit of c: {W}: w/hsa/<arch>: no kernels for gfx950; nothing "
        f"was swapped in ({tmp_path / 'c'} is unchanged); make the recipe build its GPU code "
        "for every arch of the cell (gfx942;gfx950)")
    assert "\n" not in str(caught.value)
    capsys.readouterr()


def test_kernel_key_and_arch_folder() -> None:
    assert gpu.kernel_key("a/hsa/gfx942/k.co") == "a/hsa/<arch>/k.co"
    assert gpu.arch_folder("a/hsa/gfx942/k.co") == ("a/hsa", "gfx942")
    assert gpu.arch_folder("gfx950/k.co") == ("", "gfx950")
    assert gpu.arch_folder("a/k.co") is None
