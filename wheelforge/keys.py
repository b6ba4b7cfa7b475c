"""A component build for one cell, and its content-addressed key.

The key changes when, and only when, something that reaches the output changes:
the recipe, the resolved source, the base image, the Python version, the values
of the cell placeholders the recipe uses (an arch list only matters to a
component whose env mentions it), the build files, and the dependencies' keys.
"""

from __future__ import annotations

import hashlib
import json
import re

from . import versions
from .matrix import Cell
from .model import Build, Resolved
from .recipes import Recipe
from .settings import ROOT

DOCKERFILE = ROOT / "docker" / "Dockerfile.wheels"
BUILD_FILES = (DOCKERFILE, ROOT / "docker" / "build-component.py")


def build_for(recipe: Recipe, cell: Cell, source: Resolved, deps: list[Build],
               files_hash: str) -> Build:
    values = {**cell.var(), "version": versions.placeholder(recipe, cell.channel, source.commit)}
    env = tuple((k, v.format_map(values)) for k, v in recipe.env)
    uses_archs = bool(recipe.variables & {"archs", "archs_comma", "arch"})
    apt = tuple(dict.fromkeys((*cell.stack.builder_apt, *recipe.apt)))
    identity = {
        "component": recipe.name, "source": source.identity(), "apt": apt, "env": env,
        "steps": recipe.steps, "wheels": recipe.wheels, "prefix": recipe.prefix,
        "build_image": cell.stack.build_image, "python": cell.python,
        "deps": sorted(d.key for d in deps), "build_files": files_hash,
        # in the SPEC build arg, hence in BuildKit's key: so in ours. MAX_JOBS itself is not
        # (the builder computes it; see docker/build-component.py).
        "mem_per_job_gb": recipe.mem_per_job_gb,
    }
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    return Build(
        component=recipe.name, key=key,
        target=f"{re.sub(r'[^A-Za-z0-9_-]', '_', recipe.name)}-{key[:12]}",
        recipe_file=recipe.file, source=source, build_image=cell.stack.build_image,
        runtime_image=cell.stack.runtime_image, python=cell.python, apt=apt, env=env,
        steps=recipe.steps, deps=tuple(d.target for d in deps), wheels=recipe.wheels,
        prefix=recipe.prefix, imports=recipe.imports, runtime=recipe.runtime,
        archs=cell.archs if uses_archs else (), mem_per_job_gb=recipe.mem_per_job_gb,
        runtime_apt=recipe.runtime_apt, step_lines=recipe.step_lines, cells=(cell.id,),
        runtime_env=tuple((k, v.format_map(values)) for k, v in recipe.runtime_env),
        smoke=recipe.smoke, jit=recipe.jit,
        versions=tuple((name, e.spec, e.why) for name, e in sorted(versions.expected(
            recipe, cell.channel, source.kind, source.packages).items())),
    )


def files_hash() -> str:
    digest = hashlib.sha256()
    for file in BUILD_FILES:
        digest.update(file.read_bytes() if file.exists() else b"")
    return digest.hexdigest()
