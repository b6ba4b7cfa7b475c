"""no-compile: the watcher of JIT/cache folders and compiler processes, both ways."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from wheelforge.smoke import cli, nocompile
from wheelforge.smoke.nocompile import Watcher, compiler_name, watched_folders

SLEEP = shutil.which("sleep")


@pytest.mark.parametrize("name,want", [
    ("cc", "cc"), ("/usr/bin/gcc", "gcc"), ("x86_64-linux-gnu-gcc-12", "gcc"),
    ("clang++-19", "clang++"), ("amdclang++", "amdclang++"), ("/opt/rocm/bin/hipcc", "hipcc"),
    ("ld.lld", "ld.lld"), ("ninja", "ninja"), ("ptxas", "ptxas"), ("llc", "llc"),
    ("/usr/lib/gcc/x86_64-linux-gnu/12/cc1", "cc1"), ("nvcc", "nvcc"),
    ("python3", None), ("python3.11", None), ("bash", None), ("sleep", None),
    ("ccache-swig", None), ("ldconfig", None),
])
def test_compiler_names(name: str, want: str | None) -> None:
    assert compiler_name(name) == want


def test_watched_folders_come_from_data_env_manifest_and_packages(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    aiter = tmp_path / "site" / "aiter"
    (aiter / "jit").mkdir(parents=True)
    monkeypatch.setattr(nocompile.importlib.util, "find_spec", lambda name: SimpleNamespace(
        submodule_search_locations=[str(aiter)]) if name == "aiter" else None)
    env = {"HOME": str(tmp_path / "home"), "TRITON_CACHE_DIR": str(tmp_path / "triton"),
           "MORI_JIT_CACHE_DIR": str(tmp_path / "mori"),
           "JITDEMO_CACHE_DIR": str(tmp_path / "jitdemo-here")}
    manifest = {"components": {
        "jitdemo": {"runtime_env": {"JITDEMO_CACHE_DIR": "/var/cache/jit/jitdemo"}},
        "other": {"runtime_env": {"OTHER_JIT_DIR": "/var/cache/jit/other",
                                  "ENABLE_CK": "0"}}}}
    folders = [str(p) for p in watched_folders(manifest, env, extra=[str(tmp_path / "x")])]
    assert folders == [
        str(tmp_path / "triton"), str(tmp_path / "mori"),
        str(tmp_path / "jitdemo-here"),  # the environment's value wins over the manifest's
        "/var/cache/jit/other",
        str(tmp_path / "home" / ".aiter"), str(tmp_path / "home" / ".triton"),
        str(tmp_path / "home" / ".mori"), str(aiter / "jit"), str(tmp_path / "x")]
    assert "ENABLE_CK" not in " ".join(folders)


# --- files ------------------------------------------------------------------------------

def test_nothing_written_passes(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    (cache / "old").mkdir(parents=True)
    (cache / "old" / "kernel.so").write_bytes(b"prebuilt")  # there before: not a finding
    with Watcher([cache, tmp_path / "absent"]) as watcher:
        watcher.begin("a")
        (tmp_path / "elsewhere.txt").write_text("a pytest tmp file, not watched")
        _ = (cache / "old" / "kernel.so").read_bytes()
        watcher.checkpoint("a")
    result = nocompile.outcome(watcher)
    assert result.status == "pass", result.reason
    assert result.reason.startswith(f"nothing compiled: no file written in {cache}")


def test_files_created_or_modified_fail_naming_file_and_check(tmp_path: Path) -> None:
    cache, home = tmp_path / "cache", tmp_path / "home"
    cache.mkdir()
    (cache / "index.json").write_text("{}")
    with Watcher([cache, home / ".triton"]) as watcher:
        watcher.begin("first")
        watcher.checkpoint("first")
        watcher.begin("second")
        (cache / "index.json").write_text('{"kernel": 1}')
        (home / ".triton" / "abc").mkdir(parents=True)  # a folder made during the smoke
        (home / ".triton" / "abc" / "kernel.hsaco").write_bytes(b"\x7fELF")
        (cache / "__pycache__").mkdir()
        (cache / "__pycache__" / "m.cpython-311.pyc").write_bytes(b"")  # bytecode: ignored
        (cache / "loose.pyc").write_bytes(b"")
        watcher.checkpoint("second")
    result = nocompile.outcome(watcher)
    assert result.status == "fail"
    assert result.metrics["files"] == 2 and result.metrics["processes"] == 0
    assert list(result.output) == [
        f"file written during second: {cache / 'index.json'} (modified)",
        f"file written during second: {home / '.triton' / 'abc' / 'kernel.hsaco'} (created)"]
    assert result.reason.startswith("compiled at run time: file written during second: ")


# --- processes --------------------------------------------------------------------------

@pytest.mark.skipif(SLEEP is None, reason="no sleep binary")
def test_a_child_that_is_no_compiler_passes(tmp_path: Path) -> None:
    with Watcher([tmp_path / "cache"]) as watcher:
        watcher.begin("quiet")
        subprocess.run([SLEEP, "0.2"], check=True)
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        watcher.checkpoint("quiet")
    assert watcher.findings == [] and watcher.polls > 5


@pytest.mark.skipif(SLEEP is None, reason="no sleep binary")
def test_a_compiler_process_started_by_a_check_fails_naming_its_command(
        tmp_path: Path) -> None:
    """A program called `hipcc` (here sleep under that name), started by a check through
    a shell, is a finding with its command line."""
    fake = tmp_path / "bin" / "hipcc"
    fake.parent.mkdir()
    fake.symlink_to(SLEEP)
    with Watcher([tmp_path / "cache"]) as watcher:
        watcher.begin("mori")
        subprocess.run(["sh", "-c", f"{fake} 0.3; true"], check=True)
        watcher.checkpoint("mori")
    result = nocompile.outcome(watcher)
    assert result.status == "fail"
    assert result.metrics["processes"] == 1, result.output
    line = result.output[0]
    assert line.startswith("compiler started during mori: hipcc (pid ")
    assert line.endswith(f"): {fake} 0.3")


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler here")
def test_a_real_compile_is_seen_as_process_and_file(tmp_path: Path) -> None:
    src, cache = tmp_path / "k.c", tmp_path / "cache"
    src.write_text("int k(void) { return 42; }\n")
    cache.mkdir()
    with Watcher([cache]) as watcher:
        watcher.begin("jit")
        subprocess.run(["cc", "-O2", "-fPIC", "-shared", "-o", str(cache / "k.so"), str(src)],
                       check=True)
        watcher.checkpoint("jit")
    lines = list(nocompile.outcome(watcher).output)
    assert f"file written during jit: {cache / 'k.so'} (created)" in lines
    # cc and the programs it runs (cc1, as, collect2, ld) are short-lived: a busy machine
    # may schedule the polling thread past some of them, never past all
    assert any(line.startswith("compiler started during jit: ")
               and (str(src) in line or str(cache / "k.so") in line)
               for line in lines), lines


def _fake_proc(root: Path, pid: int, ppid: int, comm: str, argv: list[str],
               start: int = 100) -> None:
    folder = root / str(pid)
    folder.mkdir(parents=True, exist_ok=True)
    rest = " ".join(["0"] * 17)
    (folder / "stat").write_text(f"{pid} ({comm}) S {ppid} {rest} {start} 0 0\n")
    (folder / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")


def test_only_compilers_the_suite_started_count(tmp_path: Path) -> None:
    """A fake /proc: the suite (pid 50), a compiler running before the watch, a compiler
    of someone else (another make on a shared host), and the suite's own children."""
    proc = tmp_path / "proc"
    _fake_proc(proc, 1, 0, "init", ["/sbin/init"])
    _fake_proc(proc, 50, 1, "python3", ["python3", "-m", "smoke"])
    _fake_proc(proc, 60, 50, "cc", ["cc", "old.c"])  # before the watch started
    watcher = Watcher([tmp_path / "cache"], proc=str(proc), root_pid=50, interval=3600)
    watcher.start()
    watcher.begin("x:y")
    _fake_proc(proc, 70, 1, "make", ["make"])
    _fake_proc(proc, 71, 70, "gcc", ["gcc", "-c", "theirs.c"])  # not the suite's
    _fake_proc(proc, 80, 50, "bash", ["bash", "-c", "python -c 'import jitdemo'"])
    _fake_proc(proc, 81, 80, "python", ["python", "-c", "import jitdemo"])
    _fake_proc(proc, 82, 81, "x86_64-linux-gn", ["/usr/bin/x86_64-linux-gnu-gcc-12", "k.c"])
    _fake_proc(proc, 83, 82, "ld.lld", ["ld.lld", "-shared", "k.o"])
    watcher.checkpoint("x:y")
    watcher.stop()
    assert [f.line() for f in watcher.findings] == [
        "compiler started during x:y: gcc (pid 82): /usr/bin/x86_64-linux-gnu-gcc-12 k.c",
        "compiler started during x:y: ld.lld (pid 83): ld.lld -shared k.o"]


