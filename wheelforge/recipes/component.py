"""Component recipes: one YAML file per component, its model, and loading it.

`RecipeModel` is the file: its keys, their rules and descriptions (yamlschema.py says
why pydantic). What it cannot know is checked when a file is loaded: the file's name,
and the placeholders, to which the matrix's variants add. The loaded recipe is
core/types.py's frozen `Recipe`, which every later stage reads: pydantic stays in this
stage, and a recipe keeps what the file alone does not say (its file, its lines, the
placeholders it uses).
"""

from __future__ import annotations

import hashlib
import re
import string
import urllib.error
import urllib.request
from pathlib import Path
from typing import Annotated, Any

from packaging.version import InvalidVersion, Version
from pydantic import AfterValidator, ConfigDict, Field, Strict, WrapValidator, model_validator

from wheelforge.core import wheelset
from wheelforge.core.terminal import UserError, did_you_mean
from wheelforge.core.types import (
    GitSource,
    IndexSource,
    PathSource,
    Recipe,
    SdistSource,
    SmokeCheck,
)
from wheelforge.recipes.yamlschema import (
    Flag,
    Keys,
    Line,
    Text,
    Unique,
    fail,
    line_at,
    load,
    matches,
    name_of,
    none_of,
    not_empty,
    problem,
    ref_of,
    validate,
)

# https/http/ssh/git/file URLs or scp-like user@host:path; no other transport (ext::, fd::),
# and no part that starts with '-' (git and ssh would read it as an option).
URL_RE = (r"(?!.*[/:@]-)(?:(?:https?|ssh|git|file)://(?:/|[A-Za-z0-9\[])"
          r"[A-Za-z0-9._~:/@%+\[\]-]{0,2000}"
          r"|[A-Za-z0-9][A-Za-z0-9._-]{0,200}@[A-Za-z0-9][A-Za-z0-9._-]{0,253}:"
          r"[A-Za-z0-9._~/%+-]{1,2000})")


MEMBER_PATH_RE = r"[A-Za-z0-9_.*{}\[\]-][A-Za-z0-9_./*{}\[\]-]{0,299}"


# Variables the build itself sets for every step (docker/build-component.py, the secrets and
# Dockerfile.wheels): a recipe's env must not replace them.
RESERVED_ENV = frozenset({
    "SRC", "OUT", "PREFIX", "DEPS", "MAX_JOBS", "CMAKE_BUILD_PARALLEL_LEVEL", "PIP_FIND_LINKS",
    "CCACHE_DIR", "SPEC", "TARGET", "PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE",
    "GIT_SSL_CAINFO", "CURL_CA_BUNDLE", "PIP_INDEX_URL", "PATH", "HOME", "VIRTUAL_ENV",
    "PIP_DISABLE_PIP_VERSION_CHECK",
})


# The placeholders a recipe's env may use besides the matrix's variant variables: the
# cell's (docs/recipes.md says what each is) and the recipe's own {version}, its
# outputs.version as the cell's build must produce it (plan/__init__.py).
PLACEHOLDERS = frozenset({"archs", "archs_comma", "arch", "python", "stack", "channel",
                          "variant", "version"})


INDEX_TIMEOUT_S = 10


def requirement_name(req: str) -> str:
    return re.split(r"[=<>~!\[]", req)[0]


def _url_hint(value: str) -> str:
    return (" (https, http, ssh, git or file URLs, or user@host:path; no part may start "
            "with '-')")


def _pinned(req: str) -> str:
    if "==" not in req:
        raise problem(f"{req!r} is not pinned; write name==version")
    return req


def _pep440(raw: str) -> str:
    """outputs.version as the wheels' file names will carry it."""
    try:
        return str(Version(raw))
    except InvalidVersion:
        raise problem(f"{raw!r} is not a PEP 440 version (e.g. 1.2.2, 0.1.6rc0); write the "
                      f"version without a leading tag prefix such as 'v'") from None


def _template(value: str) -> str:
    try:
        template_variables(value)
    except ValueError as exc:
        raise problem(f"{exc}; placeholders are {{name}} (write {{{{ and }}}} for literal "
                      f"braces)") from None
    return value


