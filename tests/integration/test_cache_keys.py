"""Registry cache per build key: variants never overwrite each other; MAX_JOBS is no key."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import ROOT, copy_recipes
from wheelforge import cli
from wheelforge.build import bake, build_sets
from wheelforge.core import rootfs, types, wheelset
from wheelforge.core.engine import docker
from wheelforge.plan import fetch, make_plan
from wheelforge.publish.registry import Registry

pytestmark = pytest.mark.integration
VARIANTS = {"a": "flavor-a", "b": "flavor-b"}
CELL = "stable-bookworm-py3.11-x86-64-v2-{}"


def two_variant_recipes(dest: Path) -> Path:
    """The demo set with two variants whose variable reaches pkgconfig's environment."""
    recipes = copy_recipes(dest, {"pkgconfig.yaml": (
        "steps:\n", 'env:\n  FLAVOR: "{flavor}"\nsteps:\n')})
    text = (recipes / "matrix.yaml").read_text()
    old = text[text.index("variants:"):text.index("repository:")]
    new = "variants:\n" + "".join(f"  {v}:\n    vars: {{flavor: {f}}}\n"
                                  for v, f in VARIANTS.items()) + "\n"
    (recipes / "matrix.yaml").write_text(text.replace(old, new))
    return recipes


def build(recipes: Path, variant: str, out: Path, **options) -> tuple[types.Build, list]:
    p = make_plan(types.Inputs(recipes_dir=recipes, only=("pkgconfig",)),
                  channel="stable", cells_glob=CELL.format(variant))
    opts = bake.Options(sources=ROOT / ".cache" / "sources", exports=out / "exports",
                        ca_bundle=cli.ca_bundle_path("auto"), **options)
    rows = build_sets(p, opts, out_root=out / "wheels")
    (only,) = p.builds.values()
    return only, rows


def wheel_sha(out: Path, variant: str) -> dict[str, str]:
    manifest = wheelset.read_manifest(out / "wheels" / CELL.format(variant))
    return {w["file"]: w["sha256"] for c in manifest["components"].values() for w in c["wheels"]}


@pytest.mark.prunes_cache
def test_variants_built_in_parallel_keep_their_own_registry_cache(engine, registry,
                                                                  tmp_path: Path) -> None:
    fetch.make_repos()
    recipes = two_variant_recipes(tmp_path / "recipes")
    repo = "wheelforge/cache"
    cache = f"{registry.host}/{repo}"
    plan = make_plan(types.Inputs(recipes_dir=recipes, only=("pkgconfig",)),
                     channel="stable", cells_glob=CELL.format("a"))
    # fetched and imported once, before the two builds start (two `docker import`s of one
    # root at once would make two base images, each with its own digest and cache chain)
    rootfs.ensure_images({b.build_image for b in plan.builds.values()})
    for b in plan.builds.values():
        fetch.fetch(ROOT / ".cache" / "sources", b, rewrites=plan.rewrites)
    with ThreadPoolExecutor(max_workers=2) as pool:  # two CI jobs at once, one registry
        futures = {v: pool.submit(build, recipes, v, tmp_path / f"first-{v}", max_jobs=1,
                                  cache_registry=cache) for v in VARIANTS}
        first = {v: f.result() for v, f in futures.items()}
    (a, _), (b, _) = first["a"], first["b"]
    assert a.key != b.key
    reg = Registry(registry.host)
    tags = {f"{repo}:{t}" for t in reg.tags(repo)}
    tags |= {f"{repo}/{bake.FALLBACK_REPO}:{t}" for t in reg.tags(f"{repo}/{bake.FALLBACK_REPO}")}
    mine = {v: {f"{repo}:{bake.cache_tags(first[v][0])[0]}",
                f"{repo}/{bake.FALLBACK_REPO}:{bake.cache_tags(first[v][0])[1]}"}
            for v in VARIANTS}
    assert mine["a"] <= tags and mine["b"] <= tags
    assert not mine["a"] & mine["b"]  # no tag is written by both
    assert reg.resolve(repo, a.target) != reg.resolve(repo, b.target)
    # MAX_JOBS was decided on the builder, not by the client: the build says how
    info = json.loads((tmp_path / "first-a" / "exports" / a.target / "pkgconfig" /
                       "build-info.json").read_text())
    assert info["max_jobs"] == 1 and info["max_jobs_from"] == "--max-jobs"

    # the engine here is this run's own or a private one (see the prunes_cache marker)
    proc = docker(["buildx", "prune", "-af"], check=False)
    assert proc.returncode == 0, proc.stderr
    for v in VARIANTS:  # a fresh builder, another client-side --max-jobs: all from the registry
        again, rows = build(recipes, v, tmp_path / f"again-{v}", max_jobs=5,
                            cache_registry=cache)
        assert again.key == first[v][0].key
        assert [(r.component, r.cached) for r in rows] == [("pkgconfig", True)], rows
        assert wheel_sha(tmp_path / f"again-{v}", v) == wheel_sha(tmp_path / f"first-{v}", v)
