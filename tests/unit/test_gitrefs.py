"""Git refs: mirror rewrites, and branch/tag -> commit resolution against local repositories.

The repositories are made in tmp_path with `git init`; a production-like recipe
names them by an https URL that only a --git-rewrite makes reachable, the way
an air-gapped host points recipes at its mirrors.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.conftest import (
    PIN_A,
    commit_file,
    git,
    git_recipe,
    keys,
    make_plan,
    make_repo,
    write_set,
)
from wheelforge.core import types
from wheelforge.core.terminal import UserError
from wheelforge.plan import fetch
from wheelforge.recipes import matrix

URL = "https://example.invalid/app.git"


@pytest.fixture(autouse=True)
def no_user_git_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """The user's own insteadOf rules must not take part."""
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", "/dev/null")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "git" / "app.git"
    make_repo(path)
    return path


def mirror_rule(tmp_path: Path) -> types.Rewrites:
    return matrix.parse_rewrites([f"file://{tmp_path}/git/=https://example.invalid/"])


# --- rewrite / parse_rewrites ------------------------------------------------------------

@pytest.mark.parametrize(("url", "expected"), [
    ("https://github.com/ROCm/aiter.git", "file:///mirrors/rocm/aiter.git"),
    ("https://github.com/pytorch/pytorch.git", "file:///mirrors/github/pytorch/pytorch.git"),
    ("https://gitlab.com/x/y.git", "https://gitlab.com/x/y.git"),
    ("https://github.com/ROCmX/z.git", "file:///mirrors/github/ROCmX/z.git"),
])
def test_rewrite_longest_prefix_wins(url: str, expected: str):
    rules = matrix.parse_rewrites([
        "file:///mirrors/github/=https://github.com/",
        "file:///mirrors/rocm/=https://github.com/ROCm/",
    ])
    assert fetch.rewrite(url, rules) == expected
    assert fetch.rewrite(url, tuple(reversed(rules))) == expected  # order does not matter


def test_rewrite_without_rules_is_identity():
    assert fetch.rewrite(URL, ()) == URL


def test_parse_rewrites_splits_at_the_first_equals_sign():
    assert matrix.parse_rewrites(["file:///m/=https://x/?a=b"]) == (
        ("file:///m/", "https://x/?a=b"),)


@pytest.mark.parametrize("item", ["file:///m/", "=https://github.com/", "file:///m/=", ""])
def test_parse_rewrites_refuses(item: str):
    with pytest.raises(UserError) as caught:
        matrix.parse_rewrites(["file:///ok/=https://ok/", item])
    assert str(caught.value) == (f"--git-rewrite {item!r}: write MIRROR=ORIGINAL, e.g. "
                                 f"file:///srv/mirrors/=https://github.com/")


def test_parse_rewrites_names_its_origin():
    with pytest.raises(UserError) as caught:
        matrix.parse_rewrites(["nope"], origin="recipes/matrix.yaml: git_rewrites:")
    assert str(caught.value).startswith("recipes/matrix.yaml: git_rewrites: 'nope': ")


def test_git_config_args_hand_the_rules_to_git():
    rules = matrix.parse_rewrites(["file:///m/=https://github.com/"])
    args = fetch.git_config_args(rules)
    assert args[-2:] == ["-c", "url.file:///m/.insteadOf=https://github.com/"]


# --- resolve_branch ----------------------------------------------------------------------

def test_resolve_branch_gives_the_head_commit(repo: Path):
    head = git("rev-parse", "HEAD", cwd=repo)
    assert fetch.resolve_branch(f"file://{repo}", "main", rules=(), who="t") == head


def test_resolve_branch_through_a_rewrite(repo: Path, tmp_path: Path):
    head = git("rev-parse", "HEAD", cwd=repo)
    assert fetch.resolve_branch(URL, "main", rules=mirror_rule(tmp_path), who="t") == head


