"""The build matrix: channels x stacks x Python x arch sets x variants, as data.

`recipes/matrix.yaml` declares each axis; every combination is a `Cell` with a
stable id `{channel}-{stack}-py{python}-{arch}-{variant}` (like cibuildwheel's
build identifiers), and users select cells with shell-style globs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from . import gitrefs, schema, selection, tags
from .errors import UserError, did_you_mean
from .recipes import CELL_VARIABLES, RECIPE_VARIABLES
from .schema import Where
from .yamlsource import load

CHANNELS = ("stable", "nightly")
PYTHON_RE = re.compile(r"3\.[0-9]{1,2}")  # applied with fullmatch, as every pattern here
IMAGE_RE = re.compile(r"[a-z0-9][a-z0-9._/:@-]{0,254}")
VAR_RE = re.compile(r"[a-z_][a-z0-9_]{0,63}")


@dataclass(frozen=True, kw_only=True)
class Stack:
    name: str
    build_image: str
    runtime_image: str
    builder_apt: tuple[str, ...]
    runtime_apt: tuple[str, ...]
    python: tuple[str, ...] = ()  # this stack's Python versions; () = the matrix's `python`
    archs: tuple[str, ...] = ()  # this stack's arch set names; () = every arch set
    runtime_toolchain: str = "forbidden"  # `allowed`: its runtime image may hold a compiler
    jit_coverage: str = "report"  # `required`: a module compiled at first use refuses the set


@dataclass(frozen=True, kw_only=True)
class Cell:
    id: str
    channel: str
    stack: Stack
    python: str
    arch: str  # the arch set's name
    archs: tuple[str, ...]  # its members
    variant: str
    variables: tuple[tuple[str, str], ...]  # every placeholder value for recipes' env
    runner: tuple[str, ...]

    def var(self) -> dict[str, str]:
        return dict(self.variables)


@dataclass(frozen=True, kw_only=True)
class Matrix:
    file: str
    channels: tuple[str, ...]
    stacks: tuple[Stack, ...]
    pythons: tuple[str, ...]
    known_archs: tuple[str, ...]
    archs: tuple[tuple[str, tuple[str, ...]], ...]
    variants: tuple[tuple[str, tuple[tuple[str, str], ...]], ...]
    runners: tuple[tuple[str, tuple[str, ...]], ...]
    repository: str  # image repository name (without registry host)
    variant_variables: frozenset[str]
    git_rewrites: tuple[str, ...] = ()  # MIRROR=ORIGINAL; {root} is the repository root

    @property
    def default_arch(self) -> str:
        return self.archs[0][0]

    @property
    def default_variant(self) -> str:
        return self.variants[0][0]

    def pythons_of(self, stack: Stack) -> tuple[str, ...]:
        return stack.python or self.pythons

    def archs_of(self, stack: Stack) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """The arch sets a stack builds, in the matrix's order."""
        return tuple(a for a in self.archs if not stack.archs or a[0] in stack.archs)

    def default_arch_of(self, stack: Stack) -> str:
        """The arch set the short floating tags of this stack's cells point at."""
        return self.archs_of(stack)[0][0]

    def cells(self, channel: str | None = None) -> list[Cell]:
        out = []
        for ch in self.channels if channel is None else (channel,):
            for stack in self.stacks:
                for python in self.pythons_of(stack):
                    for arch, members in self.archs_of(stack):
                        for variant, vars_ in self.variants:
                            values = {
                                "archs": ";".join(members), "archs_comma": ",".join(members),
                                "arch": arch, "python": python, "stack": stack.name,
                                "channel": ch, "variant": variant, **dict(vars_),
                            }
                            out.append(Cell(
                                id=f"{ch}-{stack.name}-py{python}-{arch}-{variant}",
                                channel=ch, stack=stack, python=python, arch=arch,
                                archs=members, variant=variant,
                                variables=tuple(sorted(values.items())),
                                runner=dict(self.runners).get(arch, ()),
                            ))
        return out

    def select(self, patterns: str | None, channel: str | None = None) -> list[Cell]:
        """Cells of `channel` (all channels if None) whose id matches a glob in `patterns`.

        `patterns` is a comma-separated list of globs; None or '' selects every cell.
        A glob that matches nothing is an error, so a typo never builds nothing.
        """
        if channel is not None and channel not in self.channels:
            raise UserError(f"--channel {channel}: unknown channel"
                            f"{did_you_mean(channel, self.channels)}; "
                            f"choose from {', '.join(self.channels)}")
        cells = self.cells(channel)
        if patterns is None:
            return cells

        def miss(pattern: str) -> UserError:
            ids = [c.id for c in cells]
            return UserError(f"--cells {pattern}: matches no cell{did_you_mean(pattern, ids)};"
                             f" `invoke plan --list` shows the cell ids")

        return selection.choose(patterns, cells, lambda c: c.id, miss)


