"""Every setting of wheelforge in one place: paths, and the variables it reads.

Paths are constants of the checkout: ROOT (the repository) and CACHE (ROOT/.cache,
never committed) with the folders under it that several parts share. The one
output path that a variable moves is the wheel sets' root, WHEELS
(WHEELFORGE_WHEELS).

Variables: `VARS` lists every `WHEELFORGE_*` variable, with its default, a one-line
description, the invoke option that does the same where there is one, whether its
value is a secret, and who reads it (this package, ci/setup-host.sh, or the build
step inside BuildKit); MAX_JOBS, not its own, is read here too. The package reads them
only here: `get(NAME)` for one value, `current()` for all of them as a `Settings`,
resolved once per run with the command line's options over them (cli.py), printed as
the run's summary and passed down. A variable set to the empty string (or to blanks)
counts as unset. docs/settings.md is the same list for people;
tests/unit/test_settings.py keeps the two and the code in step.

Standard library only: audit/gpu.py and audit/links.py import it inside runtime
images (their cache folders are named here).
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository root


RECIPES = ROOT / "recipes"  # production recipe set (default of --recipes)


DEMO_RECIPES = ROOT / "demo" / "recipes"  # the demo recipe set


DOCKER_DIR = ROOT / "docker"  # Dockerfiles and the scripts they run


CACHE = ROOT / ".cache"  # everything the tool keeps between runs; safe to delete when idle


SOURCES = CACHE / "sources"  # fetched sources, one complete tree per source key


EXPORTS = CACHE / "exports"  # bake's local outputs, one folder per build target


CONTRACT = CACHE / "contract"  # `invoke check`'s scratch trees (sdists unpacked)


ENGINE_STATE = CACHE / "engine"  # a dockerd started here: daemon.json, data, log


ENGINES = CACHE / "engines"  # ci/setup-host.sh: the current buildx/dockerd pair for tests


BASE_IMAGES = CACHE / "base"  # debootstrap roots of base images, as tar files


DEMO_GIT = CACHE / "demo-git"  # the demo set's local git repositories


SMOKE_REPORTS = CACHE / "smoke"  # smoke reports of `invoke nightly` and `invoke demo`


AUDIT_CACHE = CACHE / "audit"  # the GPU-target audit's results, by wheel sha256


LINK_AUDIT_CACHE = CACHE / "link-audit"  # link audits of sets that passed (audit/links.py)


VENDOR_WHEELS = CACHE / "vendor-wheels"  # vendor wheels for the audit benchmark/test


LAST_PULLED = CACHE / "last-pulled"  # the image `invoke pull` picked last


WHEELS_LOCK = CACHE / "wheels.lock"  # one build per checkout (build/__init__.py)


PACKAGE = "wheelforge"  # read by this package (core/settings.py)


SETUP = "ci/setup-host.sh"  # read by the host setup script only


BUILD = "build step"  # set by this package for the build step, never by a user


@dataclass(frozen=True)
class Var:
    name: str
    default: str  # "" = none
    help: str  # one line
    option: str = ""  # the invoke option that does the same, if any
    secret: bool = False  # printed masked
    read_by: tuple[str, ...] = (PACKAGE,)


VARS: tuple[Var, ...] = (
    Var("WHEELFORGE_WHEELS", str(ROOT / "wheels"),
        "root folder of the wheel sets (wheels/<cell>/) that wheels writes and image, audit, "
        "push, publish, nightly and demo read"),
    Var("WHEELFORGE_GIT_REWRITES", "",
        "blank-separated MIRROR=ORIGINAL URL rewrites for every git fetch, after the "
        "--git-rewrite ones", option="--git-rewrite"),
    Var("WHEELFORGE_PIP_INDEX_URL", "",
        "a private pip index URL (credentials allowed) for build steps, passed only as a "
        "BuildKit secret", secret=True),
    Var("WHEELFORGE_INDEX_URL", "",
        "the index sdists and index sources are read from when planning (else PIP_INDEX_URL, "
        "pip's configured index-url, pip's default)"),
    Var("WHEELFORGE_DEBIAN_MIRROR", "",
        "Debian archive URL for base images (debootstrap) and host setup (else the host's "
        "apt sources)", read_by=(PACKAGE, SETUP)),
    Var("WHEELFORGE_PROGRESS", "auto",
        "auto: a heartbeat line per running build; plain: every build's full log",
        option="--progress"),
    Var("WHEELFORGE_HEARTBEAT_SECONDS", "10",
        "seconds between heartbeat lines (progress auto); a number > 0"),
    Var("WHEELFORGE_DOCKER", "docker",
        "the docker command line client to run"),
    Var("WHEELFORGE_BUILD_JOBS", "",
        "internal: compile-jobs budget handed to build steps as a BuildKit secret "
        "(from --max-jobs and the plan); not read from the user's environment",
        option="--max-jobs", read_by=(BUILD,)),
    Var("WHEELFORGE_APT_ETC", "/etc/apt",
        "the apt configuration folder ci/setup-host.sh reads and writes (tests point it "
        "elsewhere)", read_by=(SETUP,)),
    Var("WHEELFORGE_OS_RELEASE", "/etc/os-release",
        "the os-release file ci/setup-host.sh identifies the host by (tests point it "
        "elsewhere)", read_by=(SETUP,)),
)


BY_NAME: dict[str, Var] = {v.name: v for v in VARS}


# Other variables the package honours, not its own (documented in docs/settings.md).
MAX_JOBS = Var("MAX_JOBS", "", "compile jobs per component when --max-jobs is not given",
               option="--max-jobs")


def _value(var: Var, env: Mapping[str, str] | None) -> tuple[str, bool]:
    """(value, from the environment?) of one variable; empty or blank means unset."""
    raw = (os.environ if env is None else env).get(var.name, "")
    value = raw.strip()
    return (value, True) if value else (var.default, False)


def get(name: str, env: Mapping[str, str] | None = None) -> str:
    """The effective value of one variable of `VARS` (or MAX_JOBS)."""
    var = MAX_JOBS if name == MAX_JOBS.name else BY_NAME[name]
    return _value(var, env)[0]


def mask_url(value: str) -> str:
    """A URL with its credentials hidden: https://user:pw@host/x -> https://***@host/x."""
    parts = urllib.parse.urlsplit(value)
    if "@" not in parts.netloc:
        return value
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"***@{host}"))


