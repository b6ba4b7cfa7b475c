"""The bake definition: one target per build of the plan, wired 1:1, secrets by reference only."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.unit.conftest import PIN_A, PIN_B, ROOT, SHA256, git_recipe, make_plan, write_set
from wheelforge.build import bake
from wheelforge.core import types
from wheelforge.core.terminal import UserError

CA_CONTENT = "-----BEGIN CERTIFICATE-----\nTHE-CA-BUNDLE-CONTENT\n-----END CERTIFICATE-----\n"
INDEX_SECRET = "https://user:s3cr3t-token@pypi.example.invalid/simple"


def recipes() -> dict:
    """llvm (prefix only) <- fly (arch-dependent, `${`/`%{` in a step) <- app -> torch, msg."""
    return {
        "llvm": git_recipe("llvm", PIN_A, outputs={"prefix": True}, runtime=False,
                           mem_per_job_gb=4),
        "fly": git_recipe("fly", PIN_B, depends=["llvm"], env={"ARCH": "{archs}"},
                          steps=["echo ${HOME} %{x} $OUT", "make"], mem_per_job_gb=0.5),
        "torch": {"name": "torch",
                  "source": {"index": "https://download.example.invalid/whl",
                             "packages": ["torch==2.11.0", "torchvision==0.26.0"]},
                  "steps": ['pip download --no-deps --dest "$OUT" $PACKAGES'],
                  "outputs": {"wheels": ["torch", "torchvision"]}},
        "msg": {"name": "msg",
                "source": {"sdist": "msg", "version": "1.1.0", "sha256": SHA256},
                "steps": ["pip wheel -w $OUT ."], "outputs": {"wheels": ["msg"]}},
        "app": git_recipe("app", PIN_A, depends=["fly", "torch", "msg"]),
    }


@pytest.fixture
def plan(tmp_path: Path) -> types.Plan:
    return make_plan(write_set(tmp_path / "recipes", recipes()), cells="*gfx942-ckfree")


@pytest.fixture
def options(tmp_path: Path) -> bake.Options:
    return bake.Options(sources=tmp_path / "sources", exports=tmp_path / "exports")


def targets_by_component(plan: types.Plan, definition: dict) -> dict[str, dict]:
    return {plan.builds[t].component: spec for t, spec in definition["target"].items()}


# --- shape ------------------------------------------------------------------------------------

def test_one_target_per_build(plan: types.Plan, options: bake.Options):
    definition = bake.definition(plan, options)
    assert list(definition["target"]) == list(plan.builds)
    assert definition["group"]["default"]["targets"] == list(plan.builds)
    for target in definition["target"].values():
        assert target["dockerfile"] == "docker/Dockerfile.wheels"
        assert target["target"] == "export"
        assert target["context"] == str(ROOT)
    json.dumps(definition)  # bake reads it as JSON


def test_dependencies_are_their_export_folders(plan: types.Plan, options: bake.Options):
    by = targets_by_component(plan, bake.definition(plan, options))
    targets = plan.cell_targets[plan.cells[0].id]
    app = by["app"]["contexts"]
    assert {k: v for k, v in app.items() if k.startswith("dep")} == {
        "dep1": str(options.exports / targets["fly"]),
        "dep2": str(options.exports / targets["torch"]),
        "dep3": str(options.exports / targets["msg"])}
    assert by["fly"]["contexts"]["dep1"] == str(options.exports / targets["llvm"])
    assert not [k for k in by["llvm"]["contexts"] if k.startswith("dep")]


def test_source_contexts(plan: types.Plan, options: bake.Options):
    by = targets_by_component(plan, bake.definition(plan, options))
    assert by["fly"]["contexts"]["src"] == str(options.sources / f"fly-git-{PIN_B[:16]}")
    assert by["msg"]["contexts"]["src"] == str(options.sources / f"msg-1.1.0-{SHA256[:12]}")
    assert "src" not in by["torch"]["contexts"]  # wheels from an index: nothing to fetch


def test_outputs(plan: types.Plan, options: bake.Options):
    by = targets_by_component(plan, bake.definition(plan, options))
    # every target, a prefix-only one too: its dependents read the export folder
    for name in ("llvm", "fly", "torch", "msg", "app"):
        target = plan.cell_targets[plan.cells[0].id][name]
        assert by[name]["output"] == [f"type=local,dest={options.exports / target}"]


def test_args_and_spec(plan: types.Plan, options: bake.Options):
    by = targets_by_component(plan, bake.definition(plan, options))
    args = by["torch"]["args"]
    assert args["BUILD_IMAGE"] == "example.invalid/build:1"
    assert args["APT_PACKAGES"] == "git"
    assert args["TARGET"] == plan.cell_targets[plan.cells[0].id]["torch"]
    spec = json.loads(args["SPEC"])
    assert spec["env"] == {"INDEX_URL": "https://download.example.invalid/whl",
                           "PACKAGES": "torch==2.11.0 torchvision==0.26.0"}
    assert spec["wheels"] == ["torch", "torchvision"]
    assert json.loads(by["fly"]["args"]["SPEC"].replace("$${", "${").replace("%%{", "%{"))[
        "env"] == {"ARCH": "gfx942"}


def test_bake_interpolation_is_escaped(plan: types.Plan, options: bake.Options):
    definition = bake.definition(plan, options)
    by = targets_by_component(plan, definition)
    spec_text = by["fly"]["args"]["SPEC"]
    assert "$${HOME}" in spec_text and "%%{x}" in spec_text
    text = json.dumps(definition)
    assert not re.search(r"(?<!\$)\$\{", text)
    assert not re.search(r"(?<!%)%\{", text)
    unescaped = json.loads(spec_text.replace("$${", "${").replace("%%{", "%{"))
    assert unescaped["steps"] == ["echo ${HOME} %{x} $OUT", "make"]


def test_escape():
    assert bake.escape("a ${B} $C %{d} $${e}") == "a $${B} $C %%{d} $$${e}"


# --- MAX_JOBS: computed on the builder, kept out of every cache key ---------------------------

def test_max_jobs_is_no_build_arg(plan: types.Plan, options: bake.Options):
    for target in bake.definition(plan, options)["target"].values():
        assert "MAX_JOBS" not in target["args"]
        assert target["secret"][-1] == f"id=build-jobs,env={bake.JOBS_SECRET_ENV}"


def test_the_client_cannot_change_the_definition(plan: types.Plan, tmp_path: Path):
    """--max-jobs reaches the builder as a secret only."""
    one = bake.Options(sources=tmp_path, exports=tmp_path, max_jobs=1)
    many = bake.Options(sources=tmp_path, exports=tmp_path, max_jobs=64)
    assert bake.definition(plan, one) == bake.definition(plan, many)
    assert json.loads(bake.jobs_secret(many)[bake.JOBS_SECRET_ENV])["max_jobs"] == 64


def test_one_target_per_bake_in_dependency_order(plan: types.Plan, options: bake.Options):
    # llvm, torch, msg have no dependencies (level 0); fly (1); app (2)
    assert [len(w) for w in bake.waves(plan)] == [3, 1, 1]
    assert bake.batches(plan) == [[t] for w in bake.waves(plan) for t in w]
    secret = json.loads(bake.jobs_secret(options)[bake.JOBS_SECRET_ENV])
    assert secret == {"max_jobs": None}


# --- secrets ----------------------------------------------------------------------------------

def test_secrets_are_references_only(plan: types.Plan, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch):
    ca = tmp_path / "ca.pem"
    ca.write_text(CA_CONTENT)
    monkeypatch.setenv("WHEELFORGE_PIP_INDEX_URL", INDEX_SECRET)
    options = bake.Options(sources=tmp_path, exports=tmp_path, ca_bundle=ca,
                           index_url_env="WHEELFORGE_PIP_INDEX_URL")
    definition = bake.definition(plan, options)
    for target in definition["target"].values():
        assert target["secret"] == [f"id=ca-bundle,src={ca}",
                                    "id=pip-index-url,env=WHEELFORGE_PIP_INDEX_URL",
                                    f"id=build-jobs,env={bake.JOBS_SECRET_ENV}"]
    text = json.dumps(definition)
    assert "THE-CA-BUNDLE-CONTENT" not in text
    assert "s3cr3t-token" not in text


def test_no_secrets_only_the_build_jobs_secret(plan: types.Plan, options: bake.Options):
    for target in bake.definition(plan, options)["target"].values():
        assert target["secret"] == [f"id=build-jobs,env={bake.JOBS_SECRET_ENV}"]


# --- cache ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("spec", "expected"), [
    ("type=registry,ref=reg.example.invalid:5000/team/cache:latest,mode=max",
     "type=registry,ref=reg.example.invalid:5000/team/cache:fly-3.12-gfx942,mode=max"),
    ("type=registry,ref=reg.example.invalid:5000/cache",
     "type=registry,ref=reg.example.invalid:5000/cache:fly-3.12-gfx942"),
    ("type=local,dest=/var/cache/bk", "type=local,dest=/var/cache/bk/fly-3.12-gfx942"),
    ("type=local,src=/var/cache/bk", "type=local,src=/var/cache/bk/fly-3.12-gfx942"),
    ("type=gha,scope=x", "type=gha,scope=x"),
], ids=["reg-tag-replaced", "reg-port-kept", "local-dest", "local-src", "gha-unchanged"])
def test_cache_ref(spec: str, expected: str):
    assert bake.cache_ref(spec, "fly-3.12-gfx942") == expected


@pytest.mark.parametrize("spec", ["type=tarball,dest=/x", "ref=reg/cache"])
def test_cache_ref_refuses(spec: str):
    with pytest.raises(UserError) as caught:
        bake.cache_ref(spec, "t")
    assert str(caught.value) == (f"cache option {spec!r}: give type=registry,ref=... or "
                                 f"type=local,dest=...|src=...")


def test_cache_per_key_exact_and_per_cell_fallback(plan: types.Plan, tmp_path: Path):
    options = bake.Options(sources=tmp_path, exports=tmp_path,
                           cache_from=("type=registry,ref=reg.example.invalid/cache",),
                           cache_to=("type=local,dest=/c",))
    by = targets_by_component(plan, bake.definition(plan, options))
    fly = next(b for b in plan.builds.values() if b.component == "fly")
    fallback = f"fly--{plan.cells[0].id}"
    assert by["fly"]["cache-from"][:2] == [  # its own two first; its dependencies' after
        f"type=registry,ref=reg.example.invalid/cache:{fly.target}",
        f"type=registry,ref=reg.example.invalid/cache/fallback:{fallback}"]
    assert by["fly"]["cache-to"] == [f"type=local,dest=/c/{fly.target}",
                                     f"type=local,dest=/c/{fallback}"]


def test_cache_registry_option(plan: types.Plan, tmp_path: Path):
    options = bake.with_cache_registry(bake.Options(sources=tmp_path, exports=tmp_path),
                                       "127.0.0.1:5000/team/cache")
    by = targets_by_component(plan, bake.definition(plan, options))
    app = next(b for b in plan.builds.values() if b.component == "app")
    assert by["app"]["cache-from"][0] == f"type=registry,ref=127.0.0.1:5000/team/cache:{app.target}"
    assert by["app"]["cache-to"][0] == (f"type=registry,ref=127.0.0.1:5000/team/cache:"
                                        f"{app.target},mode=max")
    assert len(by["app"]["cache-to"]) == 2


@pytest.mark.parametrize("repo", ["127.0.0.1:5000/cache:latest", "cache", "reg/Cache",
                                  "reg/cache@sha256:00"])
def test_cache_registry_refuses_a_tag_or_a_bare_name(repo: str, tmp_path: Path):
    with pytest.raises(UserError) as caught:
        bake.with_cache_registry(bake.Options(sources=tmp_path, exports=tmp_path), repo)
    assert str(caught.value).startswith(f"--cache-registry {repo!r}: give a registry repository")


def test_variants_never_share_a_cache_tag(tmp_path: Path):
    """Two variants that change a component's env: different keys, different tags (both)."""
    data = recipes()
    data["fly"]["env"] = {"ARCH": "{archs}", "CK": "{enable_ck}"}
    p = make_plan(write_set(tmp_path / "recipes", data), cells="*gfx942-*")
    flies = [b for b in p.builds.values() if b.component == "fly"]
    assert len(flies) == 2
    tags = [set(bake.cache_tags(b)) for b in flies]
    assert not tags[0] & tags[1]
