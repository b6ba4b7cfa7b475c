"""The link audit on real vendor wheels (pinned by sha256, fetched like test_audit_vendor.py)
against the demo ROCm runtime image (Debian sid's HIP 6.4), and on the demo's own sets,
which `invoke wheels` already gates with it. What is asserted was measured on these files.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import pytest

from tests.integration.test_audit_vendor import FLYDSL, MORI, fetch
from wheelforge import jobs
from wheelforge.audit import links
from wheelforge.audit.elf import read_elf
from wheelforge.audit.links import DEFAULT_DIRS, Fs
from wheelforge.core import rootfs
from wheelforge.core.terminal import UserError

# What it proves does not depend on the engine release: `make test` runs it once.
pytestmark = [pytest.mark.integration, pytest.mark.one_engine]

ROCM_RUNTIME = "wheelforge-demo/rocm6.4-sid:runtime"
FAT = "stable-rocm6.4-sid-py3.14-gfx942-gfx950-default"


@pytest.fixture(scope="module")
def rocm_root(engine) -> Path:
    rootfs.ensure_images({ROCM_RUNTIME})
    return rootfs.extract(ROCM_RUNTIME)


def _search_dirs(root: Path) -> list[str]:
    return [*Fs(root, {}).conf_dirs(), *DEFAULT_DIRS]


def _present(root: Path, name: str) -> bool:
    """A file (or a link to one) of that name in a folder the loader searches."""
    fs = Fs(root, {})
    return any(fs.resolve(f"{d}/{name}") for d in _search_dirs(root))


def _missing(result: links.Result) -> dict[str, set[str]]:
    """{member: libraries reported missing}."""
    out: dict[str, set[str]] = {}
    for wheel in result.wheels:
        for f in wheel.findings:
            if f.kind == "library":
                out.setdefault(f.member, set()).add(f.what)
    return out


def test_mori_needs_hip_7_and_grpc_which_the_debian_image_lacks(rocm_root):
    path = fetch(MORI)
    result = links.audit([path], rocm_root)
    missing = _missing(result)
    reported = set().union(*missing.values())
    assert {"libamdhip64.so.7", "libgrpc++.so.1.51"} <= reported
    assert _present(rocm_root, "libamdhip64.so.6")  # Debian ships HIP 6.4
    # every library reported is absent from every folder the loader searches in the image
    assert not [lib for lib in reported if _present(rocm_root, lib)]
    # every DT_NEEDED not reported is there: in the image, or in the set beside it
    wheel = result.wheels[0]
    with zipfile.ZipFile(path) as zf:
        names = {os.path.basename(n) for n in zf.namelist()}
    fs = Fs(rocm_root, {})
    linker = links.Linker(fs)
    assert len(wheel.elf_files) == 13
    for member in wheel.elf_files:
        with zipfile.ZipFile(path) as zf, zf.open(member) as src:
            tmp = rocm_root.parent / f".test-{os.getpid()}"
            tmp.write_bytes(src.read())
        try:
            elf = read_elf(str(tmp))
        finally:
            tmp.unlink()
        for lib in elf.needed:
            if lib not in missing.get(member, set()):
                assert _present(rocm_root, lib) or lib in names, (member, lib)
    assert linker.conf  # the image's ld.so.conf was read
    # mori's own packaging: libmori_collective.so's RUNPATH is its build tree
    # (/opt/rocm/lib:/src/build/src/shmem:...), so on its own (ldd -r) it finds neither
    # libmori_shmem.so nor libmori_application.so, which sit beside it in the wheel
    assert {"libmori_shmem.so", "libmori_application.so"} <= missing["mori/libmori_collective.so"]
    assert not [f for f in result.wheels[0].findings if f.kind == "version"]  # sid's glibc: new


def test_flydsl_needs_hip_7_only(rocm_root):
    result = links.audit([fetch(FLYDSL)], rocm_root)
    assert [line.split(": ", 1)[1].split(" (")[0] for line in result.findings] == [
        "flydsl/_mlir/_mlir_libs/libfly_jit_runtime.so: missing library libamdhip64.so.7"]
    # the wheel is cp312 and the image's python 3.14: pip would not install it (the set
    # check says so), and the CPython 3.12 private functions its MLIR bindings use
    # (_Py_IsFinalizing, _PyObject_LookupAttr: gone in 3.13) are said in one note, not
    # reported as undefined symbols
    assert [n for n in result.notes if "not for this image's Python 3.14" in n] == [
        f"{FLYDSL.file}: its tags are not for this image's Python 3.14: the interpreter's "
        f"symbols it uses are not judged"]
    assert len(result.wheels[0].elf_files) == 16
    assert not _present(rocm_root, "libamdhip64.so.7")


def test_demo_hip_wheels_load_in_their_runtime_image(rocm_build, rocm_root):
    manifest = json.loads((rocm_build.out / FAT / "manifest.json").read_text())
    audit = manifest["link_audit"]
    assert audit["image"] == ROCM_RUNTIME and audit["runtime_apt_not_in_root"] == []
    assert {name.split("-")[0]: w for name, w in audit["wheels"].items()} == {
        "hipsaxpy": {"elf_files": 2, "findings": []}, "hipblend": {"elf_files": 2,
                                                                   "findings": []}}
    result = links.audit(sorted((rocm_build.out / FAT).glob("*.whl")), rocm_root)
    assert result.ok and result.notes == []
    assert all(w.unchecked == 0 for w in result.wheels)  # every symbol was judged


def test_cli_against_the_image_and_a_missing_image(rocm_root, capsys):
    """`invoke audit --links --image IMAGE --path WHEEL` audits against the image's root;
    a missing image is one line; the in-image CLI takes a folder and refuses anything else
    in one line."""
    assert jobs.link_report([], [str(fetch(FLYDSL))], image=ROCM_RUNTIME, as_json=True) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["root"] == ROCM_RUNTIME and len(data["findings"]) == 1
    with pytest.raises(UserError, match="no such image"):
        jobs.link_report([], [str(fetch(FLYDSL))], image="wheelforge-demo/no-such:image")
    assert links.main(["--root", ROCM_RUNTIME, str(fetch(FLYDSL))]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--root {ROCM_RUNTIME}: not a folder" in err
