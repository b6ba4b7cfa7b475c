"""The steps of the flow, each with the engine it needs brought up around it."""

from __future__ import annotations

from pathlib import Path

from . import bake, containers, demo, engine, localenv
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


def smoke(*, image: str | None, host: bool, compare: str | None, require_gpu: bool,
          report: str | None, model: str | None = None, golden: str | None = None,
          only: str | None = None) -> None:
    """Run the smoke suite; exit non-zero when any check failed."""
    if bool(image) == bool(host):
        raise UserError("smoke: give --image IMAGE or --host (one of them)")
    args = [*(["--require-gpu"] if require_gpu else []), *(["--only", only] if only else []),
            *(["--model", model] if model else []), *(["--golden", golden] if golden else [])]
    out = Path(report) if report else None
    if host:
        code = containers.smoke_on_host(args, report=out)
    else:
        with localenv.engine_running():
            if compare:
                code, text = containers.compare(image, compare, args)
                print(text)
            else:
                code = containers.smoke_in_image(image, args, report=out)
    if code != 0:
        raise UserError(f"smoke: failed (exit {code}); see the table above"
                        + (f" and {out}" if out and out.exists() else ""), exit_code=1)


def run_command(image: str | None, command: list[str], *, interactive: bool) -> int:
    image = image or last_pulled()
    with localenv.engine_running():
        return containers.run(image, command, interactive=interactive)


def last_pulled() -> str:
    marker = ROOT / ".cache" / "last-pulled"
    if not marker.is_file():
        raise UserError("no image given and none pulled yet; pass --image or run invoke pull")
    return marker.read_text().strip()