def load_matrix(path: Path, *, display: str) -> Matrix:
    data = load(path, display=display)
    top = Where(display, data)
    schema.check_keys(top, {"channels", "stacks", "python", "known_archs", "archs", "variants",
                            "runners", "repository", "git_rewrites"},
                      required=("channels", "stacks", "python", "known_archs", "archs",
                                "variants", "repository"))
    channels = schema.string_list(top, "channels", pattern=schema.NAME_RE, what="channel")
    for i, ch in enumerate(channels):
        if ch not in CHANNELS:
            raise top.child("channels").fail(i, f"unknown channel {ch!r}"
                                                f"{did_you_mean(ch, CHANNELS)}; channels are "
                                                f"{' and '.join(CHANNELS)}")
    pythons = schema.string_list(top, "python", pattern=PYTHON_RE, what="Python version (3.N)")
    known = schema.string_list(top, "known_archs", pattern=schema.NAME_RE, what="arch name")
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
    """The image repository (no registry host): OCI path components, as tags.py checks."""
    repo = schema.string(top, "repository", required=True, what="image repository")
    try:
        return tags.validate_repository(repo)
    except UserError as exc:
        raise top.fail("repository", str(exc)) from None


def _image(stack: Where, key: str) -> str:
    ref = schema.string(stack, key, required=True, pattern=IMAGE_RE, what="image")
    if ".." in ref or "//" in ref or ref.endswith(("/", ":", "@")):
        raise stack.fail(key, f"{ref!r} is not a valid image (empty or '..' path part); "
                              f"write host/name:tag or name@sha256:digest")
    return ref


def _git_rewrites(top: Where) -> tuple[str, ...]:
    items = schema.string_list(top, "git_rewrites")
    for i, item in enumerate(items):
        try:  # {root} is filled with the repository root when the plan is made
            gitrefs.parse_rewrites([item.replace("{root}", "/root")], origin="git_rewrites")
        except UserError as exc:
            raise top.child("git_rewrites").fail(i, str(exc).removeprefix("git_rewrites ")) \
                from None
    return items


def _archs(top: Where, known: tuple[str, ...]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    node = schema.mapping(top, "archs", required=True)
    out = []
    for name in node.node:
        if not schema.NAME_RE.fullmatch(name):
            raise node.fail(name, "arch set names are lowercase letters, digits, . _ + -")
        members = schema.string_list(node, name, pattern=schema.NAME_RE, what="arch name")
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
    node = schema.mapping(top, "variants", required=True)
    out = []
    names: set[str] | None = None
    for name in node.node:
        if not schema.NAME_RE.fullmatch(name):
            raise node.fail(name, "variant names are lowercase letters, digits, . _ + -")
        variant = schema.mapping(node, name, required=True)
        schema.check_keys(variant, {"description", "vars"})
        vars_node = schema.mapping(variant, "vars")
        pairs = []
        for key in vars_node.node if vars_node else ():
            if not VAR_RE.fullmatch(key):
                raise vars_node.fail(key, "variable names are lowercase letters, digits and _")
            if key in CELL_VARIABLES or key in RECIPE_VARIABLES:  # it would shadow that value
                raise vars_node.fail(key, f"{{{key}}} is set by the cell or the recipe itself; "
                                          f"give the variable another name")
            pairs.append((key, schema.string(vars_node, key)))
        if names is not None and names != {k for k, _ in pairs}:
            raise node.fail(name, f"must set the same vars as the first variant "
                                  f"({', '.join(sorted(names)) or 'none'})")
        names = {k for k, _ in pairs}
        out.append((name, tuple(sorted(pairs))))
    if not out:
        raise top.fail("variants", "declares no variant")
    return tuple(out)


def _stacks(top: Where, arch_names: list[str]) -> tuple[Stack, ...]:
    node = schema.mapping(top, "stacks", required=True)
    out = []
    for name in node.node:
        if not schema.NAME_RE.fullmatch(name):
            raise node.fail(name, "stack names are lowercase letters, digits, . _ + -")
        stack = schema.mapping(node, name, required=True)
        schema.check_keys(stack, {"build_image", "runtime_image", "builder_apt", "runtime_apt",
                                  "python", "archs", "runtime_toolchain", "jit_coverage"},
                          required=("build_image", "runtime_image"))
        python = schema.string_list(stack, "python", pattern=PYTHON_RE,
                                    what="Python version (3.N)")
        stack_archs = schema.string_list(stack, "archs", pattern=schema.NAME_RE,
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
        toolchain = schema.string(stack, "runtime_toolchain", default="forbidden")
        if toolchain not in ("allowed", "forbidden"):
            raise stack.fail("runtime_toolchain", f"{toolchain!r}: write allowed or forbidden "
                                                  f"(forbidden: no compiler in the runtime image)")
        coverage = schema.string(stack, "jit_coverage", default="report")
        if coverage not in ("report", "required"):
            raise stack.fail("jit_coverage", f"{coverage!r}: write report or required (required: "
                                             f"a set in which a module would compile at first "
                                             f"use is refused)")
        out.append(Stack(
            name=name,
            build_image=_image(stack, "build_image"),
            runtime_image=_image(stack, "runtime_image"),
            builder_apt=schema.string_list(stack, "builder_apt", pattern=schema.NAME_RE,
                                           what="apt package"),
            runtime_apt=schema.string_list(stack, "runtime_apt", pattern=schema.NAME_RE,
                                           what="apt package"),
            python=python, archs=stack_archs, runtime_toolchain=toolchain,
            jit_coverage=coverage,
        ))
    if not out:
        raise top.fail("stacks", "declares no stack")
    return tuple(out)


def _runners(top: Where, arch_names: list[str]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    node = schema.mapping(top, "runners")
    if node is None:
        return ()
    out = []
    for name in node.node:
        if name not in arch_names:
            raise node.fail(name, f"no arch set named {name!r}{did_you_mean(name, arch_names)}")
        out.append((name, schema.string_list(node, name, pattern=schema.NAME_RE,
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
