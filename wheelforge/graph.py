"""The dependency graph between components: missing dependencies, cycles, order."""

from __future__ import annotations

from pathlib import PurePosixPath

from .errors import UserError, did_you_mean
from .recipes import Recipe

# Dockerfile.wheels has this many dependency slots (dep1 .. depN named contexts).
MAX_DIRECT_DEPENDENCIES = 6


def check(recipes: dict[str, Recipe]) -> list[str]:
    """Validate the graph; return the component names in build order (deps first)."""
    for recipe in recipes.values():
        for dep in recipe.depends:
            if dep not in recipes:
                raise UserError(f"{recipe.file}:{recipe.line_of_depends}: depends: no component "
                                f"{dep!r}{did_you_mean(dep, recipes)}; add "
                                f"{PurePosixPath(recipe.file).parent / (dep + '.yaml')} "
                                f"or remove it")
        if len(recipe.depends) > MAX_DIRECT_DEPENDENCIES:
            raise UserError(f"{recipe.file}:{recipe.line_of_depends}: depends: "
                            f"{len(recipe.depends)} direct dependencies, Dockerfile.wheels has "
                            f"{MAX_DIRECT_DEPENDENCIES} slots; add slots (dep7...) there")
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "active":
            cycle = path[path.index(name):] + [name]
            first = recipes[cycle[0]]
            raise UserError(f"{first.file}:{first.line_of_depends}: depends: dependency cycle "
                            f"{' -> '.join(cycle)}; remove one of these dependencies")
        state[name] = "active"
        for dep in recipes[name].depends:
            visit(dep, [*path, name])
        state[name] = "done"
        order.append(name)

    for name in sorted(recipes):
        visit(name, [])
    return order


def closure(recipes: dict[str, Recipe], names: list[str]) -> list[str]:
    """`names` and everything they depend on, in build order."""
    want: set[str] = set()
    stack = list(names)
    while stack:
        name = stack.pop()
        if name not in recipes:
            raise UserError(f"--only {name}: no such component{did_you_mean(name, recipes)}")
        if name not in want:
            want.add(name)
            stack.extend(recipes[name].depends)
    return [n for n in check(recipes) if n in want]