def test_a_child_seen_before_its_exec_is_seen_again_as_the_compiler(tmp_path: Path) -> None:
    """A shell forks (the child still shows as bash), a poll sees it, then it execs cc: the
    same pid and start time, now a compiler."""
    proc = tmp_path / "proc"
    _fake_proc(proc, 50, 1, "python3", ["python3", "-m", "smoke"])
    watcher = Watcher([tmp_path / "cache"], proc=str(proc), root_pid=50, interval=3600)
    watcher.start()
    watcher.begin("x:y")
    _fake_proc(proc, 90, 50, "bash", ["bash", "-c", "cc k.c"])
    watcher.checkpoint("x:y")
    _fake_proc(proc, 90, 50, "cc", ["cc", "k.c"])  # exec: pid and start time unchanged
    watcher.checkpoint("x:y")
    watcher.stop()
    assert [f.line() for f in watcher.findings] == [
        "compiler started during x:y: cc (pid 90): cc k.c"]


def test_without_proc_files_are_still_watched(tmp_path: Path) -> None:
    watcher = Watcher([tmp_path], proc=str(tmp_path / "no-proc")).start()
    watcher.stop()
    result = nocompile.outcome(watcher)
    assert result.status == "pass"
    assert "no-proc not readable: processes not watched" in result.reason


