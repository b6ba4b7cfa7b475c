"""The free disk an integration pass needs, checked before it starts an engine.

One pass (one engine) fills, at its peak, the engine's data root under .cache (base
images, build cache, the images the tests build) and pytest's temporary folder
(registries, wheel sets, private engines). Running out halfway fails dozens of
tests at once with `no space left on device`; this stops the pass at its start with
one line instead. The figures are the peaks `bench/disk_footprint.py` measured
(bench/RESULTS.md) with a margin. WHEELFORGE_TEST_MIN_FREE_GIB replaces their sum
(0: no check).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from wheelforge.core import settings

GIB = 2**30
NEEDS_GIB = {"cache": 8, "temp": 2}  # .cache (engine data root, base tars), pytest's temp


def _existing(path: Path) -> Path:
    while not path.exists():
        path = path.parent
    return path


def shortfall(places: dict[str, Path], needs: dict[str, float]) -> str | None:
    """One line naming what lacks space, or None. Places on one filesystem add up."""
    by_device: dict[int, list[str]] = {}
    for name, path in places.items():
        by_device.setdefault(os.stat(_existing(path)).st_dev, []).append(name)
    for names in by_device.values():
        need = sum(needs[name] for name in names)
        where = _existing(places[names[0]])
        free = shutil.disk_usage(where).free / GIB
        if free < need:
            paths = " and ".join(str(places[name]) for name in names)
            return (f"{free:.1f} GiB free on the filesystem of {paths}; an integration pass "
                    f"needs about {need:g} GiB there: free some space (stopped engines' data "
                    f"under .cache/engine, old /tmp/pytest-of-* folders), or set "
                    f"WHEELFORGE_TEST_MIN_FREE_GIB (0: no check)")
    return None


def require_free() -> None:
    """Fail the session at its start if the disk cannot hold one integration pass."""
    places = {"cache": settings.CACHE, "temp": Path(tempfile.gettempdir())}
    needs: dict[str, float] = dict(NEEDS_GIB)
    override = os.environ.get("WHEELFORGE_TEST_MIN_FREE_GIB", "").strip()
    if override:
        try:
            total = float(override)
        except ValueError:
            pytest.fail(f"WHEELFORGE_TEST_MIN_FREE_GIB={override!r}: not a number of GiB",
                        pytrace=False)
        if total <= 0:
            return
        share = total / sum(NEEDS_GIB.values())
        needs = {name: gib * share for name, gib in NEEDS_GIB.items()}
    line = shortfall(places, needs)
    if line:
        pytest.fail(line, pytrace=False)