def _has_module(path: str) -> str:
    if "{module}" not in path:
        raise problem(f"{path!r} has no {{module}}; write where a module's prebuilt file "
                      f"lies, e.g. aiter/jit/{{module}}.so")
    return path


ComponentName = name_of("component name")
GitUrl = Annotated[Line, matches(URL_RE, "git URL", _url_hint)]
IndexUrl = Annotated[Line, matches(URL_RE, "index URL", _url_hint)]
Commit = Annotated[Line, matches(r"[0-9a-f]{40}", "full 40-character commit",
                                 lambda pin: f"; pin the full hash (git rev-parse "
                                             f"{pin}^{{commit}})")]
Sha256 = Annotated[Line, matches(r"[0-9a-f]{64}", "sha256 (64 lowercase hex digits)",
                                 lambda _: "; sha256sum FILE prints it")]
Distribution = Annotated[Line, matches(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,198}[A-Za-z0-9])?",
                                       "distribution name")]
Requirement = Annotated[Line, matches(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}"
                                      r"(\[[A-Za-z0-9,._-]{1,200}\])?"
                                      r"(==|>=|<=|~=)?[A-Za-z0-9.+!*-]{0,100}", "requirement")]
Apt = Annotated[Line, matches(r"[a-z0-9][a-z0-9.+-]{0,127}(=[A-Za-z0-9.+:~-]{1,128})?",
                              "apt package name")]
Module = Annotated[Line, matches(
    r"[A-Za-z_][A-Za-z0-9_]{0,99}(\.[A-Za-z_][A-Za-z0-9_]{0,99}){0,20}", "Python module name")]
WheelPath = Annotated[Line, matches(MEMBER_PATH_RE, "path in the wheel")]
EnvName = Annotated[Line, matches(r"[A-Z_][A-Z0-9_]{0,127}", "environment name (UPPER_CASE "
                                  "letters, digits and _)"),
                    none_of(RESERVED_ENV, lambda key: f"${key} is set by the build itself (see "
                                                      f"docs/recipes.md); use another name")]
Env = dict[EnvName, Annotated[Line, AfterValidator(_template)]]


class GitModel(Keys):
    """A git repository at a pinned commit (the stable channel) or a branch's head (nightly)."""

    model_config = ConfigDict(
        title="git source",
        json_schema_extra={"anyOf": [{"required": ["pin"]}, {"required": ["branch"]}]})

    git: GitUrl = Field(description="The repository: an https, http, ssh, git or file URL, "
                                    "or user@host:path.")
    pin: Commit = Field(None, description="The full commit the stable channel builds.")
    branch: ref_of("branch name") = Field(
        None, description="The branch whose head the nightly channel builds, resolved when "
                          "the plan is made. A pin, a branch or both.")
    tag: ref_of("tag name") = Field(None, description="The tag of `pin`: a label for people, "
                                                   "never fetched.")
    submodules: Flag = Field(False, description="Fetch the submodules too (git submodule "
                                                "update --init --recursive).")

    @model_validator(mode="after")
    def _pinned_or_following(self) -> GitModel:
        if self.pin is None and self.branch is None:
            raise problem("a git source needs a pin (full commit) or a branch")
        return self

    def loaded(self) -> GitSource:
        return GitSource(url=self.git, pin=self.pin, branch=self.branch, tag=self.tag,
                         submodules=self.submodules)


class SdistModel(Keys):
    """A source distribution from the package index, checked by its sha256."""

    model_config = ConfigDict(title="sdist source")

    sdist: Distribution = Field(description="The distribution's name.")
    version: ref_of("version") = Field(description="The version to download.")
    sha256: Sha256 = Field(description="The sdist file's sha256.")

    def loaded(self) -> SdistSource:
        return SdistSource(name=self.sdist, version=self.version, sha256=self.sha256)


