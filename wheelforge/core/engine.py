"""The Docker engine: every call to it and to buildx, and bringing one up on this host.

Calls: every call to the Docker engine and buildx goes through this module (`docker`,
`run_build`, `bake`; the client is WHEELFORGE_DOCKER). Commands are argument lists, never
shell strings. A failing call raises a UserError with docker's last error line.

Builds run with `--progress=rawjson`, so that progress, cache hits, durations and the one
`wheelforge-error:` line of a failing step can be read per bake target; each status object
is also handed on as it arrives (build/progress.py), and a step that marks its parts with
`wheelforge-phase:` lines (Dockerfile.clean) has each part timed. A bake definition is
written to a temporary file and given exactly the file-system entitlements it reads and
writes (`--allow fs.read=...`, `fs.write=...`), which buildx asks for from 0.19 on. A
builder that is a docker context builds as the current context (`docker --context NAME
buildx ...`), as buildx uses the `docker` driver only that way.

Bringing an engine up (`engine_running`): an engine that already answers is reused and left
running. Otherwise dockerd is started with the containerd image store (needed for cache
export, local outputs and named contexts) and stopped again by whoever started it. Another
dockerd release than the system's (e.g. one unpacked beside it) gets a data root and exec
root of its own under .cache/engine, so two releases never share one.

A scratch engine (the test suite's) starts on an empty data root of its own and that root
is removed when it stops: a run leaves no images or build cache behind, and two runs, or
two engine releases in one run, never share or pile up storage. A root is never removed
while anything is still mounted under it.

The oldest supported releases are dockerd 26.1 and buildx 0.13: an older buildx is refused
here, and ci/setup-host.sh checks both.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from wheelforge.core import settings
from wheelforge.core.settings import ENGINE_STATE
from wheelforge.core.terminal import UserError

DOCKER = settings.get("WHEELFORGE_DOCKER")


ERROR_MARK = "wheelforge-error:"
PHASE_MARK = "wheelforge-phase:"  # Dockerfile.clean: a part of its step begins


def docker(args: Sequence[str], *, check: bool = True, input: bytes | None = None,
           timeout: float | None = None, what: str = "") -> subprocess.CompletedProcess:
    """Run `docker ARGS`; on failure raise one line with docker's last message."""
    if shutil.which(DOCKER) is None:
        raise UserError(f"{DOCKER}: not found; run ci/setup-host.sh (or install Docker)")
    try:
        proc = subprocess.run([DOCKER, *args], input=input, capture_output=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise UserError(f"docker {args[0]} {what} timed out after {timeout}s") from None
    if check and proc.returncode != 0:
        raise UserError(f"docker {' '.join(args[:2])} {what}failed: {last_line(proc.stderr)}")
    return proc


def last_line(data: bytes | str) -> str:
    """The line that says what went wrong: the last error line, else the last line."""
    text = data.decode(errors="replace") if isinstance(data, bytes) else data
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error" in ln.lower()]
    return (errors or lines or ["no output"])[-1]


def reachable() -> bool:
    try:
        return docker(["info", "--format", "{{.ServerVersion}}"], check=False,
                      timeout=20).returncode == 0
    except UserError:
        return False


def has_buildx() -> bool:
    return docker(["buildx", "version"], check=False, timeout=20).returncode == 0


# The oldest buildx this project supports (ci/setup-host.sh checks it, and dockerd 26.1).
MIN_BUILDX = (0, 13)


# bake asks for file-system entitlements (`--allow fs.read=P`, `fs.write=P`) from 0.19
# (enforced from 0.20) for definitions that read or write outside the working folder.
BAKE_FS_ENTITLEMENTS = (0, 19)


def parse_version(text: str) -> tuple[int, ...]:
    """The first dotted version in `text` as numbers: 'buildx v0.29.1 abc' -> (0, 29, 1)."""
    m = re.search(r"(?<![\w.])v?(\d+)\.(\d+)(?:\.(\d+))?", text)
    return tuple(int(g) for g in m.groups() if g is not None) if m else ()


def buildx_version() -> tuple[int, ...]:
    """The version of the buildx that `docker buildx` runs here (DOCKER_CONFIG's plugin)."""
    proc = docker(["buildx", "version"], check=False, timeout=20)
    version = parse_version(proc.stdout.decode(errors="replace").split(" ", 1)[-1])
    if proc.returncode != 0 or not version:
        raise UserError("docker buildx does not answer `version`; run ci/setup-host.sh")
    return version


def fs_entitlements(definition: dict) -> list[str]:
    """Exactly the paths a bake definition reads and writes, as `--allow` flags."""
    reads: set[str] = set()
    writes: set[str] = set()

    def local(value: str) -> str | None:
        if value.startswith(("target:", "docker-image://", "oci-layout://", "http://",
                             "https://", "git@", "input:")):
            return None
        return os.path.abspath(value)

    for target in definition.get("target", {}).values():
        for value in [target.get("context", ""), *target.get("contexts", {}).values()]:
            if value and (path := local(value)):
                reads.add(path)
        for items, key, into in ((target.get("secret", []), "src", reads),
                                 (target.get("cache-from", []), "src", reads),
                                 (target.get("cache-to", []), "dest", writes),
                                 (target.get("output", []), "dest", writes)):
            for item in items:  # a file or folder only where the option names one
                parts = dict(p.split("=", 1) for p in item.split(",") if "=" in p)
                if key in parts:
                    into.add(os.path.abspath(parts[key]))
    return ([f"--allow=fs.read={p}" for p in sorted(reads)] +
            [f"--allow=fs.write={p}" for p in sorted(writes)])


def is_context(name: str) -> bool:
    """Whether `name` is a docker context (its engine can build with the docker driver)."""
    return docker(["context", "inspect", name], check=False, timeout=20).returncode == 0


def image_exists(ref: str) -> bool:
    return docker(["image", "inspect", ref], check=False).returncode == 0


def image_inspect(ref: str) -> dict:
    out = docker(["image", "inspect", ref], what=f"{ref} ").stdout
    return json.loads(out)[0]


def image_id(ref: str) -> str:
    return image_inspect(ref)["Id"]


@dataclass
class Vertex:
    digest: str
    name: str = ""
    started: str | None = None
    completed: str | None = None
    cached: bool = False
    error: str = ""
    logs: list[str] = field(default_factory=list)


@dataclass
class BuildResult:
    ok: bool
    vertices: dict[str, Vertex]
    error: str  # the buildx error, if any
    seconds: float

    def marked_error(self) -> str | None:
        """The `wheelforge-error:` line a failing step printed, if any."""
        for vertex in self.vertices.values():
            for line in vertex.logs:
                if ERROR_MARK in line:
                    return line.split(ERROR_MARK, 1)[1].strip()
        return None

    def phases(self) -> dict[str, float]:
        """Seconds per part of a step that marks its parts (`wheelforge-phase: NAME TIME`
        as each begins, TIME in seconds since the epoch; the last mark ends the step).
        Parts that run beside the others mark a lane of their own, `LANE/NAME`, which its
        own last mark ends."""
        lanes: dict[str, list[tuple[str, float]]] = {}
        for vertex in self.vertices.values():
            for line in vertex.logs:
                words = line.partition(PHASE_MARK)[2].split()
                if len(words) == 2:
                    with contextlib.suppress(ValueError):
                        lane = words[0].rpartition("/")[0]
                        lanes.setdefault(lane, []).append((words[0], float(words[1])))
        return {name: round(end - start, 3) for marks in lanes.values()
                for (name, start), (_, end) in zip(marks, marks[1:], strict=False)}

    def show_failed_output(self, lines: int = 40) -> None:
        """Print the last lines of output of the step that failed, for the user to read."""
        for vertex in self.vertices.values():
            if vertex.error and vertex.logs:
                say("---- output of the failing step (last lines) ----\n" +
                    "\n".join(vertex.logs[-lines:]) + "\n----")
                return


def own_name(name: str, prefixes: Sequence[str]) -> str:
    """A vertex's own name, without the `[TARGET ` prefix bake's progress gives it.

    A step two targets of one bake share (e.g. the toolchain stage) reaches the progress
    stream once under each target's prefix, in no fixed order; named by prefix, it was
    counted as a step of whichever target reported it last.
    """
    for target in prefixes:
        if name.startswith(f"[{target}] "):
            return name[len(target) + 3:]
        if name.startswith(f"[{target} "):
            return "[" + name[len(target) + 2:]
    return name


def _read_rawjson(stream, on_vertex: Callable[[Vertex], None],
                  on_status: Callable[[dict], None] = lambda s: None,
                  prefixes: Sequence[str] = ()) -> dict[str, Vertex]:
    vertices: dict[str, Vertex] = {}
    decoder = json.JSONDecoder()
    buffer = ""
    partial: dict[str, str] = {}
    for chunk in iter(lambda: stream.read1(65536) if hasattr(stream, "read1") else
                      stream.read(65536), b""):
        buffer += chunk.decode(errors="replace")
        while True:
            text = buffer.lstrip()
            if not text:
                buffer = ""
                break
            if not text.startswith("{"):  # a plain line from buildx itself
                line, _, rest = text.partition("\n")
                if not _:
                    buffer = text
                    break
                vertices.setdefault("buildx", Vertex("buildx")).logs.append(line)
                buffer = rest
                continue
            try:
                obj, end = decoder.raw_decode(text)
            except ValueError:
                buffer = text
                break
            buffer = text[end:]
            on_status(obj)  # the whole status object, for live progress (build/progress.py)
            for raw in obj.get("vertexes") or []:
                v = vertices.setdefault(raw["digest"], Vertex(raw["digest"]))
                v.name = own_name(raw["name"], prefixes) if "name" in raw else v.name
                v.started = raw.get("started", v.started)
                done = raw.get("completed")
                v.cached = bool(raw.get("cached", v.cached))
                v.error = raw.get("error", v.error) or ""
                if done and not v.completed:
                    v.completed = done
                    on_vertex(v)
                elif raw.get("started") and not done:
                    on_vertex(v)
            for log in obj.get("logs") or []:
                v = vertices.setdefault(log["vertex"], Vertex(log["vertex"]))
                text_ = partial.pop(log["vertex"], "") + base64.b64decode(
                    log.get("data", "")).decode(errors="replace")
                *lines, rest = text_.split("\n")
                v.logs.extend(lines)
                if rest:
                    partial[log["vertex"]] = rest
    for digest, rest in partial.items():
        vertices[digest].logs.append(rest)
    return vertices


def run_build(args: Sequence[str], *, on_vertex: Callable[[Vertex], None] = lambda v: None,
              env: dict[str, str] | None = None,
              on_status: Callable[[dict], None] = lambda s: None,
              prefixes: Sequence[str] = (), context: str | None = None) -> BuildResult:
    """Run a `docker buildx ...` build command with rawjson progress and parse it.

    `prefixes`: bake's target names, taken off vertex names; `context`: a docker
    context whose engine builds (`docker --context NAME buildx ...`).
    """
    started = time.monotonic()
    where = ["--context", context] if context else []
    cmd = [DOCKER, *where, "buildx", *args, "--progress=rawjson"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, **(env or {})})
    try:
        vertices = _read_rawjson(proc.stdout, on_vertex, on_status, prefixes)
        code = proc.wait()
    except BaseException:
        proc.terminate()  # an interrupted build must not outlive us
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        raise
    if code == 0:
        for v in vertices.values():
            if "context canceled" in v.error:
                # The build succeeded, so this step was abandoned, not failed: BuildKit
                # cancels a step once a later step's result is found in the cache (after
                # a registry-cache import, now and then). Its output came from the cache.
                v.error, v.cached = "", True
    errors = [ln for ln in vertices.get("buildx", Vertex("")).logs if "ERROR" in ln or
              "error" in ln.lower()]
    return BuildResult(ok=code == 0, vertices=vertices,
                       error=errors[-1] if errors else ("" if code == 0 else f"exit {code}"),
                       seconds=time.monotonic() - started)


