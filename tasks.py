"""wheelforge tasks: `invoke --list` shows them, `invoke --help TASK` their options.

Thin by design: each task parses its options and calls one function of the
wheelforge package (wheelforge/cli.py for options, and each stage's package), where the logic lives.
"""

from __future__ import annotations

import functools

import invoke
from invoke import Collection

from wheelforge import cli

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
    "git_rewrite": "fetch URLs starting with ORIGINAL from MIRROR: MIRROR=ORIGINAL (repeatable; "
                   "also WHEELFORGE_GIT_REWRITES, blank-separated)",
}


@task(help={**COMMON, "json": "print the plan and bake definition as JSON",
            "list": "print only the selected cell ids"}, iterable=["recipe", "git_rewrite"])
@cli.guarded
def plan(c, recipes=None, channel=None, cells=None, recipe=None, git_rewrite=None,
         json=False, list=False):
    """Show what `invoke wheels` would build: sources, keys, bake definition."""
    ins = cli.inputs(recipes=recipes, recipe=recipe or (), git_rewrite=git_rewrite or ())
    if list:
        for cell in cli.matrix_include(ins, channel=channel, cells=cells)["include"]:
            print(cell["cell"])
        return

    p = cli.make_plan(ins, channel=channel, cells_glob=cells)
    print(cli.with_locks(p, cli.show_plan(p, cli.build_options(), as_json=json), as_json=json))


@task(help={**COMMON, "json": "print the findings as JSON",
            "skip": "do not read this component's source (one that cannot be reached from "
                    "here); listed in the output as skipped (repeatable)"},
      iterable=["recipe", "git_rewrite", "skip"])
@cli.guarded
def check(c, recipes=None, channel=None, cells=None, recipe=None, git_rewrite=None, json=False,
          skip=None):
    """Check each recipe against upstream's own files at the planned source (statically)."""

    from wheelforge import jobs

    jobs.check(cli.inputs(recipes=recipes, recipe=recipe or (), git_rewrite=git_rewrite or ()),
               channel=channel, cells=cells, as_json=json, skip=tuple(skip or ()))


@task(help={"recipes": RECIPES, "cells": CELLS, "channel": CHANNEL, "recipe": COMMON["recipe"],
            "json": "print JSON (GitHub Actions matrix include form)"}, iterable=["recipe"])
@cli.guarded
def matrix(c, recipes=None, channel=None, cells=None, recipe=None, json=False):
    """Print the selected matrix cells (for CI: `invoke matrix --json`)."""
    import json as _json

    include = cli.matrix_include(cli.inputs(recipes=recipes, recipe=recipe or ()),
                                 channel=channel, cells=cells)
    print(_json.dumps(include) if json else "\n".join(i["cell"] for i in include["include"]))


@task(help={**COMMON,
            "only": "build only this component and what it needs (repeatable)",
            "src": "build a component from a local checkout: NAME=PATH (repeatable)",
            "max_jobs": "compile jobs per component (default: MAX_JOBS, else from cores and "
                        "memory)",
            "ca_bundle": "CA bundle for TLS in builds, as a BuildKit secret "
                         "(default: auto = the host's; 'none' to disable)",
            "cache_registry": "registry cache, REG/REPO: each build reads and writes its own "
                              "tags REPO:COMPONENT-KEY12 (exact) and REPO:COMPONENT--CELL",
            "cache_from": "other BuildKit cache source, e.g. type=local,src=DIR (repeatable; "
                          "made per build like --cache-registry)",
            "cache_to": "other BuildKit cache export, e.g. type=local,dest=DIR,mode=max",
            "builder": "buildx builder to run on (default: the current one)",
            "progress": "auto: a heartbeat line per running build every "
                        "WHEELFORGE_HEARTBEAT_SECONDS (10); plain: the full build log "
                        "(default: WHEELFORGE_PROGRESS, else auto)"},
      iterable=["recipe", "git_rewrite", "src", "only", "cache_from", "cache_to"])
@cli.guarded
def wheels(c, recipes=None, channel=None, cells=None, recipe=None, git_rewrite=None, only=None,
           src=None, max_jobs=None, ca_bundle="auto", cache_registry=None, cache_from=None,
           cache_to=None, builder=None, progress=None):
    """Build the wheel sets of the selected cells into wheels/<cell>/, audited.

    The output root is WHEELFORGE_WHEELS (default wheels/); the effective settings are
    printed first (docs/settings.md)."""
    from wheelforge.build import bake, build_wheels

    options = cli.build_options(max_jobs=max_jobs, ca_bundle=ca_bundle,
                                cache_from=cache_from or (), cache_to=cache_to or (),
                                progress=progress)
    build_wheels(cli.inputs(recipes=recipes, recipe=recipe or (), git_rewrite=git_rewrite
                            or (), src=src or (), only=only or ()),
                 channel=channel, cells=cells, builder=builder,
                 options=bake.with_cache_registry(options, cache_registry))


