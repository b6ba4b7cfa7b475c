"""The steps of the flow, each with the engine it needs brought up around it."""

from __future__ import annotations

from . import bake, demo, engine, localenv
from . import image as images
from . import wheels as wheel_builds
from .app import WHEELS
from .errors import UserError
from .plan import ROOT, Inputs, load, make_plan


def _needs_demo_repos(ins: Inputs) -> None:
    if ins.recipes_dir.resolve() == (ROOT / "demo" / "recipes").resolve():
        demo.make_repos()


def wheels(ins: Inputs, *, channel: str | None, cells: str | None, options: bake.Options,
           builder: str | None = None) -> list[wheel_builds.Row]:
    _needs_demo_repos(ins)
    p = make_plan(ins, channel=channel, cells_glob=cells)
    with localenv.engine_running():
        rows = wheel_builds.build(p, options, out_root=WHEELS, builder=builder)
    print(wheel_builds.summary(rows))
    return rows


def base_images(ins: Inputs) -> None:
    matrix, _ = load(ins)
    with localenv.engine_running():
        localenv.ensure_images({s.build_image for s in matrix.stacks} |
                               {s.runtime_image for s in matrix.stacks})
    engine.say("base images: ready")


def image(*, cells: str | None, tags: list[str] | None = None,
          builder: str | None = None) -> list[images.Built]:
    dirs = images.cell_dirs(WHEELS, cells)
    if tags and len(tags) != len(dirs):
        raise UserError(f"--tag given {len(tags)} times for {len(dirs)} cells; give one per "
                        f"cell, or none for the default tags")
    with localenv.engine_running():
        built = [images.build(d, tag=(tags[i] if tags else None), builder=builder)
                 for i, d in enumerate(dirs)]
    print(images.summary(built))
    return built
