"""Component recipes: one YAML file per component, loaded and validated strictly.

A recipe says where the component's source comes from, which other components
it needs, what the builder needs from apt, the environment of its build (with
`{placeholders}` filled from the matrix cell), the build steps, what it outputs
and how much memory one compile job takes. Adding a component is adding a file.
"""

from __future__ import annotations

import re
import string as _string
from dataclasses import dataclass, field
from pathlib import Path

from . import schema
from .errors import UserError, did_you_mean
from .schema import Where
from .yamlsource import load, text_of

COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
URL_RE = re.compile(r"^(https?|ssh|git|file)://[A-Za-z0-9._~:/@%+-]+$|^[A-Za-z0-9._-]+@[A-Za-z0-9._-]+:[A-Za-z0-9._~/%+-]+$")
DIST_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
REQ_RE = re.compile(
    r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9,._-]+\])?(==|>=|<=|~=)?[A-Za-z0-9.+!*-]*$")
MODULE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
APT_RE = re.compile(r"^[a-z0-9][a-z0-9.+-]*(=[A-Za-z0-9.+:~-]+)?$")

# Placeholders a recipe's env may use; each comes from the matrix cell.
CELL_VARIABLES = {
    "archs": "the cell's arch list, ';'-separated (PYTORCH_ROCM_ARCH, GPU_ARCHS)",
    "archs_comma": "the cell's arch list, ','-separated (PREBUILD_TRITON_ARCHS)",
    "arch": "the cell's arch set name (e.g. gfx942)",
    "python": "the cell's Python version",
    "stack": "the cell's stack (e.g. rocm7.2)",
    "channel": "the cell's channel (stable or nightly)",
    "variant": "the cell's variant name",
}
SOURCE_KINDS = ("git", "sdist", "index", "path")


@dataclass(frozen=True, kw_only=True)
class GitSource:
    url: str
    pin: str | None  # full commit, used by the stable channel
    branch: str | None  # resolved to a commit at plan time by the nightly channel
    tag: str | None  # the human name of `pin`, informational
    submodules: bool
    kind: str = "git"


@dataclass(frozen=True, kw_only=True)
class SdistSource:
    name: str
    version: str
    sha256: str
    kind: str = "sdist"


@dataclass(frozen=True, kw_only=True)
class IndexSource:
    """Prebuilt wheels from a package index (e.g. PyTorch's ROCm index)."""

    url: str
    nightly_url: str | None
    packages: tuple[str, ...]  # pinned requirements (name==version) for the stable channel
    nightly_packages: tuple[str, ...]  # unpinned names for the nightly channel
    kind: str = "index"


@dataclass(frozen=True, kw_only=True)
class PathSource:
    path: str
    kind: str = "path"


Source = GitSource | SdistSource | IndexSource | PathSource


@dataclass(frozen=True, kw_only=True)
class Recipe:
    name: str
    file: str  # as shown in messages, e.g. recipes/aiter.yaml
    description: str
    source: Source
    depends: tuple[str, ...]
    apt: tuple[str, ...]
    env: tuple[tuple[str, str], ...]  # ordered KEY -> template
    steps: tuple[str, ...]
    wheels: tuple[str, ...]  # distribution names the build must produce
    prefix: bool  # produces an install prefix (an intermediate artifact, not a wheel)
    imports: tuple[str, ...]  # modules the runtime image must import
    runtime: bool  # its wheels go into the runtime image
    mem_per_job_gb: float
    line_of_depends: int = 0
    line_of_source: int = 0
    variables: frozenset[str] = field(default_factory=frozenset)  # placeholders env uses


def template_variables(template: str) -> list[str]:
    """The `{name}` placeholders of a template; `{{`/`}}` are literal braces."""
    names = []
    try:
        parsed = list(_string.Formatter().parse(template))
    except ValueError as exc:  # an unbalanced brace
        raise ValueError(f"bad placeholder syntax ({exc})") from None
    for _, name, spec, conv in parsed:
        if name is None:
            continue
        if spec or conv or not name.isidentifier():
            text = name + (f"!{conv}" if conv else "") + (f":{spec}" if spec else "")
            raise ValueError(f"bad placeholder {{{text}}}")
        names.append(name)
    return names