def shown(var: Var, value: str) -> str:
    """How a value is printed: secrets masked (a URL keeps its host, anything else is ***)."""
    if not var.secret or not value:
        return value
    masked = mask_url(value)
    return masked if masked != value else "***"


@dataclass(frozen=True, kw_only=True)
class Settings:
    """The effective values of the variables this package reads."""

    wheels: Path
    git_rewrites: tuple[str, ...]
    pip_index_url: str | None  # secret: print `shown(...)`, never the value
    index_url: str | None
    debian_mirror: str | None
    progress: str
    heartbeat_seconds: str  # checked where used (build/progress.py, Display.of)
    docker: str
    max_jobs: str | None
    from_env: frozenset[str]  # names set in the environment
    from_option: frozenset[str] = frozenset()  # names a command-line option set instead
    github_actions: bool = False  # GITHUB_ACTIONS=true: failures also as annotations

    def lines(self) -> list[str]:
        """`setting: NAME = value (option --x|env|default)` per variable, secrets masked."""
        values = {
            "WHEELFORGE_WHEELS": str(self.wheels),
            "WHEELFORGE_GIT_REWRITES": " ".join(self.git_rewrites),
            "WHEELFORGE_PIP_INDEX_URL": self.pip_index_url or "",
            "WHEELFORGE_INDEX_URL": self.index_url or "",
            "WHEELFORGE_DEBIAN_MIRROR": self.debian_mirror or "",
            "WHEELFORGE_PROGRESS": self.progress,
            "WHEELFORGE_HEARTBEAT_SECONDS": self.heartbeat_seconds,
            "WHEELFORGE_DOCKER": self.docker,
            "MAX_JOBS": self.max_jobs or "",
        }
        out = []
        for name, value in values.items():
            var = MAX_JOBS if name == MAX_JOBS.name else BY_NAME[name]
            origin = (f"option {var.option}" if name in self.from_option else
                      "env" if name in self.from_env else "default")
            out.append(f"setting: {name} = {shown(var, value) or '(none)'} ({origin})")
        return out


def current(env: Mapping[str, str] | None = None, *,
            options: Mapping[str, str | None] | None = None) -> Settings:
    """The run's settings, resolved once: a command-line option (`options`: variable name
    -> the option's value, None when not given) over `env` (default: this process's
    environment) over the default."""
    given = {name: str(v) for name, v in (options or {}).items() if v not in (None, "")}
    read = {v.name: _value(v, env) for v in (*VARS, MAX_JOBS) if PACKAGE in v.read_by}
    value = {name: given.get(name, got[0]) for name, got in read.items()}
    return Settings(
        wheels=Path(value["WHEELFORGE_WHEELS"]),
        git_rewrites=tuple(value["WHEELFORGE_GIT_REWRITES"].split()),
        pip_index_url=value["WHEELFORGE_PIP_INDEX_URL"] or None,
        index_url=value["WHEELFORGE_INDEX_URL"] or None,
        debian_mirror=value["WHEELFORGE_DEBIAN_MIRROR"] or None,
        progress=value["WHEELFORGE_PROGRESS"],
        heartbeat_seconds=value["WHEELFORGE_HEARTBEAT_SECONDS"],
        docker=value["WHEELFORGE_DOCKER"],
        max_jobs=value["MAX_JOBS"] or None,
        from_env=frozenset(name for name, got in read.items() if got[1]),
        from_option=frozenset(given),
        github_actions=(os.environ if env is None else env).get(
            "GITHUB_ACTIONS", "").lower() == "true",
    )


# Read once at import, as the command line runs one action per process.
WHEELS = current().wheels  # the wheel sets' root (WHEELFORGE_WHEELS)