def test_flydsl_run_only_is_set_while_watching_and_restored(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLYDSL_RUNTIME_RUN_ONLY", raising=False)
    with Watcher([tmp_path]):
        seen = subprocess.run([sys.executable, "-c", "import os; print(os.environ.get("
                               "'FLYDSL_RUNTIME_RUN_ONLY'))"], capture_output=True, text=True,
                              check=True).stdout.strip()
    assert seen == "1"
    assert "FLYDSL_RUNTIME_RUN_ONLY" not in os.environ
    monkeypatch.setenv("FLYDSL_RUNTIME_RUN_ONLY", "0")
    with Watcher([tmp_path]):
        assert os.environ["FLYDSL_RUNTIME_RUN_ONLY"] == "1"
    assert os.environ["FLYDSL_RUNTIME_RUN_ONLY"] == "0"


# --- through the CLI ----------------------------------------------------------------------

def _manifest(tmp_path: Path, run: str) -> Path:
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"cell": "t", "archs": [], "components": {"demo": {
        "imports": [], "wheels": [], "smoke": [{"name": "work", "run": run, "gpu": False}]}}}))
    return path


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler here")
def test_suite_fails_no_compile_when_a_check_compiles(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "detect_device", lambda requested: (None, "no GPU visible"))
    cache = tmp_path / "jit"
    # the source comes through a pipe after a while, so cc surely lives across polls
    run = (f"mkdir -p {cache} && (sleep 0.5; printf 'int f(void){{return 1;}}\\n') | "
           f"cc -x c -shared -fPIC -o {cache}/k.so -")
    report_file = tmp_path / "r.json"
    code = cli.main(["--manifest", str(_manifest(tmp_path, run)), "--only", "demo,no-compile",
                     "--watch", str(cache), "--report", str(report_file)])
    out = capsys.readouterr().out
    assert code == 1, out
    checks = {c["name"]: c for c in json.loads(report_file.read_text())["checks"]}
    assert checks["demo:work"]["status"] == "pass"  # it works: by compiling
    no_compile = checks["no-compile"]
    assert no_compile["status"] == "fail"
    assert no_compile["reason"].startswith(
        f"compiled at run time: file written during demo:work: {cache}/k.so (created)")
    assert any(line.startswith("compiler started during demo:work: cc (pid ")
               for line in no_compile["output"]), no_compile["output"]
    assert "FAILED: no-compile" in out


