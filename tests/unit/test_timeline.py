"""The build timeline: critical path, one bar per component and cell, a self-contained page."""

from __future__ import annotations

import datetime as _dt
from html.parser import HTMLParser

from tests.unit.test_progress import (
    CELL,
    LIBLZ4,
    LZ4,
    PKGCONFIG,
    make_build,
    make_plan,
    replay,
    three_builds,
)
from wheelforge.build import progress
from wheelforge.build.progress import Span

WHEN = _dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=_dt.UTC)


class Page(HTMLParser):
    """Every start tag with its attributes, and the text."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def bars(self) -> list[dict]:
        return [a for t, a in self.tags if t == "rect" and "bar" in a.get("class", "").split()]


def span(target: str, start: float | None, end: float | None, state: str = "built") -> Span:
    return Span(target=target, start=start, end=end, state=state)


def diamond():
    """a (10 s) and b (3 s) both feed c (1 s); d (2 s) stands alone; c is in two cells."""
    a, b = make_build("a-1"), make_build("b-1")
    c = make_build("c-1", deps=("a-1", "b-1"), cells=(CELL, "other"))
    d = make_build("d-1", cells=("other",))
    return make_plan(a, b, c, d), {"a-1": span("a-1", 100, 110), "b-1": span("b-1", 100, 103),
                                   "c-1": span("c-1", 110, 111), "d-1": span("d-1", 100, 102)}


def test_critical_path_is_the_chain_with_the_largest_total_build_time():
    plan, spans = diamond()
    assert progress.critical_path(plan, spans) == ["a-1", "c-1"]
    spans["b-1"] = span("b-1", 100, 115)
    assert progress.critical_path(plan, spans) == ["b-1", "c-1"]
    spans["d-1"] = span("d-1", 100, 200)
    assert progress.critical_path(plan, spans) == ["d-1"]


def test_nothing_built_has_no_critical_path():
    plan, _ = diamond()
    assert progress.critical_path(plan, {}) == []


def test_one_bar_per_component_and_cell_relative_to_the_first_start():
    plan, spans = diamond()
    rows, total = progress.bars(plan, spans)
    assert total == 11
    assert sorted((b.component, b.cell) for b in rows) == sorted(
        [("a", CELL), ("b", CELL), ("c", CELL), ("c", "other"), ("d", "other")])
    c = [b for b in rows if b.component == "c"]
    assert {(b.start, b.end, b.critical) for b in c} == {(10, 11, True)}


def test_page_is_self_contained_with_a_coloured_bar_per_component_and_cell():
    plan, spans = diamond()
    spans["b-1"] = span("b-1", 100, 100.1, "cached")
    spans["d-1"] = span("d-1", 100, 101, "failed")
    page = progress.render(plan, spans, when=WHEN)
    parsed = Page(page)
    bars = parsed.bars()
    assert sorted((b["data-component"], b["data-cell"]) for b in bars) == sorted(
        [("a", CELL), ("b", CELL), ("c", CELL), ("c", "other"), ("d", "other")])
    fill = {(b["data-component"], b["data-cell"]): b["fill"] for b in bars}
    assert fill[("a", CELL)] == progress.COLOURS["built"]
    assert fill[("b", CELL)] == progress.COLOURS["cached"]
    assert fill[("d", "other")] == progress.COLOURS["failed"]
    critical = {(b["data-component"], b["data-cell"]) for b in bars
                if b.get("stroke") == progress.CRITICAL}
    assert critical == {("a", CELL), ("c", CELL), ("c", "other")}
    text = " ".join(parsed.text)
    for words in ("cache hit", "failed", "critical path", "critical path 11s: a \u2192 c",
                  "2026-01-02 03:04:05 UTC", "failed: d [other]", "0:00", "0:10"):
        assert words in text
    # nothing is fetched: no script, no link, no image, no URL but the SVG namespace
    assert not [t for t, _ in parsed.tags if t in ("script", "link", "img", "iframe")]
    assert "url(" not in page
    assert page.count("http") == page.count('xmlns="http://www.w3.org/2000/svg"') == 1


def test_builds_that_never_ran_still_get_their_row():
    plan, spans = diamond()
    del spans["c-1"]
    bars = Page(progress.render(plan, spans, when=WHEN)).bars()
    pending = [b for b in bars if b["data-component"] == "c"]
    assert len(pending) == 2 and {b["fill"] for b in pending} == {progress.COLOURS["pending"]}


def test_names_are_escaped():
    plan = make_plan(make_build("x<b>-1"))
    page = progress.render(plan, {"x<b>-1": span("x<b>-1", 0, 1)}, when=WHEN)
    assert "<b>" not in page and "x&lt;b&gt;" in page


def test_timeline_of_a_recorded_build():
    tracker = progress.Tracker(three_builds(), say=lambda m: None)
    replay("bake-three-builds.rawjson", tracker)
    plan = three_builds()
    spans = tracker.spans()
    path = progress.critical_path(plan, spans)
    assert path[-1] == LZ4 and path[0] in (LIBLZ4, PKGCONFIG)
    bars = Page(progress.render(plan, spans, when=WHEN)).bars()
    assert len(bars) == 3 and all(float(b["width"]) > 3 for b in bars)


def test_write_keeps_a_dated_file_and_the_latest_copy(tmp_path):
    first = progress.write(tmp_path, "<p>one</p>", when=WHEN)
    later = WHEN + _dt.timedelta(minutes=1)
    second = progress.write(tmp_path, "<p>two</p>", when=later)
    assert first.name == "timeline-20260102T030405Z.html"
    assert second.name == "timeline-20260102T030505Z.html"
    assert first.read_text() == "<p>one</p>"
    assert (tmp_path / "timeline.html").read_text() == "<p>two</p>"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "timeline-20260102T030405Z.html", "timeline-20260102T030505Z.html", "timeline.html"]


def test_only_the_newest_dated_timelines_are_kept(tmp_path):
    (tmp_path / "stable-cell").mkdir()  # a wheel set beside them is never touched
    for minute in range(progress.KEEP + 3):
        progress.write(tmp_path, f"<p>{minute}</p>", when=WHEN + _dt.timedelta(minutes=minute))
    dated = sorted(tmp_path.glob("timeline-*Z.html"))
    assert len(dated) == progress.KEEP
    assert dated[0].read_text() == "<p>3</p>"
    assert (tmp_path / "timeline.html").read_text() == f"<p>{progress.KEEP + 2}</p>"
    assert (tmp_path / "stable-cell").is_dir()
    assert not list(tmp_path.glob(".timeline-*"))  # no temporary file left
