"""Dependencies go by waves: each target's solve is its own steps and its own cache.

A dependent's `depN` contexts are its dependencies' export folders, built in an
earlier wave (bake.waves), never `target:` contexts: with those, a dependent's solve
held its dependencies' steps too, and a pruned builder importing the registry cache
now and then rebuilt liblz4 inside lz4's job, or failed with "no active sessions".
Each bake is one target (bake.batches): targets baked together shared steps, which
failed with "no active sessions" now and then, and on dockerd 28.5 missed their own
build steps in their own cache imports.
"""

from __future__ import annotations

from pathlib import Path

from wheelforge.build import bake
from wheelforge.core import types
from wheelforge.plan import make_plan

ROOT = Path(__file__).resolve().parents[2]
CACHE = "type=registry,ref=127.0.0.1:5000/wheelforge/cache"


def demo_plan() -> types.Plan:
    return make_plan(types.Inputs(recipes_dir=ROOT / "demo" / "recipes"),
                     channel="stable", cells_glob="*-x86-64-v2-*")


def test_each_wave_needs_only_the_waves_before_it():
    p = demo_plan()
    waves = bake.waves(p)
    assert sorted(t for w in waves for t in w) == sorted(p.builds)
    done: set[str] = set()
    for wave in waves:
        for target in wave:
            assert set(p.builds[target].deps) <= done, target
        done |= set(wave)
    level = {t: i for i, w in enumerate(waves) for t in w}
    by_component = {b.component: b.target for b in p.builds.values()}
    assert level[by_component["lz4"]] > level[by_component["liblz4"]]
    assert level[by_component["lz4"]] > level[by_component["pkgconfig"]]


def test_a_target_reads_its_dependencies_exports_and_only_its_own_cache(tmp_path: Path):
    p = demo_plan()
    options = bake.Options(sources=tmp_path / "src", exports=tmp_path / "exports",
                           cache_from=(CACHE,), cache_to=(CACHE + ",mode=max",))
    for wave in bake.waves(p):
        targets = bake.definition(p, options, wave)["target"]
        assert sorted(targets) == sorted(wave)
        for target, spec in targets.items():
            build = p.builds[target]
            assert not any(v.startswith("target:") for v in spec["contexts"].values())
            assert [spec["contexts"][f"dep{i}"] for i in range(1, len(build.deps) + 1)] == \
                [str(options.exports / d) for d in build.deps]
            assert spec["output"] == [f"type=local,dest={options.exports / target}"]
            assert spec["cache-from"] == bake.cache_specs(build, options)[0]
            assert spec["cache-to"] == bake.cache_specs(build, options)[1]


def test_each_bake_is_one_target_after_its_dependencies():
    p = demo_plan()
    batches = bake.batches(p)
    assert all(len(b) == 1 for b in batches)
    order = [b[0] for b in batches]
    assert sorted(order) == sorted(p.builds)
    for i, target in enumerate(order):
        assert set(p.builds[target].deps) <= set(order[:i]), target
