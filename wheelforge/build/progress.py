"""Progress of the bakes of `invoke wheels`: heartbeat lines or the full log while they run,
the recipe line of a failed step, and the run's timeline as one HTML file.

Reading (`Tracker`): BuildKit's `--progress=rawjson` status objects (core/engine.py hands
each one over as it arrives). Each build of the plan is one RUN step of Dockerfile.wheels'
build stage, `build-component build TARGET`: the vertex whose name carries the target is
that build, whatever bake prefix it shows (BuildKit shares a vertex between targets and
names it after any of them). docker/build-component.py prints `wheelforge-step: N/M`
before each recipe step, so the step a build is in (and the step that failed) is known
here and mapped to the recipe's file:line (`failure_where`); under GitHub Actions that
line also gets an error annotation. Escape sequences and other control characters in the
build output are dropped.

Display: two modes (`--progress` on `invoke wheels`, or WHEELFORGE_PROGRESS):
  auto   every WHEELFORGE_HEARTBEAT_SECONDS (default 10) one line per running
         build: `[cell] component: step N/M, 2m31s, last: <its last log line>`
  plain  every log line of every build as it arrives, prefixed `[component]`
Lines are plain text (no cursor movement, no colours), on stderr. A thread beats while the
bakes run, so silent builds still get their heartbeat lines.

Timeline (`render`, `write`): one bar per component and cell (a build shared by several
cells shows in each), from the start to the end of its build step as BuildKit ran it;
cache hits, failures and builds that never ran are coloured apart, and the critical path
-- the chain through the dependency graph whose build times add up the most, the one that
bounds the run however many cores there are -- is outlined. Inline SVG, no script and
nothing fetched: the file opens anywhere, also offline. Written, also for a failed run, as
wheels/timeline-<UTC time>.html (the newest 20 are kept) and copied to
wheels/timeline.html.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from wheelforge.core import engine
from wheelforge.core.settings import Settings
from wheelforge.core.terminal import UserError
from wheelforge.core.types import Build, Plan

MODES = ("auto", "plain")


STEP_MARK = "wheelforge-step:"


BUILD_RUN_RE = re.compile(r"build-component build \"?([A-Za-z0-9_.-]+)\"?")


STEP_RE = re.compile(r"\bstep (\d+)/(\d+)\b")


# What a terminal would act on: escape sequences and other control characters.
CONTROL_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|[\x00-\x08\x0b-\x1f\x7f]")


LAST_CHARS = 120


@dataclass(frozen=True, kw_only=True)
class Display:
    """How progress is shown: the mode, the heartbeat interval, GitHub annotations."""

    mode: str = "auto"
    interval: float = 10.0  # seconds between heartbeats
    github: bool = False  # GitHub Actions: `::error file=...,line=...::` annotations

    @classmethod
    def of(cls, run: Settings) -> Display:
        """The run's settings (`--progress`, WHEELFORGE_PROGRESS, ...), checked."""
        if run.progress not in MODES:
            raise UserError(f"--progress {run.progress}: choose {' or '.join(MODES)} (auto: "
                            f"a heartbeat line per running build; plain: the full build log)")
        raw = run.heartbeat_seconds
        try:
            interval = float(raw)
        except ValueError:
            interval = -1.0
        if not interval > 0 or interval == float("inf"):
            raise UserError(f"WHEELFORGE_HEARTBEAT_SECONDS={raw!r}: give a number of seconds "
                            f"greater than 0, e.g. 10")
        return cls(mode=run.progress, interval=interval, github=run.github_actions)



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
    def __init__(self, plan: Plan, *, display: Display | None = None,
                 say: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.display = display or Display()
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
        if self.display.mode == "plain":
            self._say(f"[{b.component}] {line}")

    # -- output -------------------------------------------------------------
    def tick(self) -> None:
        """Heartbeat: at most once per interval, one line per running build."""
        if self.display.mode != "auto":
            return
        with self._lock:
            now = self._clock()
            if now - self._last_beat < self.display.interval:
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
            while not stop.wait(min(1.0, self.display.interval)):
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
    engine.say(message)


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
                  display: Display | None = None,
                  emit: Callable[[str], None] = print) -> str:
    """`FILE:LINE` of the failing step (`FILE` when the line is not known).

    The step comes from the `wheelforge-error:` message (`step N/M`), else from the
    last `wheelforge-step:` marker the build printed. Under GitHub Actions an error
    annotation on that line goes to stdout too."""
    file, line = step_location(build, failed_step(message) or step)
    if display is not None and display.github:
        emit(annotation(file, line, f"{build.component}: {message}"))
    return f"{file}:{line}" if line else file


