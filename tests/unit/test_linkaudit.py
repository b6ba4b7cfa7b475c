"""The link audit on small ELF files built here with the host's C compiler.

Every library is built with -nostdlib (no libc in the closures), so a root folder made in
the test is a whole runtime filesystem; wheels are plain zip files.
"""

from __future__ import annotations

import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from wheelforge.audit import links

CC = shutil.which("cc") or shutil.which("gcc")
pytestmark = pytest.mark.skipif(CC is None, reason="no C compiler (cc/gcc) on this host: the "
                                                   "test builds its ELF files")
SITE = "opt/venv/lib/python3/site-packages"  # no python3 in the test roots


def cc(tmp: Path, name: str, source: str, *flags: str, libs: Path | None = None) -> Path:
    """Build lib<name>.so (or the given file name) from C source; -L libs when given."""
    src = tmp / f"{name}.c"
    src.write_text(source)
    out = tmp / (name if name.endswith(".so") else f"lib{name}.so")
    subprocess.run([CC, "-shared", "-fPIC", "-nostdlib", "-o", str(out), str(src),
                    f"-Wl,-soname,{out.name}", *([f"-L{libs}"] if libs else []), *flags],
                   check=True, capture_output=True)
    return out


def wheel(tmp: Path, members: dict[str, Path]) -> Path:
    path = tmp / "demo-1.0-cp312-cp312-linux_x86_64.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, file in members.items():
            zf.write(file, name)
        zf.writestr("demo-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: demo\n")
    return path


def put(root: Path, where: str, file: Path) -> None:
    dest = root / where.lstrip("/")
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(file, dest)


def lines(whl: Path, root: Path) -> list[str]:
    result = links.audit([whl], root)
    return [line.split(": ", 1)[1] for line in result.findings]


