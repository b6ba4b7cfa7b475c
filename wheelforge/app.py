"""The command-line layer: tasks.py maps command-line options onto these functions.

`guarded` turns user errors into one line and an exit status; the rest shows a plan or
the matrix. Only tasks.py (and tests) import this module: the flow (pipeline.py) and
every other module get their inputs and options from options.py and settings.py.
Each action reads the previous step's output and nothing else:
plan -> wheels -> image -> smoke -> publish.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from typing import TypeVar

from . import bake
from . import plan as planning
from .errors import UserError
from .options import build_options, ca_bundle_path, inputs
from .settings import CACHE, WHEELS
from .wheels import runtime_env

__all__ = ["CACHE", "WHEELS", "build_options", "ca_bundle_path", "guarded", "inputs",
           "matrix_include", "plan_json", "planning", "show_plan"]
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
