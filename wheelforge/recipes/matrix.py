"""The build matrix: channels x stacks x Python x arch sets x variants, as data.

`recipes/matrix.yaml` declares each axis; every combination is a `Cell` with a
stable id `{channel}-{stack}-py{python}-{arch}-{variant}` (like cibuildwheel's
build identifiers), and users select cells with shell-style globs.

Choosing cells with `--cells`: comma-separated shell-style globs, matched in bounded work.

The globs select cells of the matrix (recipes/matrix.py) and wheel sets by their cell ids
(image/__init__.py); a glob that matches nothing is an error, so that a typo never selects nothing.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TypeVar

from wheelforge.core.terminal import UserError, did_you_mean
from wheelforge.core.types import Cell, Matrix, Rewrites, Stack
from wheelforge.recipes import yamlschema
from wheelforge.recipes.component import CELL_VARIABLES, RECIPE_VARIABLES
from wheelforge.recipes.yamlschema import Where, load

# A URL or the start of one (fullmatch): the transports above, no part starting with '-'.
URL_PREFIX_RE = re.compile(
    r"(?:https?|ssh|git|file)://[A-Za-z0-9._~:/@%+=?&\[\]-]{0,2000}"
    r"|[A-Za-z0-9][A-Za-z0-9._-]{0,200}@[A-Za-z0-9][A-Za-z0-9._-]{0,253}:[A-Za-z0-9._~/%+-]{0,2000}")


def parse_rewrites(items: Iterable[str], *, origin: str = "--git-rewrite") -> Rewrites:
    """`BASE=PREFIX` items: URLs starting with PREFIX are fetched from BASE instead."""
    out = []
    for item in items:
        base, sep, prefix = item.partition("=")
        if not sep or not base or not prefix:
            raise UserError(f"{origin} {item!r}: write MIRROR=ORIGINAL, e.g. "
                            f"file:///srv/mirrors/=https://github.com/")
        for what, value in (("MIRROR", base), ("ORIGINAL", prefix)):
            if not URL_PREFIX_RE.fullmatch(value) or re.search(r"[/:@]-", value):
                raise UserError(f"{origin} {item!r}: {what} {value!r} is not an https, http, "
                                f"ssh, git or file URL (other transports are refused, no part "
                                f"may start with '-'); fix it")
        out.append((base, prefix))
    return tuple(out)


CHANNELS = ("stable", "nightly")


PYTHON_RE = re.compile(r"3\.[0-9]{1,2}")  # applied with fullmatch, as every pattern here


IMAGE_RE = re.compile(r"[a-z0-9][a-z0-9._/:@-]{0,254}")


VAR_RE = re.compile(r"[a-z_][a-z0-9_]{0,63}")


def load_matrix(path: Path, *, display: str) -> Matrix:
    data = load(path, display=display)
    top = Where(display, data)
    yamlschema.check_keys(top, {"channels", "stacks", "python", "known_archs", "archs", "variants",
                                "runners", "repository", "git_rewrites"},
                          required=("channels", "stacks", "python", "known_archs", "archs",
                                    "variants", "repository"))
    channels = yamlschema.string_list(top, "channels", pattern=yamlschema.NAME_RE, what="channel")
    for i, ch in enumerate(channels):
        if ch not in CHANNELS:
            raise top.child("channels").fail(i, f"unknown channel {ch!r}"
                                                f"{did_you_mean(ch, CHANNELS)}; channels are "
                                                f"{' and '.join(CHANNELS)}")
    pythons = yamlschema.string_list(top, "python", pattern=PYTHON_RE, what="Python version (3.N)")
    known = yamlschema.string_list(top, "known_archs", pattern=yamlschema.NAME_RE, what="arch name")
    archs = _archs(top, known)
    variants = _variants(top)
    stacks = _stacks(top, [a for a, _ in archs])
    runners = _runners(top, [a for a, _ in archs])
    for key, items in (("channels", channels), ("python", pythons)):
        if not items:
            raise top.fail(key, "must list at least one value")
    matrix = Matrix(
        file=display, channels=channels, stacks=stacks, pythons=pythons, known_archs=known,
        archs=archs, variants=variants, runners=runners,
        repository=_repository(top),
        variant_variables=frozenset(k for _, vs in variants for k, _ in vs),
        git_rewrites=_git_rewrites(top),
    )
    check_cell_ids(top, matrix)
    return matrix


def _repository(top: Where) -> str:
    """The image repository (no registry host): OCI path components, as the registry checks."""
    repo = yamlschema.string(top, "repository", required=True, what="image repository")
    try:
        return validate_repository(repo)
    except UserError as exc:
        raise top.fail("repository", str(exc)) from None


def _image(stack: Where, key: str) -> str:
    ref = yamlschema.string(stack, key, required=True, pattern=IMAGE_RE, what="image")
    if ".." in ref or "//" in ref or ref.endswith(("/", ":", "@")):
        raise stack.fail(key, f"{ref!r} is not a valid image (empty or '..' path part); "
                              f"write host/name:tag or name@sha256:digest")
    return ref


def _git_rewrites(top: Where) -> tuple[str, ...]:
    items = yamlschema.string_list(top, "git_rewrites")
    for i, item in enumerate(items):
        try:  # {root} is filled with the repository root when the plan is made
            parse_rewrites([item.replace("{root}", "/root")], origin="git_rewrites")
        except UserError as exc:
            raise top.child("git_rewrites").fail(i, str(exc).removeprefix("git_rewrites ")) \
                from None
    return items


def _archs(top: Where, known: tuple[str, ...]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    node = yamlschema.mapping(top, "archs", required=True)
    out = []
    for name in node.node:
        if not yamlschema.NAME_RE.fullmatch(name):
            raise node.fail(name, "arch set names are lowercase letters, digits, . _ + -")
        members = yamlschema.string_list(node, name, pattern=yamlschema.NAME_RE, what="arch name")
        if not members:
            raise node.fail(name, "lists no arch; add at least one (e.g. [gfx942])")
        for i, arch in enumerate(members):
            if arch not in known:
                raise node.child(name).fail(i, f"unknown arch {arch!r}{did_you_mean(arch, known)};"
                                               f" known archs: {', '.join(known)}")
        out.append((name, members))
    if not out:
        raise top.fail("archs", "declares no arch set")
    return tuple(out)


def _variants(top: Where) -> tuple[tuple[str, tuple[tuple[str, str], ...]], ...]:
    node = yamlschema.mapping(top, "variants", required=True)
    out = []
    names: set[str] | None = None
    for name in node.node:
        if not yamlschema.NAME_RE.fullmatch(name):
            raise node.fail(name, "variant names are lowercase letters, digits, . _ + -")
        variant = yamlschema.mapping(node, name, required=True)
        yamlschema.check_keys(variant, {"description", "vars"})
        vars_node = yamlschema.mapping(variant, "vars")
        pairs = []
        for key in vars_node.node if vars_node else ():
            if not VAR_RE.fullmatch(key):
                raise vars_node.fail(key, "variable names are lowercase letters, digits and _")
            if key in CELL_VARIABLES or key in RECIPE_VARIABLES:  # it would shadow that value
                raise vars_node.fail(key, f"{{{key}}} is set by the cell or the recipe itself; "
                                          f"give the variable another name")
            pairs.append((key, yamlschema.string(vars_node, key)))
        if names is not None and names != {k for k, _ in pairs}:
            raise node.fail(name, f"must set the same vars as the first variant "
                                  f"({', '.join(sorted(names)) or 'none'})")
        names = {k for k, _ in pairs}
        out.append((name, tuple(sorted(pairs))))
    if not out:
        raise top.fail("variants", "declares no variant")
    return tuple(out)


def _stacks(top: Where, arch_names: list[str]) -> tuple[Stack, ...]:
    node = yamlschema.mapping(top, "stacks", required=True)
    out = []
    for name in node.node:
        if not yamlschema.NAME_RE.fullmatch(name):
            raise node.fail(name, "stack names are lowercase letters, digits, . _ + -")
        stack = yamlschema.mapping(node, name, required=True)
        yamlschema.check_keys(stack, {"build_image", "runtime_image", "builder_apt", "runtime_apt",
                                      "python", "archs", "runtime_toolchain", "jit_coverage"},
                              required=("build_image", "runtime_image"))
        python = yamlschema.string_list(stack, "python", pattern=PYTHON_RE,
                                        what="Python version (3.N)")
        stack_archs = yamlschema.string_list(stack, "archs", pattern=yamlschema.NAME_RE,
                                             what="arch set name")
        for i, arch in enumerate(stack_archs):
            if arch not in arch_names:
                raise stack.child("archs").fail(
                    i, f"no arch set named {arch!r}{did_you_mean(arch, arch_names)}; "
                       f"arch sets: {', '.join(arch_names)}")
        for key, items in (("python", python), ("archs", stack_archs)):
            if key in stack.node and not items:
                raise stack.fail(key, "lists nothing; list at least one, or remove the key "
                                      "to use the matrix's own")
        toolchain = yamlschema.string(stack, "runtime_toolchain", default="forbidden")
        if toolchain not in ("allowed", "forbidden"):
            raise stack.fail("runtime_toolchain", f"{toolchain!r}: write allowed or forbidden "
                                                  f"(forbidden: no compiler in the runtime image)")
        coverage = yamlschema.string(stack, "jit_coverage", default="report")
        if coverage not in ("report", "required"):
            raise stack.fail("jit_coverage", f"{coverage!r}: write report or required (required: "
                                             f"a set in which a module would compile at first "
                                             f"use is refused)")
        out.append(Stack(
            name=name,
            build_image=_image(stack, "build_image"),
            runtime_image=_image(stack, "runtime_image"),
            builder_apt=yamlschema.string_list(stack, "builder_apt", pattern=yamlschema.NAME_RE,
                                               what="apt package"),
            runtime_apt=yamlschema.string_list(stack, "runtime_apt", pattern=yamlschema.NAME_RE,
                                               what="apt package"),
            python=python, archs=stack_archs, runtime_toolchain=toolchain,
            jit_coverage=coverage,
        ))
    if not out:
        raise top.fail("stacks", "declares no stack")
    return tuple(out)


def _runners(top: Where, arch_names: list[str]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    node = yamlschema.mapping(top, "runners")
    if node is None:
        return ()
    out = []
    for name in node.node:
        if name not in arch_names:
            raise node.fail(name, f"no arch set named {name!r}{did_you_mean(name, arch_names)}")
        out.append((name, yamlschema.string_list(node, name, pattern=yamlschema.NAME_RE,
                                                 what="runner label")))
    return tuple(out)


def check_cell_ids(top: Where, m: Matrix) -> None:
    """Two (stack, python, arch set, variant) choices must never make the same cell id."""
    seen: dict[str, str] = {}
    archs_node = top.child("archs")
    for stack in m.stacks:
        for python in m.pythons_of(stack):
            for arch, _ in m.archs_of(stack):
                for variant, _ in m.variants:
                    cid = f"{stack.name}-py{python}-{arch}-{variant}"
                    this = f"stack {stack.name!r} x arch set {arch!r} x variant {variant!r}"
                    other = seen.setdefault(cid, this)
                    if other != this:
                        raise archs_node.fail(
                            arch, f"{other} and {this} make the same cell id "
                                  f"'<channel>-{cid}'; rename an arch set, variant or stack")


MAX_PATTERN = 256


MAX_PATTERNS = 64


T = TypeVar("T")


def choose(patterns: str, items: Sequence[T], name: Callable[[T], str],
           miss: Callable[[str], UserError]) -> list[T]:
    """The items whose `name` matches a glob of `patterns`, each once, in the globs' order.

    A glob that matches no item raises `miss(glob)`.
    """
    chosen: list[T] = []
    for pattern in split_patterns(patterns):
        hits = [item for item in items if glob_match(pattern, name(item))]
        if not hits:
            raise miss(pattern)
        chosen.extend(item for item in hits if item not in chosen)
    return chosen


def split_patterns(patterns: str, *, flag: str = "--cells") -> list[str]:
    """The comma-separated globs of a selection; an empty selection is an error."""
    items = [p.strip() for p in patterns.split(",", MAX_PATTERNS)]
    if len(items) > MAX_PATTERNS:
        raise UserError(f"{flag}: more than {MAX_PATTERNS} globs; select fewer, or use "
                        f"broader globs like '*gfx942*'")
    items = [p for p in items if p]
    if not items:
        raise UserError(f"{flag} {patterns.strip()!r}: selects nothing; give globs such as "
                        f"'*gfx942*', or leave {flag} out for every cell")
    for pattern in items:
        if len(pattern) > MAX_PATTERN:
            raise UserError(f"{flag}: a glob of {len(pattern)} characters (at most "
                            f"{MAX_PATTERN}); shorten it")
        if yamlschema.CONTROL_RE.search(pattern):
            raise UserError(f"{flag} {pattern!r}: {yamlschema.control_problem(pattern)}")
        _check_brackets(pattern, flag)
    return items


def glob_match(pattern: str, text: str) -> bool:
    """Shell-style `*`, `?`, `[abc]`, `[a-z]`, `[!a]` match of the whole `text`, case kept.

    fnmatch, whose translation (CPython 3.11+) uses atomic groups, so a pattern of many
    `*` cannot make the regular expression backtrack without bound; with the lengths
    bounded here (a glob of MAX_PATTERN characters, ids of a few dozen) the work is small.
    """
    return fnmatch.fnmatchcase(text, pattern)


def _check_brackets(pattern: str, flag: str) -> None:
    """fnmatch reads an unclosed `[` as a literal; a selection refuses it, as a typo."""
    i = pattern.find("[")
    while i >= 0:
        start = i + 1
        start += pattern.startswith("!", start)
        start += pattern.startswith("]", start)  # a leading ']' is a literal one
        end = pattern.find("]", start)
        if end < 0:
            raise UserError(f"{flag} {pattern}: '[' at position {i + 1} is not closed; "
                            f"write [abc] or [a-z], or remove it")
        i = pattern.find("[", end + 1)


def select(matrix: Matrix, patterns: str | None, channel: str | None = None) -> list[Cell]:
    """Cells of `channel` (all channels if None) whose id matches a glob in `patterns`.

    `patterns` is a comma-separated list of globs; None or '' selects every cell.
    A glob that matches nothing is an error, so a typo never builds nothing.
    """
    if channel is not None and channel not in matrix.channels:
        raise UserError(f"--channel {channel}: unknown channel"
                        f"{did_you_mean(channel, matrix.channels)}; "
                        f"choose from {', '.join(matrix.channels)}")
    cells = matrix.cells(channel)
    if patterns is None:
        return cells

    def miss(pattern: str) -> UserError:
        ids = [c.id for c in cells]
        return UserError(f"--cells {pattern}: matches no cell{did_you_mean(pattern, ids)};"
                         f" `invoke plan --list` shows the cell ids")

    return choose(patterns, cells, lambda c: c.id, miss)


_REPO_RE = re.compile(
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
)


def validate_repository(repo: str) -> str:
    """Return ``repo`` if it is a valid OCI repository name, else raise UserError."""
    if not isinstance(repo, str) or len(repo) > 255 or not _REPO_RE.fullmatch(repo):
        raise UserError(
            f"invalid repository name {repo!r}: use lowercase path components of "
            "[a-z0-9] joined by '.', '_', '__' or '-' and separated by '/' (e.g. 'wheelforge/rocm')"
        )
    return repo
