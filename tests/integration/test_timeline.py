"""The build timeline and live progress of real builds, seen in a real headless browser."""

from __future__ import annotations

import re
import struct
import subprocess
import uuid
import zlib
from pathlib import Path

import pytest

from tests.conftest import CELLS, DEMO, _require, run_invoke
from tests.unit.test_timeline import Page
from wheelforge.build import progress

pytestmark = pytest.mark.integration


def screenshot(page: Path, out: Path, profile: Path) -> Path:
    _require("chromium")
    proc = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={profile}", f"--screenshot={out}",
         "--window-size=1400,900", page.resolve().as_uri()],
        capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 0 and out.is_file(), proc.stderr[-2000:]
    return out


def png_colours(path: Path) -> dict[tuple[int, int, int], int]:
    """Pixel count of each RGB colour of an 8-bit RGB/RGBA PNG (standard library only)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour_type = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and colour_type in (2, 6), (depth, colour_type)
            bpp = 3 if colour_type == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw, stride = zlib.decompress(idat), width * bpp
    prev, counts = bytearray(stride), {}
    for y in range(height):
        row = y * (stride + 1)
        kind, line = raw[row], bytearray(raw[row + 1:row + 1 + stride])
        if kind == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 255
        elif kind == 2:
            line = bytearray((a + b) & 255 for a, b in zip(line, prev, strict=True))
        elif kind == 3:
            for i in range(stride):
                line[i] = (line[i] + ((line[i - bpp] if i >= bpp else 0) + prev[i]) // 2) & 255
        elif kind == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b, c = prev[i], prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        for x in range(0, stride, bpp):
            rgb = (line[x], line[x + 1], line[x + 2])
            counts[rgb] = counts.get(rgb, 0) + 1
        prev = line
    return counts


def rgb(colour: str) -> tuple[int, int, int]:
    return tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))


def test_each_build_writes_a_timeline_with_a_bar_per_component_and_cell(demo_build, tmp_path):
    latest = demo_build.out / "timeline.html"
    dated = sorted(demo_build.out.glob("timeline-*Z.html"))
    assert latest.is_file() and dated and dated[-1].read_text() == latest.read_text()
    page = Page(latest.read_text())
    bars = page.bars()
    expected = {(component, cell) for cell in CELLS
                for component in demo_build.plan.cell_targets[cell]}
    assert sorted((b["data-component"], b["data-cell"]) for b in bars) == sorted(expected)
    assert all(b["class"].split()[1] in ("built", "cached") for b in bars)
    # the critical path is outlined where anything took build time (a run served wholly
    # from a warm cache, as on the second engine of `make test`, has none to show)
    built = any(b["class"].split()[1] == "built" for b in bars)
    assert any(b.get("stroke") == progress.CRITICAL for b in bars) == built

    png = screenshot(latest, tmp_path / "timeline.png", tmp_path / "profile")
    colours = png_colours(png)
    assert len(colours) > 50  # text, anti-aliasing, bars: not a blank page
    for state in {b["class"].split()[1] for b in bars}:  # every bar colour shows, large:
        # at least half the area its bars and legend swatch are filled with (inside a
        # critical-path outline, 3 px wide), so narrow bars count for what they are
        area = 16 * 12 + sum(
            max(0.0, float(b["width"]) - (3 if b.get("stroke") else 0))
            * max(0.0, float(b["height"]) - (3 if b.get("stroke") else 0))
            for b in bars if b["class"].split()[1] == state)
        assert colours.get(rgb(progress.COLOURS[state]), 0) >= area / 2, (state, area)
    for colour in (*progress.COLOURS.values(), progress.CRITICAL):  # and the legend
        assert colours.get(rgb(colour), 0) > 50, colour


def test_a_failing_step_names_its_recipe_line_beats_while_it_runs_and_annotates(tmp_path):
    recipe = tmp_path / "msgpack-numpy.yaml"
    text = (DEMO / "msgpack-numpy.yaml").read_text()
    assert "steps:\n" in text
    recipe.write_text(text.replace("steps:\n", "steps:\n  - echo waiting; sleep 6\n"
                                               "  - echo about to fail; false\n"))
    line = recipe.read_text().splitlines().index("  - echo about to fail; false") + 1
    proc = run_invoke("wheels", "--recipes", str(DEMO), "--recipe", f"msgpack-numpy={recipe}",
                      "--channel", "stable", "--cells", CELLS[0],
                      env={"WHEELFORGE_WHEELS": str(tmp_path / "wheels"),
                           "WHEELFORGE_HEARTBEAT_SECONDS": "1", "GITHUB_ACTIONS": "true",
                           "WHEELFORGE_PROGRESS": ""})
    assert proc.returncode == 1, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: wheels: build failed: component=msgpack-numpy step 2/3 "
                           "exited 1: echo about to fail; false"), last
    assert f"[{recipe}:{line}; cells: {CELLS[0]}" in last
    assert "Traceback" not in proc.stderr
    escaped = str(recipe).replace(":", "%3A").replace(",", "%2C")
    assert (f"::error file={escaped},line={line}::msgpack-numpy: component=msgpack-numpy "
            f"step 2/3 exited 1: echo about to fail; false") in proc.stdout.splitlines()
    beats = [ln for ln in proc.stderr.splitlines()
             if re.fullmatch(rf"\[{CELLS[0]}\] msgpack-numpy: step 1/3, \d+s, last: .*", ln)]
    assert beats, proc.stderr[-3000:]
    assert beats[-1].endswith(", last: waiting")
    page = Page((tmp_path / "wheels" / "timeline.html").read_text())
    failed = [b for b in page.bars() if "failed" in b["class"].split()]
    assert [(b["data-component"], b["data-cell"]) for b in failed] == [("msgpack-numpy",
                                                                        CELLS[0])]
    assert not (tmp_path / "wheels" / CELLS[0]).exists()


def test_progress_plain_streams_the_build_log(tmp_path):
    recipe = tmp_path / "pkgconfig.yaml"
    nonce = f"streamed-{uuid.uuid4().hex}"  # a step no cache has seen: the build runs
    recipe.write_text((DEMO / "pkgconfig.yaml").read_text().replace(
        "steps:\n", f"steps:\n  - echo {nonce}\n"))
    proc = run_invoke("wheels", "--recipes", str(DEMO), "--recipe", f"pkgconfig={recipe}",
                      "--channel", "stable", "--cells", CELLS[0], "--only", "pkgconfig",
                      "--progress", "plain", env={"WHEELFORGE_WHEELS": str(tmp_path / "wheels"),
                                                  "WHEELFORGE_HEARTBEAT_SECONDS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stderr.splitlines()
    assert f"[pkgconfig] {nonce}" in lines  # the build's own output, with its component
    assert f"[pkgconfig] ==> pkgconfig step 1/3: echo {nonce}" in lines
    assert not [ln for ln in lines if re.match(r"\[\S+\] pkgconfig: step \d", ln)]  # no beats
    assert re.search(r"^timeline: .*timeline-\d{8}T\d{6}Z\.html", proc.stderr, re.M)