def load_recipe(path: Path, *, display: str, extra_variables: frozenset[str]) -> Recipe:
    """Load one recipe file. `extra_variables` are the variant variables of the matrix."""
    data = load(path, display=display)
    top = Where(display, data)
    schema.check_keys(top, {"name", "description", "source", "depends", "apt", "env", "steps",
                            "outputs", "imports", "runtime", "mem_per_job_gb"},
                      required=("name", "source", "steps", "outputs"))
    name = schema.string(top, "name", required=True, pattern=schema.NAME_RE,
                         what="component name (lowercase letters, digits, . _ + -)")
    if path.stem != name and not path.stem.startswith(name + "."):
        raise top.fail("name", f"{name!r} differs from the file name {path.stem!r}; "
                               f"rename one so they match ({name}.yaml, or {name}.FLAVOR.yaml "
                               f"for an alternative recipe)")
    source = _source(top)
    depends = schema.string_list(top, "depends", pattern=schema.NAME_RE, what="component name")
    if name in depends:
        raise top.child("depends").fail(depends.index(name), f"{name!r} depends on itself")
    apt = schema.string_list(top, "apt", pattern=APT_RE, what="apt package name")
    env, variables = _env(top, extra_variables)
    steps = schema.string_list(top, "steps")
    if not steps:
        raise top.fail("steps", "needs at least one build step")
    outputs = schema.mapping(top, "outputs", required=True)
    schema.check_keys(outputs, {"wheels", "prefix"})
    wheels = schema.string_list(outputs, "wheels", pattern=DIST_RE, what="distribution name")
    prefix = schema.boolean(outputs, "prefix", default=False)
    if not wheels and not prefix:
        raise outputs.fail(None, "produces nothing; list outputs.wheels or set outputs.prefix")
    imports = schema.string_list(top, "imports", pattern=MODULE_RE, what="Python module name")
    runtime = schema.boolean(top, "runtime", default=bool(wheels))
    if runtime and not wheels:
        raise top.fail("runtime", "a component without wheels cannot go into the runtime "
                                  "image; set runtime: false")
    return Recipe(
        name=name, file=display, description=schema.string(top, "description") or "",
        source=source, depends=depends, apt=apt, env=env, steps=steps, wheels=wheels,
        prefix=prefix, imports=imports, runtime=runtime,
        mem_per_job_gb=schema.number(top, "mem_per_job_gb", default=1.0, minimum=0.1),
        line_of_depends=data.lines.get("depends", data.line), variables=frozenset(variables),
        line_of_source=data.lines.get("source", data.line),
    )


