"""A target imports its dependencies' registry cache entries as well as its own.

A target's solve contains its dependencies' steps (`target:` contexts), and BuildKit
resolves a shared step in whichever job reaches it first, with that job's cache
imports only. Without the dependencies' entries a pruned builder sometimes rebuilt
liblz4 inside lz4's job (and lz4 with it), or failed with "no active sessions".
"""

from __future__ import annotations

from pathlib import Path

from wheelforge import bake
from wheelforge import plan as planning

ROOT = Path(__file__).resolve().parents[2]
CACHE = "type=registry,ref=127.0.0.1:5000/wheelforge/cache"


def test_each_target_imports_every_upstream_entry_and_writes_only_its_own(tmp_path: Path):
    p = planning.make_plan(planning.Inputs(recipes_dir=ROOT / "demo" / "recipes"),
                           channel="stable", cells_glob="*-x86-64-v2-*")
    options = bake.Options(sources=tmp_path, exports=tmp_path, cache_from=(CACHE,),
                           cache_to=(CACHE + ",mode=max",))
    targets = bake.definition(p, options)["target"]
    for build in p.builds.values():
        froms = targets[build.target]["cache-from"]
        own = bake.cache_specs(build, options)[0]
        assert froms[:len(own)] == own  # its own entries first
        assert len(froms) == len(set(froms))
        for dep in bake.upstream(p, build):
            assert f"{CACHE}:{dep}" in froms, (build.target, dep)
        assert targets[build.target]["cache-to"] == bake.cache_specs(build, options)[1]
    lz4 = next(b for b in p.builds.values() if b.component == "lz4")
    assert {p.builds[d].component for d in bake.upstream(p, lz4)} >= {"liblz4", "pkgconfig"}
