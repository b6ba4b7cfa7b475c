"""The build matrix: channels x stacks x Python x arch sets x variants, as data.

`recipes/matrix.yaml` declares each axis; every combination is a `Cell` with a stable id
`{channel}-{stack}-py{python}-{arch}-{variant}`. `MatrixModel` is the file (yamlschema.py
says why pydantic); the loaded matrix is core/types.py's frozen `Matrix`, which every later
stage reads. The cell ids, which only the whole matrix makes, are checked when it is loaded.

`--cells`: comma-separated shell-style globs, matched in bounded work, select cells of the
matrix and wheel sets (image/__init__.py) by their ids; a glob that matches nothing is an
error, so that a typo never selects nothing.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Annotated, Literal, TypeVar

from pydantic import AfterValidator, ConfigDict, Field, WithJsonSchema, model_validator

from wheelforge.core.terminal import UserError, did_you_mean
from wheelforge.core.types import Cell, Matrix, Rewrites, Stack
from wheelforge.recipes.component import PLACEHOLDERS
from wheelforge.recipes.yamlschema import (
    CONTROL_RE,
    Keys,
    Line,
    Mapping,
    Text,
    Unique,
    control_problem,
    fail,
    load,
    matches,
    name_of,
    none_of,
    not_empty,
    problem,
    validate,
)

# A URL or the start of one (fullmatch): a git URL's transports (component.URL_RE).
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


REPOSITORY_RE = re.compile(
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
)


def validate_repository(repo: str) -> str:
    """Return ``repo`` if it is a valid OCI repository name, else raise UserError."""
    if not isinstance(repo, str) or len(repo) > 255 or not REPOSITORY_RE.fullmatch(repo):
        raise UserError(
            f"invalid repository name {repo!r}: use lowercase path components of "
            "[a-z0-9] joined by '.', '_', '__' or '-' and separated by '/' (e.g. 'wheelforge/rocm')"
        )
    return repo


def _repository(repo: str) -> str:
    """The image repository (no registry host): OCI path components, as the registry checks."""
    try:
        return validate_repository(repo)
    except UserError as exc:
        raise problem(str(exc)) from None


def _image(ref: str) -> str:
    if ".." in ref or "//" in ref or ref.endswith(("/", ":", "@")):
        raise problem(f"{ref!r} is not a valid image (empty or '..' path part); write "
                      f"host/name:tag or name@sha256:digest")
    return ref


def _rewrite(item: str) -> str:
    try:  # {root} is filled with the repository root when the plan is made
        parse_rewrites([item.replace("{root}", "/root")], origin="git_rewrites")
    except UserError as exc:
        raise problem(str(exc).removeprefix("git_rewrites ")) from None
    return item


PythonVersion = Annotated[Line, matches(r"3\.[0-9]{1,2}", "Python version (3.N)")]
Image = Annotated[Line, matches(r"[a-z0-9][a-z0-9._/:@-]{0,254}", "image"),
                  AfterValidator(_image)]
ArchName = name_of("arch name")
ArchSetName = name_of("arch set name")
NARROWS_NOTHING = "lists nothing; list at least one, or remove the key to use the matrix's own"


class StackModel(Keys):
    """A stack: the images and system packages a cell is built and run with."""

    build_image: Image = Field(description="The image its components are built in.")
    runtime_image: Image = Field(description="The image its runtime images start from.")
    builder_apt: Annotated[list[name_of("apt package")], Unique] = Field(
        [], description="Debian packages installed in the builder for every component.")
    runtime_apt: Annotated[list[name_of("apt package")], Unique] = Field(
        [], description="Debian packages of its runtime images.")
    python: Annotated[list[PythonVersion], Unique, not_empty(NARROWS_NOTHING)] = Field(
        None, description="Its Python versions; default: the matrix's python.")
    archs: Annotated[list[ArchSetName], Unique, not_empty(NARROWS_NOTHING)] = Field(
        None, description="The arch sets it builds; default: every arch set.")
    runtime_toolchain: Literal["allowed", "forbidden"] = Field(
        "forbidden", description="allowed: what compiler its runtime image holds is listed "
                                 "(ROCm stacks, whose components compile kernels at run time); "
                                 "forbidden: building a runtime image that holds one fails.")
    jit_coverage: Literal["report", "required"] = Field(
        "report", description="required: a wheel set in which a module would compile at "
                              "first use is refused; report: it is reported.")


class VariantModel(Keys):
    """A variant: values of the variables recipes use as {placeholders}."""

    description: Text = Field("", description="Free text for people.")
    vars: dict[Annotated[Line, matches(r"[a-z_][a-z0-9_]{0,63}",
                                       "variable name (lowercase letters, digits and _)"),
                         none_of(PLACEHOLDERS, lambda name: (
                             f"{{{name}}} is set by the cell or the recipe itself; give the "
                             f"variable another name"))],
               Line] = Field({}, description="NAME: VALUE; every variant sets the same names.")


class MatrixModel(Keys):
    """The build matrix: matrix.yaml in a recipe set such as recipes/."""

    model_config = ConfigDict(title="wheelforge build matrix")

    channels: Annotated[list[Literal["stable", "nightly"]], Unique,
                        not_empty("must list at least one value")] = Field(
        description="stable builds the recipes' pins, nightly their branch heads.")
    stacks: Annotated[dict[name_of("stack name"), StackModel], not_empty(
        "declares no stack; add one (NAME: {build_image: ..., runtime_image: ...})")] = Field(
        description="NAME: the stack's keys below.")
    python: Annotated[list[PythonVersion], Unique,
                      not_empty("must list at least one value")] = Field(
        description="The Python versions (3.N), quoted: \"3.10\".")
    known_archs: Annotated[list[ArchName], Unique] = Field(
        description="Every arch an arch set may name; anything else is a typo.")
    archs: Annotated[dict[ArchSetName, Annotated[list[ArchName], Unique, not_empty(
        "lists no arch; add at least one (e.g. [gfx942])")]], not_empty(
        "declares no arch set; add one (e.g. gfx942: [gfx942])")] = Field(
        description="NAME: [ARCH, ...]; the first is the default the short tags point at.")
    variants: Annotated[dict[name_of("variant name"), VariantModel], not_empty(
        "declares no variant; add one (e.g. default: {vars: {}})")] = Field(
        description="NAME: the variant's keys below; the first is the default.")
    runners: dict[str, Annotated[list[name_of("runner label")], Unique]] = Field(
        {}, description="ARCH_SET: [LABEL, ...], the CI runner labels of its cells.")
    repository: Annotated[Line, AfterValidator(_repository), WithJsonSchema(
        {"type": "string", "maxLength": 255, "pattern": f"^(?:{REPOSITORY_RE.pattern})$"})] = \
        Field(description="The image repository, without the registry host (publish, pull).")
    git_rewrites: Annotated[list[Annotated[Line, AfterValidator(_rewrite)]], Unique] = Field(
        [], description="MIRROR=ORIGINAL: fetch URLs starting with ORIGINAL from MIRROR; "
                        "{root} is this repository.")

    @model_validator(mode="after")
    def _names_known(self) -> MatrixModel:
        for name, members in self.archs.items():
            for i, arch in enumerate(members):
                if arch not in self.known_archs:
                    raise problem(f"unknown arch {arch!r}{did_you_mean(arch, self.known_archs)};"
                                  f" known archs: {', '.join(self.known_archs)}", "archs", name, i)
        arch_sets = f"arch sets: {', '.join(self.archs)}"
        for name, stack in self.stacks.items():
            for i, arch in enumerate(stack.archs or ()):
                if arch not in self.archs:
                    raise problem(f"no arch set named {arch!r}{did_you_mean(arch, self.archs)}; "
                                  f"{arch_sets}", "stacks", name, "archs", i)
        for name in self.runners:
            if name not in self.archs:
                raise problem(f"no arch set named {name!r}{did_you_mean(name, self.archs)}; "
                              f"{arch_sets}", "runners", name)
        first, *others = self.variants.items()
        for name, variant in others:
            if set(variant.vars) != set(first[1].vars):
                raise problem(f"must set the same vars as the first variant "
                              f"({', '.join(sorted(first[1].vars)) or 'none'})", "variants", name)
        return self


def load_matrix(path: Path, *, display: str) -> Matrix:
    data = load(path, display=display)
    model = validate(MatrixModel, data, display)
    matrix = Matrix(
        file=display, channels=tuple(model.channels), pythons=tuple(model.python),
        stacks=tuple(Stack(name=name, build_image=s.build_image, runtime_image=s.runtime_image,
                           builder_apt=tuple(s.builder_apt), runtime_apt=tuple(s.runtime_apt),
                           python=tuple(s.python or ()), archs=tuple(s.archs or ()),
                           runtime_toolchain=s.runtime_toolchain, jit_coverage=s.jit_coverage)
                     for name, s in model.stacks.items()),
        known_archs=tuple(model.known_archs),
        archs=tuple((name, tuple(members)) for name, members in model.archs.items()),
        variants=tuple((name, tuple(sorted(v.vars.items())))
                       for name, v in model.variants.items()),
        runners=tuple((name, tuple(labels)) for name, labels in model.runners.items()),
        repository=model.repository,
        variant_variables=frozenset(k for v in model.variants.values() for k in v.vars),
        git_rewrites=tuple(model.git_rewrites),
    )
    check_cell_ids(matrix, data)
    return matrix


def check_cell_ids(m: Matrix, data: Mapping) -> None:
    """Two (stack, python, arch set, variant) choices must never make the same cell id."""
    seen: dict[str, str] = {}
    for cell in m.cells(m.channels[0]):  # every channel has the same cells
        this = f"stack {cell.stack.name!r} x arch set {cell.arch!r} x variant {cell.variant!r}"
        other = seen.setdefault(cell.id, this)
        if other != this:
            raise fail(m.file, data, ("archs", cell.arch),
                       f"{other} and {this} make the same cell id '<channel>-"
                       f"{cell.id.partition('-')[2]}'; rename an arch set, variant or stack")


MAX_PATTERN = 256  # characters of one --cells glob
MAX_PATTERNS = 64


T = TypeVar("T")


def choose(patterns: str, items: Sequence[T], name: Callable[[T], str],
           miss: Callable[[str], UserError]) -> list[T]:
    """The items whose `name` matches a glob of `patterns`, each once, in the globs' order;
    a glob that matches no item raises `miss(glob)`."""
    chosen: list[T] = []
    for pattern in split_patterns(patterns):
        hits = [item for item in items if glob_match(pattern, name(item))]
        if not hits:
            raise miss(pattern)
        chosen.extend(item for item in hits if item not in chosen)
    return chosen


def split_patterns(patterns: str) -> list[str]:
    """The comma-separated globs of a selection; an empty selection is an error."""
    items = [p.strip() for p in patterns.split(",", MAX_PATTERNS)]
    if len(items) > MAX_PATTERNS:
        raise UserError(f"--cells: more than {MAX_PATTERNS} globs; select fewer, or use "
                        f"broader globs like '*gfx942*'")
    items = [p for p in items if p]
    if not items:
        raise UserError(f"--cells {patterns.strip()!r}: selects nothing; give globs such as "
                        f"'*gfx942*', or leave --cells out for every cell")
    for pattern in items:
        if len(pattern) > MAX_PATTERN:
            raise UserError(f"--cells: a glob of {len(pattern)} characters (at most "
                            f"{MAX_PATTERN}); shorten it")
        if bad := CONTROL_RE.search(pattern):
            raise UserError(f"--cells {pattern!r}: {control_problem(bad.group())}")
        _check_brackets(pattern)
    return items


def glob_match(pattern: str, text: str) -> bool:
    """Shell-style match of the whole `text`, case kept: fnmatch's translation (CPython
    3.11+) uses atomic groups, so many `*` cannot backtrack without bound."""
    return fnmatch.fnmatchcase(text, pattern)


def _check_brackets(pattern: str) -> None:
    """fnmatch reads an unclosed `[` as a literal; a selection refuses it, as a typo."""
    i = pattern.find("[")
    while i >= 0:
        start = i + 1
        start += pattern.startswith("!", start)
        start += pattern.startswith("]", start)  # a leading ']' is a literal one
        end = pattern.find("]", start)
        if end < 0:
            raise UserError(f"--cells {pattern}: '[' at position {i + 1} is not closed; "
                            f"write [abc] or [a-z], or remove it")
        i = pattern.find("[", end + 1)


def select(matrix: Matrix, patterns: str | None, channel: str | None = None) -> list[Cell]:
    """Cells of `channel` (all channels if None) whose id matches a glob in `patterns`
    (None: every cell)."""
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
