"""Component recipes: one YAML file per component, loaded and validated strictly,
including the sha256 map and checks of index sources.

Prebuilt wheels from a package index: the per-wheel sha256 map and its checks.

An index source names pinned packages (`packages:`) and, optionally, the index
(`index:`; without it, pip's configured index) and `sha256: {WHEEL_FILE: HEX}`.
With the map, every wheel the component's build produces must be listed there
and match, or the wheel set is refused before it is swapped in: a vendor file
that changed under the same version never reaches a runtime image.

Component recipes: one YAML file per component, loaded and validated strictly.

A recipe says where the component's source comes from, which other components
it needs, what the builder needs from apt, the environment of its build (with
`{placeholders}` filled from the matrix cell), the build steps, what it outputs
and how much memory one compile job takes. Adding a component is adding a file.
"""

from __future__ import annotations

import hashlib
import re
import string as _string
import urllib.error
import urllib.request
from pathlib import Path

from packaging.version import InvalidVersion, Version

from wheelforge.core import wheelset
from wheelforge.core.terminal import UserError, did_you_mean
from wheelforge.core.types import (
    GitSource,
    IndexSource,
    PathSource,
    Recipe,
    SdistSource,
    SmokeCheck,
    Source,
)
from wheelforge.recipes import yamlschema
from wheelforge.recipes.yamlschema import Mapping, Sequence, Where, load, text_of

SHA256_RE = re.compile(r"[0-9a-f]{64}")


INDEX_TIMEOUT_S = 10


normalize = wheelset.canonical  # a distribution name as installers compare it (PEP 503)


def requirement_name(req: str) -> str:
    return re.split(r"[=<>~!\[]", req)[0]