COLOURS = {"built": "#2f6fd0", "cached": "#3aa55d", "failed": "#d43c3c",
           "canceled": "#a0a0a0", "pending": "#d9d9d9"}


LABELS = {"built": "built", "cached": "cache hit", "failed": "failed",
          "canceled": "canceled", "pending": "not run"}


CRITICAL = "#f29d12"


KEEP = 20  # dated timelines kept in wheels/, newest first


TICKS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400)


@dataclass(frozen=True, kw_only=True)
class Bar:
    component: str
    cell: str
    target: str
    start: float  # seconds since the run started
    end: float
    state: str
    critical: bool


def critical_path(plan: Plan, spans: dict[str, Span]) -> list[str]:
    """The targets of the dependency chain with the largest sum of build times."""
    best: dict[str, tuple[float, list[str]]] = {}
    for target, build in plan.builds.items():  # dependencies come first
        before = max((best[d] for d in build.deps if d in best), key=lambda x: x[0],
                     default=(0.0, []))
        span = spans.get(target)
        best[target] = (before[0] + (span.seconds if span else 0.0), [*before[1], target])
    if not best:
        return []
    total, chain = max(best.values(), key=lambda x: x[0])
    return chain if total > 0 else []


def bars(plan: Plan, spans: dict[str, Span]) -> tuple[list[Bar], float]:
    """(bars, seconds the run spans): cell by cell, components in build order."""
    starts = [s.start for s in spans.values() if s.start is not None]
    origin = min(starts, default=0.0)
    ends = [s.end or s.start for s in spans.values() if s.start is not None]
    total = max(ends, default=origin) - origin
    critical = set(critical_path(plan, spans))
    out = []
    for cell in plan.cells:
        for component, target in plan.cell_targets[cell.id].items():
            span = spans.get(target) or Span(target=target, start=None, end=None,
                                             state="pending")
            start = (span.start - origin) if span.start is not None else 0.0
            end = ((span.end or span.start) - origin) if span.start is not None else 0.0
            out.append(Bar(component=component, cell=cell.id, target=target, start=start,
                           end=max(start, end), state=span.state,
                           critical=target in critical))
    return out, total


def _tick(total: float) -> int:
    """A round tick step giving at most about 10 ticks."""
    return next((t for t in TICKS if total / t <= 10), TICKS[-1])


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else \
        f"{s // 60}:{s % 60:02d}"


