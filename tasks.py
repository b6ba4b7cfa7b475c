"""wheelforge tasks: `invoke --list` shows them, `invoke --help TASK` their options.

Thin by design: each task parses its options and calls one function of the
wheelforge package (wheelforge/app.py and friends), where the logic lives.
"""

from __future__ import annotations

import functools

import invoke
from invoke import Collection

from wheelforge import app

# No automatic short flags: invoke would give `-h` to the first option starting
# with h (so `invoke wheels -h` would build instead of printing help) and let one
# letter mean different options in different tasks. Every option is long-only;
# `-h` is help everywhere, and no option is positional (a value given without
# its flag, or `-h` after a task, is never taken for an option value).
task = functools.partial(invoke.task, auto_shortflags=False, positional=())

RECIPES = "recipe directory (default: recipes/; the demo set: demo/recipes)"
CELLS = "comma-separated globs over cell ids, e.g. '*gfx942*ckfree' (default: all)"
CHANNEL = "stable (recipe pins) or nightly (branch heads); default: every channel"
COMMON = {
    "recipes": RECIPES, "cells": CELLS, "channel": CHANNEL,
    "recipe": "use another recipe file for a component: NAME=FILE (repeatable)",
    "git_rewrite": "fetch URLs starting with ORIGINAL from MIRROR: MIRROR=ORIGINAL (repeatable)",
}


@task(help={**COMMON, "json": "print the plan and bake definition as JSON",
            "list": "print only the selected cell ids"}, iterable=["recipe", "git_rewrite"])
@app.guarded
def plan(c, recipes=None, channel=None, cells=None, recipe=None, git_rewrite=None,
         json=False, list=False):
    """Show what `invoke wheels` would build: sources, keys, bake definition."""
    ins = app.inputs(recipes=recipes, recipe=recipe or (), git_rewrite=git_rewrite or ())
    if list:
        for cell in app.matrix_include(ins, channel=channel, cells=cells)["include"]:
            print(cell["cell"])
        return
    p = app.planning.make_plan(ins, channel=channel, cells_glob=cells)
    print(app.show_plan(p, app.build_options(), as_json=json))


@task(help={"recipes": RECIPES, "cells": CELLS, "channel": CHANNEL, "recipe": COMMON["recipe"],
            "json": "print JSON (GitHub Actions matrix include form)"}, iterable=["recipe"])
@app.guarded
def matrix(c, recipes=None, channel=None, cells=None, recipe=None, json=False):
    """Print the selected matrix cells (for CI: `invoke matrix --json`)."""
    import json as _json

    include = app.matrix_include(app.inputs(recipes=recipes, recipe=recipe or ()),
                                 channel=channel, cells=cells)
    print(_json.dumps(include) if json else "\n".join(i["cell"] for i in include["include"]))


@task(help={**COMMON,
            "only": "build only this component and what it needs (repeatable)",
            "src": "build a component from a local checkout: NAME=PATH (repeatable)",
            "max_jobs": "compile jobs per component (default: from cores and memory)",
            "ca_bundle": "CA bundle for TLS in builds, as a BuildKit secret "
                         "(default: auto = the host's; 'none' to disable)",
            "cache_from": "BuildKit cache source, e.g. type=registry,ref=REG/cache (repeatable)",
            "cache_to": "BuildKit cache export, e.g. type=registry,ref=REG/cache,mode=max",
            "builder": "buildx builder to run on (default: the current one)"},
      iterable=["recipe", "git_rewrite", "src", "only", "cache_from", "cache_to"])
@app.guarded
def wheels(c, recipes=None, channel=None, cells=None, recipe=None, git_rewrite=None, only=None,
           src=None, max_jobs=None, ca_bundle="auto", cache_from=None, cache_to=None,
           builder=None):
    """Build the wheel sets of the selected cells into wheels/<cell>/."""
    from wheelforge import pipeline

    pipeline.wheels(app.inputs(recipes=recipes, recipe=recipe or (), git_rewrite=git_rewrite
                               or (), src=src or (), only=only or ()),
                    channel=channel, cells=cells, builder=builder,
                    options=app.build_options(max_jobs=max_jobs, ca_bundle=ca_bundle,
                                              cache_from=cache_from or (),
                                              cache_to=cache_to or ()))


@task(help={"cells": "comma-separated globs over the wheel sets in wheels/ (default: all)",
            "tag": "image tag, one per selected cell (default: REPOSITORY:CELL)",
            "builder": "buildx builder to run on (default: the current one)"},
      iterable=["tag"])
@app.guarded
def image(c, cells=None, tag=None, builder=None):
    """Build the runtime image of each selected wheel set (docker/Dockerfile.clean)."""
    from wheelforge import pipeline

    pipeline.image(cells=cells, tags=tag or None, builder=builder)


@task(help={"image": "run the suite inside this image (with the ROCm device flags)",
            "host": "run the suite in this Python environment instead",
            "compare": "also run the performance checks in this image and print ratios",
            "require_gpu": "a machine without a visible GPU fails instead of skipping",
            "report": "write the JSON report here (default: smoke-report.json)",
            "model": "a local model checkpoint for the real-model check",
            "golden": "JSON file of expected completions for --model",
            "only": "comma-separated check names (see python -m wheelforge.smoke --list)"})
