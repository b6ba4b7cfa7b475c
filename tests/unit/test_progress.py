"""Live progress: the rawjson parser (recorded builds), heartbeat throttling, step lines."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from wheelforge.build import progress
from wheelforge.core import engine, settings
from wheelforge.core.settings import ROOT
from wheelforge.core.terminal import UserError
from wheelforge.core.types import Build, Plan, Resolved
from wheelforge.recipes.component import load_dir

DATA = Path(__file__).parent / "data"
CELL = "stable-bookworm-py3.11-x86-64-v2-default"
# The targets of the recorded builds (demo recipes: lz4 needs liblz4 and pkgconfig).
LZ4, LIBLZ4, PKGCONFIG = "lz4-35d6151f7cf4", "liblz4-295d981d9aac", "pkgconfig-1d12c5a23cfa"
FAILING = "pkgconfig-5576e1c961b8"
FAILING_STEPS = ('pip install "poetry-core>=1.0.0,<3"',
                 "echo compiling things; definitely-not-a-command --with-args",
                 'python3 -m build --wheel --no-isolation --outdir "$OUT"')


def make_build(target: str, *, steps: tuple[str, ...] = ("true",), deps: tuple[str, ...] = (),
               cells: tuple[str, ...] = (CELL,), recipe_file: str = "",
               step_lines: tuple[int, ...] = ()) -> Build:
    component = target.rsplit("-", 1)[0]
    return Build(component=component, key=target, target=target,
                 recipe_file=recipe_file or f"demo/recipes/{component}.yaml",
                 source=Resolved(kind="path"), build_image="img", runtime_image="img",
                 python="3.11", apt=(), env=(), steps=steps, deps=deps, wheels=(component,),
                 prefix=False, imports=(), runtime=True, archs=(), mem_per_job_gb=1.0,
                 step_lines=step_lines, cells=cells)


def make_plan(*builds: Build) -> Plan:
    cells = sorted({c for b in builds for c in b.cells})
    return Plan(channel="stable", cells=tuple(SimpleNamespace(id=c) for c in cells),
                builds={b.target: b for b in builds},
                cell_targets={c: {b.component: b.target for b in builds if c in b.cells}
                              for c in cells},
                rewrites=(), matrix=None)


def three_builds() -> Plan:
    return make_plan(make_build(LIBLZ4, steps=("1", "2", "3", "4", "5")),
                     make_build(PKGCONFIG, steps=("1", "2")),
                     make_build(LZ4, steps=("1", "2", "3", "4"), deps=(LIBLZ4, PKGCONFIG)))


def replay(name: str, tracker: progress.Tracker) -> dict[str, engine.Vertex]:
    """Feed a recorded `buildx bake --progress=rawjson` output through the engine's reader."""
    stream = io.BytesIO((DATA / name).read_bytes())
    return engine._read_rawjson(stream, lambda v: None, tracker.feed)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def status(target: str, *, started: str | None = None, completed: str | None = None,
           log: str = "", cached: bool = False, error: str = "") -> dict:
    digest = f"sha256:{target}"
    vertex = {"digest": digest, "name": f'[build 1/1] RUN python3 /usr/local/bin/'
                                        f'build-component build "{target}"'}
    for key, value in (("started", started), ("completed", completed), ("cached", cached),
                       ("error", error)):
        if value:
            vertex[key] = value
    out = {"vertexes": [vertex]}
    if log:
        out["logs"] = [{"vertex": digest, "data": base64.b64encode(log.encode()).decode()}]
    return out


# ---- the parser, on recorded builds ----------------------------------------------


def test_recorded_build_gives_each_target_its_span_steps_and_state():
    tracker = progress.Tracker(three_builds(), say=lambda m: None)
    replay("bake-three-builds.rawjson", tracker)
    spans = tracker.spans()
    assert {t: s.state for t, s in spans.items()} == {LIBLZ4: "built", PKGCONFIG: "built",
                                                      LZ4: "built"}
    for span in spans.values():
        assert span.start is not None and span.end is not None and span.end > span.start
    # lz4 can only start once both of its dependencies have finished
    assert spans[LZ4].start >= max(spans[LIBLZ4].end, spans[PKGCONFIG].end)
    assert {t: tracker.step_of(t) for t in spans} == {LIBLZ4: 5, PKGCONFIG: 2, LZ4: 4}


def test_recorded_failure_names_the_failing_build_and_its_step():
    plan = make_plan(make_build(FAILING, steps=FAILING_STEPS))
    tracker = progress.Tracker(plan, say=lambda m: None)
    vertices = replay("bake-failing-step.rawjson", tracker)
    assert tracker.spans()[FAILING].state == "failed"
    assert tracker.step_of(FAILING) == 2
    result = engine.BuildResult(ok=False, vertices=vertices, error="", seconds=0)
    assert result.marked_error().startswith(f"target={FAILING} component=pkgconfig step 2/3")


