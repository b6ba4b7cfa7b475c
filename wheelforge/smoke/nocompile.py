"""no-compile: proof that nothing compiled while the smoke suite ran.

A runtime image installs prebuilt wheels only; a component that compiles at first use
(AITER and MORI JIT modules, Triton kernels, a FlyDSL kernel cache) would compile on
every user's GPU node instead. While the checks run, a ``Watcher``:

- snapshots the JIT/cache folders (``WATCHED_ENV``, ``WATCHED_HOME``, ``WATCHED_PACKAGES``
  and every ``*_CACHE_DIR``/``*_JIT_DIR`` variable a component's runtime_env names) before
  the first check and after each one: a file created or modified there is a compile;
- polls /proc in a background thread for processes started by the suite (its
  descendants, so a compile elsewhere on a host is not counted) whose name is a
  compiler, assembler, linker or build tool (``COMPILERS``);
- sets ``FLYDSL_RUNTIME_RUN_ONLY=1`` (``RUN_ONLY_ENV``) for the checks, so FlyDSL raises
  instead of compiling.

Each finding names the check that was running, the file or the process and its command
line. Standard library only. A process that starts and ends between two polls is not
seen; what it wrote in a watched folder is.
"""

from __future__ import annotations

import importlib.util
import os
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .report import Outcome, failed, passed

# --- what is watched: data, in one place ----------------------------------------------

# Variables naming JIT/cache folders (their value, where set, is watched).
WATCHED_ENV = ("TRITON_CACHE_DIR", "MORI_JIT_CACHE_DIR", "FLYDSL_RUNTIME_CACHE_DIR",
               "AITER_JIT_DIR")
# A component's runtime_env variable with one of these endings names a JIT/cache folder
# of its own (e.g. JITDEMO_CACHE_DIR): watched too, at the environment's value else the
# manifest's.
WATCHED_ENV_SUFFIXES = ("_CACHE_DIR", "_JIT_DIR")
# Default cache folders under the user's home.
WATCHED_HOME = ("~/.aiter", "~/.triton", "~/.mori")
# Folders inside installed packages (package, subfolder), found without importing them:
# AITER's prebuilt JIT modules live in aiter/jit, and a JIT build writes there.
WATCHED_PACKAGES = (("aiter", "jit"),)
# Files that are not compiles: Python's own bytecode cache.
IGNORED_DIRS = ("__pycache__",)
IGNORED_SUFFIXES = (".pyc",)

# Process names (after dropping a target prefix such as x86_64-linux-gnu- and a version
# suffix such as -12) that mean something is being compiled or linked.
COMPILERS = frozenset({
    "hipcc", "hipcc.bin", "hipcc.pl", "clang", "clang++", "amdclang", "amdclang++",
    "clang-offload-bundler", "cc", "gcc", "g++", "c++", "cc1", "cc1plus", "collect2",
    "as", "ld", "ld.lld", "lld", "ld.gold", "ld.bfd", "ninja", "nvcc", "ptxas", "cicc",
    "fatbinary", "nvlink", "llc", "opt",
})
# What compiles at first use by design, with no prebuilt form to ship: Triton compiles
# each kernel for the shapes it meets, and its C launcher with cc, into its cache
# (docs/production.md lists it per cell). Files written in these folders are reported as
# expected, not failed; so are the compilers the Python process under test started
# itself (no build tool or shell between them) during a check whose only files were
# such expected ones (on an H200: gcc, cc1, as, collect2, ld and ptxas under Triton).
EXPECTED = {
    "triton": {"env": ("TRITON_CACHE_DIR",), "home": ("~/.triton",),
               "why": "Triton compiles its kernels at first use by design (no prebuilt cache)"},
}
# What FlyDSL reads: with it set, FlyDSL raises instead of compiling a kernel.
RUN_ONLY_ENV = {"FLYDSL_RUNTIME_RUN_ONLY": "1"}

POLL_SECONDS = 0.01
FIRST_SHOWN = 3  # findings named in the one-line reason; all are in the report's output

