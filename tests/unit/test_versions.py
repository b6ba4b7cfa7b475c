"""Versions as part of the contract: outputs.version, the {version} placeholder, the
expectation per build, the gate on built wheels and what the check runs (setuptools_scm
on the tree as the build context presents it)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.unit.conftest import GIT_IDENTITY, PIN_A, SHA256, git_recipe, make_plan, write_set
from wheelforge.contract.computed import check_version, computed_version, context_drops
from wheelforge.core import types
from wheelforge.core.terminal import UserError
from wheelforge.plan import SCM_UNTAGGED, gate


def versioned_set(tmp_path: Path, version: str = "1.2.2", **extra) -> Path:
    app = git_recipe("app", PIN_A, env={"SETUPTOOLS_SCM_PRETEND_VERSION": "{version}"},
                     **extra)
    app["outputs"]["version"] = version
    other = {"name": "other", "source": {"sdist": "other", "version": "1.0", "sha256": SHA256},
             "steps": ["pip wheel --no-deps -w \"$OUT\" ."], "outputs": {"wheels": ["other"]}}
    return write_set(tmp_path / "r", {"app": app, "other": other})


def build_of(plan, component: str):
    return next(b for b in plan.builds.values() if b.component == component)


def test_a_pinned_build_expects_exactly_the_stated_version(tmp_path):
    plan = make_plan(versioned_set(tmp_path), channel="stable")
    app = build_of(plan, "app")
    assert dict(app.env)["SETUPTOOLS_SCM_PRETEND_VERSION"] == "1.2.2"
    assert app.versions == (("app", "==1.2.2", "outputs.version"),)
    assert build_of(plan, "other").versions == (("other", "==1.0", "source.version"),)


def test_a_branch_head_expects_that_version_or_later(tmp_path, monkeypatch):
    head = "f" * 40
    monkeypatch.setattr("wheelforge.plan.fetch.resolve_branch", lambda *a, **k: head)
    plan = make_plan(versioned_set(tmp_path), channel="nightly")
    app = build_of(plan, "app")
    assert dict(app.env)["SETUPTOOLS_SCM_PRETEND_VERSION"] == "1.2.2.post1.dev0+gfffffffff"
    want = app.expected_versions()["app"]
    assert want.spec == ">=1.2.2"
    assert want.allows("1.2.2.post1.dev0+gfffffffff") and want.allows("1.3.0.dev4+gabc")
    # what setuptools_scm gives a tree without tags, and a fallback_version, are earlier
    assert not want.allows("0.1.dev1+gfc2e5d57") and not want.allows("0.1.0")


@pytest.mark.parametrize(("outputs", "problem"), [
    ({"wheels": ["app"], "version": "latest"}, "is not a PEP 440 version"),
    ({"prefix": True, "version": "1.0"}, "a version is for wheels"),
])
def test_bad_outputs_version_is_one_line(tmp_path, outputs, problem):
    app = git_recipe("app", PIN_A)
    app["outputs"] = outputs
    with pytest.raises(UserError, match=problem) as err:
        make_plan(write_set(tmp_path / "r", {"app": app}))
    assert "app.yaml:" in str(err.value) and "outputs.version" in str(err.value)
    assert "\n" not in str(err.value)


def test_the_version_placeholder_needs_outputs_version(tmp_path):
    app = git_recipe("app", PIN_A, env={"SETUPTOOLS_SCM_PRETEND_VERSION": "{version}"})
    with pytest.raises(UserError, match=r"uses \{version\}, but outputs.version is not set"):
        make_plan(write_set(tmp_path / "r", {"app": app}))


def test_local_labels_meet_an_exact_version():
    want = types.Expectation("==2.11.0", "source.packages")
    assert want.allows("2.11.0+rocm7.2") and not want.allows("2.11.1")


def test_the_gate_names_component_versions_and_cause(tmp_path):
    wheel = tmp_path / "amd_aiter-0.1.dev1+gfc2e5d57-cp312-cp312-linux_x86_64.whl"
    wheel.write_bytes(b"")
    expect = {"amd-aiter": types.Expectation("==0.1.20", "outputs.version")}
    with pytest.raises(UserError) as err:
        gate([("aiter", "recipes/aiter.yaml", expect, [wheel])])
    text = str(err.value)
    assert text.startswith("recipes/aiter.yaml: aiter: built ") and "\n" not in text
    assert "version 0.1.dev1+gfc2e5d57" in text and "expects ==0.1.20" in text
    assert "setuptools_scm found no tag" in text
    gate([("aiter", "recipes/aiter.yaml", expect, [])])  # nothing built: nothing said
    good = tmp_path / "amd_aiter-0.1.20-cp312-cp312-linux_x86_64.whl"
    good.write_bytes(b"")
    gate([("aiter", "recipes/aiter.yaml", expect, [good])])


@pytest.mark.parametrize(("lines", "dropped"), [
    ([".git/"], [".git"]),
    (["**/.git"], [".git"]),
    (["*"], [".git", "setup.py"]),
    (["*", "!setup.py"], [".git"]),
    (["# comment", "build/", "docs/*.md"], []),
    ([".*"], [".git"]),
])
def test_context_drops_follows_dockerignore(tmp_path, lines, dropped):
    (tmp_path / ".dockerignore").write_text("\n".join(lines) + "\n")
    assert context_drops(tmp_path, [".git", "setup.py"]) == dropped


def scm_tree(tmp_path: Path, *, dockerignore: bool, tag: str | None) -> Path:
    tree = tmp_path / "tree"
    tree.mkdir(parents=True)
    (tree / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=64", "setuptools_scm>=8"]\n'
        '[project]\nname = "app"\ndynamic = ["version"]\n'
        '[tool.setuptools_scm]\nfallback_version = "0.0.0"\n')
    if dockerignore:
        (tree / ".dockerignore").write_text(".git/\n")
    env = {**os.environ, **GIT_IDENTITY}
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "one"]):
        subprocess.run(["git", "-C", str(tree), *args], check=True, env=env)
    if tag:
        subprocess.run(["git", "-C", str(tree), "tag", tag], check=True, env=env)
    return tree


@pytest.mark.parametrize(("dockerignore", "tag", "pretend", "version"), [
    (False, "v1.2.2", False, "1.2.2"),      # the tag is there: the release
    (False, None, False, "0.0.1.dev1"),     # one commit, no tag: what a fetch gives
    (True, "v1.2.2", False, "0.0.0"),       # .git dropped by .dockerignore: the fallback
    (True, None, True, "1.2.2"),            # the recipe's pretend version wins
])
def test_the_check_runs_setuptools_scm_on_the_tree_as_presented(tmp_path, dockerignore, tag,
                                                                pretend, version):
    pytest.importorskip("setuptools_scm")
    recipes = versioned_set(tmp_path)
    if not pretend:
        text = (recipes / "app.yaml").read_text()
        (recipes / "app.yaml").write_text(text.replace(
            "  SETUPTOOLS_SCM_PRETEND_VERSION: '{version}'\n", "").replace("env:\n", ""))
    build = build_of(make_plan(recipes), "app")
    computed = computed_version(build, scm_tree(tmp_path, dockerignore=dockerignore,
                                                tag=tag))
    assert computed.version is not None, computed
    assert computed.version.startswith(version) or (
        version == "0.0.1.dev1" and SCM_UNTAGGED.fullmatch(computed.version)), computed
    said = []
    again = scm_tree(tmp_path / "again", dockerignore=dockerignore, tag=tag)
    check_version(build, again, lambda *finding: said.append(finding))
    errors = [f for f in said if f[0] == "ERROR"]
    assert bool(errors) == (version != "1.2.2"), said


def test_the_check_runs_only_the_version_part_of_a_setup_py(tmp_path):
    """Like FlyDSL's setup.py: the version comes from a function reading a file and an
    environment variable; a top-level call that would build everything never runs."""
    tree = tmp_path / "tree"
    (tree / "pkg").mkdir(parents=True)
    (tree / "pkg" / "__init__.py").write_text('__version__ = "0.3.2"\n')
    (tree / "setup.py").write_text(
        "import os\nfrom pathlib import Path\nfrom setuptools import setup\n"
        "ROOT = Path(__file__).resolve().parent\n"
        "def _read_version():\n"
        "    base = (ROOT / 'pkg' / '__init__.py').read_text().split('\"')[1]\n"
        "    kind = os.environ.get('RELEASE_TYPE', '')\n"
        "    return base if kind == 'release' else base + '.dev1'\n"
        "def _build_everything():\n"
        "    raise SystemExit('the build ran')\n"
        "_build_everything()\n"
        "_version = _read_version()\n"
        "setup(name='pkg', version=_version)\n")
    recipes = versioned_set(tmp_path, version="0.3.1")
    text = (recipes / "app.yaml").read_text()
    (recipes / "app.yaml").write_text(text.replace(
        "SETUPTOOLS_SCM_PRETEND_VERSION: '{version}'", "RELEASE_TYPE: release"))
    build = build_of(make_plan(recipes), "app")
    computed = computed_version(build, tree)
    assert computed.version == "0.3.2", computed
    said = []
    check_version(build, tree, lambda *finding: said.append(finding))
    [(level, _, message)] = said
    assert level == "ERROR" and "will produce version 0.3.2" in message
    assert "the pinned commit is not the release the recipe names" in message