def test_plain_mode_streams_every_log_line_of_a_build_with_its_component():
    said: list[str] = []
    tracker = progress.Tracker(three_builds(), say=said.append,
                               display=progress.Display(mode="plain"))
    replay("bake-three-builds.rawjson", tracker)
    assert '[lz4] ==> lz4 step 4/4: pip wheel --no-build-isolation --no-deps -w "$OUT" .' in said
    assert any(line.startswith("[liblz4] ==> liblz4: built in ") for line in said)
    assert not any(progress.STEP_MARK in line for line in said)  # markers are ours


def test_log_lines_lose_terminal_control_sequences():
    said: list[str] = []
    plan = make_plan(make_build(PKGCONFIG))
    tracker = progress.Tracker(plan, say=said.append, display=progress.Display(mode="plain"))
    tracker.feed(status(PKGCONFIG, started="2026-01-01T00:00:00Z",
                        log="\x1b[31mred\x1b[0m text\r\nsecond\x07 line\n"))
    assert said == ["[pkgconfig] red text", "[pkgconfig] second line"]


def test_a_line_split_across_log_chunks_is_one_line():
    said: list[str] = []
    plan = make_plan(make_build(PKGCONFIG))
    tracker = progress.Tracker(plan, say=said.append, display=progress.Display(mode="plain"))
    tracker.feed(status(PKGCONFIG, started="2026-01-01T00:00:00Z", log="compil"))
    tracker.feed(status(PKGCONFIG, log="ing foo.c\n"))
    assert said == ["[pkgconfig] compiling foo.c"]


# ---- heartbeat -------------------------------------------------------------------


def test_heartbeat_is_throttled_to_the_interval_and_names_step_time_and_last_line():
    clock, said = Clock(), []
    plan = make_plan(make_build(LIBLZ4, steps=("a", "b", "c")),
                     make_build(PKGCONFIG, cells=(CELL, "other-cell")))
    tracker = progress.Tracker(plan, say=said.append, clock=clock,
                               display=progress.Display(interval=10))
    tracker.feed(status(LIBLZ4, started="2026-01-01T00:00:00Z",
                        log="wheelforge-step: 2/3\n==> liblz4 step 2/3: cc -c lz4.c\n"))
    clock.now += 9.9
    tracker.tick()
    assert said == []
    clock.now += 0.1  # 10 s after the start: the first beat
    tracker.tick()
    assert said == [f"[{CELL}] liblz4: step 2/3, 10s, last: ==> liblz4 step 2/3: cc -c lz4.c"]
    tracker.feed(status(PKGCONFIG, started="2026-01-01T00:00:10Z"))
    clock.now += 5
    tracker.tick()
    assert len(said) == 1  # 5 s after the last beat: nothing
    clock.now += 146
    tracker.tick()
    assert said[1:] == [f"[{CELL}] liblz4: step 2/3, 2m41s, last: ==> liblz4 step 2/3: cc -c "
                        f"lz4.c", f"[{CELL} +1] pkgconfig: starting, 2m31s, last: -"]
    tracker.feed(status(LIBLZ4, completed="2026-01-01T00:03:00Z"))
    tracker.feed(status(PKGCONFIG, error="exit code: 1"))
    clock.now += 60
    tracker.tick()
    assert len(said) == 3  # nothing runs any more: no line


def test_heartbeat_cuts_long_lines_and_plain_mode_has_none():
    clock, said = Clock(), []
    plan = make_plan(make_build(LIBLZ4))
    tracker = progress.Tracker(plan, say=said.append, clock=clock,
                               display=progress.Display(interval=1))
    tracker.feed(status(LIBLZ4, started="2026-01-01T00:00:00Z", log="x" * 500 + "\n"))
    clock.now += 1
    tracker.tick()
    assert len(said) == 1 and said[0].endswith("x" * (progress.LAST_CHARS - 3) + "...")
    plain = progress.Tracker(plan, say=said.append, clock=clock,
                             display=progress.Display(mode="plain", interval=1))
    plain.feed(status(LIBLZ4, started="2026-01-01T00:00:00Z"))
    said.clear()
    clock.now += 100
    plain.tick()
    assert said == []


def test_display_from_the_runs_settings_an_option_over_the_environment():
    s = progress.Display.of(settings.current({"WHEELFORGE_PROGRESS": "plain",
                                              "GITHUB_ACTIONS": "true",
                                              "WHEELFORGE_HEARTBEAT_SECONDS": "2.5"}))
    assert (s.mode, s.interval, s.github) == ("plain", 2.5, True)
    assert progress.Display.of(settings.current({})) == progress.Display()
    run = settings.current({"WHEELFORGE_PROGRESS": "auto"},
                           options={"WHEELFORGE_PROGRESS": "plain"})
    assert progress.Display.of(run).mode == "plain"
    assert "setting: WHEELFORGE_PROGRESS = plain (option --progress)" in run.lines()
    with pytest.raises(UserError, match="--progress fancy: choose auto or plain"):
        progress.Display.of(settings.current({}, options={"WHEELFORGE_PROGRESS": "fancy"}))
    for bad in ("0", "-3", "soon", "nan", "inf"):
        with pytest.raises(UserError, match="WHEELFORGE_HEARTBEAT_SECONDS"):
            progress.Display.of(settings.current({"WHEELFORGE_HEARTBEAT_SECONDS": bad}))


