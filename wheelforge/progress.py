"""Progress of a bake as it runs: heartbeat lines, the full log, and per-build timings.

`Tracker` reads BuildKit's `--progress=rawjson` status objects (engine.py hands
each one over as it arrives). Each build of the plan is one RUN step of
Dockerfile.wheels' build stage, `build-component build TARGET`: the vertex
whose name carries the target is that build, whatever bake prefix it shows
(BuildKit shares a vertex between targets and names it after any of them).
docker/build-component.py prints `wheelforge-step: N/M` before each recipe step,
so the step a build is in (and the step that failed) is known here and mapped
to the recipe's file:line.

Two modes (`--progress` on `invoke wheels`, or WHEELFORGE_PROGRESS):
  auto   every WHEELFORGE_HEARTBEAT_SECONDS (default 10) one line per running
         build: `[cell] component: step N/M, 2m31s, last: <its last log line>`
  plain  every log line of every build as it arrives, prefixed `[component]`
Lines are plain text (no cursor movement, no colours), on stderr.
"""

from __future__ import annotations

import base64
import datetime as _dt
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

from . import settings as config
from .errors import UserError
from .model import Build, Plan

MODES = ("auto", "plain")
STEP_MARK = "wheelforge-step:"
BUILD_RUN_RE = re.compile(r"build-component build \"?([A-Za-z0-9_.-]+)\"?")
STEP_RE = re.compile(r"\bstep (\d+)/(\d+)\b")
# What a terminal would act on: escape sequences and other control characters.
CONTROL_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|[\x00-\x08\x0b-\x1f\x7f]")
LAST_CHARS = 120


@dataclass(frozen=True, kw_only=True)
class Settings:
    mode: str = "auto"
    interval: float = 10.0  # seconds between heartbeats
    github: bool = False  # GitHub Actions: `::error file=...,line=...::` annotations

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *,
                 mode: str | None = None) -> Settings:
        env = os.environ if env is None else env
        mode = mode or config.get("WHEELFORGE_PROGRESS", env)
        if mode not in MODES:
            raise UserError(f"--progress {mode}: choose {' or '.join(MODES)} (auto: a "
                            f"heartbeat line per running build; plain: the full build log)")
        raw = config.get("WHEELFORGE_HEARTBEAT_SECONDS", env)
        try:
            interval = float(raw)
        except ValueError:
            interval = -1.0
        if not interval > 0 or interval == float("inf"):
            raise UserError(f"WHEELFORGE_HEARTBEAT_SECONDS={raw!r}: give a number of seconds "
                            f"greater than 0, e.g. 10")
        return cls(mode=mode, interval=interval,
                   github=env.get("GITHUB_ACTIONS", "").lower() == "true")


def choose(mode: str | None) -> None:
    """`invoke wheels --progress MODE`: checked, then in effect for this process."""
    if mode:
        Settings.from_env(mode=mode)
        config.put("WHEELFORGE_PROGRESS", mode)


@dataclass(frozen=True, kw_only=True)
class Span:
    """One build as BuildKit ran it (epoch seconds); state: built, cached, failed,
    canceled or pending (never started)."""

    target: str
    start: float | None
    end: float | None
    state: str

    @property
    def seconds(self) -> float:
        return max(0.0, (self.end or 0.0) - (self.start or 0.0)) if self.start else 0.0


@dataclass
class _Build:
    """What the tracker knows of one build while it runs (mutable, private)."""

    component: str
    cells: tuple[str, ...]
    steps: int
    digests: set[str] = field(default_factory=set)
    started: float | None = None  # BuildKit's time
    completed: float | None = None
    seen: float | None = None  # our clock, when it started
    cached: bool = True
    error: str = ""
    step: int = 0
    last: str = ""


