"""The link audit finds each planted demo defect with one line: real builds through the
pipeline (wheelforge.build.build_sets, the gate of `invoke wheels`) of copies of the demo
recipes, each edited to plant one defect, one cell each; and the demo cells as they are
pass with nothing to report.

A planted defect stops the build at the link gate, after the components built and the
GPU-target audit passed: one line naming the wheel, the file and what is missing, and no
wheel set is swapped in.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.conftest import ROOT, copy_recipes
from wheelforge import cli
from wheelforge.audit import links
from wheelforge.audit.links import Fs, audit, gate
from wheelforge.build import bake, build_sets
from wheelforge.core import rootfs, types
from wheelforge.core.terminal import UserError
from wheelforge.plan import fetch, make_plan

# What it proves does not depend on the engine release: `make test` runs it once.
pytestmark = [pytest.mark.integration, pytest.mark.one_engine]

ROCM = "stable-rocm6.4-sid-py3.14-gfx942-default"  # one arch: the cheapest ROCm cell
CPU = "stable-bookworm-py3.11-x86-64-v2-default"
ROCM_RUNTIME = "wheelforge-demo/rocm6.4-sid:runtime"
BOOKWORM = "wheelforge-demo/bookworm:base"
SITE = "/opt/venv/lib/python3.14/site-packages"
HIPSAXPY_WHL = "hipsaxpy-0.1.0-cp314-cp314-linux_x86_64.whl"
HIPBLEND_WHL = "hipblend-0.1.0-cp314-cp314-linux_x86_64.whl"
SCMEXT_WHL = "scmext-0.1.0-cp314-cp314-linux_x86_64.whl"

# hipsaxpy's wheel step as the demo has it
WHEEL_STEP = '  - HIPSAXPY_LIB="$PREFIX/lib/libhipsaxpy.so" pip wheel --no-deps -w "$OUT" .\n'


def _conf_dirs(image: str) -> int:
    """How many folders the image's ld.so.conf names (each finding line counts them)."""
    return len(Fs(rootfs.root_for(image), {}).conf_dirs())


def _build(tmp: Path, recipes: Path, only: tuple[str, ...], cell: str) -> types.Plan:
    """build_sets of ``only`` (and what it depends on) for one cell, as `invoke wheels
    --only ... --cells CELL` does it; raises what the build raises."""
    fetch.make_repos()
    plan = make_plan(types.Inputs(recipes_dir=recipes, only=only),
                     channel="stable", cells_glob=cell)
    assert [c.id for c in plan.cells] == [cell]
    options = bake.Options(sources=ROOT / ".cache" / "sources", exports=tmp / "exports",
                           ca_bundle=cli.ca_bundle_path("auto"))
    build_sets(plan, options, out_root=tmp / "wheels")
    return plan


def _stopped(tmp: Path, recipes: Path, only: tuple[str, ...], cell: str, image: str,
             capsys) -> tuple[str, list[str]]:
    """Build; the link gate must stop it with one line, and no set may appear. Returns
    (the line after "link audit of CELL against IMAGE: ", every finding it printed)."""
    capsys.readouterr()
    with pytest.raises(UserError) as caught:
        _build(tmp, recipes, only, cell)
    message = str(caught.value)
    assert "\n" not in message, message
    prefix = f"wheels: link audit of {cell} against {image}: "
    assert message.startswith(prefix), message
    assert "; nothing was swapped in; fix " in message, message
    assert not (tmp / "wheels" / cell).exists()
    printed = [line for line in capsys.readouterr().err.splitlines()
               if re.match(r"\S+\.whl: \S+: (missing|undefined) ", line)]
    assert printed and message.removeprefix(prefix).startswith(printed[0])
    return message.removeprefix(prefix), printed


# --- (a) a library left out of its wheel ------------------------------------------------

