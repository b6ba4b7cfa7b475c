"""bake's file-system entitlements: exactly the paths a definition uses, nothing broader."""

from __future__ import annotations

from pathlib import Path

from wheelforge.build import _is_build_step, bake
from wheelforge.core import engine, types
from wheelforge.plan import make_plan

ROOT = Path(__file__).resolve().parents[2]


def test_versions_are_read_from_each_way_buildx_prints_them() -> None:
    assert engine.parse_version("github.com/docker/buildx 0.13.1+ds1 0.13.1+ds1-3") == (0, 13, 1)
    assert engine.parse_version("github.com/docker/buildx v0.29.1 a1b2c3") == (0, 29, 1)
    assert engine.parse_version("buildx 0.20") == (0, 20)
    assert engine.parse_version("no version") == ()
    assert (0, 19, 0) >= engine.BAKE_FS_ENTITLEMENTS > (0, 13, 1)


def test_each_local_path_is_granted_by_name_and_nothing_else() -> None:
    definition = {"target": {"a": {
        "context": "/repo",
        "contexts": {"src": "/sources/a", "dep1": "target:b", "img": "docker-image://x:1"},
        "secret": ["id=ca-bundle,src=/etc/ca.pem", "id=pip-index-url,env=IDX"],
        "output": ["type=local,dest=/out/a"],
        "cache-from": ["type=registry,ref=r/c:a", "type=local,src=/cache/a"],
        "cache-to": ["type=local,dest=/cache/a-new,mode=max"],
    }, "b": {"context": "/repo", "output": ["type=cacheonly"]}}}
    assert engine.fs_entitlements(definition) == [
        "--allow=fs.read=/cache/a", "--allow=fs.read=/etc/ca.pem", "--allow=fs.read=/repo",
        "--allow=fs.read=/sources/a", "--allow=fs.write=/cache/a-new",
        "--allow=fs.write=/out/a"]


def test_the_demo_plan_asks_for_its_folders_only(tmp_path: Path) -> None:
    p = make_plan(types.Inputs(recipes_dir=ROOT / "demo" / "recipes"),
                  channel="stable", cells_glob=None)
    options = bake.Options(sources=tmp_path / "src", exports=tmp_path / "exports")
    flags = engine.fs_entitlements(bake.definition(p, options))
    assert f"--allow=fs.read={ROOT}" in flags
    for flag in flags:
        kind, path = flag.removeprefix("--allow=").split("=", 1)
        assert kind in ("fs.read", "fs.write") and Path(path).is_absolute()
        assert path == str(ROOT) or path.startswith(str(tmp_path)), flag
    assert not [f for f in flags if f.endswith(("=/", "=*")) or "fs=" in f]


def test_a_shared_dependency_step_is_named_by_itself_not_by_who_reported_it() -> None:
    """bake reports a dependency's step under each dependent's prefix, in no fixed order."""
    import io
    import json


    run = 'RUN --mount=type=bind,from=src,target=/src python3 build-component build'
    events = [
        {"vertexes": [{"digest": "sha256:dep", "name": f'[liblz4-a1 build 1/1] {run} "liblz4-a1"',
                       "cached": True, "completed": "2026-11-24T00:00:01Z"}]},
        {"vertexes": [{"digest": "sha256:own", "name": f'[lz4-b2 build 1/1] {run} "lz4-b2"',
                       "cached": True, "completed": "2026-11-24T00:00:02Z"}]},
        {"vertexes": [{"digest": "sha256:dep", "name": f'[lz4-b2 build 1/1] {run} "liblz4-a1"',
                       "completed": "2026-11-24T00:00:03Z"}]},
        {"vertexes": [{"digest": "sha256:img", "name": "[lz4-b2] resolve image config"}]},
    ]
    stream = io.BytesIO("".join(json.dumps(e) + "\n" for e in events).encode())
    vertices = engine._read_rawjson(stream, lambda v: None, prefixes=["lz4-b2", "liblz4-a1"])
    assert vertices["sha256:dep"].name == f'[build 1/1] {run} "liblz4-a1"'
    assert vertices["sha256:img"].name == "resolve image config"
    steps = [v.digest for v in vertices.values() if _is_build_step(v, "lz4-b2")]
    assert steps == ["sha256:own"]
    assert vertices["sha256:dep"].cached  # once reported cached, it stays so


def test_a_step_abandoned_in_a_good_build_is_a_hit_and_a_failed_build_keeps_errors(
        tmp_path) -> None:
    """After a registry-cache import BuildKit may find a target's last step in the cache
    and cancel the steps below it ("context canceled"): in a build that succeeds that is
    no rebuild. A build that fails keeps every error as it was."""
    import json

    events = [
        {"vertexes": [{"digest": "sha256:run", "name": "[build 1/1] RUN x"}]},
        {"vertexes": [{"digest": "sha256:run", "name": "[build 1/1] RUN x",
                       "started": "2026-11-24T05:15:43Z", "completed": "2026-11-24T05:15:43Z",
                       "error": "context canceled: context canceled"}]},
        {"vertexes": [{"digest": "sha256:copy", "name": "[export 1/1] COPY", "cached": True,
                       "started": "2026-11-24T00:00:00Z", "completed": "2026-11-24T00:00:01Z"}]},
        {"vertexes": [{"digest": "sha256:real", "name": "[build 1/1] RUN y",
                       "started": "2026-11-24T00:00:00Z", "completed": "2026-11-24T00:00:09Z"}]},
    ]
    script = tmp_path / "fake-docker"
    feed = tmp_path / "events.json"
    feed.write_text("".join(json.dumps(e) + "\n" for e in events))
    script.write_text(f"#!/bin/sh\ncat {feed}\nexit ${{FAKE_EXIT:-0}}\n")
    script.chmod(0o755)
    old = engine.DOCKER
    engine.DOCKER = str(script)
    try:
        good = engine.run_build(["bake"])
        bad = engine.run_build(["bake"], env={"FAKE_EXIT": "1"})
    finally:
        engine.DOCKER = old
    assert good.ok and good.vertices["sha256:run"].cached
    assert good.vertices["sha256:run"].error == ""
    assert good.vertices["sha256:copy"].cached and not good.vertices["sha256:real"].cached
    assert not bad.ok and "context canceled" in bad.vertices["sha256:run"].error
    assert not bad.vertices["sha256:run"].cached