@task(help={"cells": "comma-separated globs over the wheel sets in wheels/ (default: all)",
            "tag": "image tag, one per selected cell (default: REPOSITORY:CELL)",
            "builder": "buildx builder to run on (default: the current one)"},
      iterable=["tag"])
@cli.guarded
def image(c, cells=None, tag=None, builder=None):
    """Build the runtime image of each selected wheel set (docker/Dockerfile.clean)."""

    from wheelforge import jobs

    jobs.image(cells=cells, tags=tag or None, builder=builder)


@task(help={"cells": "comma-separated globs over the wheel sets in wheels/, each judged against "
                     "its manifest's archs (default: all sets when no --path is given)",
            "path": "a wheel, a folder of wheels, a wheel set or any file/folder (repeatable)",
            "archs": "judge against these gfx archs, e.g. gfx942,gfx950 (default: a set's "
                     "manifest; other paths are then only reported)",
            "json": "print the result as JSON",
            "links": "link audit instead: every ELF file must load in --image (libraries, "
                     "symbol versions, symbols)",
            "image": "with --links: the runtime image (a local image or a root folder; "
                     "default: each set's manifest runtime_image)",
            "jit": "JIT coverage instead: which run-time-compiled modules (recipes' jit) each "
                   "set carries prebuilt, and for which archs"},
      iterable=["path"])
@cli.guarded
def audit(c, cells=None, path=None, archs=None, json=False, links=False, image=None,
          jit=False):
    """GPU-target audit: which gfx targets the wheels' GPU code carries; exit 1 if one lacks.
    With --links: the link audit (ldd -r, statically) against the runtime image; with --jit:
    the JIT coverage of each set."""

    from wheelforge import jobs

    sets = jobs.cell_dirs(cli.WHEELS, cells) if cells or not path else []
    if jit:
        raise SystemExit(jobs.jit_report(sets, as_json=json))
    if links or image:
        raise SystemExit(jobs.link_report(sets, path or [], image=image, as_json=json))
    raise SystemExit(jobs.gpu_report([*sets, *(path or [])], archs=archs, as_json=json))


@task(help={"image": "run the suite inside this image (with the ROCm device flags)",
            "host": "run the suite in this Python environment instead",
            "compare": "also run the performance checks in this image and print ratios",
            "require_gpu": "a machine without a visible GPU fails instead of skipping",
            "report": "write the JSON report here (default: smoke-report.json)",
            "model": "a local model checkpoint for the real-model check",
            "golden": "JSON file of expected completions for --model",
            "only": "comma-separated check names (see python -m wheelforge.smoke --list)"})
@cli.guarded
def smoke(c, image=None, host=False, compare=None, require_gpu=False,
          report="smoke-report.json", model=None, golden=None, only=None):
    """Run the smoke suite: in an image (--image), or here (--host)."""

    from wheelforge import jobs

    jobs.smoke(image=image, host=host, compare=compare, require_gpu=require_gpu,
               report=report, model=model, golden=golden, only=only)


@task(help={"image": "image to run (default: the one `invoke pull` picked last)"})
@cli.guarded
def shell(c, image=None):
    """An interactive shell in a runtime image, with the ROCm device flags."""

    from wheelforge import jobs

    raise SystemExit(jobs.run_command(image, ["bash"], interactive=True))


@task(name="run", help={"image": "image to run (default: the one `invoke pull` picked last)"})
@cli.guarded
def run_(c, image=None):
    """Run a command in a runtime image: invoke run -- python -c 'import torch'."""
    import sys


    # The words after `--`, exactly as the shell gave them (invoke's remainder is re-joined).
    command = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
    from wheelforge import jobs

    raise SystemExit(jobs.run_command(image, command, interactive=False))


REGISTRY = "registry host[:port] to publish to / pull from, e.g. 127.0.0.1:5000"
DATE = "the day of the dated tag, YYYY-MM-DD (default: today, UTC)"


def _day(value):
    """--date YYYY-MM-DD as a date (None: today, decided by the pipeline)."""
    import datetime

    from wheelforge.core.terminal import UserError

    if value is None:
        return None
    try:
        return datetime.date.fromisoformat(str(value))
    except ValueError:
        raise UserError(f"--date {value!r}: write the day as YYYY-MM-DD") from None


WHEEL_SETS = "comma-separated globs over the wheel sets in wheels/ (default: all)"
REFS_FILE = "write REGISTRY/REPO@DIGEST of each published image here, one a line"
ALLOW_CPU_SMOKE = ("promote on a smoke report in which no check ran on a GPU (loudly; "
                   "for machines without one)")


@task(help={"cells": WHEEL_SETS, "registry": REGISTRY, "date": DATE, "refs_file": REFS_FILE})
@cli.guarded
def push(c, registry, cells=None, date=None, refs_file=None):
    """Push runtime images under new dated tags (+ sha- tags); no floating tag moves."""

    from wheelforge import jobs

    jobs.push(cells=cells, registry=registry, day=_day(date), refs_file=refs_file)