def test_suite_passes_no_compile_for_its_own_temp_files(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A check writing into its own working folder and pytest's tmp is no compile, nor is
    the report the suite writes."""
    monkeypatch.setattr(cli, "detect_device", lambda requested: (None, "no GPU visible"))
    run = f"echo x > here.txt && echo y > {tmp_path}/also.txt && python -c 'import json'"
    code = cli.main(["--manifest", str(_manifest(tmp_path, run)), "--only", "demo,no-compile",
                     "--watch", str(tmp_path / "jit"), "--report", str(tmp_path / "r.json")])
    out = capsys.readouterr().out
    assert code == 0, out
    checks = {c["name"]: c for c in json.loads((tmp_path / "r.json").read_text())["checks"]}
    assert [checks[n]["status"] for n in ("demo:work", "no-compile")] == ["pass", "pass"]


def test_triton_compiles_are_expected_not_failed(tmp_path, monkeypatch):
    """Triton compiles each kernel at first use by design: a file in its cache is reported
    as expected and the check passes; a file in another JIT folder still fails it."""
    from wheelforge.smoke import nocompile

    triton, other = tmp_path / "triton", tmp_path / "mori"
    triton.mkdir()
    other.mkdir()
    monkeypatch.setenv("TRITON_CACHE_DIR", str(triton))
    watcher = nocompile.Watcher([triton, other], proc=str(tmp_path / "no-proc"))
    with watcher:
        watcher.begin("triton")
        (triton / "kernel.hsaco").write_bytes(b"x")
        watcher.checkpoint("triton")
    result = nocompile.outcome(watcher)
    assert result.status == "pass", result
    assert "expected: 1 compile(s) of triton" in result.reason
    watcher = nocompile.Watcher([triton, other], proc=str(tmp_path / "no-proc"))
    with watcher:
        watcher.begin("mori")
        (other / "ep.hsaco").write_bytes(b"x")
        watcher.checkpoint("mori")
    assert nocompile.outcome(watcher).status == "fail"


def test_compilers_python_starts_itself_during_an_expected_compile_are_expected():
    """As on an H200: Triton writes its cache and runs gcc (cc1, collect2, ld) itself for its
    launcher. Those compilers count as Triton's; the same compiler in a check that also
    wrote elsewhere, or under a build tool, does not."""
    from wheelforge.smoke import nocompile

    F = nocompile.Finding
    findings = [F("triton", "file", "/c/.triton/cache/k.cubin", "triton"),
                F("triton", "process", "cc1 (pid 2): cc1", direct=True),
                F("triton", "process", "ninja (pid 3): ninja", direct=False),
                F("aiter", "file", "/c/.triton/cache/r.cubin", "triton"),
                F("aiter", "file", "/site/aiter/jit/module_rmsnorm.so", ""),
                F("aiter", "process", "cc (pid 4): cc", direct=True)]
    by_design = nocompile.by_design_findings(findings)
    assert [f.detail for f in by_design] == ["/c/.triton/cache/k.cubin",
                                             "/c/.triton/cache/r.cubin", "cc1 (pid 2): cc1"]
    assert all(f.expected == "triton" for f in by_design)


def test_an_expected_compile_with_its_compilers_passes():
    from wheelforge.smoke import nocompile

    watcher = nocompile.Watcher([])
    F = nocompile.Finding
    watcher.findings = [F("triton", "process", "gcc (pid 1): gcc-real x.c", direct=True),
                        F("triton", "process", "cc1 (pid 2): cc1", direct=True),
                        F("triton", "file", "/c/.triton/cache/k.so (created)", "triton")]
    result = nocompile.outcome(watcher)
    assert result.status == "pass", result
    assert "expected: 3 compile(s) of triton" in result.reason
