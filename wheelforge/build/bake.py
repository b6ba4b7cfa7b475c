"""The buildx bake definition of a plan: a 1:1 map from builds to bake targets.

Targets: each component build becomes a target of docker/Dockerfile.wheels (stage
`export`); its source tree is the `src` named context, what build-component needs to run
the recipe is the SPEC build argument, and every target exports its outputs (wheels and/or
an install prefix) to `exports/<target>/` on the host.

Order: dependencies go by waves, not by `target:` contexts: `invoke wheels` bakes the
builds in dependency order (waves(): a build's level is its longest dependency chain),
one target per bake (batches()), and a dependent's `depN` contexts are its
dependencies' export folders. Why not one bake with `target:` contexts: a dependent's
solve then holds its dependencies' steps too, resolved with whichever job reaches them
first, so after a pruned builder a registry-cache import now and then rebuilt a
dependency inside a dependent, or failed with "no active sessions" once the dependency's
own job had ended. Why not a wave per bake: see batches(). With export folders each
target's solve is its own steps only; a local context is keyed by its content, so a
dependency that came from the cache gives its dependents the same key. The price: an
install prefix (LLVM/MLIR) is copied to the host and back into its dependents' builds.

Caches: nothing in the definition depends on the client machine: MAX_JOBS is computed by
the build step on the builder (the client's --max-jobs travels in a BuildKit secret), and
registry/local caches are per build key (cache_tags), so builds of different variants,
arch sets or channels never share an entry. Each build also reads and writes a fallback
tag, the last build of its component in its first cell, for partial reuse once its key has
moved on; in a registry the fallback tags live in a repository of their own (cache_ref).

Secrets: the CA bundle, the private pip index URL and the build-jobs budget reach the step
as BuildKit secrets only, never as a layer, a build argument or a value in the bake file.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from wheelforge.core.settings import ROOT, Settings, current
from wheelforge.core.terminal import UserError
from wheelforge.core.types import Build, Plan
from wheelforge.plan.fetch import source_dir


@dataclass(frozen=True, kw_only=True)
class Options:
    sources: Path  # where sources are fetched (the `src` contexts)
    exports: Path  # where wheel targets are exported (one folder per target)
    max_jobs: int | None = None  # None: the builder computes it (docker/build-component.py)
    ca_bundle: Path | None = None  # a BuildKit secret, never a layer
    index_url_env: str | None = None  # env var whose value is a secret pip index URL
    cache_from: tuple[str, ...] = ()  # raw BuildKit cache specs, made per key (cache_refs)
    cache_to: tuple[str, ...] = ()
    cache_registry: str | None = None  # REG/REPO: per-key registry cache refs, read and written
    run: Settings = field(default_factory=current)  # the run's settings (cli.build_options)


# The build-jobs secret: how many compile jobs a step may run is decided on the builder
# from its own cores and memory (docker/build-component.py). What the client adds -- the
# user's --max-jobs -- reaches the step as a BuildKit secret, which is not part of any
# cache key: a build started from a laptop and one started from a 128-core runner share
# every cache entry.
JOBS_SECRET_ENV = "WHEELFORGE_BUILD_JOBS"


def waves(plan: Plan) -> list[list[str]]:
    """The plan's targets by dependency level (a build's level is the length of its
    longest dependency chain): each wave needs only the waves before it."""
    level: dict[str, int] = {}
    for target, build in plan.builds.items():  # in build order: dependencies first
        level[target] = 1 + max((level[d] for d in build.deps), default=-1)
    out: list[list[str]] = [[] for _ in range(max(level.values(), default=-1) + 1)]
    for target, value in level.items():
        out[value].append(target)
    return out


def batches(plan: Plan) -> list[list[str]]:
    """The bakes that build the plan, in order: one target each, wave after wave.

    Targets baked together share steps (the toolchain stage, the repository context),
    which BuildKit solves once for all their jobs. That went wrong two ways: a shared
    step that read the repository context through a job whose session had ended failed
    the build with "no active sessions" (dockerd 26.1, about once in six whole-suite
    passes), and on BuildKit 0.25 (dockerd 28.5) a target whose shared steps were
    matched through another target's cache import missed its own build step in its own
    import after a pruned builder, a different target each run (the behaviour of
    docker/buildx#3878 and #414). A bake of one target is one job with one session, and
    its steps are matched in its own import. Each build gets the builder's whole width
    (MAX_JOBS), so compile-bound builds lose little by running one after another.
    """
    return [[target] for wave in waves(plan) for target in wave]


def jobs_secret(options: Options) -> dict[str, str]:
    """The environment `engine.bake` needs for the build-jobs secret."""
    return {JOBS_SECRET_ENV: json.dumps({"max_jobs": options.max_jobs})}


def spec(build: Build) -> dict:
    """The SPEC build arg: what build-component needs to run the recipe."""
    env = dict(build.env)
    src = build.source
    if src.kind == "index":
        if src.url:  # none: the steps use pip's configured index
            env.setdefault("INDEX_URL", src.url)
        env.setdefault("PACKAGES", " ".join(src.packages))
    return {"component": build.component, "python": build.python, "env": env,
            "steps": list(build.steps), "wheels": list(build.wheels), "prefix": build.prefix,
            "mem_per_job_gb": build.mem_per_job_gb,
            # prebuilt wheels: downloaded for the cell's Python, whatever the image's is
            **({"prebuilt": True} if src.kind == "index" else {})}


def escape(value: str) -> str:
    """Bake evaluates `${...}` and `%{...}` even in JSON files; keep them literal."""
    return value.replace("${", "$${").replace("%{", "%%{")


FALLBACK_REPO = "fallback"  # registry caches: the fallback tags' repository, under REPO


def cache_ref(spec_: str, tag: str, *, fallback: bool = False) -> str:
    """A per-component cache location from a user's --cache-to/--cache-from base.

    A registry's fallback tags live in REPO/fallback, not beside the exact ones: one
    build exports both at once, the same blobs, and distribution 2.8's filesystem
    storage rewrites a blob's link file on each upload (truncate, then write), so an
    index PUT that reads the link in between is refused with `400 manifest blob unknown`
    when both go to one repository (bench/RESULTS.md). Each repository has its own links.
    """
    parts = dict(p.split("=", 1) for p in spec_.split(",") if "=" in p)
    kind = parts.get("type", "")
    if kind == "registry" and "ref" in parts:
        repo = parts["ref"].split("@", 1)[0]  # a digest, if any, is not a place
        last = repo.rsplit("/", 1)[-1]
        if "/" in repo and ":" in last:  # drop a tag the user gave; the tag is ours
            repo = repo[: repo.rindex(":")]
        if fallback:
            repo = f"{repo}/{FALLBACK_REPO}"
        parts["ref"] = f"{repo}:{tag}"
    elif kind == "local":
        for key in ("src", "dest"):
            if key in parts:
                parts[key] = str(Path(parts[key]) / tag)
    elif kind not in ("gha", "inline", "s3", "azblob"):
        raise UserError(f"cache option {spec_!r}: give type=registry,ref=... or "
                        f"type=local,dest=...|src=...")
    return ",".join(f"{k}={v}" for k, v in parts.items())


TAG_MAX = 128  # an OCI tag: [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}


def cache_tags(build: Build) -> tuple[str, str]:
    """(exact, fallback) cache tags of a build.

    exact: COMPONENT-KEY12 (the bake target): equal only when the key is equal, so no
    two variants, arch sets or channels ever write over each other's entry.
    fallback: COMPONENT--CELL of the build's first cell: the last build of this component
    in this cell, for partial reuse (toolchain, apt, dependencies) when the key moved on.
    One cell has one build per component, so it has exactly one writer too.
    """
    exact = build.target
    fallback = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{build.component}--{build.cells[0]}")
    if len(fallback) > TAG_MAX:
        digest = hashlib.sha256(fallback.encode()).hexdigest()[:16]
        fallback = f"{fallback[:TAG_MAX - 18]}--{digest}"
    return exact, fallback


def cache_tag(build: Build) -> str:
    """The exact cache tag of a build (see cache_tags)."""
    return cache_tags(build)[0]


REGISTRY_REPO_RE = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9.-]*(:[0-9]{1,5})?(/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)+")


def registry_specs(repo: str) -> tuple[str, str]:
    """--cache-registry REG/REPO as a (cache-from, cache-to) pair of raw specs."""
    if not REGISTRY_REPO_RE.fullmatch(repo):
        raise UserError(f"--cache-registry {repo!r}: give a registry repository without a tag, "
                        f"e.g. registry.example.com:5000/team/wheelforge-cache; the tags "
                        f"(COMPONENT-KEY) are made per build")
    return f"type=registry,ref={repo}", f"type=registry,ref={repo},mode=max"


def with_cache_registry(options: Options, repo: str | None) -> Options:
    """`options` reading and writing the per-build registry cache in `repo` (validated)."""
    if not repo:
        return options
    registry_specs(repo)
    return replace(options, cache_registry=repo)


def cache_specs(build: Build, options: Options) -> tuple[list[str], list[str]]:
    """cache-from (exact, then fallback) and cache-to (both) of one build."""
    froms, tos = list(options.cache_from), list(options.cache_to)
    if options.cache_registry:
        src, dest = registry_specs(options.cache_registry)
        froms.append(src)
        tos.append(dest)
    exact, fallback = cache_tags(build)

    def refs(specs: list[str]) -> list[str]:
        return [ref for c in dict.fromkeys(specs)
                for ref in (cache_ref(c, exact), cache_ref(c, fallback, fallback=True))]

    return refs(froms), refs(tos)


def secrets(options: Options) -> list[str]:
    """BuildKit secret references: where the value comes from, never the value."""
    out = []
    if options.ca_bundle:
        out.append(f"id=ca-bundle,src={options.ca_bundle}")
    if options.index_url_env:
        out.append(f"id=pip-index-url,env={options.index_url_env}")
    return out


def definition(plan: Plan, options: Options, targets_of: list[str] | None = None) -> dict:
    """The bake definition of the plan's builds (of `targets_of` only, when given)."""
    targets: dict[str, dict] = {}
    for build in plan.builds.values():
        if targets_of is not None and build.target not in targets_of:
            continue
        contexts = {f"dep{i}": str(options.exports / dep) for i, dep in enumerate(build.deps, 1)}
        src = source_dir(options.sources, build)
        if src is not None:
            contexts["src"] = str(src)
        target = {
            "context": str(ROOT),
            "dockerfile": "docker/Dockerfile.wheels",
            "target": "export",
            "contexts": contexts,
            "args": {
                "BUILD_IMAGE": build.build_image,
                "APT_PACKAGES": " ".join(build.apt),
                "TARGET": build.target,
                "SPEC": escape(json.dumps(spec(build), sort_keys=True)),
            },
            "output": [f"type=local,dest={options.exports / build.target}"],
        }
        target["secret"] = [*secrets(options), f"id=build-jobs,env={JOBS_SECRET_ENV}"]
        cache_from, cache_to = cache_specs(build, options)
        if cache_from:
            target["cache-from"] = cache_from
        if cache_to:
            target["cache-to"] = cache_to
        targets[build.target] = target
    return {"group": {"default": {"targets": list(targets)}}, "target": targets}
