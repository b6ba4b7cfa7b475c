"""Load a recipe set: its matrix and recipes, validated together, and the dependency
graph between components (missing dependencies, cycles, order)."""

from __future__ import annotations

from pathlib import PurePosixPath

from wheelforge.core.settings import ROOT
from wheelforge.core.terminal import UserError, did_you_mean
from wheelforge.core.types import Inputs, Matrix, Recipe, Rewrites
from wheelforge.recipes.component import builds_on, display_path, load_dir
from wheelforge.recipes.matrix import load_matrix, parse_rewrites

# Dockerfile.wheels has this many dependency slots (dep1 .. depN named contexts).
MAX_DIRECT_DEPENDENCIES = 6


def check_graph(recipes: dict[str, Recipe]) -> list[str]:
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


def check_stacks(recipes: dict[str, Recipe], stack_names: list[str]) -> None:
    """Every `stacks:` name is a matrix stack, and a component's dependencies (which
    check_graph found) are built on every stack the component is built on."""
    for recipe in recipes.values():
        for stack in recipe.stacks:
            if stack not in stack_names:
                raise UserError(f"{recipe.file}:{recipe.line_of_stacks}: stacks: no stack named "
                                f"{stack!r} in the matrix{did_you_mean(stack, stack_names)}; "
                                f"stacks: {', '.join(stack_names)}")
        for dep in recipe.depends:
            missing = [s for s in stack_names
                       if builds_on(recipe, s) and not builds_on(recipes[dep], s)]
            if missing:
                raise UserError(f"{recipe.file}:{recipe.line_of_depends}: depends: {dep!r} is "
                                f"not built for stack {missing[0]!r} ({recipes[dep].file} "
                                f"stacks:), which {recipe.name!r} is built for; limit "
                                f"{recipe.name!r} with stacks: or widen {dep!r}")


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
    return [n for n in check_graph(recipes) if n in want]


def load(inputs: Inputs) -> tuple[Matrix, dict[str, Recipe]]:
    matrix_file = inputs.recipes_dir / "matrix.yaml"
    if not matrix_file.is_file():
        raise UserError(f"{matrix_file}: no build matrix; create it or pass --recipes DIR")
    root = ROOT if inputs.recipes_dir.resolve().is_relative_to(ROOT) else inputs.recipes_dir.parent
    matrix = load_matrix(matrix_file, display=display_path(matrix_file, root))
    recipes = load_dir(inputs.recipes_dir, display_root=root,
                       extra_variables=matrix.variant_variables,
                       overrides=inputs.recipe_overrides)
    check_graph(recipes)
    check_stacks(recipes, [s.name for s in matrix.stacks])
    for name in inputs.src_overrides:
        if name not in recipes:
            raise UserError(f"--src {name}=...: no component {name!r}{did_you_mean(name, recipes)}")
    return matrix, recipes


def matrix_rewrites(matrix: Matrix) -> Rewrites:
    items = [item.replace("{root}", str(ROOT)) for item in matrix.git_rewrites]
    return parse_rewrites(items, origin=f"{matrix.file}: git_rewrites:")