class Tracker:
    def __init__(self, plan: Plan, *, settings: Settings | None = None,
                 say: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings or Settings()
        self._say = say or _stderr
        self._clock = clock
        self._lock = threading.Lock()
        self._builds = {t: _Build(component=b.component, cells=b.cells, steps=len(b.steps))
                        for t, b in plan.builds.items()}
        self._owner: dict[str, str] = {}  # vertex digest -> target
        self._partial: dict[str, str] = {}
        self._last_beat = clock()
        self._ok = False

    # -- input --------------------------------------------------------------
    def feed(self, status: dict) -> None:
        """One rawjson status object."""
        with self._lock:
            for raw in status.get("vertexes") or []:
                self._vertex(raw)
            for log in status.get("logs") or []:
                target = self._owner.get(log.get("vertex", ""))
                if target is None:
                    continue
                text = self._partial.pop(log["vertex"], "") + base64.b64decode(
                    log.get("data") or "").decode(errors="replace")
                *lines, rest = text.replace("\r\n", "\n").split("\n")
                if rest:
                    self._partial[log["vertex"]] = rest
                for line in lines:
                    self._line(target, line)

    def _vertex(self, raw: dict) -> None:
        m = BUILD_RUN_RE.search(raw.get("name") or "")
        target = m.group(1) if m else self._owner.get(raw.get("digest", ""))
        b = self._builds.get(target or "")
        if b is None:
            return
        self._owner[raw["digest"]] = target
        b.digests.add(raw["digest"])
        started, completed = _epoch(raw.get("started")), _epoch(raw.get("completed"))
        if started is not None and (b.started is None or started < b.started):
            b.started = started
            if b.seen is None:
                b.seen = self._clock()
        if completed is not None:
            b.completed = max(completed, b.completed or completed)
            b.cached = b.cached and bool(raw.get("cached"))
        if raw.get("error"):
            b.error = raw["error"]

    def _line(self, target: str, line: str) -> None:
        b = self._builds[target]
        line = CONTROL_RE.sub("", line).rstrip()
        if line.startswith(STEP_MARK):
            m = re.match(r"(\d+)", line[len(STEP_MARK):].strip())
            if m:
                b.step = int(m.group(1))
            return
        if line.strip():
            b.last = line.strip()
        if self.settings.mode == "plain":
            self._say(f"[{b.component}] {line}")

    # -- output -------------------------------------------------------------
    def tick(self) -> None:
        """Heartbeat: at most once per interval, one line per running build."""
        if self.settings.mode != "auto":
            return
        with self._lock:
            now = self._clock()
            if now - self._last_beat < self.settings.interval:
                return
            self._last_beat = now
            lines = [self._beat(b, now) for b in self._builds.values()
                     if b.seen is not None and b.completed is None and not b.error]
        for line in lines:
            self._say(line)

    def _beat(self, b: _Build, now: float) -> str:
        step = f"step {b.step}/{b.steps}" if b.step else "starting"
        last = b.last if len(b.last) <= LAST_CHARS else b.last[:LAST_CHARS - 3] + "..."
        return (f"[{_cells(b.cells)}] {b.component}: {step}, {duration(now - (b.seen or now))}"
                f", last: {last or '-'}")

    @contextmanager
    def beating(self) -> Iterator[Tracker]:
        """A thread that calls tick() while the block runs (so silence still beats)."""
        stop = threading.Event()

        def run() -> None:
            while not stop.wait(min(1.0, self.settings.interval)):
                self.tick()
        thread = threading.Thread(target=run, name="wheelforge-heartbeat", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join(timeout=5)

    def finish(self, ok: bool) -> None:
        """The bake ended. When it succeeded, a build BuildKit never showed was a cache hit
        (a target whose result is cached whole has no step to run, so none is shown)."""
        with self._lock:
            self._ok = ok

    def spans(self) -> dict[str, Span]:
        with self._lock:
            return {t: Span(target=t, start=b.started, end=b.completed,
                            state=_state(b, ok=self._ok))
                    for t, b in self._builds.items()}

    def step_of(self, target: str) -> int:
        """The recipe step the build of `target` was last in (0: none yet)."""
        b = self._builds.get(target)
        return b.step if b else 0


def _state(b: _Build, *, ok: bool) -> str:
    if b.error:
        return "canceled" if "canceled" in b.error.lower() else "failed"
    if b.started is None:
        return "cached" if ok else "pending"
    if b.completed is None:
        return "canceled"
    return "cached" if b.cached else "built"


def _cells(cells: tuple[str, ...]) -> str:
    return cells[0] + (f" +{len(cells) - 1}" if len(cells) > 1 else "") if cells else "?"


def _stderr(message: str) -> None:
    from .engine import say

    say(message)


def _epoch(stamp: str | None) -> float | None:
    """BuildKit's RFC 3339 time (nanoseconds) as epoch seconds."""
    if not stamp:
        return None
    text = re.sub(r"(\.\d{6})\d*", r"\1", stamp).replace("Z", "+00:00")
    try:
        return _dt.datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def duration(seconds: float) -> str:
    """2m31s, 1h02m, 7s."""
    s = int(max(0, seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


# ---- where a step is written ---------------------------------------------------


def step_location(build: Build, step: int) -> tuple[str, int | None]:
    """(recipe file, line of step `step` (1-based) or None when not known)."""
    lines = build.step_lines
    return build.recipe_file, (lines[step - 1] if 0 < step <= len(lines) else None)


def failed_step(message: str) -> int:
    """The step number a `wheelforge-error:` line names (`step 2/5`), else 0."""
    m = STEP_RE.search(message)
    return int(m.group(1)) if m else 0


def annotation(file: str, line: int | None, message: str) -> str:
    """A GitHub Actions error annotation (workflow command, values escaped)."""
    def data(text: str) -> str:
        return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")

    def prop(text: str) -> str:
        return data(text).replace(":", "%3A").replace(",", "%2C")

    where = f"file={prop(file)}" + (f",line={line}" if line else "")
    return f"::error {where}::{data(message)}"


def failure_where(build: Build, message: str, *, step: int = 0,
                  settings: Settings | None = None,
                  emit: Callable[[str], None] = print) -> str:
    """`FILE:LINE` of the failing step (`FILE` when the line is not known).

    The step comes from the `wheelforge-error:` message (`step N/M`), else from the
    last `wheelforge-step:` marker the build printed. Under GitHub Actions an error
    annotation on that line goes to stdout too."""
    file, line = step_location(build, failed_step(message) or step)
    if (settings or Settings.from_env()).github:
        emit(annotation(file, line, f"{build.component}: {message}"))
    return f"{file}:{line}" if line else file