class IndexModel(Keys):
    """Prebuilt wheels from a package index; the steps download them ($PACKAGES)."""

    model_config = ConfigDict(title="index source")

    index: IndexUrl = Field(None, description="The index ($INDEX_URL in the steps); without "
                                              "it, pip's configured index.")
    nightly_index: IndexUrl = Field(None, description="The index of the nightly channel.")
    packages: Annotated[list[Annotated[Requirement, AfterValidator(_pinned)]], Unique,
                        not_empty("lists no package; name at least one name==version")] = Field(
        description="The pinned requirements (name==version) of the stable channel.")
    nightly_packages: Annotated[list[Requirement], Unique] = Field(
        [], description="The requirements of the nightly channel (may be unpinned).")
    sha256: Annotated[dict[str, Sha256], not_empty(
        "lists no wheel; give {WHEEL_FILE_NAME: SHA256}, or remove it")] = Field(
        None, description="WHEEL_FILE: SHA256 for every wheel the build produces, each a "
                          "wheel of a pinned package at its pinned version; a wheel that "
                          "is not listed or differs refuses the wheel set.")

    @model_validator(mode="after")
    def _wheels_of_the_pins(self) -> IndexModel:
        pins = {wheelset.canonical(requirement_name(p)): p.split("==", 1)[1] for p in self.packages}
        for file in self.sha256 or {}:
            try:
                wheel = wheelset.parse(file)
            except ValueError:
                raise problem(f"{file!r} is not a wheel file name ({wheelset.FORM}); give "
                              f"the file's name", "sha256", file) from None
            if wheel.name not in pins:
                raise problem(f"{file!r} is not a wheel of source.packages "
                              f"({', '.join(self.packages)}); fix the file name or add the "
                              f"package", "sha256", file)
            if not wheelset.same_version(wheel.version, pins[wheel.name]):
                raise problem(f"{file!r} is version {wheel.version}, source.packages pins "
                              f"{pins[wheel.name]}; list the pinned version's wheel",
                              "sha256", file)
        return self

    def loaded(self) -> IndexSource:
        return IndexSource(url=self.index, nightly_url=self.nightly_index,
                           packages=tuple(self.packages),
                           nightly_packages=tuple(self.nightly_packages),
                           sha256=tuple(sorted((self.sha256 or {}).items())))


class PathModel(Keys):
    """A local checkout, read as it is."""

    model_config = ConfigDict(title="path source")

    path: Line = Field(description="The checkout's folder.")

    def loaded(self) -> PathSource:
        return PathSource(path=self.path)


# A source's kind is the key that names it; `packages:` alone is an index source.
SOURCE_KINDS = {"git": GitModel, "sdist": SdistModel, "index": IndexModel, "path": PathModel}


def _one_kind(value: Any, _handler: Any) -> Any:
    """`source:` as the model of its kind (the union is the JSON Schema's; the kind's key
    says which member, so that an error names that kind's keys and no other's)."""
    if not isinstance(value, dict):
        raise problem("must be a mapping (key: value lines)")
    kinds = [k for k in SOURCE_KINDS if k in value or (k == "index" and "packages" in value)]
    if len(kinds) > 1:
        second = kinds[1] if kinds[1] in value else "packages"
        raise problem(f"a source has one kind, this one has {' and '.join(kinds)}; keep one",
                      second)
    if not kinds:
        for key in value:
            if key not in GitModel.model_fields:
                raise problem(f"unknown source kind{did_you_mean(key, SOURCE_KINDS)}; use one "
                              f"of {', '.join(SOURCE_KINDS)}", key)
        raise problem(f"needs exactly one of {', '.join(SOURCE_KINDS)}")
    return SOURCE_KINDS[kinds[0]].model_validate(value)


class OutputsModel(Keys):
    """What the steps produce."""

    wheels: Annotated[list[Distribution], Unique] = Field(
        [], description="The distributions the steps leave in $OUT; a wheel of another name "
                        "fails the build.")
    prefix: Flag = Field(False, description="An install prefix in $PREFIX instead (an "
                                            "intermediate artifact, e.g. LLVM/MLIR).")
    version: Annotated[ref_of("version"), AfterValidator(_pep440)] = Field(
        None, description="The PEP 440 version its wheels must have ({version} in env); see "
                          "Versions below.")

    @model_validator(mode="after")
    def _something(self) -> OutputsModel:
        if not self.wheels and not self.prefix:
            raise problem("produces nothing; list outputs.wheels or set outputs.prefix")
        if self.version is not None and not self.wheels:
            raise problem("a version is for wheels, and this recipe lists none; remove it",
                          "version")
        return self


