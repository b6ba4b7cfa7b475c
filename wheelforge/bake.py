"""The buildx bake definition of a plan: a 1:1 map from builds to bake targets.

Each component build becomes a target of docker/Dockerfile.wheels (stage
`export`); its source tree is the `src` named context and each dependency's
target is wired in as `depN` (`target:NAME`), so BuildKit builds independent
components in parallel and caches each separately. Prefix-only components
(LLVM/MLIR) are never exported to the host: their output stays in BuildKit for
their dependents. `invoke plan` prints exactly this definition.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError
from .plan import ROOT, Build, Plan
from .sources import source_dir


@dataclass(frozen=True, kw_only=True)
class Options:
    sources: Path  # where sources are fetched (the `src` contexts)
    exports: Path  # where wheel targets are exported (one folder per target)
    max_jobs: int | None = None  # None: from cores, memory and the recipe's memory per job
    ca_bundle: Path | None = None  # a BuildKit secret, never a layer
    index_url_env: str | None = None  # env var whose value is a secret pip index URL
    cache_from: tuple[str, ...] = ()
    cache_to: tuple[str, ...] = ()


def host_resources() -> tuple[int, float]:
    """(cores, memory GiB) of this host."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    mem_kib = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    except OSError:
        pass
    return cores or 1, mem_kib / 1024 / 1024 if mem_kib else 4.0


def max_jobs(build: Build, *, override: int | None, cores: int, mem_gb: float) -> int:
    """Parallel compile jobs: the user's choice, else as many as cores and memory allow."""
    if override is not None:
        return override
    by_memory = math.floor(mem_gb * 0.9 / build.mem_per_job_gb)
    return max(1, min(cores, by_memory))


def spec(build: Build) -> dict:
    """The SPEC build arg: what build-component needs to run the recipe."""
    env = dict(build.env)
    src = build.source
    if src.kind == "index":
        env.setdefault("INDEX_URL", src.url)
        env.setdefault("PACKAGES", " ".join(src.packages))
    return {"component": build.component, "python": build.python, "env": env,
            "steps": list(build.steps), "wheels": list(build.wheels), "prefix": build.prefix}


def escape(value: str) -> str:
    """Bake evaluates `${...}` and `%{...}` even in JSON files; keep them literal."""
    return value.replace("${", "$${").replace("%{", "%%{")


def cache_ref(spec_: str, tag: str) -> str:
    """A per-component cache location from a user's --cache-to/--cache-from base."""
    parts = dict(p.split("=", 1) for p in spec_.split(",") if "=" in p)
    kind = parts.get("type", "")
    if kind == "registry" and "ref" in parts:
        repo = parts["ref"].split("@", 1)[0]  # a digest, if any, is not a place
        last = repo.rsplit("/", 1)[-1]
        if "/" in repo and ":" in last:  # drop a tag the user gave; the tag is ours
            repo = repo[: repo.rindex(":")]
        parts["ref"] = f"{repo}:{tag}"
    elif kind == "local":
        for key in ("src", "dest"):
            if key in parts:
                parts[key] = str(Path(parts[key]) / tag)
    elif kind not in ("gha", "inline", "s3", "azblob"):
        raise UserError(f"cache option {spec_!r}: give type=registry,ref=... or "
                        f"type=local,dest=...|src=...")
    return ",".join(f"{k}={v}" for k, v in parts.items())


def cache_tag(build: Build) -> str:
    """Stable per component and configuration, not per commit: the next commit finds it."""
    parts = [build.component, build.python]
    if build.archs:
        parts.append("-".join(build.archs))
    return "-".join(parts).replace("+", "_")


def secrets(options: Options) -> list[str]:
    """BuildKit secret references: where the value comes from, never the value."""
    out = []
    if options.ca_bundle:
        out.append(f"id=ca-bundle,src={options.ca_bundle}")
    if options.index_url_env:
        out.append(f"id=pip-index-url,env={options.index_url_env}")
    return out


def definition(plan: Plan, options: Options) -> dict:
    cores, mem_gb = host_resources()
    targets: dict[str, dict] = {}
    for build in plan.builds.values():
        contexts = {f"dep{i}": f"target:{dep}" for i, dep in enumerate(build.deps, 1)}
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
                "MAX_JOBS": str(max_jobs(build, override=options.max_jobs, cores=cores,
                                         mem_gb=mem_gb)),
            },
            "output": [f"type=local,dest={options.exports / build.target}"
                       if build.wheels else "type=cacheonly"],
        }
        secrets_ = secrets(options)
        if secrets_:
            target["secret"] = secrets_
        tag = cache_tag(build)
        if options.cache_from:
            target["cache-from"] = [cache_ref(c, tag) for c in options.cache_from]
        if options.cache_to:
            target["cache-to"] = [cache_ref(c, tag) for c in options.cache_to]
        targets[build.target] = target
    return {"group": {"default": {"targets": list(targets)}}, "target": targets}