def render(plan: Plan, spans: dict[str, Span], *, when: _dt.datetime,
           title: str = "wheelforge build timeline") -> str:
    rows, total = bars(plan, spans)
    total = max(total, 1.0)
    chain = critical_path(plan, spans)
    label_w, width, row_h, top = 420, 1300, 26, 70
    plot_w = width - label_w - 110  # room for the text after the last bar
    scale = plot_w / total
    height = top + row_h * len(rows) + 40
    e = html.escape
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="DejaVu Sans, Arial, sans-serif" font-size="13">',
           f'<rect width="{width}" height="{height}" fill="#ffffff"/>']
    step = _tick(total)
    t = 0
    while t <= total + 1e-9:
        x = label_w + t * scale
        svg.append(f'<line x1="{x:.1f}" y1="{top - 8}" x2="{x:.1f}" '
                   f'y2="{top + row_h * len(rows)}" stroke="#e3e3e3"/>')
        svg.append(f'<text x="{x:.1f}" y="{top - 14}" text-anchor="middle" '
                   f'fill="#444">{_clock(t)}</text>')
        t += step
    svg.append(f'<text x="{label_w}" y="{top - 34}" fill="#444">time since the first build '
               f'started (m:ss); ticks every {duration(step)}</text>')
    cell = None
    for i, bar in enumerate(rows):
        y = top + i * row_h
        if bar.cell != cell:
            cell = bar.cell
            svg.append(f'<line x1="10" y1="{y}" x2="{width - 10}" y2="{y}" stroke="#999"/>')
        if i % 2:
            svg.append(f'<rect x="10" y="{y}" width="{width - 20}" height="{row_h}" '
                       f'fill="#f6f6f6" fill-opacity="0.6"/>')
        svg.append(f'<text x="14" y="{y + 17}" fill="#111"><tspan font-weight="bold">'
                   f'{e(bar.component)}</tspan><tspan fill="#666" font-size="11"> '
                   f'{e(bar.cell)}</tspan></text>')
        # at least 6 px wide: a cache hit (a few milliseconds) still shows as a bar
        x, w = label_w + bar.start * scale, max(6.0, (bar.end - bar.start) * scale)
        outline = (f' stroke="{CRITICAL}" stroke-width="3"' if bar.critical else "")
        tip = (f"{bar.component} [{bar.cell}] {LABELS[bar.state]}, "
               f"{duration(bar.end - bar.start)} (from {_clock(bar.start)})"
               + (", on the critical path" if bar.critical else ""))
        svg.append(f'<rect class="bar {bar.state}" data-component="{e(bar.component)}" '
                   f'data-cell="{e(bar.cell)}" x="{x:.1f}" y="{y + 5}" width="{w:.1f}" '
                   f'height="{row_h - 10}" rx="2" fill="{COLOURS[bar.state]}"{outline}>'
                   f'<title>{e(tip)}</title></rect>')
        text = f"{duration(bar.end - bar.start)}" if bar.state in ("built", "failed") else \
            LABELS[bar.state]
        svg.append(f'<text x="{x + w + 6:.1f}" y="{y + 17}" fill="#333" font-size="11">'
                   f'{e(text)}</text>')
    y = top + row_h * len(rows) + 24
    x = 14
    for state in ("built", "cached", "failed", "canceled", "pending"):
        svg.append(f'<rect x="{x}" y="{y - 11}" width="16" height="12" '
                   f'fill="{COLOURS[state]}"/><text x="{x + 22}" y="{y}">{LABELS[state]}</text>')
        x += 40 + 8 * len(LABELS[state])
    svg.append(f'<rect x="{x}" y="{y - 11}" width="16" height="12" fill="#ffffff" '
               f'stroke="{CRITICAL}" stroke-width="3"/><text x="{x + 22}" y="{y}">'
               f'critical path</text>')
    svg.append("</svg>")
    names = " \u2192 ".join(plan.builds[t].component for t in chain) or "none (nothing built)"
    crit = sum(spans[t].seconds for t in chain if t in spans)
    failed = [f"{b.component} [{b.cell}]" for b in rows if b.state == "failed"]
    facts = [f"run started {when.strftime('%Y-%m-%d %H:%M:%S UTC')}",
             f"{len({b.target for b in rows})} builds, {len(rows)} component/cell bars",
             f"span {duration(total)}",
             f"critical path {duration(crit)}: {names}"]
    if failed:
        facts.append("failed: " + ", ".join(failed))
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{e(title)}</title><style>body{{font-family:DejaVu Sans,Arial,sans-serif;"
            "margin:16px;color:#111}h1{font-size:20px;margin:0 0 6px}"
            "ul{margin:0 0 10px;padding-left:18px;font-size:13px}</style></head><body>"
            f"<h1>{e(title)}</h1><ul>" + "".join(f"<li>{e(f)}</li>" for f in facts) +
            "</ul>\n" + "\n".join(svg) + "\n</body></html>\n")


def write(out_root: Path, page: str, *, when: _dt.datetime) -> Path:
    """wheels/timeline-<UTC time>.html, and the same as wheels/timeline.html (atomic);
    the newest KEEP dated ones are kept."""
    out_root.mkdir(parents=True, exist_ok=True)
    dated = out_root / f"timeline-{when.strftime('%Y%m%dT%H%M%SZ')}.html"
    for dest in (dated, out_root / "timeline.html"):
        fd, tmp = tempfile.mkstemp(prefix=".timeline-", dir=out_root)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(page)
        os.chmod(tmp, 0o644)
        shutil.move(tmp, dest)
    for old in sorted(out_root.glob("timeline-*Z.html"))[:-KEEP]:
        old.unlink(missing_ok=True)
    return dated
