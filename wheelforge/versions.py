"""Versions are part of the contract: what each built wheel's version must be.

A recipe states the version its wheels must have (``outputs.version``); an index
source's pins (``name==version``) and an sdist's ``version`` state theirs. For one
build, every wheel gets an expectation:

- a pinned source (the stable channel, or a git source with no branch): exactly that
  version (PEP 440 ``==``, so ``2.11.0`` accepts ``2.11.0+rocm7.2``);
- a branch head (the nightly channel): that version or a later one. A build that fell
  back to a default version (setuptools_scm with no tag: ``0.1.dev1+g<commit>``; a
  ``fallback_version``) is earlier than the release it was cut after, so it is caught;
- a local checkout (``--src``, ``path:``): no expectation; it is the user's tree.

The recipe's ``{version}`` placeholder is what a pretend version should be
(``SETUPTOOLS_SCM_PRETEND_VERSION: "{version}"``): sources are fetched as one commit
without tags, and a source's own .dockerignore may leave ``.git`` out of the build
context, so a VCS-derived version cannot come from git history in the build. On a
branch head it is the stated version with ``.post1.dev0+g<commit>``: later than the
release, and naming the commit it was built from.

`invoke wheels` checks every built wheel (``gate``) before any set is swapped in.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from . import wheelname
from .errors import UserError
from .recipes import GitSource, Recipe

# What setuptools_scm makes of a tree without a tag: 0.1.dev<N>+g<commit>[.d<date>]
# (0.0.1.dev<N>+g<commit> from setuptools_scm 9 on).
SCM_UNTAGGED = re.compile(r"0\.(0\.)?1\.dev\d+(\+g[0-9a-f]+.*)?")


@dataclass(frozen=True)
class Expectation:
    spec: str  # a PEP 440 specifier: "==0.1.20" or ">=0.1.20"
    why: str  # where it comes from: "outputs.version", "source.packages", ...

    def allows(self, version: str) -> bool:
        try:
            return SpecifierSet(self.spec).contains(Version(version), prereleases=True)
        except (InvalidSpecifier, InvalidVersion):
            return False


def branch_head(recipe: Recipe, channel: str) -> bool:
    """Whether the build is of a branch head (nightly) rather than a pin."""
    src = recipe.source
    return isinstance(src, GitSource) and channel == "nightly" and bool(src.branch)


def placeholder(recipe: Recipe, channel: str, commit: str) -> str:
    """The value of `{version}` for one build ('' when the recipe states none)."""
    if recipe.version is None:
        return ""
    if branch_head(recipe, channel):
        return f"{recipe.version}.post1.dev0+g{commit[:9]}"
    return recipe.version


def expected(recipe: Recipe, channel: str, source_kind: str,
             packages: Iterable[str] = ()) -> dict[str, Expectation]:
    """Normalized wheel name -> its expectation, for one build of `recipe`.

    `source_kind` and `packages` are the resolved source's (a nightly index source has
    unpinned packages: no expectation from them)."""
    if source_kind == "path":
        return {}
    out: dict[str, Expectation] = {}
    for req in packages:
        name, sep, version = req.partition("==")
        if sep:
            out[wheelname.canonical(name)] = Expectation(f"=={version}", "source.packages")
    src = recipe.source
    if source_kind == "sdist":
        out.setdefault(wheelname.canonical(src.name), Expectation(f"=={src.version}",
                                                                "source.version"))
    if recipe.version is not None:
        op = ">=" if branch_head(recipe, channel) else "=="
        for wheel in recipe.wheels:
            out.setdefault(wheelname.canonical(wheel),
                           Expectation(f"{op}{recipe.version}", "outputs.version"))
    return out


def cause(actual: str, expectation: Expectation) -> str:
    """The likely reason a built version differs from what the recipe expects."""
    if SCM_UNTAGGED.fullmatch(actual):
        return ("setuptools_scm found no tag: sources are fetched as one commit without tags "
                "(and a source's own .dockerignore may drop .git); set "
                "SETUPTOOLS_SCM_PRETEND_VERSION: \"{version}\" in the recipe's env")
    try:
        later = Version(actual) > Version(expectation.spec.lstrip("=<>~!"))
    except InvalidVersion:
        return "the build wrote a version that is not PEP 440"
    if later:
        return ("the pinned commit is not the release the recipe names: fix the pin or "
                f"{expectation.why}")
    return ("the build fell back to a default version (e.g. setuptools_scm's "
            "fallback_version when .git is absent from the build context) or builds an "
            f"older release: set the version explicitly, or fix the pin or {expectation.why}")


def mismatches(expectations: Mapping[str, Expectation],
               wheels: Iterable[Path]) -> list[tuple[str, str, Expectation]]:
    """(wheel file, its version, expectation) for each wheel whose version is not allowed."""
    bad = []
    for path in wheels:
        wheel = wheelname.parse(path.name)
        want = expectations.get(wheel.name)
        if want is not None and not want.allows(str(wheel.parsed_version)):
            bad.append((path.name, str(wheel.parsed_version), want))
    return bad


def gate(checks: Iterable[tuple[str, str, Mapping[str, Expectation], list[Path]]]) -> None:
    """Refuse the build when a wheel's version is not the one its recipe expects.

    `checks`: (component, recipe file, expectations, its built wheels) per build. One
    line: the component, the wheel, expected and actual versions and the likely cause."""
    for component, recipe_file, expectations, wheels in checks:
        for file, version, want in mismatches(expectations, wheels):
            raise UserError(
                f"{recipe_file}: {component}: built {file} with version {version}, but "
                f"{want.why} expects {want.spec}; likely cause: {cause(version, want)}; "
                "nothing was swapped in", exit_code=1)
