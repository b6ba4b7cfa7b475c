"""The build timeline of an `invoke wheels` run: one self-contained HTML file.

One bar per component and cell (a build shared by several cells shows in each),
from the start to the end of its build step as BuildKit ran it; cache hits,
failures and builds that never ran are coloured apart, and the critical path --
the chain through the dependency graph whose build times add up the most, the
one that bounds the run however many cores there are -- is outlined. Inline
SVG, no script and nothing fetched: the file opens anywhere, also offline.
Written as wheels/timeline-<UTC time>.html (the newest 20 are kept), copied to
wheels/timeline.html.
"""

from __future__ import annotations

import datetime as _dt
import html
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .model import Plan
from .progress import Span, duration

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