class SmokeModel(Keys):
    """One check of the component in its runtime image."""

    name: name_of("check name") = Field(description="Its name, reported as COMPONENT:NAME.")
    run: Text = Field(description="A shell command run in the image's venv; exit 0 passes.")
    gpu: Flag = Field(False, description="Needs a GPU: skipped, and said, where there is none.")


def _named_once(checks: list[SmokeModel]) -> list[SmokeModel]:
    for i, check in enumerate(checks):
        if any(c.name == check.name for c in checks[:i]):
            raise problem(f"{check.name!r} names two checks; rename one", i, "name")
    return checks


class JitModel(Keys):
    """Where the wheel lists its run-time-compiled modules, and where a prebuilt one lies."""

    modules: WheelPath = Field(description="The wheel's file that lists the modules (a JSON "
                                           "object, one key per module).")
    prebuilt: Annotated[WheelPath, AfterValidator(_has_module)] = Field(
        description="Where a prebuilt module lies in the wheel, with {module} in the path.")
    never: Annotated[list[Annotated[Line, matches(MEMBER_PATH_RE, "module glob")]], Unique] = \
        Field([], description="Globs of the modules upstream never prebuilds.")

    def loaded(self) -> tuple[tuple[str, object], ...]:
        return (("modules", self.modules), ("prebuilt", self.prebuilt),
                ("never", list(self.never)))


class RecipeModel(Keys):
    """A component recipe: NAME.yaml in a recipe set such as recipes/."""

    model_config = ConfigDict(title="wheelforge component recipe")

    name: ComponentName = Field(description="The component: the file is NAME.yaml, or "
                                            "NAME.FLAVOR.yaml for an alternative recipe.")
    description: Text = Field("", description="Free text for people; not in the cache key.")
    source: Annotated[GitModel | SdistModel | IndexModel | PathModel,
                      WrapValidator(_one_kind)] = Field(
        description="Where the source comes from: exactly one kind, git, sdist, index "
                    "(packages) or path; the keys of each are below.")
    depends: Annotated[list[ComponentName], Unique] = Field(
        [], description="The components built before it; their outputs are in $DEPS.")
    apt: Annotated[list[Apt], Unique] = Field(
        [], description="Debian packages the build needs, added to the stack's builder_apt.")
    env: Env = Field({}, description="The build's environment; {placeholders} come from the "
                                     "cell (see below).")
    steps: Annotated[list[Text], Unique, not_empty("needs at least one build step")] = Field(
        description="The build, one bash -e -o pipefail command per item, run in the source "
                    "tree.")
    outputs: OutputsModel = Field(description="What the steps produce: the keys below.")
    imports: Annotated[list[Module], Unique] = Field(
        [], description="Modules the runtime image must import.")
    runtime: Flag = Field(None, description="Its wheels go into the runtime image; default: "
                                            "true when it lists outputs.wheels.")
    runtime_apt: Annotated[list[Apt], Unique] = Field(
        [], description="Debian packages its wheels need at run time.")
    runtime_env: Env = Field({}, description="Set in the runtime image (ENV), placeholders as "
                                             "in env.")
    smoke: Annotated[list[SmokeModel], not_empty(
        "lists no check; give {name: ..., run: ...} items, or remove it"),
        AfterValidator(_named_once)] = Field(
        None, description="Its own checks in the runtime image, run by the smoke suite.")
    jit: JitModel = Field(None, description="Its run-time-compiled modules (see JIT coverage "
                                            "below).")
    stacks: Annotated[list[name_of("stack name")], Unique, not_empty(
        "lists no stack; name at least one, or remove the key to build for every stack")] = \
        Field(None, description="The matrix stacks whose cells build it; default: every stack.")
    mem_per_job_gb: Annotated[float, Strict(), Field(ge=0.1, allow_inf_nan=False)] = Field(
        1.0, description="The memory one compile job needs, in GiB: MAX_JOBS is at most "
                         "0.9 x the builder's memory / this.")

    @model_validator(mode="after")
    def _consistent(self) -> RecipeModel:
        if self.name in self.depends:
            raise problem(f"{self.name!r} depends on itself", "depends",
                          self.depends.index(self.name))
        if self.runtime is None:
            self.runtime = bool(self.outputs.wheels)
        if self.runtime and not self.outputs.wheels:
            raise problem("a component without wheels cannot go into the runtime image; set "
                          "runtime: false", "runtime")
        if not self.runtime and (self.runtime_env or self.smoke is not None):
            raise problem("is for a component of the runtime image, and this one is not "
                          "(runtime: false, or no wheels); remove it",
                          "runtime_env" if self.runtime_env else "smoke")
        return self


