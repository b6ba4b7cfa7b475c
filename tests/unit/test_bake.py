"""The bake definition: one target per build of the plan, wired 1:1, secrets by reference only."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from tests.unit.conftest import PIN_A, PIN_B, SHA256, git_recipe, make_plan, write_set
from wheelforge import bake
from wheelforge import plan as planning
from wheelforge.errors import UserError

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
def plan(tmp_path: Path) -> planning.Plan:
    return make_plan(write_set(tmp_path / "recipes", recipes()), cells="*gfx942-ckfree")


@pytest.fixture
def options(tmp_path: Path) -> bake.Options:
    return bake.Options(sources=tmp_path / "sources", exports=tmp_path / "exports")


@pytest.fixture(autouse=True)
def host(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fixed host: 16 cores, 8 GiB of memory."""
    monkeypatch.setattr(bake, "host_resources", lambda: (16, 8.0))


def targets_by_component(plan: planning.Plan, definition: dict) -> dict[str, dict]:
    return {plan.builds[t].component: spec for t, spec in definition["target"].items()}


# --- shape ------------------------------------------------------------------------------------

def test_one_target_per_build(plan: planning.Plan, options: bake.Options):
    definition = bake.definition(plan, options)
    assert list(definition["target"]) == list(plan.builds)
    assert definition["group"]["default"]["targets"] == list(plan.builds)
    for target in definition["target"].values():
        assert target["dockerfile"] == "docker/Dockerfile.wheels"
        assert target["target"] == "export"
        assert target["context"] == str(planning.ROOT)
    json.dumps(definition)  # bake reads it as JSON


def test_dependencies_are_target_contexts(plan: planning.Plan, options: bake.Options):
    by = targets_by_component(plan, bake.definition(plan, options))
    targets = plan.cell_targets[plan.cells[0].id]
    app = by["app"]["contexts"]
    assert {k: v for k, v in app.items() if k.startswith("dep")} == {
        "dep1": f"target:{targets['fly']}", "dep2": f"target:{targets['torch']}",
        "dep3": f"target:{targets['msg']}"}
    assert by["fly"]["contexts"]["dep1"] == f"target:{targets['llvm']}"
    assert not [k for k in by["llvm"]["contexts"] if k.startswith("dep")]


def test_source_contexts(plan: planning.Plan, options: bake.Options):
    by = targets_by_component(plan, bake.definition(plan, options))
    assert by["fly"]["contexts"]["src"] == str(options.sources / f"fly-git-{PIN_B[:16]}")
    assert by["msg"]["contexts"]["src"] == str(options.sources / f"msg-1.1.0-{SHA256[:12]}")
    assert "src" not in by["torch"]["contexts"]  # wheels from an index: nothing to fetch


def test_outputs(plan: planning.Plan, options: bake.Options):
    by = targets_by_component(plan, bake.definition(plan, options))
    assert by["llvm"]["output"] == ["type=cacheonly"]  # prefix only: stays in BuildKit
    for name in ("fly", "torch", "msg", "app"):
        target = plan.cell_targets[plan.cells[0].id][name]
        assert by[name]["output"] == [f"type=local,dest={options.exports / target}"]


def test_args_and_spec(plan: planning.Plan, options: bake.Options):
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


def test_bake_interpolation_is_escaped(plan: planning.Plan, options: bake.Options):
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


# --- MAX_JOBS ---------------------------------------------------------------------------------

def test_max_jobs_from_host_and_recipe(plan: planning.Plan, options: bake.Options):
    by = targets_by_component(plan, bake.definition(plan, options))
    assert by["llvm"]["args"]["MAX_JOBS"] == "1"  # 8 GiB * 0.9 / 4 GiB per job
    assert by["fly"]["args"]["MAX_JOBS"] == "14"  # 8 * 0.9 / 0.5, under 16 cores
    assert by["app"]["args"]["MAX_JOBS"] == "7"  # default 1 GiB per job


def test_max_jobs_override_wins(plan: planning.Plan, tmp_path: Path):
    options = bake.Options(sources=tmp_path, exports=tmp_path, max_jobs=3)
    definition = bake.definition(plan, options)
    assert {t["args"]["MAX_JOBS"] for t in definition["target"].values()} == {"3"}


@pytest.mark.parametrize(("override", "cores", "mem_gb", "per_job", "jobs"), [
    (None, 16, 8.0, 4, 1),  # memory-bound
    (None, 4, 64.0, 1, 4),  # core-bound
    (None, 16, 1.0, 4, 1),  # never below one
    (None, 64, 100.0, 2, 45),
    (5, 1, 1.0, 4, 5),  # the user's choice wins
])
def test_max_jobs(plan: planning.Plan, override, cores, mem_gb, per_job, jobs):
    build = next(b for b in plan.builds.values() if b.component == "app")
    build = dataclasses.replace(build, mem_per_job_gb=per_job)
    assert bake.max_jobs(build, override=override, cores=cores, mem_gb=mem_gb) == jobs


# --- secrets ----------------------------------------------------------------------------------

def test_secrets_are_references_only(plan: planning.Plan, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch):
    ca = tmp_path / "ca.pem"
    ca.write_text(CA_CONTENT)
    monkeypatch.setenv("WHEELFORGE_PIP_INDEX_URL", INDEX_SECRET)
    options = bake.Options(sources=tmp_path, exports=tmp_path, ca_bundle=ca,
                           index_url_env="WHEELFORGE_PIP_INDEX_URL")
    definition = bake.definition(plan, options)
    for target in definition["target"].values():
        assert target["secret"] == [f"id=ca-bundle,src={ca}",
                                    "id=pip-index-url,env=WHEELFORGE_PIP_INDEX_URL"]
    text = json.dumps(definition)
    assert "THE-CA-BUNDLE-CONTENT" not in text
    assert "s3cr3t-token" not in text


def test_no_secrets_no_secret_key(plan: planning.Plan, options: bake.Options):
    assert all("secret" not in t for t in bake.definition(plan, options)["target"].values())


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


def test_cache_per_component(plan: planning.Plan, tmp_path: Path):
    options = bake.Options(sources=tmp_path, exports=tmp_path,
                           cache_from=("type=registry,ref=reg.example.invalid/cache",),
                           cache_to=("type=local,dest=/c",))
    by = targets_by_component(plan, bake.definition(plan, options))
    assert by["fly"]["cache-from"] == ["type=registry,ref=reg.example.invalid/cache:"
                                       "fly-3.12-gfx942"]
    assert by["fly"]["cache-to"] == ["type=local,dest=/c/fly-3.12-gfx942"]
    assert by["app"]["cache-to"] == ["type=local,dest=/c/app-3.12"]  # not arch-dependent itself