def test_library_left_out_of_its_wheel(engine, tmp_path, capsys):
    """hipsaxpy's setup.py packs whatever file HIPSAXPY_LIB names and links the extension
    with -lhipsaxpy. Planted through the recipe alone: HIPSAXPY_LIB names the header, and
    LIBRARY_PATH lets the linker find libhipsaxpy.so in the build prefix. The build links,
    the wheel ships the extension (DT_NEEDED libhipsaxpy.so, RUNPATH $ORIGIN) without the
    library: the usual "linked against the build tree, not packed" defect."""
    recipes = copy_recipes(tmp_path / "recipes", {"hipsaxpy.yaml": (WHEEL_STEP, (
        '  - HIPSAXPY_LIB="$PWD/include/hipsaxpy.h" LIBRARY_PATH="$PREFIX/lib"'
        ' pip wheel --no-deps -w "$OUT" .\n'))})
    found, printed = _stopped(tmp_path, recipes, ("hipsaxpy",), ROCM, ROCM_RUNTIME, capsys)
    assert printed == [
        f"{HIPSAXPY_WHL}: hipsaxpy/_hipsaxpy.cpython-314-x86_64-linux-gnu.so: missing library "
        f"libhipsaxpy.so (searched RUNPATH {SITE}/hipsaxpy, ld.so.conf "
        f"({_conf_dirs(ROCM_RUNTIME)}), default dirs (6))"]
    assert re.match(rf"{re.escape(printed[0])}; nothing was swapped in; fix \S*hipsaxpy\.yaml ",
                    found), found
    # The limit of a cell with runtime_apt (lenient: those packages are not in the root):
    # libhipsaxpy.so is in no wheel of the set, and an apt package installs into the
    # folders every search ends in, so there it is a note, judged by Dockerfile.clean.
    wheels = sorted((tmp_path / "exports").rglob(HIPSAXPY_WHL))
    lenient = audit(wheels[:1], rootfs.root_for(ROCM_RUNTIME), lenient=True)
    assert lenient.ok and [n.split(" (")[0] for n in lenient.notes] == [
        f"{HIPSAXPY_WHL}: hipsaxpy/_hipsaxpy.cpython-314-x86_64-linux-gnu.so: library "
        "libhipsaxpy.so not in the root"]


# --- (b) built against a newer libstdc++ than the runtime base has -----------------------

def test_newer_libstdcxx_than_the_runtime_image(engine, tmp_path, capsys):
    """scmext (pybind11, C++) built by the rocm6.4-sid stack's build image, Debian sid
    (its g++ and libstdc++: GCC 16.2, libstdc++.so.6.0.36 when this was written), for a
    runtime image that is Debian 12 (GCC 12's libstdc++.so.6.0.30: GLIBCXX_3.4.30 at most).

    The cheapest real way, with the images the demo already has: the copy's matrix gives
    the rocm6.4-sid stack the bookworm image as its runtime image, and scmext that stack;
    only scmext is built (no HIP compile). Nothing else changes: the build's Python is
    sid's 3.14, as the stack says; the runtime-dependency step runs in the bookworm image
    and downloads nothing (scmext needs nothing). The audit installs the cp314 module into
    the image's venv and loads it into the image's interpreter.

    The first finding, the one line of the error, is the libstdc++ version; the one more is
    the same defect seen per symbol (basic_string's _M_replace_cold, new in GCC 13's
    GLIBCXX_3.4.31). The cp314 module in bookworm's Python 3.11 is the price of borrowing
    the only Debian 12 image the demo has (no demo image pairs Python 3.14 with an older
    libstdc++): the audit says it in one note and leaves the 3.14 C API it uses unjudged."""
    recipes = copy_recipes(tmp_path / "recipes", {
        "matrix.yaml": (f"runtime_image: {ROCM_RUNTIME}", f"runtime_image: {BOOKWORM}"),
        "scmext.yaml": ("stacks: [bookworm]", "stacks: [rocm6.4-sid]")})
    found, printed = _stopped(tmp_path, recipes, ("scmext",), ROCM, BOOKWORM, capsys)
    member = f"{SCMEXT_WHL}: scmext/_core.cpython-314-x86_64-linux-gnu.so: "
    assert printed[0] == (f"{member}missing version GLIBCXX_3.4.31 of libstdc++.so.6 "
                          "(in /usr/lib/x86_64-linux-gnu/libstdc++.so.6.0.30)")
    assert sorted(line.removeprefix(member).split(" (")[0] for line in printed[1:]) == [
        "undefined symbol _ZNSt7__cxx1112basic_stringIcSt11char_traitsIcESaIcEE15_M_replace_"
        "coldEPcmPKcmm@GLIBCXX_3.4.31"]
    assert re.match(rf"{re.escape(printed[0])} \(and 1 more, listed above\); nothing was "
                    r"swapped in; fix \S*scmext\.yaml ", found), found


# --- (c) hipblend linked to a hipsaxpy whose SONAME the wheel does not ship ---------------

RELINK_SONAME_2 = WHEEL_STEP + (
    "  # the prefix, which hipblend links, gets a library whose SONAME is libhipsaxpy.so.2\n"
    "  - >-\n"
    "    hipcc -O2 -fPIC -shared -Wl,-soname,libhipsaxpy.so.2 -Iinclude\n"
    "    $(printf -- '--offload-arch=%s ' ${GPU_ARCHS//;/ })\n"
    '    src/saxpy.hip -o "$PREFIX/lib/libhipsaxpy.so"\n')