@pytest.fixture
def base(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(build folder, root folder, libdep.so)."""
    build, root = tmp_path / "build", tmp_path / "root"
    build.mkdir()
    root.mkdir()
    return build, root, cc(build, "dep", "int dep(void) { return 1; }")


def test_a_library_left_out_is_missing(base):
    build, root, _ = base
    user = cc(build, "user", "int dep(void); int user(void) { return dep(); }", "-ldep",
              libs=build)
    assert lines(wheel(build, {"pkg/libuser.so": user}), root) == [
        "pkg/libuser.so: missing library libdep.so (searched default dirs (6))"]
    put(root, "/usr/lib/x86_64-linux-gnu/libdep.so", build / "libdep.so")
    assert lines(wheel(build, {"pkg/libuser.so": user}), root) == []


def test_origin_is_the_installed_folder(base):
    build, root, dep = base
    user = cc(build, "user", "int dep(void); int user(void) { return dep(); }", "-ldep",
              "-Wl,-rpath,$ORIGIN/../demo.libs", "-Wl,--enable-new-dtags", libs=build)
    ok = wheel(build, {"pkg/libuser.so": user, "demo.libs/libdep.so": dep})
    assert lines(ok, root) == []
    wrong = wheel(build, {"pkg/libuser.so": user, "pkg/libdep.so": dep})
    [line] = lines(wrong, root)
    assert line == (f"pkg/libuser.so: missing library libdep.so (searched RUNPATH /{SITE}/"
                    "demo.libs, default dirs (6))")


def test_a_required_version_that_the_image_lacks(base):
    build, root, _ = base
    (build / "v2.map").write_text("VER_1 { global: old; local: *; };\n"
                                  "VER_2 { global: new; } VER_1;\n")
    (build / "v1.map").write_text("VER_1 { global: old; new; local: *; };\n")
    body = "int old(void) { return 1; } int new(void) { return 2; }"
    (build / "v2").mkdir()
    cc(build / "v2", "ver", body, f"-Wl,--version-script={build / 'v2.map'}")
    user = cc(build, "user", "int new(void); int user(void) { return new(); }", "-lver",
              libs=build / "v2")
    (build / "v1").mkdir()
    put(root, "/lib/x86_64-linux-gnu/libver.so",
        cc(build / "v1", "ver", body, f"-Wl,--version-script={build / 'v1.map'}"))
    assert lines(wheel(build, {"pkg/libuser.so": user}), root) == [
        "pkg/libuser.so: missing version VER_2 of libver.so (in "
        "/lib/x86_64-linux-gnu/libver.so)",
        "pkg/libuser.so: undefined symbol new@VER_2 (not in its 1 loaded objects)"]
    put(root, "/lib/x86_64-linux-gnu/libver.so", build / "v2" / "libver.so")
    assert lines(wheel(build, {"pkg/libuser.so": user}), root) == []


def test_undefined_symbols_and_weak_ones(base):
    build, root, dep = base
    put(root, "/usr/lib/libdep.so", dep)
    user = cc(build, "user", "int dep(void); int gone(void);\n"
              "extern int maybe(void) __attribute__((weak));\n"
              "int user(void) { return dep() + gone() + (maybe ? maybe() : 0); }", "-ldep",
              libs=build)
    assert lines(wheel(build, {"pkg/libuser.so": user}), root) == [
        "pkg/libuser.so: undefined symbol gone (not in its 1 loaded objects)"]


@pytest.mark.parametrize(("tags", "expected"), [
    ("--disable-new-dtags", []),  # DT_RPATH: inherited by what libm.so loads
    ("--enable-new-dtags",  # DT_RUNPATH: the object's own only
     ["pkg/libuser.so: missing library libn.so (needed by /r1/libm.so; searched default dirs "
      "(6))"]),
])
def test_rpath_is_inherited_runpath_is_not(base, tags, expected):
    build, root, _ = base
    put(root, "/r1/libn.so", cc(build, "n", "int n(void) { return 1; }"))
    put(root, "/r1/libm.so", cc(build, "m", "int n(void); int m(void) { return n(); }", "-ln",
                                libs=build))
    user = cc(build, "user", "int m(void); int user(void) { return m(); }", "-lm",
              "-Wl,-rpath,/r1", f"-Wl,{tags}", libs=build)
    assert lines(wheel(build, {"pkg/libuser.so": user}), root) == expected


def test_rpath_is_ignored_when_runpath_is_there(base):
    build, root, dep = base
    put(root, "/r1/libdep.so", dep)
    user = cc(build, "user", "int dep(void); int user(void) { return dep(); }", "-ldep",
              libs=build)
    linker = links.Linker(links.Fs(root, {"/x/libuser.so": str(user)}))
    elf = linker.elf("/x/libuser.so")
    loaded = links.Loaded("/x/libuser.so", elf, ["/r1"])  # RPATH /r1, from its loaders
    assert linker.search("libdep.so", loaded) == ("/r1/libdep.so", "RPATH /r1, default dirs (6)")
    elf.runpath = ("/elsewhere",)  # a RUNPATH of its own: no RPATH is searched
    assert linker.search("libdep.so", loaded) == (None, "RUNPATH /elsewhere, default dirs (6)")


def test_ld_so_conf_includes_are_followed(base):
    build, root, dep = base
    user = cc(build, "user", "int dep(void); int user(void) { return dep(); }", "-ldep",
              libs=build)
    put(root, "/opt/extra/lib/libdep.so", dep)
    (root / "etc" / "ld.so.conf.d").mkdir(parents=True)
    (root / "etc" / "ld.so.conf").write_text("# comment\ninclude ld.so.conf.d/*.conf\n")
    (root / "etc" / "ld.so.conf.d" / "extra.conf").write_text("/opt/extra/lib  # the lib\n")
    (root / "etc" / "ld.so.conf.d" / "extra.disabled").write_text("/nowhere\n")
    assert links.Fs(root, {}).conf_dirs() == ["/opt/extra/lib"]
    assert lines(wheel(build, {"pkg/libuser.so": user}), root) == []
    (root / "etc" / "ld.so.conf.d" / "extra.conf").unlink()
    [line] = lines(wheel(build, {"pkg/libuser.so": user}), root)
    assert "missing library libdep.so" in line


def test_symlinks_stay_inside_the_root_and_non_elf_candidates_are_passed_over(base):
    build, root, dep = base
    user = cc(build, "user", "int dep(void); int user(void) { return dep(); }", "-ldep",
              libs=build)
    put(root, "/usr/lib/real/libdep.so.1", dep)
    (root / "lib").symlink_to("usr/lib")  # merged /usr
    (root / "usr/lib/x86_64-linux-gnu").mkdir(parents=True)
    (root / "usr/lib/x86_64-linux-gnu/libdep.so").write_text("INPUT(libdep.so.1)\n")  # a script
    (root / "usr/lib/libdep.so").symlink_to("/lib/real/libdep.so.1")  # absolute: in the root
    assert lines(wheel(build, {"pkg/libuser.so": user}), root) == []


def test_no_elf_is_fine_and_errors_are_one_line(tmp_path, capsys):
    whl = wheel(tmp_path, {})
    assert links.main(["--root", str(tmp_path), str(whl)]) == 0
    assert "0 ELF file(s)" in capsys.readouterr().out
    assert links.main(["--root", str(tmp_path), str(tmp_path / "nope.whl")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    (tmp_path / "bad.whl").write_text("not a zip")
    assert links.main(["--root", str(tmp_path), str(tmp_path / "bad.whl")]) == 2
    assert "not a readable wheel" in capsys.readouterr().err


def test_findings_exit_1_with_a_table(base, capsys):
    build, root, _ = base
    user = cc(build, "user", "int dep(void); int user(void) { return dep(); }", "-ldep",
              libs=build)
    assert links.main(["--root", str(root), str(wheel(build, {"a/libuser.so": user}))]) == 1
    out = capsys.readouterr().out
    assert "a/libuser.so: missing library libdep.so" in out
    assert "missing libraries" in out and "1 finding(s)" in out