def sha256_map(src: yamlschema.Where, packages: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """`source.sha256` of an index source: wheel file name -> hex, each naming a pinned
    package at its pinned version. Sorted by file name; () when absent."""
    node = yamlschema.mapping(src, "sha256")
    if node is None:
        return ()
    if not node.node:
        raise src.fail("sha256", "lists no wheel; give {WHEEL_FILE_NAME: SHA256}, or remove it")
    pins = {normalize(requirement_name(p)): p.split("==", 1)[1] for p in packages}
    out = []
    for file, value in node.node.items():
        try:
            wheel = wheelset.parse(str(file))
        except ValueError:
            raise node.fail(file, f"{file!r} is not a wheel file name "
                                  f"({wheelset.FORM}); give the file's name") from None
        dist, version = wheel.name, wheel.version
        if dist not in pins:
            raise node.fail(file, f"{file!r} is not a wheel of source.packages "
                                  f"({', '.join(packages)}); fix the file name or add the package")
        if not wheelset.same_version(version, pins[dist]):
            raise node.fail(file, f"{file!r} is version {version}, source.packages pins "
                                  f"{pins[dist]}; list the pinned version's wheel")
        if not isinstance(value, str) or not SHA256_RE.fullmatch(value):
            raise node.fail(file, "must be a sha256 (64 lowercase hex digits); "
                                  "sha256sum FILE prints it")
        out.append((str(file), value))
    return tuple(sorted(out))


def verify_index_wheels(component: str, recipe_file: str, sha256s: tuple[tuple[str, str], ...],
                        wheels: list[Path]) -> None:
    """Every wheel `component` produced is listed in its recipe's sha256 map and matches;
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
    names = {normalize(requirement_name(p)): p for p in src.packages}
    out = [finding("ERROR", ("outputs", "wheels", i),
                   f"outputs.wheels {w!r} is not among the index packages "
                   f"({', '.join(src.packages)}); fix outputs.wheels or source.packages")
           for i, w in enumerate(b.wheels) if normalize(w) not in names]
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
            if normalize(file.split("-", 1)[0]) != norm:
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


# All applied with `fullmatch` (see recipes/yamlschema.py).
COMMIT_RE = re.compile(r"[0-9a-f]{40}")




# https/http/ssh/git/file URLs or scp-like user@host:path; no other transport (ext::, fd::),
# and no part that starts with '-' (git and ssh would read it as an option).
URL_RE = re.compile(r"(?:https?|ssh|git|file)://(?:/|[A-Za-z0-9\[])[A-Za-z0-9._~:/@%+\[\]-]{0,2000}"
                    r"|[A-Za-z0-9][A-Za-z0-9._-]{0,200}@[A-Za-z0-9][A-Za-z0-9._-]{0,253}:"
                    r"[A-Za-z0-9._~/%+-]{1,2000}")


DIST_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,198}[A-Za-z0-9])?")


REQ_RE = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}(\[[A-Za-z0-9,._-]{1,200}\])?(==|>=|<=|~=)?[A-Za-z0-9.+!*-]{0,100}")


MEMBER_PATH_RE = re.compile(r"[A-Za-z0-9_.*{}\[\]-][A-Za-z0-9_./*{}\[\]-]{0,299}")


MODULE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}(\.[A-Za-z_][A-Za-z0-9_]{0,99}){0,20}")


APT_RE = re.compile(r"[a-z0-9][a-z0-9.+-]{0,127}(=[A-Za-z0-9.+:~-]{1,128})?")


# Variables the build itself sets for every step (docker/build-component.py, the secrets and
# Dockerfile.wheels): a recipe's env must not replace them.
RESERVED_ENV = frozenset({
    "SRC", "OUT", "PREFIX", "DEPS", "MAX_JOBS", "CMAKE_BUILD_PARALLEL_LEVEL", "PIP_FIND_LINKS",
    "CCACHE_DIR", "SPEC", "TARGET", "PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE",
    "GIT_SSL_CAINFO", "CURL_CA_BUNDLE", "PIP_INDEX_URL", "PATH", "HOME", "VIRTUAL_ENV",
    "PIP_DISABLE_PIP_VERSION_CHECK",
})


def valid_url(url: str) -> bool:
    """A git or index URL this tool will hand to git or pip: see URL_RE."""
    return bool(URL_RE.fullmatch(url)) and not re.search(r"[/:@]-", url)


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


# A placeholder of the recipe itself: its outputs.version, as the cell's build must produce it
# (plan/__init__.py: exactly that version on a pinned source, a later one on a branch head).
RECIPE_VARIABLES = {
    "version": "the version the build must produce (outputs.version; on a nightly branch "
               "head, that version with .post1.dev0+g<commit>)",
}


SOURCE_KINDS = ("git", "sdist", "index", "path")


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
    yamlschema.check_keys(top, {"name", "description", "source", "depends", "apt", "env", "steps",
                                "outputs", "imports", "runtime", "mem_per_job_gb", "runtime_apt",
                                "stacks", "runtime_env", "smoke", "jit"},
                          required=("name", "source", "steps", "outputs"))
    name = yamlschema.string(top, "name", required=True, pattern=yamlschema.NAME_RE,
                             what="component name (lowercase letters, digits, . _ + -)")
    if path.stem != name and not path.stem.startswith(name + "."):
        raise top.fail("name", f"{name!r} differs from the file name {path.stem!r}; "
                               f"rename one so they match ({name}.yaml, or {name}.FLAVOR.yaml "
                               f"for an alternative recipe)")
    source = _source(top)
    depends = yamlschema.string_list(top, "depends", pattern=yamlschema.NAME_RE,
                                     what="component name")
    if name in depends:
        raise top.child("depends").fail(depends.index(name), f"{name!r} depends on itself")
    apt = yamlschema.string_list(top, "apt", pattern=APT_RE, what="apt package name")
    runtime_apt = yamlschema.string_list(top, "runtime_apt", pattern=APT_RE,
                                         what="apt package name")
    stacks = yamlschema.string_list(top, "stacks", pattern=yamlschema.NAME_RE, what="stack name")
    if "stacks" in top.node and not stacks:
        raise top.fail("stacks", "lists no stack; name at least one, or remove the key to "
                                 "build for every stack")
    outputs = yamlschema.mapping(top, "outputs", required=True)
    yamlschema.check_keys(outputs, {"wheels", "prefix", "version"})
    version = _version(outputs)
    env, variables = _env(top, extra_variables, version)
    runtime_env, runtime_variables = _env(top, extra_variables, version, key="runtime_env")
    variables |= runtime_variables
    steps = yamlschema.string_list(top, "steps", multiline=True)
    if not steps:
        raise top.fail("steps", "needs at least one build step")
    wheels = yamlschema.string_list(outputs, "wheels", pattern=DIST_RE, what="distribution name")
    prefix = yamlschema.boolean(outputs, "prefix", default=False)
    if not wheels and not prefix:
        raise outputs.fail(None, "produces nothing; list outputs.wheels or set outputs.prefix")
    if version is not None and not wheels:
        raise outputs.fail("version", "a version is for wheels, and this recipe lists none; "
                                      "remove it")
    imports = yamlschema.string_list(top, "imports", pattern=MODULE_RE, what="Python module name")
    runtime = yamlschema.boolean(top, "runtime", default=bool(wheels))
    if runtime and not wheels:
        raise top.fail("runtime", "a component without wheels cannot go into the runtime "
                                  "image; set runtime: false")
    if (runtime_env or "smoke" in top.node) and not runtime:
        key = "runtime_env" if runtime_env else "smoke"
        raise top.fail(key, "is for a component of the runtime image, and this one is not "
                            "(runtime: false, or no wheels); remove it")
    return Recipe(
        name=name, file=display,
        description=yamlschema.string(top, "description", multiline=True) or "",
        source=source, depends=depends, apt=apt, env=env, steps=steps, wheels=wheels,
        version=version, runtime_env=runtime_env, smoke=_smoke(top), jit=_jit(top),
        prefix=prefix, imports=imports, runtime=runtime, runtime_apt=runtime_apt,
        stacks=stacks, line_of_stacks=data.lines.get("stacks", data.line),
        mem_per_job_gb=yamlschema.number(top, "mem_per_job_gb", default=1.0, minimum=0.1),
        line_of_depends=data.lines.get("depends", data.line), variables=frozenset(variables),
        line_of_source=data.lines.get("source", data.line),
        step_lines=tuple(data["steps"].lines),
    )


def _source(top: Where) -> Source:
    src = yamlschema.mapping(top, "source", required=True)
    kinds = [k for k in SOURCE_KINDS if k in src.node]
    if "packages" in src.node and "index" not in kinds:  # wheels from pip's configured index
        kinds.insert(SOURCE_KINDS.index("index"), "index")
    if len(kinds) > 1:
        second = kinds[1] if kinds[1] in src.node else "packages"
        raise src.fail(second, f"a source has one kind, this one has {' and '.join(kinds)}; "
                               f"keep one")
    if not kinds:
        for key in src.node:
            if key not in ("pin", "branch", "tag", "submodules"):
                raise src.fail(key, f"unknown source kind{did_you_mean(key, SOURCE_KINDS)}; "
                                    f"use one of {', '.join(SOURCE_KINDS)}")
        raise src.fail(None, f"needs exactly one of {', '.join(SOURCE_KINDS)}")
    kind = kinds[0]
    if kind == "git":
        yamlschema.check_keys(src, {"git", "pin", "branch", "tag", "submodules"})
        url = _url(src, "git", "git URL")
        pin = yamlschema.string(src, "pin")
        if pin is not None and not COMMIT_RE.fullmatch(pin):
            raise src.fail("pin", f"{pin!r} is not a full 40-character commit; pin the full "
                                  f"hash (git rev-parse {pin}^{{commit}})")
        branch = yamlschema.string(src, "branch", pattern=yamlschema.REF_RE, what="branch name")
        tag = yamlschema.string(src, "tag", pattern=yamlschema.REF_RE, what="tag name")
        if pin is None and branch is None:
            raise src.fail(None, "a git source needs a pin (full commit) or a branch")
        return GitSource(url=url, pin=pin, branch=branch, tag=tag,
                         submodules=yamlschema.boolean(src, "submodules", default=False))
    if kind == "sdist":
        yamlschema.check_keys(src, {"sdist", "version", "sha256"}, required=("version", "sha256"))
        name = yamlschema.string(src, "sdist", pattern=DIST_RE, what="distribution name")
        version = yamlschema.string(src, "version", pattern=yamlschema.REF_RE, what="version")
        sha = yamlschema.string(src, "sha256", pattern=SHA256_RE, what="sha256 (64 hex digits)")
        return SdistSource(name=name, version=version, sha256=sha)
    if kind == "index":
        yamlschema.check_keys(src, {"index", "nightly_index", "packages", "nightly_packages",
                                    "sha256"}, required=("packages",))
        url = _url(src, "index", "index URL")
        nightly = _url(src, "nightly_index", "index URL")
        packages = yamlschema.string_list(src, "packages", pattern=REQ_RE, what="requirement")
        for i, req in enumerate(packages):
            if "==" not in req:
                raise src.child("packages").fail(i, f"{req!r} is not pinned; write name==version")
        if not packages:
            raise src.fail("packages", "lists no package; name at least one name==version")
        nightly_packages = yamlschema.string_list(src, "nightly_packages", pattern=REQ_RE,
                                                  what="requirement")
        return IndexSource(url=url, nightly_url=nightly, packages=packages,
                           nightly_packages=nightly_packages,
                           sha256=sha256_map(src, packages))
    yamlschema.check_keys(src, {"path"})
    return PathSource(path=yamlschema.string(src, "path"))


def _url(src: Where, key: str, what: str) -> str | None:
    url = yamlschema.string(src, key, what=what)
    if url is not None and not valid_url(url):
        raise src.fail(key, f"{url!r} is not a valid {what} (https, http, ssh, git or file "
                            f"URLs, or user@host:path; no part may start with '-')")
    return url


def _version(outputs: Where) -> str | None:
    """outputs.version: a PEP 440 version, as the wheels' file names will carry it."""
    raw = yamlschema.string(outputs, "version", pattern=yamlschema.REF_RE, what="version")
    if raw is None:
        return None
    try:
        return str(Version(raw))
    except InvalidVersion:
        raise outputs.fail("version", f"{raw!r} is not a PEP 440 version (e.g. 1.2.2, "
                                      f"0.1.6rc0); write the version without a leading "
                                      f"tag prefix such as 'v'") from None


def _jit(top: Where) -> tuple[tuple[str, object], ...]:
    """`jit:` where the wheel lists its run-time-compiled modules and where a prebuilt one
    lies ({module} in the pattern); `never`: globs of modules upstream never prebuilds."""
    node = yamlschema.mapping(top, "jit")
    if node is None:
        return ()
    yamlschema.check_keys(node, {"modules", "prebuilt", "never"}, required=("modules", "prebuilt"))
    modules = yamlschema.string(node, "modules", pattern=MEMBER_PATH_RE, what="path in the wheel")
    prebuilt = yamlschema.string(node, "prebuilt", pattern=MEMBER_PATH_RE, what="path in the wheel")
    if "{module}" not in prebuilt:
        raise node.fail("prebuilt", f"{prebuilt!r} has no {{module}}; write where a module's "
                                    f"prebuilt file lies, e.g. aiter/jit/{{module}}.so")
    never = yamlschema.string_list(node, "never", pattern=MEMBER_PATH_RE, what="module glob")
    return (("modules", modules), ("prebuilt", prebuilt), ("never", list(never)))


def _smoke(top: Where) -> tuple[SmokeCheck, ...]:
    """`smoke:` a list of {name, run, gpu}: the component's own checks in its image."""
    if "smoke" not in top.node:
        return ()
    if not isinstance(top.node["smoke"], Sequence) or not top.node["smoke"]:
        raise top.fail("smoke", "must be a list of checks ({name: ..., run: ...} items)")
    items, out = top.child("smoke"), []
    for i, raw in enumerate(top.node["smoke"]):
        if not isinstance(raw, Mapping):
            raise items.fail(i, "must be a mapping with name, run and optionally gpu")
        item = items.child(i)
        yamlschema.check_keys(item, {"name", "run", "gpu"}, required=("name", "run"))
        name = yamlschema.string(item, "name", pattern=yamlschema.NAME_RE,
                                 what="check name (lowercase letters, digits, . _ + -)")
        if any(c.name == name for c in out):
            raise item.fail("name", f"{name!r} names two checks; rename one")
        out.append(SmokeCheck(name=name, run=yamlschema.string(item, "run", multiline=True),
                              gpu=yamlschema.boolean(item, "gpu", default=False)))
    return tuple(out)


def _env(top: Where, extra: frozenset[str], version: str | None,
         key: str = "env") -> tuple[tuple[tuple[str, str], ...], set[str]]:
    env = yamlschema.mapping(top, key)
    if env is None:
        return (), set()
    known = set(CELL_VARIABLES) | set(extra) | set(RECIPE_VARIABLES)
    pairs, used = [], set()
    for key, value in env.node.items():
        if not yamlschema.ENV_KEY_RE.fullmatch(key):
            raise env.fail(key, "environment names are UPPER_CASE letters, digits and _")
        if key in RESERVED_ENV:
            raise env.fail(key, f"${key} is set by the build itself (see docs/recipes.md); "
                                f"use another name")
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise env.fail(key, "must be a single value (quote it)")
        value = text_of(value)
        if yamlschema.CONTROL_RE.search(value):
            raise env.fail(key, yamlschema.control_problem(value))
        try:
            names = template_variables(value)
        except ValueError as exc:
            raise env.fail(key, f"{exc}; placeholders are {{name}} "
                                f"(write {{{{ and }}}} for literal braces)") from None
        for name in names:
            if name == "version" and version is None:
                raise env.fail(key, "uses {version}, but outputs.version is not set; add "
                                    "outputs.version (the version this pin builds)")
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
    try:  # the file itself is not resolved: it may be a symlink loop, refused when read
        return str((path.parent.resolve() / path.name).relative_to(root.resolve()))
    except (ValueError, OSError, RuntimeError):
        return str(path)


def builds_on(recipe: Recipe, stack: str) -> bool:
    """Whether `recipe` is built in the cells of `stack` (its `stacks:`, default all)."""
    return not recipe.stacks or stack in recipe.stacks


def check_stacks(recipes: dict[str, Recipe], stack_names: list[str]) -> None:
    """Every `stacks:` name is a matrix stack, and a component's dependencies are built
    on every stack the component is built on."""
    for recipe in recipes.values():
        for stack in recipe.stacks:
            if stack not in stack_names:
                raise UserError(f"{recipe.file}:{recipe.line_of_stacks}: stacks: no stack named "
                                f"{stack!r} in the matrix{did_you_mean(stack, stack_names)}; "
                                f"stacks: {', '.join(stack_names)}")
        for dep in recipe.depends:
            if dep not in recipes:
                continue  # graph.check names a missing dependency
            missing = [s for s in stack_names
                       if builds_on(recipe, s) and not builds_on(recipes[dep], s)]
            if missing:
                raise UserError(f"{recipe.file}:{recipe.line_of_depends}: depends: {dep!r} is "
                                f"not built for stack {missing[0]!r} ({recipes[dep].file} "
                                f"stacks:), which {recipe.name!r} is built for; limit "
                                f"{recipe.name!r} with stacks: or widen {dep!r}")
