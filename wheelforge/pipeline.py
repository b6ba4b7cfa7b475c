"""The steps of the flow, each with the engine it needs brought up around it."""

from __future__ import annotations

import dataclasses
import datetime as _dt
from pathlib import Path

from . import bake, baseimages, checkout_lock, containers, demo, engine, localenv, table, wheelset
from . import image as images
from . import publish as publishing
from . import wheels as wheel_builds
from .errors import UserError, did_you_mean
from .plan import Inputs, Plan, load, make_plan
from .registry import Registry, required_host
from .settings import DEMO_RECIPES, LAST_PULLED, SMOKE_REPORTS, WHEELS, WHEELS_LOCK, current


def _needs_demo_repos(ins: Inputs) -> None:
    if ins.recipes_dir.resolve() == DEMO_RECIPES.resolve():
        demo.make_repos()


def checked_plan(ins: Inputs, *, channel: str | None, cells: str | None,
                 options: bake.Options) -> Plan:
    """The plan, after the ERROR part of `invoke check` (upstream's own files at each source).

    It runs before the checkout lock is taken: a recipe error is reported at once, whatever
    else runs in this checkout. It only adds complete trees to the source cache (never
    clears anything), so a build holding the lock is not disturbed.
    """
    _needs_demo_repos(ins)
    p = make_plan(ins, channel=channel, cells_glob=cells)
    from . import contract

    contract.require_no_errors(p, ins, cache=options.sources,
                               work=options.sources.parent / "contract", say=engine.say)
    return p


def wheels(ins: Inputs, *, channel: str | None, cells: str | None, options: bake.Options,
           builder: str | None = None) -> list[wheel_builds.Row]:
    say_settings(options)
    p = checked_plan(ins, channel=channel, cells=cells, options=options)
    # One build per checkout: a second one would clear this one's sources and exports.
    with checkout_lock.held(WHEELS_LOCK):
        return _wheels(p, options=options, builder=builder)


def say_settings(options: bake.Options) -> None:
    """The settings this run uses, one `setting: NAME = value (origin)` line each, secrets
    masked (on stderr, as the rest of the progress): a command-line option over the
    environment over the default."""
    used = dataclasses.replace(current(), wheels=WHEELS)
    if options.max_jobs is not None and str(options.max_jobs) != used.max_jobs:
        used = dataclasses.replace(used, max_jobs=str(options.max_jobs),
                                   from_option=used.from_option | {"MAX_JOBS"})
    for line in used.lines():
        engine.say(line)


def _wheels(p: Plan, *, options: bake.Options,
            builder: str | None = None) -> list[wheel_builds.Row]:
    with localenv.engine_running():
        rows = wheel_builds.build(p, options, out_root=WHEELS, builder=builder)
    print(wheel_builds.summary(rows))
    return rows


def base_images(ins: Inputs) -> None:
    matrix, _ = load(ins)
    with localenv.engine_running():
        baseimages.ensure_images({s.build_image for s in matrix.stacks} |
                               {s.runtime_image for s in matrix.stacks})
    engine.say("base images: ready")


def image(*, cells: str | None, tags: list[str] | None = None,
          builder: str | None = None) -> list[images.Built]:
    dirs = images.cell_dirs(WHEELS, cells)
    for d in dirs:  # each set is the one its cell's last `invoke wheels` planned
        wheelset.require_planned(d, wheelset.read_manifest(d))
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
    marker = LAST_PULLED
    if not marker.is_file():
        raise UserError("no image given and none pulled yet; pass --image or run invoke pull")
    return marker.read_text().strip()


def _local_image(manifest: dict) -> str:
    local = images.default_tag(manifest)
    if not engine.image_exists(local):
        raise UserError(f"publish {manifest['cell']}: image {local} not built; run "
                        f"invoke image --cells {manifest['cell']}")
    return local