def bake(definition: dict, targets: Sequence[str], *, workdir: Path,
         on_vertex: Callable[[Vertex], None] = lambda v: None,
         env: dict[str, str] | None = None, builder: str | None = None,
         on_status: Callable[[dict], None] = lambda s: None) -> BuildResult:
    workdir.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".json", dir=workdir, delete=False) as f:
        json.dump(definition, f, indent=1)
    try:
        # A docker context's engine is a builder of the `docker` driver, which buildx
        # only uses as the current context: `docker --context NAME buildx bake`.
        context = builder if builder and is_context(builder) else None
        where = ["--builder", builder] if builder and not context else []
        allow = (fs_entitlements(definition) if buildx_version() >= BAKE_FS_ENTITLEMENTS
                 else [])
        for flag in allow:  # buildx checks a folder that is missing by its parent: make it
            if flag.startswith("--allow=fs.write="):
                Path(flag.split("=", 2)[2]).mkdir(parents=True, exist_ok=True)
        return run_build(["bake", *where, *allow, "-f", f.name, *targets],
                         on_vertex=on_vertex, env=env, on_status=on_status,
                         prefixes=sorted(definition.get("target", {}), key=len, reverse=True),
                         context=context)
    finally:
        os.unlink(f.name)


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextlib.contextmanager
def engine_running(dockerd: str = "dockerd", *, scratch: bool = False) -> Iterator[bool]:
    """Yield with an engine that has buildx; stop it afterwards if we started it.

    Yields True when the engine was started here (and so belongs to this run).
    `dockerd` is the program to start when none answers: the system's, or another
    release's (e.g. one unpacked beside it), which then gets a data root and exec root
    of its own under the state folder, so two releases never share one. With
    `scratch`, an engine started here always gets its own roots, empty at the start
    and removed after it stops (an engine that already answered is left as it is).
    """
    process, own = None, None
    if not reachable():
        if scratch or dockerd != "dockerd":
            own = ENGINE_STATE / "releases" / hashlib.sha256(dockerd.encode()).hexdigest()[:12]
        process = _start_dockerd(dockerd, own, fresh=scratch)
    try:
        if not has_buildx():
            raise UserError("docker buildx is not installed; run ci/setup-host.sh "
                            "(Debian: apt-get install docker-buildx)")
        if buildx_version() < MIN_BUILDX:
            found = ".".join(map(str, buildx_version()))
            need = ".".join(map(str, MIN_BUILDX))
            raise UserError(f"docker buildx {found} is older than {need}, the oldest this "
                            f"project supports; install a newer docker-buildx (ci/setup-host.sh)")
        yield process is not None
    finally:
        if process is not None:
            _stop(process)
            if scratch:
                remove_root(own)