_TARGET_PREFIX = re.compile(r"^[a-z0-9_]+-(?:[a-z0-9_]+-)?linux-gnu[a-z0-9_]*-")
# a version (gcc-12) or a wrapper's real binary (gcc-real, as a toolchain's gcc script runs)
_VERSION_SUFFIX = re.compile(r"-(?:\d+(?:\.\d+)*|real)$")
SHELLS = frozenset({"sh", "bash", "dash"})  # a compiler that is a script: `sh /path/gcc ...`


def compiler_name(name: str) -> str | None:
    """The compiler ``name`` (a path, an argv[0] or a comm) is, or None:
    /usr/bin/x86_64-linux-gnu-gcc-12 -> gcc, clang++-19 -> clang++, python3 -> None."""
    base = os.path.basename(name.strip())
    for candidate in (base, _VERSION_SUFFIX.sub("", base)):
        for form in (candidate, _TARGET_PREFIX.sub("", candidate)):
            if form in COMPILERS:
                return form
    return None


def watched_folders(manifest: Mapping[str, Any] | None = None,
                    environ: Mapping[str, str] | None = None,
                    extra: Iterable[str] = ()) -> list[Path]:
    """Every folder to watch, absolute, without duplicates (missing ones included: a
    folder created during the smoke is a finding too)."""
    env = os.environ if environ is None else environ
    out: list[str] = []
    for name in WATCHED_ENV:
        if env.get(name):
            out.append(env[name])
    for comp in ((manifest or {}).get("components") or {}).values():
        runtime_env = comp.get("runtime_env") if isinstance(comp, Mapping) else None
        for name, value in (runtime_env or {}).items():
            if isinstance(name, str) and name.endswith(WATCHED_ENV_SUFFIXES):
                out.append(env.get(name) or str(value))
    for name, value in ((manifest or {}).get("runtime_env") or {}).items():
        if isinstance(name, str) and name.endswith(WATCHED_ENV_SUFFIXES):
            out.append(env.get(name) or str(value))
    home = env.get("HOME") or os.path.expanduser("~")
    out += [os.path.join(home, p[2:]) for p in WATCHED_HOME]
    for package, sub in WATCHED_PACKAGES:
        try:
            spec = importlib.util.find_spec(package)
        except (ImportError, ValueError):
            spec = None
        for location in (spec.submodule_search_locations or []) if spec else []:
            out.append(os.path.join(location, sub))
    out += list(extra)
    seen: dict[str, Path] = {}
    for folder in out:
        path = Path(os.path.abspath(os.path.expanduser(folder)))
        seen.setdefault(str(path), path)
    return list(seen.values())


def expected_folders(environ: Mapping[str, str] | None = None) -> list[tuple[str, str]]:
    """(EXPECTED name, absolute folder) of the folders whose compiles happen by design."""
    env = os.environ if environ is None else environ
    home = env.get("HOME") or os.path.expanduser("~")
    out = []
    for name, spec in EXPECTED.items():
        out += [(name, os.path.abspath(env[v])) for v in spec["env"] if env.get(v)]
        out += [(name, os.path.join(home, h[2:])) for h in spec["home"]]
    return out


def _under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


# --- files ------------------------------------------------------------------------------

Snapshot = dict[str, tuple[int, int]]  # path -> (mtime_ns, size)


def snapshot(folders: Iterable[Path]) -> Snapshot:
    """Every file under ``folders`` (not following links), with its mtime and size."""
    out: Snapshot = {}
    for folder in folders:
        for root, dirs, files in os.walk(folder, onerror=lambda _e: None):
            dirs[:] = [d for d in dirs if d not in IGNORED_DIRS]
            for name in files:
                if name.endswith(IGNORED_SUFFIXES):
                    continue
                path = os.path.join(root, name)
                try:
                    st = os.lstat(path)
                except OSError:
                    continue
                out[path] = (st.st_mtime_ns, st.st_size)
    return out


def changed_files(before: Snapshot, after: Snapshot) -> list[tuple[str, str]]:
    """(path, "created" | "modified") for every file new or changed in ``after``."""
    return [(path, "created" if path not in before else "modified")
            for path, stat in sorted(after.items()) if before.get(path) != stat]


# --- processes --------------------------------------------------------------------------

@dataclass(frozen=True)
class ProcInfo:
    pid: int
    ppid: int
    comm: str
    start: int  # clock ticks after boot: (pid, start) names one process