def push(*, cells: str | None, registry: str, day: _dt.date | None = None,
         refs_file: str | None = None) -> list[publishing.Published]:
    """Push each selected cell's image under a new dated tag (and its sha- tag); nothing
    floats. `refs_file` gets REGISTRY/REPO@DIGEST per cell: what to smoke next."""
    reg = Registry(required_host(registry))
    day = day or _dt.datetime.now(_dt.UTC).date()
    with localenv.engine_running():
        done = [publishing.push(manifest, _local_image(manifest), reg, day=day)
                for manifest in map(wheelset.read_manifest, images.cell_dirs(WHEELS, cells))]
    if refs_file:
        publishing.write_refs(Path(refs_file), done)
    print(publish_summary(done))
    return done


def publish(*, cells: str | None, registry: str, smoke_report: str | None = None,
            keep: int = 7, day: _dt.date | None = None, allow_cpu_smoke: bool = False,
            refs_file: str | None = None) -> list[publishing.Published]:
    """Push each selected cell's image (or find it by its smoke report's digest), promote
    it on the report's evidence, apply retention. A given report that moves no floating
    tag of a cell fails the run (after everything else is done), naming why."""
    reg = Registry(required_host(registry))
    day = day or _dt.datetime.now(_dt.UTC).date()
    report = publishing.read_report(Path(smoke_report) if smoke_report else None)
    if keep < 0:
        raise UserError(f"--keep {keep}: give the number of dated images to keep per cell, "
                        "or 0 to turn retention off")
    done = []
    with localenv.engine_running():
        for cell_dir in images.cell_dirs(WHEELS, cells):
            manifest = wheelset.read_manifest(cell_dir)
            tested = (report or {}).get("image_digest")
            published = (publishing.find_published(manifest, reg, tested)
                         if isinstance(tested, str) and tested.startswith("sha256:") else None)
            if published is None:
                published = publishing.push(manifest, _local_image(manifest), reg, day=day)
            published = publishing.promote(manifest, published, reg, report=report,
                                           allow_cpu_smoke=allow_cpu_smoke)
            done.append(publishing.retain(manifest, published, reg, keep=keep))
    if refs_file:
        publishing.write_refs(Path(refs_file), done)
    print(publish_summary(done))
    refused = [p for p in done if p.refused]
    if refused:
        raise UserError("publish: floating tags not moved: " + "; ".join(
            f"{p.cell} ({p.refused})" for p in refused), exit_code=1)
    return done


def publish_summary(done: list[publishing.Published]) -> str:
    return table.render(["cell", "digest", "tags", "floating", "retention"],
                        [(p.cell, p.digest[:19], " ".join(p.tags) + ("" if p.pushed else
                                                                      " (already there)"),
                          " ".join(p.promoted) or "-",
                          p.retention + (f": {' '.join(p.deleted)}" if p.deleted else ""))
                         for p in done])


def nightly(ins: Inputs, *, channel: str, cells: str | None, registry: str,
            options: bake.Options, keep: int = 7, smoke_args: list[str] | None = None,
            day: _dt.date | None = None, allow_cpu_smoke: bool = False) -> None:
    """plan -> wheels -> image -> push -> smoke the pushed digest -> promote, cell by cell.

    Promotion needs GPU evidence (or `allow_cpu_smoke`); a cell whose smoke failed or that
    was not promoted fails. A failing cell does not stop the others; the run fails at the
    end and says which.
    """
    required_host(registry)  # before any planning: a run without --registry does nothing
    checked_plan(ins, channel=channel, cells=cells, options=options)  # every cell, first
    with checkout_lock.held(WHEELS_LOCK, what="invoke nightly"):
        _nightly(ins, channel=channel, cells=cells, registry=registry, options=options,
                 keep=keep, smoke_args=smoke_args, day=day, allow_cpu_smoke=allow_cpu_smoke)


