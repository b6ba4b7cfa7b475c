"""`invoke check` on the demo set and on copies of it that break one contract each.

Real git repositories (the demo's, and one with a side branch made here), real
sdists from the index, the real command line; no engine is needed.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import LZ4C_URL, copy_recipes, run_invoke
from wheelforge.contract import upstream
from wheelforge.core import settings
from wheelforge.core.terminal import UserError
from wheelforge.core.types import Build, Resolved
from wheelforge.plan import fetch
from wheelforge.recipes import matrix

pytestmark = pytest.mark.one_engine  # nothing engine-specific (see tests/conftest.py)

GIT_ENV = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}


def check(recipes: Path | str, *extra: str) -> subprocess.CompletedProcess:
    return run_invoke("check", "--recipes", str(recipes), "--channel", "stable", *extra,
                      timeout=900)


def lines(proc: subprocess.CompletedProcess, level: str) -> list[str]:
    return [ln for ln in (proc.stdout + proc.stderr).splitlines() if f": {level}: " in ln]


def one_line(proc: subprocess.CompletedProcess, level: str, *, returncode: int) -> str:
    """The only line at `level` (ERROR, WARNING) of a check that exited with `returncode`."""
    assert proc.returncode == returncode, proc.stdout + proc.stderr
    found = lines(proc, level)
    assert len(found) == 1, found
    return found[0]


def line_number(file: Path, test: Callable[[str], bool]) -> int:
    """The number of the first line of `file` that passes `test`."""
    return next(i for i, t in enumerate(file.read_text().splitlines(), 1) if test(t))


def side_branch_commit(tmp: Path) -> tuple[str, Path]:
    """A commit on a side branch of a copy of lz4-c.git, not on main: (commit, bare repo)."""
    work, bare = tmp / "side-work", tmp / "lz4-c.git"
    subprocess.run(["git", "clone", "-q", str(settings.DEMO_GIT / "lz4-c.git"), str(work)],
                   check=True)
    subprocess.run(["git", "-C", str(work), "checkout", "-q", "-b", "side"], check=True)
    with (work / "lz4.h").open("a") as f:
        f.write("\n/* only on the side branch */\n")
    subprocess.run(["git", "-C", str(work), "commit", "-qam", "side"], check=True, env=GIT_ENV)
    commit = subprocess.run(["git", "-C", str(work), "rev-parse", "HEAD"], check=True,
                            capture_output=True, text=True).stdout.strip()
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)
    return commit, bare


def test_the_demo_set_passes():
    proc = check("demo/recipes")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not lines(proc, "ERROR") and not lines(proc, "WARNING"), proc.stdout
    assert "check: 0 errors, 0 warnings" in proc.stdout
    assert "Traceback" not in proc.stderr


def test_declared_output_that_the_sdist_does_not_produce(tmp_path):
    recipes = copy_recipes(tmp_path / "recipes", {"msgpack.yaml": (
        "wheels: [msgpack]", "wheels: [msgpack-python]")})
    proc = check(recipes)
    error = one_line(proc, "ERROR", returncode=1)
    line = line_number(recipes / "msgpack.yaml", lambda t: "wheels: [msgpack-python]" in t)
    assert error.startswith(f"recipes/msgpack.yaml:{line}: ERROR: msgpack: ")
    assert "'msgpack-python' is not produced" in error and "'msgpack' (PKG-INFO)" in error
    assert "Traceback" not in proc.stderr


def test_declared_output_that_the_repository_does_not_produce(tmp_path):
    recipes = copy_recipes(tmp_path / "recipes", {"lz4.yaml": (
        "wheels: [lz4]", "wheels: [python-lz4]")})
    error = one_line(check(recipes), "ERROR", returncode=1)
    assert error.startswith("recipes/lz4.yaml:"), error
    assert "'python-lz4' is not produced" in error and "it builds 'lz4'" in error


def test_a_variable_nothing_reads_is_one_warning_naming_the_files_searched(tmp_path):
    recipes = copy_recipes(tmp_path / "recipes", {"lz4.yaml": (
        '  PYLZ4_USE_SYSTEM_LZ4: "1"\n',
        '  PYLZ4_USE_SYSTEM_LZ4: "1"\n  PYLZ4_USE_SYSTEM_LZ: "1"\n')})
    # a warning is not an error
    warning = one_line(check(recipes), "WARNING", returncode=0)
    line = line_number(recipes / "lz4.yaml", lambda t: t.startswith("  PYLZ4_USE_SYSTEM_LZ:"))
    assert warning.startswith(f"recipes/lz4.yaml:{line}: WARNING: lz4: env "
                              f"PYLZ4_USE_SYSTEM_LZ is set but nothing reads it")
    assert "searched: setup.py" in warning
    assert "did you mean 'PYLZ4_USE_SYSTEM_LZ4'" in warning


def test_a_pin_off_its_branch_is_an_error_and_stops_wheels(tmp_path):
    fetch.make_repos()
    commit, bare = side_branch_commit(tmp_path)
    recipes = copy_recipes(tmp_path / "recipes", {"liblz4.yaml": (
        fetch.make_repos()["lz4-c.git"], commit)})
    rewrite = f"file://{bare}={LZ4C_URL}"
    error = one_line(check(recipes, "--git-rewrite", rewrite), "ERROR", returncode=1)
    line = line_number(recipes / "liblz4.yaml", lambda t: t.strip().startswith("pin:"))
    assert error.startswith(f"recipes/liblz4.yaml:{line}: ERROR: liblz4: pin {commit[:12]} "
                            f"is not reachable from branch 'main'"), error
    # `invoke wheels` runs the ERROR part first: it stops before any build starts.
    wheels = run_invoke("wheels", "--recipes", str(recipes), "--channel", "stable",
                        "--git-rewrite", rewrite, timeout=900,
                        env={"WHEELFORGE_WHEELS": str(tmp_path / "wheels")})
    assert wheels.returncode == 1
    last = wheels.stderr.strip().splitlines()[-1]
    assert last.startswith("error: recipes/liblz4.yaml:") and "not reachable from branch" in last
    assert "building" not in wheels.stderr and not (tmp_path / "wheels").exists()


def test_a_pin_that_is_on_its_branch_passes(tmp_path):
    """The same side-branch repository with the branch set to the side branch: no error."""
    fetch.make_repos()
    commit, bare = side_branch_commit(tmp_path)
    recipes = copy_recipes(tmp_path / "recipes", {"liblz4.yaml": (
        fetch.make_repos()["lz4-c.git"], commit)})
    text = (recipes / "liblz4.yaml").read_text().replace("branch: main", "branch: side")
    (recipes / "liblz4.yaml").write_text(text)
    proc = check(recipes, "--git-rewrite", f"file://{bare}={LZ4C_URL}", "--cells", "*-v2-*")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", "-c", "protocol.file.allow=always", *args], cwd=cwd,
                          check=True, capture_output=True, text=True, env=GIT_ENV).stdout.strip()


def test_a_submodule_that_cannot_be_fetched_is_a_warning_naming_it(tmp_path):
    """A superproject with two submodules, one of whose mirrors is gone: the tree is read
    without submodules and only the missing one is named; a missing top level is an error."""
    from dataclasses import replace



    base = "https://sub.wheelforge.invalid/"
    for name in ("ok", "gone", "super"):
        (tmp_path / name).mkdir()
        _git("init", "-q", "-b", "main", cwd=tmp_path / name)
        (tmp_path / name / "README").write_text(name)
        _git("add", "README", cwd=tmp_path / name)
        _git("commit", "-qm", name, cwd=tmp_path / name)
    sup = tmp_path / "super"
    for name in ("ok", "gone"):
        _git("submodule", "add", "-q", f"file://{tmp_path / name}", f"third/{name}", cwd=sup)
        _git("config", "-f", ".gitmodules", f"submodule.third/{name}.url", f"{base}{name}.git",
             cwd=sup)
    _git("add", ".gitmodules", cwd=sup)
    _git("commit", "-qm", "submodules", cwd=sup)
    commit = _git("rev-parse", "HEAD", cwd=sup)
    mirrors = tmp_path / "mirrors"
    for name in ("ok", "super"):  # no mirror of `gone`
        _git("clone", "-q", "--bare", str(tmp_path / name), str(mirrors / f"{name}.git"),
             cwd=tmp_path)
    rules = matrix.parse_rewrites([f"file://{mirrors}/={base}"])
    build = Build(component="sup", key="k", target="sup-k", recipe_file="recipes/sup.yaml",
                  source=Resolved(kind="git", url=f"{base}super.git", commit=commit,
                                  submodules=True),
                  build_image="b", runtime_image="r", python="3.12", apt=(), env=(), steps=(),
                  deps=(), wheels=(), prefix=True, imports=(), runtime=False, archs=(),
                  mem_per_job_gb=1.0)
    tree, problems = upstream.source_tree(tmp_path / "cache", build, rewrites=rules,
                                          work=tmp_path / "work")
    assert tree is not None and (tree / "README").read_text() == "super"
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"submodule third/gone ({base}gone.git at ")
    assert "read upstream's top-level files without it" in problems[0]
    assert "third/ok" not in problems[0]
    gone_top = replace(build, source=replace(build.source, url=f"{base}gone-top.git"))
    with pytest.raises(UserError):
        upstream.source_tree(tmp_path / "cache2", gone_top, rewrites=rules, work=tmp_path / "work")


# ---- what the check runs: versions, build requirements, ABI pins (the scmext component) ----

SCMEXT_URL = "https://demo.wheelforge.invalid/scmext.git"
PRETEND = ('  SETUPTOOLS_SCM_PRETEND_VERSION: "{version}"   # no tag and no .git in the build '
           'context\n')


def test_a_vcs_version_through_a_context_that_drops_git_is_an_error(tmp_path):
    """scmext's .dockerignore drops .git (as MORI's does): without the pretend version,
    setuptools_scm in the build sees no history and falls back to 0.0.0."""
    recipes = copy_recipes(tmp_path / "recipes", {"scmext.yaml": (f"env:\n{PRETEND}", "")})
    proc = check(recipes, "--cells", "*-v2-*")
    error = one_line(proc, "ERROR", returncode=1)
    line = line_number(recipes / "scmext.yaml", lambda t: t.strip().startswith("version:"))
    assert error.startswith(f"recipes/scmext.yaml:{line}: ERROR: scmext: the build will "
                            f"produce version 0.0.0 (setuptools_scm, run with .git dropped by "
                            f"the source's own .dockerignore), but outputs.version expects "
                            f"==0.1.0"), error
    assert "fallback_version" in error
    warning = one_line(proc, "WARNING", returncode=1)
    assert "drops .git from the build context" in warning
    assert 'SETUPTOOLS_SCM_PRETEND_VERSION: "{version}"' in warning


@pytest.mark.parametrize(("step", "problem"), [
    ("pybind11", "pybind11 is not pinned (pybind11)"),
    ('"pybind11==2.13.5"', "pybind11==2.13.5 differs from upstream's pybind11==2.13.6 "
                           "(pyproject.toml [build-system] requires)"),
])
def test_an_abi_package_off_upstreams_pin_is_an_error(tmp_path, step, problem):
    recipes = copy_recipes(tmp_path / "recipes", {"scmext.yaml": ('"pybind11==2.13.6"', step)})
    error = one_line(check(recipes, "--cells", "*-v2-*"), "ERROR", returncode=1)
    line = line_number(recipes / "scmext.yaml", lambda t: "pip install" in t)
    assert error.startswith(f"recipes/scmext.yaml:{line}: ERROR: scmext: {problem}"), error
    assert "pin it ==2.13.6" in error or error.endswith("pin ==2.13.6")


def test_a_build_requirement_the_sets_versions_miss_is_an_error(tmp_path):
    """A new scmext commit requires pkgconfig>=2 to build, while the set builds pkgconfig
    1.5.5: `python -m build --no-isolation` would stop with missing dependencies (as nightly
    AITER, requiring flydsl==0.3.1, does against nightly FlyDSL 0.3.2)."""
    work, bare = tmp_path / "scmext-work", tmp_path / "scmext.git"
    _git("clone", "-q", str(settings.DEMO_GIT / "scmext.git"), str(work), cwd=tmp_path)
    pyproject = work / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace(
        '"pybind11==2.13.6"]', '"pybind11==2.13.6", "pkgconfig>=2"]'))
    _git("commit", "-qam", "needs pkgconfig 2", cwd=work)
    commit = _git("rev-parse", "HEAD", cwd=work)
    _git("clone", "-q", "--bare", str(work), str(bare), cwd=tmp_path)
    recipes = copy_recipes(tmp_path / "recipes", {"scmext.yaml": (
        fetch.make_repos()["scmext.git"], commit)})
    text = (recipes / "scmext.yaml").read_text()
    (recipes / "scmext.yaml").write_text(text.replace("[bookworm]", "[bookworm]\ndepends: "
                                                      "[pkgconfig]"))
    proc = check(recipes, "--git-rewrite", f"file://{bare}={SCMEXT_URL}", "--cells", "*-v2-*")
    errors = lines(proc, "ERROR")
    assert proc.returncode == 1 and len(errors) == 1, proc.stdout + proc.stderr
    assert ("ERROR: scmext: build requirement pkgconfig>=2 (pyproject.toml [build-system] "
            "requires) is not met: the set builds pkgconfig 1.5.5") in errors[0], errors