def soname_findings(conf: int) -> list[str]:
    """The two lines of (c); ``conf``: how many folders the image's ld.so.conf names."""
    searched = f"ld.so.conf ({conf}), default dirs (6))"
    return [f"{HIPBLEND_WHL}: hipblend/_hipblend.cpython-314-x86_64-linux-gnu.so: missing "
            f"library libhipsaxpy.so.2 (searched RUNPATH {SITE}/hipblend:{SITE}/hipsaxpy, "
            + searched,
            f"{HIPBLEND_WHL}: hipblend/libhipblend.so: missing library libhipsaxpy.so.2 "
            f"(searched RUNPATH {SITE}/hipsaxpy, " + searched]


@pytest.mark.parametrize("runtime_apt", [False, True], ids=["no-runtime-apt", "runtime-apt"])
def test_dependency_soname_that_the_wheel_does_not_ship(engine, tmp_path, runtime_apt,
                                                        capsys):
    """hipsaxpy's wheel ships libhipsaxpy.so (SONAME libhipsaxpy.so), as in the demo, but
    its install prefix, which hipblend links, holds a library built with
    -Wl,-soname,libhipsaxpy.so.2: hipblend's extension and library need libhipsaxpy.so.2,
    which no folder of their RUNPATH ($ORIGIN/../hipsaxpy) nor of the image holds. Two
    findings, one per ELF file of hipblend; the wheel of hipsaxpy is fine.

    With runtime_apt in the stack (as every production stack has: python3-venv), missing
    libraries are notes at this gate, since the packages are not in the root; a library
    the set itself ships at another version is not one a package is to provide, so it
    still stops the build (before linkaudit.own_library, this variant passed the gate with
    two notes)."""
    edits = {"hipsaxpy.yaml": (WHEEL_STEP, RELINK_SONAME_2)}
    if runtime_apt:
        edits["matrix.yaml"] = ("    runtime_toolchain: forbidden\n",
                                "    runtime_toolchain: forbidden\n"
                                "    runtime_apt: [python3-venv]\n")
    recipes = copy_recipes(tmp_path / "recipes", edits)
    found, printed = _stopped(tmp_path, recipes, ("hipblend",), ROCM, ROCM_RUNTIME, capsys)
    assert printed == soname_findings(_conf_dirs(ROCM_RUNTIME))
    assert re.match(rf"{re.escape(printed[0])} \(and 1 more, listed above\); nothing was "
                    r"swapped in; fix \S*hipblend\.yaml ", found), found
    wheels = sorted((tmp_path / "exports").rglob("hip*.whl"))
    lenient = audit(wheels, rootfs.root_for(ROCM_RUNTIME), lenient=True)
    assert lenient.findings == printed and lenient.notes == []


# --- the demo cells as they are: nothing to report --------------------------------------

@pytest.mark.parametrize(("built", "cell", "image", "names"), [
    ("rocm_build", ROCM, ROCM_RUNTIME, {"hipsaxpy", "hipblend"}),
    ("demo_build", CPU, BOOKWORM, {"lz4", "msgpack", "msgpack_numpy", "numpy", "pkgconfig",
                                   "scmext"}),
], ids=["rocm", "cpu"])
def test_demo_cells_report_nothing(request, built, cell, image, names):
    build = request.getfixturevalue(built)
    manifest = json.loads((build.out / cell / "manifest.json").read_text())
    links = manifest["link_audit"]
    assert links["image"] == image and links["runtime_apt_not_in_root"] == []
    assert {name.split("-")[0] for name in links["wheels"]} >= names - {"pkgconfig"}
    assert {name: w["findings"] for name, w in links["wheels"].items() if w["findings"]} == {}
    assert sum(w["elf_files"] for w in links["wheels"].values()) >= 2
    result = audit(sorted((build.out / cell).glob("*.whl")), rootfs.root_for(image))
    assert result.ok and result.notes == []


def test_a_set_that_passed_is_not_audited_again(rocm_build, monkeypatch, capsys):
    """A no-op rebuild stages the same wheels (same sha256) against the same image: the
    kept result is used, and printed the same way; nothing is read again."""
    cell = rocm_build.out / ROCM
    manifest = json.loads((cell / "manifest.json").read_text())
    root = rootfs.root_for(manifest["runtime_image"])
    first = gate(cell, manifest, root, cacheable=True)  # kept by the build already, or now
    shown = capsys.readouterr().out

    def no_audit(*args, **kwargs):
        raise AssertionError("audited again")

    monkeypatch.setattr(links, "audit", no_audit)
    assert gate(cell, manifest, root, cacheable=True) == first == manifest["link_audit"]
    assert capsys.readouterr().out == shown
    other = {**manifest, "runtime_apt": ["libfoo1"]}  # leniency is part of the key
    with pytest.raises(AssertionError, match="audited again"):
        gate(cell, other, root, cacheable=True)