def read_proc(pid: int, proc: str = "/proc") -> ProcInfo | None:
    try:
        with open(f"{proc}/{pid}/stat", "rb") as f:
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return None
    left, right = text.find("("), text.rfind(")")
    fields = text[right + 2:].split()
    if left < 0 or right < 0 or len(fields) < 20:
        return None
    return ProcInfo(pid, int(fields[1]), text[left + 1:right], int(fields[19]))


def read_cmdline(pid: int, proc: str = "/proc") -> list[str]:
    try:
        with open(f"{proc}/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return []
    return [a.decode("utf-8", "replace") for a in raw.split(b"\0") if a]


@dataclass(frozen=True)
class Finding:
    check: str  # the check that was running ("" before the first)
    what: str  # "file" or "process"
    detail: str  # the path, or "NAME (pid N): COMMAND LINE"
    expected: str = ""  # an EXPECTED entry's name: a compile that happens by design
    direct: bool = False  # a process started by the suite's Python through compilers only

    def line(self, limit: int | None = None) -> str:
        during = f" during {self.check}" if self.check else ""
        detail = self.detail
        if limit is not None and len(detail) > limit:
            detail = detail[: limit - 3] + "..."
        if self.what == "file":
            return f"file written{during}: {detail}"
        return f"compiler started{during}: {detail}"


@dataclass
class Watcher:
    """Watches folders and /proc while the checks run; ``start``, ``checkpoint`` after each
    check, ``stop``; then ``findings``."""

    folders: list[Path]
    proc: str = "/proc"
    interval: float = POLL_SECONDS
    root_pid: int = field(default_factory=os.getpid)
    findings: list[Finding] = field(default_factory=list)
    polls: int = 0
    proc_note: str = ""
    current: str = ""
    _before: Snapshot = field(default_factory=dict)
    # (pid, start, comm): a process seen between its fork and its exec is seen again as
    # what it execs (a shell's child that becomes cc keeps its pid and start time)
    _seen: set[tuple[int, int, str]] = field(default_factory=set)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _saved_env: dict[str, str | None] = field(default_factory=dict)

    def start(self) -> Watcher:
        for key, value in RUN_ONLY_ENV.items():
            self._saved_env[key] = os.environ.get(key)
            os.environ[key] = value
        self._before = snapshot(self.folders)
        if not os.path.isdir(self.proc):
            self.proc_note = f"{self.proc} not readable: processes not watched"
        else:
            # Processes already running are not the checks' doing.
            for info in self._processes():
                self._seen.add((info.pid, info.start, info.comm))
            self._thread = threading.Thread(target=self._run, name="no-compile", daemon=True)
            self._thread.start()
        return self

    def checkpoint(self, check: str) -> None:
        """Files changed since the last checkpoint were written during ``check``; the next
        check starts now."""
        self._poll()
        after = snapshot(self.folders)
        expected = expected_folders()
        with self._lock:
            self.findings += [Finding(check, "file", f"{path} ({how})", next(
                (name for name, folder in expected if _under(path, folder)), ""))
                for path, how in changed_files(self._before, after)]
        self._before = after

    def begin(self, check: str) -> None:
        self.current = check

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.checkpoint(self.current)
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env.clear()

    def __enter__(self) -> Watcher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- /proc polling --

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._poll()

    def _processes(self) -> list[ProcInfo]:
        try:
            names = os.listdir(self.proc)
        except OSError:
            return []
        return [info for name in names if name.isdigit()
                for info in [read_proc(int(name), self.proc)] if info is not None]

    def _poll(self) -> None:
        if self.proc_note:
            return
        with self._lock:
            self._poll_locked()

    def _poll_locked(self) -> None:
        infos = self._processes()
        by_pid = {i.pid: i for i in infos}
        new = sorted((i for i in infos if (i.pid, i.start, i.comm) not in self._seen),
                     key=lambda i: (i.start, i.pid))
        for info in new:
            self._seen.add((info.pid, info.start, info.comm))
            if info.pid == self.root_pid or not self._descends(info, by_pid):
                continue
            argv = read_cmdline(info.pid, self.proc)
            name = compiler_name(info.comm) or (compiler_name(argv[0]) if argv else None)
            if name is None:
                continue
            command = " ".join(argv) or info.comm
            self.findings.append(Finding(self.current, "process",
                                         f"{name} (pid {info.pid}): {command}",
                                         direct=self._direct(info, by_pid)))
        self.polls += 1

    def _direct(self, info: ProcInfo, by_pid: dict[int, ProcInfo]) -> bool:
        """Whether only compilers stand between ``info`` and the suite's process (cc -> cc1
        started by Python itself), not a build tool's shell or a script."""
        ppid, hops = info.ppid, 0
        while ppid != self.root_pid and hops < 64:
            parent = by_pid.get(ppid) or read_proc(ppid, self.proc)
            if parent is None:
                return False
            # comm is cut at 15 characters (x86_64-linux-gnu-gcc-13): argv[0] too, and
            # the script a shell runs when the compiler is a wrapper script
            argv = read_cmdline(parent.pid, self.proc)
            names = [parent.comm, *argv[:1]]
            if argv and os.path.basename(argv[0]) in SHELLS:
                names += argv[1:2]
            if not any(compiler_name(n) for n in names):
                return False
            ppid, hops = parent.ppid, hops + 1
        return ppid == self.root_pid

    def _descends(self, info: ProcInfo, by_pid: dict[int, ProcInfo]) -> bool:
        """Whether ``info`` was started (at any depth) by the suite's process."""
        ppid, hops = info.ppid, 0
        while ppid > 1 and hops < 64:
            if ppid == self.root_pid:
                return True
            parent = by_pid.get(ppid) or read_proc(ppid, self.proc)
            if parent is None:
                return False
            ppid, hops = parent.ppid, hops + 1
        return ppid == self.root_pid


def by_design_findings(findings: list[Finding]) -> list[Finding]:
    """The findings that are expected compiles: files in an EXPECTED folder, and compilers
    started straight by the suite's Python during a check whose files were all expected,
    each marked with its EXPECTED entry."""
    files: dict[str, set[str]] = {}
    for f in findings:
        if f.what == "file":
            files.setdefault(f.check, set()).add(f.expected)
    out = [f for f in findings if f.what == "file" and f.expected]
    for f in findings:
        kinds = files.get(f.check, set())
        if f.what == "process" and f.direct and len(kinds) == 1 and "" not in kinds:
            out.append(replace(f, expected=next(iter(kinds))))
    return out


def outcome(watcher: Watcher | None) -> Outcome:
    """The no-compile check's result from a stopped watcher."""
    if watcher is None:
        return failed("the watcher did not run")
    shown = ", ".join(str(f) for f in watcher.folders[:4])
    more = f" and {len(watcher.folders) - 4} more" if len(watcher.folders) > 4 else ""
    by_design = by_design_findings(watcher.findings)
    seen = {(f.check, f.what, f.detail) for f in by_design}
    findings = [f for f in watcher.findings if (f.check, f.what, f.detail) not in seen]
    metrics: dict[str, Any] = {
        "files": sum(f.what == "file" for f in findings),
        "processes": sum(f.what == "process" for f in findings),
        "expected": len(by_design), "folders": len(watcher.folders), "polls": watcher.polls,
    }
    note = f"; {watcher.proc_note}" if watcher.proc_note else ""
    for name in sorted({f.expected for f in by_design}):
        count = sum(f.expected == name for f in by_design)
        note += f"; expected: {count} compile(s) of {name} ({EXPECTED[name]['why']})"
    if not findings:
        result = passed(f"nothing compiled: no file written in {shown}{more}, no compiler "
                        f"started ({watcher.polls} polls of /proc){note}", metrics,
                        ("files", "processes"))
        return replace(result, output=tuple(f"expected: {f.line()}" for f in by_design))
    lines = [f.line() for f in findings] + [f"expected: {f.line()}" for f in by_design]
    # The reason names the files first (what a compile left behind), then the processes,
    # their command lines shortened; the report's output has every finding in full.
    ordered = sorted(findings, key=lambda f: f.what != "file")
    first = "; ".join(f.line(limit=120) for f in ordered[:FIRST_SHOWN])
    rest = (f" (+{len(findings) - FIRST_SHOWN} more in the report)"
            if len(findings) > FIRST_SHOWN else "")
    return failed(f"compiled at run time: {first}{rest}", metrics, ("files", "processes"),
                  lines)