def remove_root(root: Path) -> None:
    """Delete a stopped engine's own root (data or exec root). Refused while anything
    is mounted under it (a dockerd killed with containers running): removing files
    through a bind mount would delete what it shows from the host."""
    if not root.exists():
        return
    prefix = str(root.resolve()) + "/"
    with open("/proc/self/mounts") as mounts:  # blanks in mount points read as octal \040
        points = [re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), line.split()[1])
                  for line in mounts]
    held = [point for point in points if (point + "/").startswith(prefix)]
    if held:
        raise UserError(f"engine root {root}: {held[0]} is still mounted ({len(held)} mount(s)); "
                        f"unmount them (umount -R) and delete {root} by hand")
    shutil.rmtree(root)
    say(f"engine: removed {root}")


def dockerd_path(dockerd: str) -> str:
    """PATH for running `dockerd`: its own folder and the `bin` beside it first, so a
    release unpacked elsewhere runs its own containerd, runc and docker-init."""
    where = Path(shutil.which(dockerd) or dockerd).resolve().parent
    return f"{where}:{where.parent / 'bin'}:{os.environ.get('PATH', '')}"


def _start_dockerd(dockerd: str, own: Path | None, *, fresh: bool) -> subprocess.Popen:
    found = shutil.which(dockerd)
    if found is None:
        raise UserError(f"no Docker engine answers and {dockerd} is not installed; "
                        "run ci/setup-host.sh")
    if os.geteuid() != 0:
        raise UserError("no Docker engine answers; start one, or run as root so that "
                        "dockerd can be started here")
    if fresh and own is not None:  # what a killed run left behind
        remove_root(own)
    ENGINE_STATE.mkdir(parents=True, exist_ok=True)
    config = ENGINE_STATE / "daemon.json"
    config.write_text(json.dumps({"features": {"containerd-snapshotter": True}}))
    log = (ENGINE_STATE / "dockerd.log").open("ab")
    cmd, env = ["dockerd", "--config-file", str(config)], None
    if own is not None:  # roots of its own; another release's helpers first on PATH
        cmd = [found, "--config-file", str(config), "--data-root", str(own / "data"),
               "--exec-root", str(own / "exec"), "--pidfile", str(own / "dockerd.pid")]
        env = {**os.environ, "PATH": dockerd_path(found)}
    process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                               start_new_session=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise UserError(f"dockerd exited at start (code {process.returncode}); "
                            f"see {ENGINE_STATE / 'dockerd.log'}")
        if reachable():
            say(f"engine: started {dockerd} (containerd image store)")
            return process
        time.sleep(1)
    _stop(process)
    raise UserError(f"dockerd did not answer within 90s; see {ENGINE_STATE / 'dockerd.log'}")


def stop_group(process: subprocess.Popen, *, timeout: float = 60) -> None:
    """Stop the process group `process` leads (started with start_new_session=True):
    SIGTERM, up to `timeout` seconds for it to exit, then SIGKILL; the process is reaped."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _stop(process: subprocess.Popen) -> None:
    stop_group(process)
    say("engine: stopped the dockerd started here")