def test_resolve_annotated_tag_gives_the_commit_not_the_tag_object(repo: Path):
    first = git("rev-parse", "HEAD", cwd=repo)
    commit_file(repo, "later", "2\n")  # the tag stays on the first commit
    tag_object = git("rev-parse", "v1.0", cwd=repo)
    assert tag_object != first
    assert fetch.resolve_branch(f"file://{repo}", "v1.0", rules=(), who="t") == first
    assert fetch.resolve_branch(f"file://{repo}", "v1.0-light", rules=(), who="t") == first


def test_resolve_branch_follows_new_commits(repo: Path):
    before = fetch.resolve_branch(f"file://{repo}", "main", rules=(), who="t")
    after_commit = commit_file(repo, "next", "2\n")
    after = fetch.resolve_branch(f"file://{repo}", "main", rules=(), who="t")
    assert after == after_commit != before


def test_resolve_missing_branch(repo: Path):
    with pytest.raises(UserError) as caught:
        fetch.resolve_branch(f"file://{repo}", "develop", rules=(), who="recipes/app.yaml: app")
    assert str(caught.value) == (f"recipes/app.yaml: app: branch 'develop' not found at "
                                 f"file://{repo}; check the branch name in the recipe")


def test_resolve_unreachable_repository(tmp_path: Path):
    missing = f"file://{tmp_path}/nothing.git"
    with pytest.raises(UserError) as caught:
        fetch.resolve_branch(missing, "main", rules=(), who="recipes/app.yaml: app")
    text = str(caught.value)
    assert "\n" not in text
    assert text.startswith(f"recipes/app.yaml: app: cannot resolve branch 'main' at {missing} (")
    assert text.endswith(f"); check the network or add --git-rewrite MIRROR={missing}")


# --- nightly plans -----------------------------------------------------------------------

@pytest.fixture
def app_set(tmp_path: Path, repo: Path) -> Path:
    """One recipe, `app`, pinned to PIN_A (stable) and following `main` (nightly)."""
    return write_set(tmp_path / "recipes", {"app": git_recipe("app", PIN_A)})


def test_nightly_plan_resolves_the_branch_through_the_mirror(app_set: Path, repo: Path,
                                                             tmp_path: Path):
    head = git("rev-parse", "HEAD", cwd=repo)
    p = make_plan(app_set, channel="nightly", rewrites=mirror_rule(tmp_path))
    (build,) = p.builds.values()
    assert build.source.commit == head
    assert build.source.ref == "main"
    assert build.source.url == URL
    assert build.source.fetch_url == f"file://{tmp_path}/git/app.git"
    assert build.cells == tuple(c.id for c in p.cells)  # arch-independent: one build for all


def test_stable_plan_uses_the_pin_and_no_git(app_set: Path, monkeypatch: pytest.MonkeyPatch):
    def no_git(*args, **kwargs):
        raise AssertionError("the stable channel must not run git")

    monkeypatch.setattr(fetch, "run_git", no_git)
    (build,) = make_plan(app_set, channel="stable").builds.values()
    assert build.source.commit == PIN_A


def test_new_commit_changes_the_resolved_commit_and_key(app_set: Path, repo: Path,
                                                        tmp_path: Path):
    rules = mirror_rule(tmp_path)
    before = make_plan(app_set, channel="nightly", rewrites=rules)
    again = make_plan(app_set, channel="nightly", rewrites=rules)
    new_head = commit_file(repo, "fix", "a fix\n")
    after = make_plan(app_set, channel="nightly", rewrites=rules)
    (b0,), (b1,), (b2,) = (p.builds.values() for p in (before, again, after))
    assert b0.key == b1.key  # nothing moved: same key
    assert b2.source.commit == new_head != b0.source.commit
    assert set(keys(after).values()) == {b2.key} and b2.key != b0.key


def test_nightly_plan_without_the_mirror_fails_in_one_line(app_set: Path):
    with pytest.raises(UserError) as caught:
        make_plan(app_set, channel="nightly")
    text = str(caught.value)
    assert "\n" not in text
    assert text.startswith(f"recipes/app.yaml: app: cannot resolve branch 'main' at {URL} (")
    assert text.endswith("; check the network or add --git-rewrite MIRROR=https://example.invalid/")
