"""Load a recipe set: its matrix and recipes, validated together."""

from __future__ import annotations

from . import gitrefs, graph
from . import recipes as recipes_
from .errors import UserError, did_you_mean
from .matrix import Matrix, load_matrix
from .model import Inputs
from .recipes import Recipe, display_path, load_dir
from .settings import ROOT


def load(inputs: Inputs) -> tuple[Matrix, dict[str, Recipe]]:
    matrix_file = inputs.recipes_dir / "matrix.yaml"
    if not matrix_file.is_file():
        raise UserError(f"{matrix_file}: no build matrix; create it or pass --recipes DIR")
    root = ROOT if inputs.recipes_dir.resolve().is_relative_to(ROOT) else inputs.recipes_dir.parent
    matrix = load_matrix(matrix_file, display=display_path(matrix_file, root))
    recipes = load_dir(inputs.recipes_dir, display_root=root,
                       extra_variables=matrix.variant_variables,
                       overrides=inputs.recipe_overrides)
    graph.check(recipes)
    recipes_.check_stacks(recipes, [s.name for s in matrix.stacks])
    for name in inputs.src_overrides:
        if name not in recipes:
            raise UserError(f"--src {name}=...: no component {name!r}{did_you_mean(name, recipes)}")
    return matrix, recipes


def matrix_rewrites(matrix: Matrix) -> gitrefs.Rewrites:
    items = [item.replace("{root}", str(ROOT)) for item in matrix.git_rewrites]
    return gitrefs.parse_rewrites(items, origin=f"{matrix.file}: git_rewrites:")
