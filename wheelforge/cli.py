"""The command-line layer: what tasks.py calls to turn options into a run's inputs and
build options, to print a plan or the matrix, and to turn a user error into one line.

Only tasks.py (and tests) import this module, and it never imports jobs.py; the stages get
their inputs and options passed down. What it gives:

- `inputs`: the recipe inputs (--recipes, --recipe NAME=FILE, --src NAME=PATH, --only),
  with the --git-rewrite values first, then WHEELFORGE_GIT_REWRITES;
- `build_options`: the run's settings, resolved once (each command-line value over its
  variable in the environment over the default: core/settings.py) and checked at once (a
  bad --progress, heartbeat or --max-jobs is one line before any planning), with the CA
  bundle (`auto`: SSL_CERT_FILE, else the system's) and the build's own folders;
- `show_plan`, `plan_json`, `with_locks`: `invoke plan` as text or JSON, with each cell's
  runtime-dependency lock and step key; `matrix_include`: the selected cells as a GitHub
  Actions matrix;
- `guarded`: a UserError becomes one `error:` line on stderr and a non-zero exit status,
  never a traceback; a reader that closes the output pipe ends the command quietly (exit
  141), and Ctrl-C says that nothing was swapped in (exit 130).

The commands follow the flow plan -> wheels -> image -> smoke -> publish, each step
reading only the previous step's output.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from wheelforge.build import bake
from wheelforge.build.progress import Display
from wheelforge.core import settings, types
from wheelforge.core.settings import WHEELS
from wheelforge.core.terminal import UserError, render
from wheelforge.core.types import Inputs, Plan
from wheelforge.plan import make_plan, runtime_env, step_key
from wheelforge.recipes import load, matrix
from wheelforge.recipes.matrix import select

__all__ = ["WHEELS", "make_plan"]


T = TypeVar("T")


def guarded(fn: Callable[..., T]) -> Callable[..., T]:
    """User errors become one line on stderr and a non-zero exit; never a traceback (nor
    for a closed output pipe)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            try:
                result = fn(*args, **kwargs)
            except SystemExit:
                sys.stdout.flush()
                raise
            sys.stdout.flush()  # a reader that went away shows here, not at interpreter exit
            return result
        except BrokenPipeError:
            # `invoke plan | head`: the reader has what it wanted; stop quietly, as other
            # command-line tools do (128 + SIGPIPE), with nothing left to flush at exit.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise SystemExit(141) from None
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr, flush=True)
            raise SystemExit(exc.exit_code) from None
        except KeyboardInterrupt:
            print("error: interrupted; nothing was swapped in, earlier wheel sets are intact",
                  file=sys.stderr)
            raise SystemExit(130) from None

    return wrapper


def show_plan(p: types.Plan, options: bake.Options, *, as_json: bool) -> str:
    definition = bake.definition(p, options)
    if as_json:
        return json.dumps(plan_json(p, definition), indent=2)

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
        env = runtime_env(p, cell.id)
        if env:
            lines.append("runtime env: " + " ".join(f"{k}={v}" for k, v in env.items()))
        lines.append("")
    lines.append(f"{len(p.builds)} builds for {len(p.cells)} cells:")
    for b in p.builds.values():
        lines.append(f"  {b.target}  ({b.component}; {', '.join(b.cells)})")
        lines.append(f"    source: {b.source.label()}")
        for key, value in b.env:
            lines.append(f"    env:    {key}={value}")
        for name, spec, why in b.versions:
            lines.append(f"    wheel:  {name}{spec}  ({why})")
        for step in b.steps:
            lines.append(f"    step:   {' '.join(step.split())}")
    lines.append("")
    lines.append("bake definition (`invoke plan --json` for everything):")
    lines.append(json.dumps(definition, indent=1))
    return "\n".join(lines)


def plan_json(p: types.Plan, definition: dict) -> dict:
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


def matrix_include(ins: types.Inputs, *, channel: str | None, cells: str | None) -> dict:
    """The selected cells as a GitHub Actions `strategy.matrix` (`include` form)."""
    matrix, _ = load(ins)
    return {"include": [{"cell": c.id, "channel": c.channel, "stack": c.stack.name,
                         "python": c.python, "arch": c.arch, "variant": c.variant,
                         "runner": list(c.runner) or ["ubuntu-latest"],
                         "image": f"{matrix.repository}:{c.id}"}
                        for c in select(matrix, cells, channel)]}


def with_locks(plan: Plan, shown: str, *, as_json: bool) -> str:
    """`invoke plan`'s output with the lock of each cell's runtime-dependency step (and
    that step's key): `runtime_deps` in JSON; in text, a section before the bake definition."""
    steps = {c.id: (plan.locks[c.id], step_key(plan, c)) for c in plan.cells}
    if as_json:
        data = json.loads(shown)
        data["runtime_deps"] = {cell: {"lock": lock.display, "lock_sha256": lock.sha256 or None,
                                       "pins": dict(lock.pins), "key": key}
                                for cell, (lock, key) in steps.items()}
        return json.dumps(data, indent=2)
    lines = ["runtime dependencies (each cell downloads exactly its lock):",
             *(f"  {cell}: {lock.label()}; step key {key[:12]}"
               for cell, (lock, key) in steps.items()), ""]
    at = shown.find("bake definition (")
    at = len(shown) if at < 0 else at
    return shown[:at] + "\n".join(lines) + "\n" + shown[at:]


SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def inputs(*, recipes: str | None, recipe: Iterable[str] = (), git_rewrite: Iterable[str] = (),
           src: Iterable[str] = (), only: Iterable[str] = ()) -> Inputs:
    """The recipe inputs; `--git-rewrite` values first, then WHEELFORGE_GIT_REWRITES."""
    return Inputs(
        recipes_dir=Path(recipes) if recipes else settings.RECIPES,
        recipe_overrides=dict(_pairs(recipe, "--recipe", "NAME=FILE", Path)),
        rewrites=matrix.parse_rewrites([*git_rewrite, *settings.current().git_rewrites]),
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
                  cache_from: Iterable[str] = (), cache_to: Iterable[str] = (),
                  progress: str | None = None) -> bake.Options:
    """The run's options, resolved once: each command-line value over its variable in the
    environment over the default (`settings.current`), checked, with the build's own."""
    run = settings.current(options={"MAX_JOBS": max_jobs, "WHEELFORGE_PROGRESS": progress})
    Display.of(run)  # a bad --progress or heartbeat is one line now, not after planning
    return bake.Options(
        sources=settings.SOURCES, exports=settings.EXPORTS,
        max_jobs=_max_jobs(run.max_jobs), ca_bundle=ca_bundle_path(ca_bundle),
        index_url_env="WHEELFORGE_PIP_INDEX_URL" if run.pip_index_url else None,
        cache_from=tuple(cache_from), cache_to=tuple(cache_to), run=run)


def _max_jobs(value: int | str | None) -> int | None:
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
        for candidate in (os.environ.get("SSL_CERT_FILE"), SYSTEM_CA_BUNDLE):
            if candidate and Path(candidate).is_file():
                return Path(candidate)
        return None
    path = Path(value)
    if not path.is_file():
        raise UserError(f"--ca-bundle {value}: file not found")
    return path
