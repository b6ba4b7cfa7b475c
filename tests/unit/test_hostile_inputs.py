"""Hostile input on the command line and on disk: one line, a non-zero exit, no hang.

Corpora in hostile/: `--cells` selections, registry hosts, git rewrites. Recipe
files that are not regular files are made here (a FIFO, a symlink loop, a device).
Also the safety rules: git's file protocol only for configured file:// mirrors
(submodules included), and one `invoke wheels` per checkout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.conftest import ROOT, git, git_recipe, make_repo, run_invoke, write_set
from wheelforge.build import held
from wheelforge.core import types
from wheelforge.core.terminal import UserError
from wheelforge.plan import fetch, make_plan
from wheelforge.publish import tags
from wheelforge.recipes import load, yamlschema
from wheelforge.recipes.matrix import glob_match, parse_rewrites, select

HOSTILE = Path(__file__).parent / "hostile"
CELLS = json.loads((HOSTILE / "cells.json").read_text())
REGISTRIES = json.loads((HOSTILE / "registries.json").read_text())
REWRITES = json.loads((HOSTILE / "rewrites.json").read_text())


@pytest.fixture(scope="module")
def production():
    return load(types.Inputs())[0]


# --- --cells -------------------------------------------------------------------------------

@pytest.mark.parametrize(("pattern", "message"), CELLS, ids=range(len(CELLS)))
def test_hostile_cell_selections(production, pattern: str, message: str):
    with pytest.raises(UserError) as caught:
        select(production, pattern, "stable")
    assert str(caught.value) == message


@pytest.mark.parametrize(("pattern", "text", "expected"), [
    ("*gfx942*", "stable-rocm7.2-py3.12-gfx942-ckfree", True),
    ("stable-*-gfx9[45][02]-full", "stable-rocm7.2-py3.12-gfx950-full", True),
    ("stable-*-gfx9[!4]*", "stable-rocm7.2-py3.12-gfx942-full", False),
    ("?table-*", "stable-x", True),
    ("[]]x", "]x", True),
    ("[a-c]", "d", False),
    ("*" * 200 + "x", "y" * 200, False),
    ("**a**b", "xxaxxb", True),
])
def test_glob_match(pattern: str, text: str, expected: bool):
    assert glob_match(pattern, text) is expected


def test_invoke_plan_with_an_empty_selection_fails_in_one_line():
    proc = run_invoke("plan", "--list", "--cells", ",")
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [f"error: {CELLS[1][1]}"]
    assert proc.stdout == ""


# --- registry hosts and rewrites ---------------------------------------------------------------

@pytest.mark.parametrize("host", REGISTRIES, ids=range(len(REGISTRIES)))
def test_hostile_registry_hosts(host: str):
    with pytest.raises(UserError) as caught:
        tags.validate_registry(host)
    assert str(caught.value) == (f"invalid registry host {host!r}: give host[:port] without a "
                                 f"scheme, path, user or spaces, e.g. '127.0.0.1:5000'")


@pytest.mark.parametrize("host", ["127.0.0.1:5000", "localhost", "[::1]:5000", "ghcr.io",
                                  "registry.example.invalid:443"])
def test_registry_hosts_accepted(host: str):
    assert tags.validate_registry(host) == host


@pytest.mark.parametrize(("item", "part"), REWRITES, ids=range(len(REWRITES)))
def test_hostile_rewrites(item: str, part: str):
    with pytest.raises(UserError) as caught:
        parse_rewrites([item])
    assert str(caught.value) == (
        f"--git-rewrite {item!r}: {part} is not an https, http, ssh, git or file URL (other "
        f"transports are refused, no part may start with '-'); fix it")


# --- recipe files that are not regular files ------------------------------------------------

def plan_in_subprocess(directory: Path) -> subprocess.CompletedProcess:
    """`invoke plan` on the set; a hang shows as TimeoutExpired, which fails the test."""
    return subprocess.run([sys.executable, "-m", "invoke", "plan", "--list", "--recipes",
                           str(directory)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=False)


@pytest.mark.parametrize(("make", "problem"), [
    (lambda p: os.mkfifo(p), "a FIFO, not a regular file; give a YAML file"),
    (lambda p: p.symlink_to(p), "cannot read (a symlink loop); point the link at a file"),
    (lambda p: p.symlink_to("/dev/zero"), "a device, not a regular file; give a YAML file"),
    (lambda p: p.mkdir(), "a directory, not a regular file; give a YAML file"),
    (lambda p: p.write_bytes(b"name: app\n" + b"#" * (2 << 20)),
     f"{(2 << 20) + 10} bytes, more than the 1048576 a file here may have; this is not a "
     f"recipe file"),
])
def test_recipe_file_that_is_not_a_regular_file(tmp_path: Path, make, problem: str):
    directory = write_set(tmp_path / "recipes", {"app": git_recipe("app")})
    make(directory / "evil.yaml")
    proc = plan_in_subprocess(directory)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.splitlines() == [f"error: {directory.parent.name}/recipes/evil.yaml: "
                                        f"{problem}"] or proc.stderr.splitlines() == [
        f"error: recipes/evil.yaml: {problem}"]


# --- git: the file protocol for configured mirrors only ---------------------------------------

@pytest.fixture
def superproject(tmp_path: Path) -> tuple[Path, Path]:
    """super.git with a submodule whose URL is https://example.invalid/sub.git."""
    mirror = tmp_path / "git"
    make_repo(mirror / "sub.git")
    sup = mirror / "super.git"
    make_repo(sup)
    (sup / ".gitmodules").write_text(
        '[submodule "sub"]\n\tpath = sub\n\turl = https://example.invalid/sub.git\n')
    head = git("-C", str(mirror / "sub.git"), "rev-parse", "HEAD", cwd=tmp_path)
    git("update-index", "--add", "--cacheinfo", f"160000,{head},sub", cwd=sup)
    git("add", ".gitmodules", cwd=sup)
    git("commit", "-q", "-m", "submodule", cwd=sup)
    return mirror, sup