def load_recipe(path: Path, *, display: str, extra_variables: frozenset[str]) -> Recipe:
    """Load one recipe file. `extra_variables` are the variant variables of the matrix."""
    data = load(path, display=display)
    model = validate(RecipeModel, data, display)
    if path.stem != model.name and not path.stem.startswith(model.name + "."):
        raise fail(display, data, ("name",),
                   f"{model.name!r} differs from the file name {path.stem!r}; rename one so "
                   f"they match ({model.name}.yaml, or {model.name}.FLAVOR.yaml for an "
                   f"alternative recipe)")
    known = PLACEHOLDERS | extra_variables
    used: set[str] = set()
    for key in ("env", "runtime_env"):
        for name, template in getattr(model, key).items():
            for variable in template_variables(template):
                if variable == "version" and model.outputs.version is None:
                    raise fail(display, data, (key, name),
                               "uses {version}, but outputs.version is not set; add "
                               "outputs.version (the version this pin builds)")
                if variable not in known:
                    raise fail(display, data, (key, name),
                               f"unknown placeholder {{{variable}}}"
                               f"{did_you_mean(variable, known)}; known: "
                               f"{', '.join(sorted(known))}")
                used.add(variable)
    outputs = model.outputs
    return Recipe(
        name=model.name, file=display, description=model.description,
        source=model.source.loaded(), depends=tuple(model.depends), apt=tuple(model.apt),
        env=tuple(model.env.items()), steps=tuple(model.steps), wheels=tuple(outputs.wheels),
        version=outputs.version, runtime_env=tuple(model.runtime_env.items()),
        smoke=tuple(SmokeCheck(name=c.name, run=c.run, gpu=c.gpu) for c in model.smoke or ()),
        jit=model.jit.loaded() if model.jit else (), prefix=outputs.prefix,
        imports=tuple(model.imports), runtime=model.runtime,
        runtime_apt=tuple(model.runtime_apt), stacks=tuple(model.stacks or ()),
        mem_per_job_gb=float(model.mem_per_job_gb), variables=frozenset(used),
        line_of_stacks=line_at(data, ("stacks",)), line_of_depends=line_at(data, ("depends",)),
        line_of_source=line_at(data, ("source",)), step_lines=tuple(data["steps"].lines),
    )


def verify_index_wheels(component: str, recipe_file: str, sha256s: tuple[tuple[str, str], ...],
                        wheels: list[Path]) -> None:
    """Every wheel `component` produced is listed in its recipe's sha256 map and matches
    (a vendor file that changed under the same version never reaches a runtime image);
    else one UserError line naming the file. No map: nothing to check."""
    if not sha256s:
        return
    expected = dict(sha256s)
    for whl in wheels:
        if whl.name not in expected:
            raise UserError(f"{recipe_file}: source.sha256: {component} produced {whl.name}, "
                            f"which is not listed (listed: {', '.join(expected)}); refusing the "
                            f"wheel set; add the file with its sha256 if it is the right one")
        actual = hashlib.sha256(whl.read_bytes()).hexdigest()
        if actual != expected[whl.name]:
            raise UserError(f"{recipe_file}: source.sha256: {whl.name} has sha256 {actual}, "
                            f"the recipe lists {expected[whl.name]}; refusing the wheel set "
                            f"(the index served another file under this name)")


