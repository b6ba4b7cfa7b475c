"""Check results, the JSON report, the table for people, and comparing two reports.

Pure standard library: nothing here touches a GPU.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import SCHEMA

PASS = "pass"
FAIL = "fail"
SKIP = "skip"

# The suite's device when it found a GPU: torch.cuda, which is HIP on ROCm. A check declared
# to run on the suite's device (cli.Check.gpu) that did not skip there ran on a GPU.
GPU_DEVICE = "cuda"

# A metric is a performance metric (compared between two reports) when its name
# ends with one of these units.
PERF_SUFFIXES = ("_tflops", "_gbps", "_tokens_per_s", "_of_peak")


class Skip(Exception):
    """Raised by a check that cannot run here; the message is the reason."""


@dataclass(frozen=True)
class Outcome:
    """What a check function returns: status, one-line reason, metrics."""

    status: str
    reason: str
    metrics: Mapping[str, Any] = field(default_factory=dict)
    headline: tuple[str, ...] = ()  # metric names the table shows
    output: tuple[str, ...] = ()  # detail lines for the JSON report (a command's last lines)


def passed(reason: str, metrics: Mapping[str, Any] | None = None,
           headline: Sequence[str] = ()) -> Outcome:
    return Outcome(PASS, reason, dict(metrics or {}), tuple(headline))


def failed(reason: str, metrics: Mapping[str, Any] | None = None,
           headline: Sequence[str] = (), output: Sequence[str] = ()) -> Outcome:
    return Outcome(FAIL, reason, dict(metrics or {}), tuple(headline), tuple(output))


def skipped(reason: str) -> Outcome:
    return Outcome(SKIP, reason)


@dataclass(frozen=True)
class CheckResult:
    """One check's result as it goes into the report."""

    name: str
    status: str
    reason: str
    seconds: float
    metrics: Mapping[str, Any] = field(default_factory=dict)
    headline: tuple[str, ...] = ()
    gpu: bool = False  # it ran (passed or failed) on a GPU
    output: tuple[str, ...] = ()  # detail lines, in the JSON report only when there are some

    def to_json(self) -> dict[str, Any]:
        data = {
            "name": self.name,
            "status": self.status,
            "reason": self.reason,
            "seconds": round(self.seconds, 3),
            "metrics": dict(self.metrics),
            "gpu": self.gpu,
        }
        if self.output:
            data["output"] = list(self.output)
        return data


def one_line(text: str, limit: int = 400) -> str:
    """Collapse whitespace so a reason always fits on one line."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def build_report(host: Mapping[str, Any], results: Sequence[CheckResult],
                 image_digest: str | None) -> dict[str, Any]:
    """The JSON report (schema 1); ``gpu_checks`` counts the checks that ran on a GPU."""
    return {
        "schema": SCHEMA,
        "host": dict(host),
        "image_digest": image_digest,
        "checks": [r.to_json() for r in results],
        "passed": all(r.status != FAIL for r in results),
        "gpu_checks": sum(r.gpu for r in results),
    }


def gpu_check_names(report: Mapping[str, Any]) -> list[str]:
    """The checks of a report that ran on a GPU: each check's own ``gpu`` flag, as the suite
    wrote it (a report without the flags, e.g. of an older suite, has none; the summary
    ``gpu_checks`` is not trusted on its own)."""
    checks = report.get("checks")
    return [str(c.get("name")) for c in (checks if isinstance(checks, list) else [])
            if isinstance(c, Mapping) and c.get("gpu") is True
            and c.get("status") in (PASS, FAIL)]


def write_json_atomic(path: str | os.PathLike[str], data: Any) -> None:
    """Write JSON to a temporary file beside ``path``, then rename it into place."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(data, out, indent=2, sort_keys=False, default=str)
            out.write("\n")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def format_value(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if value == 0 or math.isnan(value) or math.isinf(value):
        return str(value)
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 0.01:
        return f"{value:.3g}"
    return f"{value:.2e}"


def format_grid(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Left-aligned plain-text columns; the last column is not padded."""
    rows = [list(header)] + [list(r) for r in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = []
    for row in rows:
        cells = [c.ljust(w) for c, w in zip(row[:-1], widths[:-1], strict=True)] + [row[-1]]
        lines.append("  ".join(cells).rstrip())
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_table(results: Sequence[CheckResult]) -> str:
    """The table for people: check, status, seconds, key metrics, reason."""
    rows = []
    for r in results:
        keys = r.headline or tuple(list(r.metrics)[:3])
        shown = " ".join(f"{k}={format_value(r.metrics[k])}" for k in keys if k in r.metrics)
        rows.append([r.name, r.status.upper(), f"{r.seconds:.1f}s", shown, r.reason])
    failed_names = [r.name for r in results if r.status == FAIL]
    verdict = f"FAILED: {', '.join(failed_names)}" if failed_names else "PASSED"
    table = format_grid(["check", "status", "time", "metrics", "reason"], rows)
    return f"{table}\n\nsmoke: {verdict}"


def is_perf_metric(name: str, value: Any) -> bool:
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    return numeric and name.endswith(PERF_SUFFIXES)


def perf_metrics(report: Mapping[str, Any]) -> dict[str, float]:
    """``check.metric`` -> value for every performance metric of a report."""
    out: dict[str, float] = {}
    for check in report.get("checks", []):
        for key, value in (check.get("metrics") or {}).items():
            if is_perf_metric(key, value):
                out[f"{check['name']}.{key}"] = float(value)
    return out


def compare(report_a: dict, report_b: dict) -> list[tuple[str, float, float, float]]:
    """(metric, a, b, b/a) for every numeric perf metric present in both reports.

    The ratio is NaN where ``a`` is zero. Rows keep report A's order.
    """
    a_metrics, b_metrics = perf_metrics(report_a), perf_metrics(report_b)
    rows = []
    for name, a in a_metrics.items():
        if name in b_metrics:
            b = b_metrics[name]
            rows.append((name, a, b, b / a if a else float("nan")))
    return rows


def format_compare(rows: Sequence[tuple[str, float, float, float]],
                   label_a: str = "A", label_b: str = "B") -> str:
    """The result of ``compare`` as a table for people."""
    body = [[n, format_value(a), format_value(b), f"{r:.3f}"] for n, a, b, r in rows]
    return format_grid(["metric", label_a, label_b, f"{label_b}/{label_a}"], body)
