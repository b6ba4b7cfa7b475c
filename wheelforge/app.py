"""The user actions, one function each; tasks.py maps command-line options onto them.

Each action reads the previous step's output and nothing else (DESIGN.md):
plan -> wheels -> image -> smoke -> publish.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from . import bake, gitrefs
from . import plan as planning
from .errors import UserError

T = TypeVar("T")
CACHE = planning.ROOT / ".cache"
WHEELS = Path(os.environ.get("WHEELFORGE_WHEELS", planning.ROOT / "wheels"))


def guarded(fn: Callable[..., T]) -> Callable[..., T]:
    """User errors become one line on stderr and a non-zero exit; never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr, flush=True)
            raise SystemExit(exc.exit_code) from None
        except KeyboardInterrupt:
            print("error: interrupted; nothing was swapped in, earlier wheel sets are intact",
                  file=sys.stderr)
            raise SystemExit(130) from None

    return wrapper


def inputs(*, recipes: str | None, recipe: Iterable[str] = (), git_rewrite: Iterable[str] = (),
           src: Iterable[str] = (), only: Iterable[str] = ()) -> planning.Inputs:
    env_rewrites = os.environ.get("WHEELFORGE_GIT_REWRITES", "").split()
    return planning.Inputs(
        recipes_dir=Path(recipes) if recipes else planning.ROOT / "recipes",
        recipe_overrides=dict(_pairs(recipe, "--recipe", "NAME=FILE", Path)),
        rewrites=gitrefs.parse_rewrites([*git_rewrite, *env_rewrites]),
        src_overrides=dict(_pairs(src, "--src", "NAME=PATH", Path)),
        only=tuple(only),
    )


def _pairs(items: Iterable[str], flag: str, form: str, conv) -> list:
    out = []
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise UserError(f"{flag} {item!r}: write {form}")
        out.append((name, conv(value)))
    return out


def build_options(*, max_jobs: int | None = None, ca_bundle: str | None = "auto",
                  cache_from: Iterable[str] = (), cache_to: Iterable[str] = ()) -> bake.Options:
    return bake.Options(
        sources=CACHE / "sources", exports=CACHE / "exports", max_jobs=_max_jobs(max_jobs),
        ca_bundle=ca_bundle_path(ca_bundle),
        index_url_env="WHEELFORGE_PIP_INDEX_URL" if os.environ.get(
            "WHEELFORGE_PIP_INDEX_URL") else None,
        cache_from=tuple(cache_from), cache_to=tuple(cache_to))


def _max_jobs(value: int | None) -> int | None:
    if value is None and os.environ.get("MAX_JOBS"):
        value = os.environ["MAX_JOBS"]
    if value is None:
        return None
    try:
        jobs = int(value)
    except ValueError:
        jobs = 0
    if jobs < 1:
        raise UserError(f"MAX_JOBS/--max-jobs {value!r}: give a whole number >= 1")
    return jobs


def ca_bundle_path(value: str | None) -> Path | None:
    """`auto`: the host's CA bundle (a proxy that re-signs TLS needs it in builds too)."""
    if value in (None, "", "none"):
        return None
    if value == "auto":
        for candidate in (os.environ.get("SSL_CERT_FILE"), "/etc/ssl/certs/ca-certificates.crt"):
            if candidate and Path(candidate).is_file():
                return Path(candidate)
        return None
    path = Path(value)
    if not path.is_file():
        raise UserError(f"--ca-bundle {value}: file not found")
    return path


def show_plan(p: planning.Plan, options: bake.Options, *, as_json: bool) -> str:
    definition = bake.definition(p, options)
    if as_json:
        return json.dumps(plan_json(p, definition), indent=2)
    from .table import render

    lines = []
    for cell in p.cells:
        lines.append(f"cell {cell.id}  (archs {';'.join(cell.archs)}, build image "
                     f"{cell.stack.build_image})")
        rows = []
        for name, target in p.cell_targets[cell.id].items():
            b = p.builds[target]
            shared = f"shared by {len(b.cells)} cells" if len(b.cells) > 1 else ""
            rows.append((name, b.source.label(), b.key[:12], ",".join(d.rsplit("-", 1)[0]
                         for d in b.deps) or "-", shared))
        lines.append(render(["component", "source", "key", "needs", ""], rows))
        lines.append("")
    lines.append(f"{len(p.builds)} builds for {len(p.cells)} cells:")
    for b in p.builds.values():
        lines.append(f"  {b.target}  ({b.component}; {', '.join(b.cells)})")
        lines.append(f"    source: {b.source.label()}")
        for key, value in b.env:
            lines.append(f"    env:    {key}={value}")
        for step in b.steps:
            lines.append(f"    step:   {' '.join(step.split())}")
    lines.append("")
    lines.append("bake definition (`invoke plan --json` for everything):")
    lines.append(json.dumps(definition, indent=1))
    return "\n".join(lines)


def plan_json(p: planning.Plan, definition: dict) -> dict:
    from dataclasses import asdict

    return {
        "channel": p.channel,
        "cells": [{"id": c.id, "channel": c.channel, "stack": c.stack.name, "python": c.python,
                   "arch": c.arch, "archs": list(c.archs), "variant": c.variant,
                   "build_image": c.stack.build_image, "runtime_image": c.stack.runtime_image,
                   "components": p.cell_targets[c.id]} for c in p.cells],
        "builds": {t: {**asdict(b), "env": dict(b.env)} for t, b in p.builds.items()},
        "bake": definition,
    }


def matrix_include(ins: planning.Inputs, *, channel: str | None, cells: str | None) -> dict:
    """The selected cells as a GitHub Actions `strategy.matrix` (`include` form)."""
    matrix, _ = planning.load(ins)
    return {"include": [{"cell": c.id, "channel": c.channel, "stack": c.stack.name,
                         "python": c.python, "arch": c.arch, "variant": c.variant,
                         "runner": list(c.runner) or ["ubuntu-latest"],
                         "image": f"{matrix.repository}:{c.id}"}
                        for c in matrix.select(cells, channel)]}