def fetch_with_submodules(url: str, dest: Path, rules: types.Rewrites):
    dest.mkdir()
    for args in (["init", "-q"], ["remote", "add", "--", "origin", url],
                 ["fetch", "-q", "origin", "main"], ["checkout", "-q", "FETCH_HEAD"]):
        proc = fetch.run_git(args, rules=rules, cwd=str(dest))
        assert proc.returncode == 0, proc.stderr
    return fetch.run_git(["submodule", "update", "--init", "--recursive", "--depth", "1"],
                         rules=rules, cwd=str(dest))


def test_submodule_through_a_configured_file_mirror_is_fetched(superproject, tmp_path,
                                                               monkeypatch):
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    mirror, _ = superproject
    rules = parse_rewrites([f"file://{mirror}/=https://example.invalid/"])
    proc = fetch_with_submodules("https://example.invalid/super.git", tmp_path / "w", rules)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "w" / "sub" / "README").read_text() == "first\n"


def test_submodule_with_a_local_url_of_its_own_is_refused(superproject, tmp_path, monkeypatch):
    """A .gitmodules naming a local path directly (CVE-2022-39253) gets git's default policy."""
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    mirror, sup = superproject
    (sup / ".gitmodules").write_text(
        f'[submodule "sub"]\n\tpath = sub\n\turl = file://{mirror}/sub.git\n')
    git("add", ".gitmodules", cwd=sup)
    git("commit", "-q", "-m", "local submodule url", cwd=sup)
    rules = parse_rewrites([f"file://{mirror}/=https://example.invalid/"])
    proc = fetch_with_submodules("https://example.invalid/super.git", tmp_path / "w", rules)
    assert proc.returncode != 0
    assert "transport 'file' not allowed" in proc.stderr


def test_file_protocol_is_not_passed_by_default():
    rules = parse_rewrites(["file:///m/=https://github.com/"])
    assert "protocol.file.allow=always" not in fetch.git_config_args(rules)
    assert fetch.file_mirror("https://github.com/a/b.git", rules)
    assert not fetch.file_mirror("https://github.com/../../etc/x", rules)
    assert not fetch.file_mirror("https://gitlab.com/a/b.git", rules)


# --- one build per checkout --------------------------------------------------------------------

def test_second_holder_of_the_checkout_lock_is_refused_naming_the_first(tmp_path: Path):
    lock = tmp_path / ".cache" / "wheels.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom pathlib import Path\n"
         "from wheelforge.build import held\n"
         f"with held(Path({str(lock)!r})):\n"
         "    print('held', flush=True)\n    sys.stdin.read()\n"],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(UserError) as caught, held(lock):
            pass
        assert str(caught.value) == (f"invoke wheels: another build is running in this "
                                     f"checkout (pid {holder.pid}, holding {lock}); wait for "
                                     f"it to finish, or stop it")
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    with held(lock):  # released when its holder exits
        assert lock.read_text() == f"{os.getpid()}\n"


# --- YAML: no aliases; dates stay text --------------------------------------------------------

def test_an_alias_bomb_in_a_field_nothing_reads_is_refused_naming_its_line(tmp_path: Path):
    directory = write_set(tmp_path / "recipes", {"app": git_recipe("app")})
    matrix = (directory / "matrix.yaml").read_text()
    bomb = ("x0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" +
            "".join(f"x{i}: &a{i} [*a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}]\n"
                    for i in range(1, 9)))
    (directory / "matrix.yaml").write_text(bomb + matrix)
    proc = plan_in_subprocess(directory)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    [line] = proc.stderr.splitlines()
    assert line.endswith("matrix.yaml:2: a YAML alias (*name): recipes and the matrix take no "
                         "anchors or aliases; write the value out"), line


def test_an_unquoted_date_is_the_text_it_reads_as(tmp_path: Path):
    path = tmp_path / "app.yaml"
    path.write_text("source:\n  tag: 2024-01-01\n  when: 2024-01-01T10:00:00\n")
    assert yamlschema.load(path)["source"] == {"tag": "2024-01-01",
                                               "when": "2024-01-01T10:00:00"}


# --- --src: a local checkout that cannot be read ----------------------------------------------

@pytest.mark.parametrize(("make", "problem"), [
    (lambda p: p.symlink_to(p), "cannot be read (a symlink loop)"),
    (lambda p: p.write_text("x"), "not a folder"),
    (lambda p: None, "cannot be read (No such file or directory)"),
])
def test_src_that_is_no_folder_is_one_line(tmp_path: Path, make, problem: str):
    directory = write_set(tmp_path / "recipes", {"app": git_recipe("app")})
    given = tmp_path / "checkout"
    make(given)
    with pytest.raises(UserError) as caught:
        make_plan(types.Inputs(recipes_dir=directory,
                               src_overrides={"app": given}), channel="stable",
                  cells_glob=None)
    assert str(caught.value) == f"--src app={given}: {problem}; give the folder of a checkout"