@pytest.mark.parametrize(("seconds", "text"), [(0, "0s"), (59.9, "59s"), (151, "2m31s"),
                                               (3725, "1h02m")])
def test_duration(seconds, text):
    assert progress.duration(seconds) == text


# ---- a failing step's file:line ------------------------------------------------------


def test_failing_step_maps_to_its_recipe_line_and_annotates_under_github_actions(tmp_path):
    recipes = write_failing_set(tmp_path)
    recipe = load_dir(recipes, display_root=tmp_path, extra_variables=frozenset())["pkgconfig"]
    assert recipe.step_lines == (8, 9, 10)
    build = make_build(FAILING, steps=recipe.steps, recipe_file=recipe.file,
                       step_lines=recipe.step_lines)
    message = ("component=pkgconfig step 2/3 exited 127: echo compiling things; "
               "definitely-not-a-command --with-args")
    out: list[str] = []
    where = progress.failure_where(build, message, display=progress.Display(github=True),
                                   emit=out.append)
    assert where == "recipes/pkgconfig.yaml:9"
    assert out == ["::error file=recipes/pkgconfig.yaml,line=9::pkgconfig: " + message]
    out.clear()
    assert progress.failure_where(build, "exited 1", step=3, display=progress.Display(),
                                  emit=out.append) == "recipes/pkgconfig.yaml:10"
    assert out == []  # not under GitHub Actions: no annotation


def write_failing_set(tmp_path: Path) -> Path:
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    (recipes / "pkgconfig.yaml").write_text((DATA / "pkgconfig-failing.yaml").read_text())
    return recipes


def test_a_build_without_step_lines_names_its_file_only():
    build = make_build(FAILING, steps=FAILING_STEPS, recipe_file="elsewhere/pkgconfig.yaml")
    assert progress.failure_where(build, "step 2/3 exited 1", display=progress.Display(),
                                  emit=print) == "elsewhere/pkgconfig.yaml"


def test_step_lines_of_the_demo_recipes_point_at_their_steps():
    recipes = load_dir(ROOT / "demo" / "recipes", display_root=ROOT, extra_variables=frozenset())
    recipe = recipes["liblz4"]
    assert recipe.file == "demo/recipes/liblz4.yaml"
    lines = recipe.step_lines
    text = (ROOT / recipe.file).read_text().splitlines()
    assert len(lines) == len(recipe.steps) > 1
    for line, step in zip(lines, recipe.steps, strict=True):  # `- step` or `- >-` above it
        assert text[line - 1].lstrip().startswith("- ")
        assert step.split()[0] in " ".join(text[line - 1:line + 1])


def test_annotation_escapes_workflow_command_characters():
    assert progress.annotation("a,b:c.yaml", 7, "100% broken\nsee above") == \
        "::error file=a%2Cb%3Ac.yaml,line=7::100%25 broken%0Asee above"
    assert progress.annotation("r.yaml", None, "x") == "::error file=r.yaml::x"


def test_a_build_never_shown_was_a_cache_hit_only_when_the_bake_succeeded():
    plan = make_plan(make_build(LIBLZ4), make_build(PKGCONFIG))
    for ok, state in ((True, "cached"), (False, "pending")):
        tracker = progress.Tracker(plan, say=lambda m: None)
        tracker.feed(status(LIBLZ4, started="2026-01-01T00:00:00Z",
                            completed="2026-01-01T00:00:05Z"))
        tracker.finish(ok)
        spans = tracker.spans()
        assert (spans[LIBLZ4].state, spans[LIBLZ4].seconds) == ("built", 5)
        assert (spans[PKGCONFIG].state, spans[PKGCONFIG].start) == (state, None)


def test_the_image_builds_phases_are_read_from_its_marks():
    """Dockerfile.clean's step prints `wheelforge-phase: NAME TIME` as each part begins; the
    profile is the time from one mark to the next, and a line that only looks like one is
    not a mark."""
    step = engine.Vertex("d", logs=[
        "wheelforge-phase: checks 100.0", "noise", "wheelforge-phase: venv 100.5",
        "wheelforge-phase: pip-install not-a-time", "wheelforge-phase: pip-install 102.25",
        # a lane beside the others: its marks come out when it is waited for
        "wheelforge-phase: audits/gpu-audit 100.5", "wheelforge-phase: audits/end 101.5",
        "wheelforge-phase: end 103.0"])
    result = engine.BuildResult(ok=True, vertices={"d": step}, error="", seconds=3)
    assert result.phases() == {"checks": 0.5, "venv": 1.75, "pip-install": 0.75,
                               "audits/gpu-audit": 1.0}
    assert engine.BuildResult(ok=True, vertices={}, error="", seconds=0).phases() == {}
    text = (ROOT / "docker" / "Dockerfile.clean").read_text()
    assert {"audits/gpu-audit", "audits/link-audit", "audits/end", "audits-wait",
            "pip-install", "import-checks", "end"} <= set(re.findall(r"phase ([a-z/-]+)", text))
