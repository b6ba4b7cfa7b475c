"""Plan: resolve every source of the selected cells and give each build a cache key.

The plan is everything `invoke wheels` will run, computed before anything runs:
for each cell and component the resolved source (a branch becomes a commit), the
rendered environment, the steps, the dependencies and a content-addressed key
(keys.py). A component with the same key in several cells is one build shared by
them. The data model is model.py; loading.py, resolution.py and keys.py each do
one job of the plan, and this module puts them together.
"""

from __future__ import annotations

from dataclasses import replace

from . import graph
from . import lock as locks_
from . import recipes as recipes_
from .keys import build_for, files_hash
from .loading import load, matrix_rewrites
from .model import Build, Inputs, Plan, Resolved
from .resolution import resolve_all

__all__ = ["Build", "Inputs", "Plan", "Resolved", "load", "make_plan"]


def make_plan(inputs: Inputs, *, channel: str | None, cells_glob: str | None) -> Plan:
    matrix, recipes = load(inputs)
    inputs = replace(inputs, rewrites=(*inputs.rewrites, *matrix_rewrites(matrix)))
    cells = matrix.select(cells_glob, channel)
    order = graph.closure(recipes, list(inputs.only)) if inputs.only else graph.check(recipes)
    resolved = resolve_all(recipes, order, cells, inputs)
    hashed = files_hash()
    builds: dict[str, Build] = {}
    cell_targets: dict[str, dict[str, str]] = {}
    for cell in cells:
        targets: dict[str, str] = {}
        for name in (n for n in order if recipes_.builds_on(recipes[n], cell.stack.name)):
            build = build_for(recipes[name], cell, resolved[(name, cell.channel)],
                              [builds[targets[d]] for d in recipes[name].depends], hashed)
            if build.target in builds:
                old = builds[build.target]
                build = replace(old, cells=(*old.cells, cell.id))
            builds[build.target] = build
            targets[name] = build.target
        cell_targets[cell.id] = targets
    return Plan(channel=channel, cells=tuple(cells), builds=builds, cell_targets=cell_targets,
                rewrites=inputs.rewrites, matrix=matrix,
                locks={c.id: locks_.locate(inputs.recipes_dir, c.stack.name, c.python)
                       for c in cells})