def _source(top: Where) -> Source:
    src = schema.mapping(top, "source", required=True)
    kinds = [k for k in SOURCE_KINDS if k in src.node]
    if len(kinds) > 1:
        raise src.fail(kinds[1], f"a source has one kind, this one has {' and '.join(kinds)}; "
                                 f"keep one")
    if not kinds:
        for key in src.node:
            if key not in ("pin", "branch", "tag", "submodules"):
                raise src.fail(key, f"unknown source kind{did_you_mean(key, SOURCE_KINDS)}; "
                                    f"use one of {', '.join(SOURCE_KINDS)}")
        raise src.fail(None, f"needs exactly one of {', '.join(SOURCE_KINDS)}")
    kind = kinds[0]
    if kind == "git":
        schema.check_keys(src, {"git", "pin", "branch", "tag", "submodules"})
        url = schema.string(src, "git", pattern=URL_RE, what="git URL")
        pin = schema.string(src, "pin")
        if pin is not None and not COMMIT_RE.match(pin):
            raise src.fail("pin", f"{pin!r} is not a full 40-character commit; pin the full "
                                  f"hash (git rev-parse {pin}^{{commit}})")
        branch = schema.string(src, "branch", pattern=schema.REF_RE, what="branch name")
        tag = schema.string(src, "tag", pattern=schema.REF_RE, what="tag name")
        if pin is None and branch is None:
            raise src.fail(None, "a git source needs a pin (full commit) or a branch")
        return GitSource(url=url, pin=pin, branch=branch, tag=tag,
                         submodules=schema.boolean(src, "submodules", default=False))
    if kind == "sdist":
        schema.check_keys(src, {"sdist", "version", "sha256"}, required=("version", "sha256"))
        name = schema.string(src, "sdist", pattern=DIST_RE, what="distribution name")
        version = schema.string(src, "version", pattern=schema.REF_RE, what="version")
        sha = schema.string(src, "sha256", pattern=SHA256_RE, what="sha256 (64 hex digits)")
        return SdistSource(name=name, version=version, sha256=sha)
    if kind == "index":
        schema.check_keys(src, {"index", "nightly_index", "packages", "nightly_packages"},
                          required=("packages",))
        url = schema.string(src, "index", pattern=URL_RE, what="index URL")
        nightly = schema.string(src, "nightly_index", pattern=URL_RE, what="index URL")
        packages = schema.string_list(src, "packages", pattern=REQ_RE, what="requirement")
        for i, req in enumerate(packages):
            if "==" not in req:
                raise src.child("packages").fail(i, f"{req!r} is not pinned; write name==version")
        nightly_packages = schema.string_list(src, "nightly_packages", pattern=REQ_RE,
                                              what="requirement")
        return IndexSource(url=url, nightly_url=nightly, packages=packages,
                           nightly_packages=nightly_packages)
    schema.check_keys(src, {"path"})
    return PathSource(path=schema.string(src, "path"))


def _env(top: Where, extra: frozenset[str]) -> tuple[tuple[tuple[str, str], ...], set[str]]:
    env = schema.mapping(top, "env")
    if env is None:
        return (), set()
    known = set(CELL_VARIABLES) | set(extra)
    pairs, used = [], set()
    for key, value in env.node.items():
        if not schema.ENV_KEY_RE.match(key):
            raise env.fail(key, "environment names are UPPER_CASE letters, digits and _")
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise env.fail(key, "must be a single value (quote it)")
        value = text_of(value)
        try:
            names = template_variables(value)
        except ValueError as exc:
            raise env.fail(key, f"{exc}; placeholders are {{name}} "
                                f"(write {{{{ and }}}} for literal braces)") from None
        for name in names:
            if name not in known:
                raise env.fail(key, f"unknown placeholder {{{name}}}"
                                    f"{did_you_mean(name, known)}; known: "
                                    f"{', '.join(sorted(known))}")
        used.update(names)
        pairs.append((key, value))
    return tuple(pairs), used


def load_dir(directory: Path, *, display_root: Path, extra_variables: frozenset[str],
             overrides: dict[str, Path] | None = None) -> dict[str, Recipe]:
    """Every `*.yaml` in `directory` except matrix.yaml, plus `overrides` (name -> file)."""
    if not directory.is_dir():
        raise UserError(f"{directory}: recipe directory not found; pass --recipes DIR")
    strays = sorted(directory.glob("*.yml"))  # they would be skipped without a word
    if strays:
        raise UserError(f"{display_path(strays[0], display_root)}: recipe files end in .yaml; "
                        f"rename it to {strays[0].stem}.yaml")
    files = {p.stem: p for p in sorted(directory.glob("*.yaml")) if p.name != "matrix.yaml"}
    for name, path in (overrides or {}).items():
        if name not in files:
            raise UserError(f"--recipe {name}={path}: no component {name!r} in {directory}"
                            f"{did_you_mean(name, files)}")
        if not path.is_file():
            raise UserError(f"--recipe {name}={path}: file not found")
        files[name] = path
    recipes = {}
    for name, path in files.items():
        recipe = load_recipe(path, display=display_path(path, display_root),
                             extra_variables=extra_variables)
        if recipe.name != name:  # an override file must describe the same component
            raise UserError(f"{recipe.file}: describes {recipe.name!r}, not {name!r}; "
                            f"set name: {name}")
        recipes[name] = recipe
    return recipes


def display_path(path: Path, root: Path) -> str:
    """`path` relative to `root` for messages, else as given."""
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)