@app.guarded
def smoke(c, image=None, host=False, compare=None, require_gpu=False,
          report="smoke-report.json", model=None, golden=None, only=None):
    """Run the smoke suite: in an image (--image), or here (--host)."""
    from wheelforge import pipeline

    pipeline.smoke(image=image, host=host, compare=compare, require_gpu=require_gpu,
                   report=report, model=model, golden=golden, only=only)


@task(help={"image": "image to run (default: the one `invoke pull` picked last)"})
@app.guarded
def shell(c, image=None):
    """An interactive shell in a runtime image, with the ROCm device flags."""
    from wheelforge import pipeline

    raise SystemExit(pipeline.run_command(image, ["bash"], interactive=True))


@task(name="run", help={"image": "image to run (default: the one `invoke pull` picked last)"})
@app.guarded
def run_(c, image=None):
    """Run a command in a runtime image: invoke run -- python -c 'import torch'."""
    import sys

    from wheelforge import pipeline

    # The words after `--`, exactly as the shell gave them (invoke's remainder is re-joined).
    command = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
    raise SystemExit(pipeline.run_command(image, command, interactive=False))


REGISTRY = "registry host[:port] to publish to / pull from, e.g. 127.0.0.1:5000"
DATE = "the day of the dated tag, YYYY-MM-DD (default: today, UTC)"


def _day(value):
    """--date YYYY-MM-DD as a date (None: today, decided by the pipeline)."""
    import datetime

    from wheelforge.errors import UserError

    if value is None:
        return None
    try:
        return datetime.date.fromisoformat(str(value))
    except ValueError:
        raise UserError(f"--date {value!r}: write the day as YYYY-MM-DD") from None


@task(help={"cells": "comma-separated globs over the wheel sets in wheels/ (default: all)",
            "registry": REGISTRY,
            "smoke_report": "smoke report (JSON) of the image; floating tags move only if it "
                            "passed for this exact digest",
            "keep": "dated images to keep per cell (older ones are deleted)",
            "date": DATE})
@app.guarded
def publish(c, registry, cells=None, smoke_report=None, keep=7, date=None):
    """Push runtime images by dated tag, add sha- tags, promote after a passing smoke."""
    from wheelforge import pipeline

    pipeline.publish(cells=cells, registry=registry, smoke_report=smoke_report, keep=int(keep),
                     day=_day(date))


@task(help={**COMMON, "registry": REGISTRY,
            "keep": "dated images to keep per cell", "smoke_args": "extra smoke suite options, "
            "e.g. '--require-gpu'", "max_jobs": "compile jobs per component",
            "ca_bundle": "CA bundle for TLS in builds (BuildKit secret; default auto)",
            "date": DATE},
      iterable=["recipe", "git_rewrite"])
@app.guarded
def nightly(c, registry, recipes=None, channel="nightly", cells=None, recipe=None,
            git_rewrite=None, keep=7, smoke_args="", max_jobs=None, ca_bundle="auto",
            date=None):
    """For each cell: plan, wheels, image, publish, smoke, promote; report failed cells."""
    import shlex

    from wheelforge import pipeline

    pipeline.nightly(app.inputs(recipes=recipes, recipe=recipe or (),
                                git_rewrite=git_rewrite or ()),
                     channel=channel, cells=cells, registry=registry, keep=int(keep),
                     smoke_args=shlex.split(smoke_args),
                     options=app.build_options(max_jobs=max_jobs, ca_bundle=ca_bundle),
                     day=_day(date))


@task(help={"registry": REGISTRY, "arch": "GPU arch set, e.g. gfx942 or gfx950",
            "variant": "ckfree or full (default: the matrix's first variant)",
            "channel": "stable or nightly", "recipes": RECIPES})
@app.guarded
def pull(c, arch, registry, variant=None, channel="nightly", recipes=None):
    """Pull the runtime image for your GPU and print what is inside it."""
    from wheelforge import pipeline

    pipeline.pull(app.inputs(recipes=recipes), registry=registry, arch=arch, variant=variant,
                  channel=channel)


@task(help={"recipes": RECIPES})
@app.guarded
def base_images(c, recipes="demo/recipes"):
    """Make the base images a recipe set needs that no registry can give (debootstrap)."""
    from wheelforge import pipeline

    pipeline.base_images(app.inputs(recipes=recipes))


@task(help={"max_jobs": "compile jobs per component (default: from cores and memory)"})
@app.guarded
def demo(c, max_jobs=None):
    """The main job on the demo recipe set: wheels, runtime images, smoke (both cells)."""
    from wheelforge import pipeline

    pipeline.demo_job(options=app.build_options(max_jobs=max_jobs))


@task
@app.guarded
def demo_sources(c):
    """Create the demo's local git repositories (deterministic commits)."""
    from wheelforge import demo

    for name, commit in demo.make_repos().items():
        print(f"{name} {commit}")


ns = Collection(plan, matrix, wheels, image, smoke, shell, run_, publish, nightly, pull,
                base_images, demo, demo_sources)