def check_index_pins(b, finding, index_url: str) -> list:
    """`invoke check` of an index source: package names against outputs.wheels, and where
    the index answers, each pinned version's wheel files (and the sha256 map) on it."""
    src = b.source
    names = {wheelset.canonical(requirement_name(p)): p for p in src.packages}
    out = [finding("ERROR", ("outputs", "wheels", i),
                   f"outputs.wheels {w!r} is not among the index packages "
                   f"({', '.join(src.packages)}); fix outputs.wheels or source.packages")
           for i, w in enumerate(b.wheels) if wheelset.canonical(w) not in names]
    hashes = dict(src.wheel_sha256)
    read = True
    for norm, req in names.items():
        if "==" not in req:
            continue
        version = req.split("==", 1)[1]
        url = f"{index_url.rstrip('/')}/{norm}/"
        try:
            with urllib.request.urlopen(url, timeout=INDEX_TIMEOUT_S) as response:  # noqa: S310
                page = response.read().decode("utf-8", errors="replace")
        except (urllib.error.URLError, OSError, ValueError) as exc:
            out.append(finding("ok", ("source",), f"index {index_url} not readable here "
                               f"({getattr(exc, 'reason', exc)}); wheel file names not checked"))
            read = False
            break
        files = _index_files(page)
        prefix = f"{norm.replace('-', '_')}-{version}"
        if not any(f.lower().startswith((prefix + "-", prefix + "+")) for f in files):
            out.append(finding("ERROR", ("source", "packages"),
                               f"{req}: no wheel of that version at {url}; fix the pin"))
        for file, want in hashes.items():
            if wheelset.canonical(file.split("-", 1)[0]) != norm:
                continue
            if file not in files:
                out.append(finding("ERROR", ("source", "sha256", file), f"{file} is not on "
                                   f"{url}; fix the file name in source.sha256"))
            elif files[file] and files[file] != want:
                out.append(finding("ERROR", ("source", "sha256", file), f"{file}: the index "
                                   f"gives sha256 {files[file]}, the recipe {want}; find out "
                                   f"which is right before changing either"))
    if not any(f.level == "ERROR" for f in out):
        listed = f"; {len(hashes)} wheel sha256s" if hashes else ""
        how = (f"names, wheel files{' and sha256s' if hashes else ''} checked on the index"
               if read else f"names checked against outputs.wheels{listed}")
        out.append(finding("ok", ("source",), f"prebuilt wheels {' '.join(src.packages)} "
                           f"({how})"))
    return out


def _index_files(page: str) -> dict[str, str]:
    """Wheel file name -> sha256 ('' when the page gives none) from a simple-index page."""
    out = {name.replace("%2B", "+"): "" for name in re.findall(r">\s*([^<>\s]+\.whl)\s*<", page)}
    for href, text in re.findall(r"<a\s[^>]*href=\"([^\"]*)\"[^>]*>\s*([^<>\s]+\.whl)\s*<", page):
        m = re.search(r"#sha256=([0-9a-f]{64})", href)
        out[text.replace("%2B", "+")] = m.group(1) if m else ""
    return out


def template_variables(template: str) -> list[str]:
    """The `{name}` placeholders of a template; `{{`/`}}` are literal braces."""
    names = []
    try:
        parsed = list(string.Formatter().parse(template))
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
    try:  # the file itself is not resolved: it may be a symlink loop, refused when read
        return str((path.parent.resolve() / path.name).relative_to(root.resolve()))
    except (ValueError, OSError, RuntimeError):
        return str(path)


def builds_on(recipe: Recipe, stack: str) -> bool:
    """Whether `recipe` is built in the cells of `stack` (its `stacks:`, default all)."""
    return not recipe.stacks or stack in recipe.stacks