@task(help={"cells": WHEEL_SETS, "registry": REGISTRY,
            "smoke_report": "smoke report (JSON) of the image; floating tags move only if it "
                            "passed for this exact digest with checks on a GPU",
            "allow_cpu_smoke": ALLOW_CPU_SMOKE,
            "keep": "dated images to keep per cell (older ones are deleted; 0: no retention)",
            "date": DATE, "refs_file": REFS_FILE})
@cli.guarded
def publish(c, registry, cells=None, smoke_report=None, allow_cpu_smoke=False, keep=7,
            date=None, refs_file=None):
    """Push runtime images by dated tag, add sha- tags, promote on smoke evidence."""

    from wheelforge import jobs

    jobs.publish(cells=cells, registry=registry, smoke_report=smoke_report, keep=int(keep),
                 day=_day(date), allow_cpu_smoke=allow_cpu_smoke, refs_file=refs_file)


@task(help={**COMMON, "registry": REGISTRY,
            "keep": "dated images to keep per cell", "smoke_args": "extra smoke suite options, "
            "e.g. '--require-gpu'", "max_jobs": "compile jobs per component",
            "ca_bundle": "CA bundle for TLS in builds (BuildKit secret; default auto)",
            "date": DATE, "allow_cpu_smoke": ALLOW_CPU_SMOKE},
      iterable=["recipe", "git_rewrite"])
@cli.guarded
def nightly(c, registry, recipes=None, channel="nightly", cells=None, recipe=None,
            git_rewrite=None, keep=7, smoke_args="", max_jobs=None, ca_bundle="auto",
            date=None, allow_cpu_smoke=False):
    """For each cell: check, wheels, image, push, smoke the digest, promote; report failures."""
    import shlex

    from wheelforge import jobs

    jobs.nightly(cli.inputs(recipes=recipes, recipe=recipe or (),
                            git_rewrite=git_rewrite or ()),
                 channel=channel, cells=cells, registry=registry, keep=int(keep),
                 smoke_args=shlex.split(smoke_args),
                 options=cli.build_options(max_jobs=max_jobs, ca_bundle=ca_bundle),
                 day=_day(date), allow_cpu_smoke=allow_cpu_smoke)


@task(help={"registry": REGISTRY, "arch": "GPU arch set, e.g. gfx942 or gfx950",
            "variant": "ckfree or full (default: the matrix's first variant)",
            "channel": "stable or nightly", "recipes": RECIPES})
@cli.guarded
def pull(c, arch, registry, variant=None, channel="nightly", recipes=None):
    """Pull the runtime image for your GPU and print what is inside it."""

    from wheelforge import jobs

    jobs.pull(cli.inputs(recipes=recipes), registry=registry, arch=arch, variant=variant,
              channel=channel)


@task(help={"recipes": RECIPES,
            "roots_only": "only bootstrap their roots into .cache/base (no engine); an "
                          "import from there takes seconds"})
@cli.guarded
def base_images(c, recipes="demo/recipes", roots_only=False):
    """Make the base images a recipe set needs that no registry can give (debootstrap)."""

    from wheelforge import jobs

    jobs.base_images(cli.inputs(recipes=recipes), roots_only=roots_only)


@task(help={"max_jobs": "compile jobs per component (default: from cores and memory)"})
@cli.guarded
def demo(c, max_jobs=None):
    """The main job on the demo recipe set: wheels, runtime images, smoke (every stable cell)."""

    from wheelforge import jobs

    jobs.demo_job(options=cli.build_options(max_jobs=max_jobs))


@task
@cli.guarded
def demo_sources(c):
    """Create the demo's local git repositories (deterministic commits)."""

    from wheelforge.plan import fetch

    for name, commit in fetch.make_repos().items():
        print(f"{name} {commit}")


@task(help={**COMMON},
      iterable=["recipe", "git_rewrite"])
@cli.guarded
def lock(c, recipes=None, channel=None, cells=None, recipe=None, git_rewrite=None):
    """Lock the runtime dependencies of the built wheels: RECIPES/locks/STACK-pyPYTHON.txt."""

    from wheelforge import jobs

    jobs.lock(cli.inputs(recipes=recipes, recipe=recipe or (), git_rewrite=git_rewrite or ()),
              channel=channel, cells=cells, wheels_root=cli.WHEELS,
              exports=cli.build_options().exports, ca_bundle=cli.ca_bundle_path("auto"))


@task(help={"check": "only check that they are up to date (exit 1 when not)"})
@cli.guarded
def schema(c, check=False):
    """Write the recipe and matrix JSON Schemas and docs/recipes.md's key tables from the models."""

    from wheelforge.recipes import reference

    reference.publish(check=check)


ns = Collection(plan, lock, check, matrix, wheels, image, audit, smoke, shell, run_, push, publish,
                nightly, pull, base_images, demo, demo_sources, schema)