def _nightly(ins: Inputs, *, channel: str, cells: str | None, registry: str,
             options: bake.Options, keep: int = 7, smoke_args: list[str] | None = None,
             day: _dt.date | None = None, allow_cpu_smoke: bool = False) -> None:
    _needs_demo_repos(ins)
    matrix, _ = load(ins)
    selected = matrix.select(cells, channel)
    reg = Registry(registry)
    day = day or _dt.datetime.now(_dt.UTC).date()
    failures: dict[str, str] = {}
    done = []
    with localenv.engine_running():
        reg.ping()
        for cell in selected:
            engine.say(f"nightly: === {cell.id} ===")
            try:
                p = make_plan(ins, channel=channel, cells_glob=cell.id)
                wheel_builds.build(p, options, out_root=WHEELS)
                built = images.build(WHEELS / cell.id)
                manifest = wheelset.read_manifest(WHEELS / cell.id)
                published = publishing.push(manifest, built.tag, reg, day=day)
                # Smoke the exact digest the registry holds, pulled back by digest.
                pushed_ref = f"{reg.host}/{published.repository}@{published.digest}"
                engine.docker(["pull", "-q", pushed_ref], what=f"{pushed_ref} ")
                report_path = SMOKE_REPORTS / f"{cell.id}.json"
                code = containers.smoke_in_image(pushed_ref, smoke_args or [],
                                                 report=report_path)
                report = publishing.read_report(report_path)
                published = publishing.promote(manifest, published, reg, report=report,
                                               allow_cpu_smoke=allow_cpu_smoke)
                done.append(publishing.retain(manifest, published, reg, keep=keep))
                if code != 0:
                    failures[cell.id] = "smoke failed"
                elif published.refused:
                    failures[cell.id] = f"not promoted: {published.refused}"
            except UserError as exc:
                failures[cell.id] = str(exc)
                engine.say(f"nightly: {cell.id} failed: {exc}")
    print(publish_summary(done))
    if failures:
        raise UserError("nightly: failed cells: " + "; ".join(
            f"{c} ({why})" for c, why in failures.items()), exit_code=1)


def pull(ins: Inputs, *, registry: str, arch: str, variant: str | None,
         channel: str) -> str:
    """Pick the floating tag for this GPU, pull it, and say what is inside."""
    required_host(registry)
    matrix, _ = load(ins)
    arch_names = [a for a, _ in matrix.archs]
    if arch not in arch_names:
        raise UserError(f"--arch {arch}: no such arch set{did_you_mean(arch, arch_names)}; "
                        f"choose from {', '.join(arch_names)}")
    variants = [v for v, _ in matrix.variants]
    if variant is not None and variant not in variants:
        raise UserError(f"--variant {variant}: no such variant{did_you_mean(variant, variants)};"
                        f" choose from {', '.join(variants)}")
    if channel not in matrix.channels:
        raise UserError(f"--channel {channel}: choose from {', '.join(matrix.channels)}")
    tag = f"{channel}-{arch}-{variant or matrix.default_variant}"
    ref = f"{registry}/{matrix.repository}:{tag}"
    Registry(registry).ping()
    with localenv.engine_running():
        engine.say(f"pull: {ref}")
        engine.docker(["pull", "-q", ref], what=f"{ref} ", timeout=3600)
        print(images.describe(ref))
    marker = LAST_PULLED
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(ref + "\n")
    return ref


def demo_job(*, options: bake.Options) -> None:
    """The main job on the demo set: base images, wheels, runtime images, smoke."""
    p = checked_plan(Inputs(recipes_dir=DEMO_RECIPES), channel="stable",
                     cells=None, options=options)
    with checkout_lock.held(WHEELS_LOCK, what="invoke demo"):
        _demo_job(p, options=options)


def _demo_job(p: Plan, *, options: bake.Options) -> None:
    with localenv.engine_running():
        rows = wheel_builds.build(p, options, out_root=WHEELS)
        print(wheel_builds.summary(rows))
        built = [images.build(WHEELS / cell.id) for cell in p.cells]
        print(images.summary(built))
        failed = [b.tag for b in built if containers.smoke_in_image(
            b.tag, [], report=SMOKE_REPORTS / f"{b.cell}.json") != 0]
    if failed:
        raise UserError(f"demo: smoke failed in {', '.join(failed)}", exit_code=1)
    engine.say("demo: wheels, runtime images and smoke passed for " +
               ", ".join(c.id for c in p.cells))
