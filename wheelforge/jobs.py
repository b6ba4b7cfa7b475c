"""Whole commands that span stages, each with the engine it needs brought up around it:
`invoke check`, `lock`, `image`, `audit`, `smoke`, `push`, `publish`, `nightly`, `pull`,
`base-images` and `demo`.

Only tasks.py (and tests) import this module. `invoke wheels` does not come through here:
its entry point is build/__init__.py's `build_wheels`, so following it never reads the
image, smoke or publish stages.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from wheelforge.audit import gpu, jit, links
from wheelforge.build import bake, build_sets, checked_plan, exported_wheels, held, sets_summary
from wheelforge.contract import check_recipes
from wheelforge.core import engine, rootfs, terminal, wheelset
from wheelforge.core.settings import (
    CONTRACT,
    DEMO_RECIPES,
    LAST_PULLED,
    ROOT,
    SMOKE_REPORTS,
    SOURCES,
    WHEELS,
    WHEELS_LOCK,
)
from wheelforge.core.terminal import UserError, did_you_mean
from wheelforge.core.types import Cell, Inputs, Plan
from wheelforge.image import (
    Built,
    build_image,
    cell_dirs,
    containers,
    default_tag,
    describe,
    images_summary,
)
from wheelforge.image.containers import smoke_in_image
from wheelforge.plan import extra_indexes, fetch, make_plan, runtime_lock
from wheelforge.plan.fetch import ensure_demo_repos
from wheelforge.publish import (
    Published,
    find_published,
    promote,
    push_image,
    read_report,
    retain,
    write_refs,
)
from wheelforge.publish.registry import Registry, required_host
from wheelforge.recipes import load
from wheelforge.recipes.matrix import select
from wheelforge.smoke.report import compare, format_compare


def compare_images(image: str, other: str, suite_args: list[str]) -> tuple[int, str]:
    """Performance checks in both images; the table of ratios other/image."""

    with tempfile.TemporaryDirectory() as tmp:
        a, b = Path(tmp, "a.json"), Path(tmp, "b.json")
        codes = [smoke_in_image(image, ["--perf-only", *suite_args], report=a),
                 smoke_in_image(other, ["--perf-only", *suite_args], report=b)]
        if not (a.exists() and b.exists()):
            raise UserError("smoke --compare: a run wrote no report; see its output above")
        rows = compare(json.loads(a.read_text()), json.loads(b.read_text()))
    return max(codes), format_compare(rows, image, other)


def check(ins: Inputs, *, channel: str | None, cells: str | None, as_json: bool = False,
          skip: tuple[str, ...] = ()) -> None:
    """`invoke check`: print every finding; exit non-zero when there is an ERROR."""
    if ins.recipes_dir.resolve() == DEMO_RECIPES.resolve():
        fetch.make_repos()
    p = make_plan(ins, channel=channel, cells_glob=cells)
    try:  # leftovers of an interrupted fetch; never the fetches of a build running now
        with held(WHEELS_LOCK, what="invoke check"):
            fetch.clean_partial(SOURCES)
    except UserError:
        pass
    findings = check_recipes(p, ins, cache=SOURCES, work=CONTRACT, skip=skip)
    errors = sum(f.level == "ERROR" for f in findings)
    warnings = sum(f.level == "WARNING" for f in findings)
    skipped = [f.component for f in findings if f.level == "skipped"]
    if as_json:
        print(json.dumps([f.__dict__ for f in findings], indent=1))
    else:
        for f in findings:
            print(f.text())
    summary = f"check: {errors} errors, {warnings} warnings" + (
        f", {len(skipped)} skipped ({', '.join(skipped)})" if skipped else "")
    if errors:
        raise UserError(f"{summary}; fix the lines marked ERROR above", exit_code=1)
    print(summary)


def built_wheels(plan: Plan, cell: Cell, *, wheels_root: Path, exports: Path) -> list[Path]:
    """The planned component wheels of a cell, as built: from any wheel set holding a
    build of the same key, else from the last `invoke wheels` exports; [] if none."""

    by_key: dict[str, list[Path]] = {}
    for manifest_file in sorted(wheels_root.glob("*/manifest.json")):
        try:
            comps = json.loads(manifest_file.read_text()).get("components", {})
        except (OSError, ValueError):
            continue
        for comp in comps.values() if isinstance(comps, dict) else ():
            files = [manifest_file.parent / w.get("file", "") for w in comp.get("wheels", [])]
            if comp.get("key") and files and all(f.is_file() for f in files):
                by_key.setdefault(comp["key"], files)
    out, missing = [], []
    for name, target in plan.cell_targets[cell.id].items():
        build = plan.builds[target]
        if not build.wheels:
            continue
        files = by_key.get(build.key) or exported_wheels(exports, build)
        if files:
            out += files
        else:
            missing.append(name)
    if missing and out:
        raise UserError(f"lock: {cell.id}: no built wheels of {', '.join(missing)} at their "
                        f"planned keys; run invoke wheels --recipes {plan.locks[cell.id].recipes} "
                        f"--cells {cell.id} first")
    return out


def lock(ins: Inputs, *, channel: str | None, cells: str | None, wheels_root: Path,
         exports: Path, ca_bundle: Path | None = None,
         say: Callable[[str], None] = print) -> list[Path]:
    """`invoke lock`: one lock per (stack, python) of the selected cells, from their wheels."""

    if ins.recipes_dir.resolve() == (ROOT / "demo" / "recipes").resolve():
        fetch.make_repos()  # the demo's git sources (the nightly channel resolves branches)
    plan = make_plan(ins, channel=channel, cells_glob=cells)
    groups: dict[tuple[str, str], list[Cell]] = {}
    for cell in plan.cells:
        groups.setdefault((cell.stack.name, cell.python), []).append(cell)
    written = []
    for (stack, python), group in groups.items():
        wheels: dict[str, Path] = {}
        read, indexes = [], []
        for cell in group:
            found = built_wheels(plan, cell, wheels_root=wheels_root, exports=exports)
            if not found:
                say(f"lock: {cell.id}: no built wheels, not read")
                continue
            read.append(cell.id)
            wheels.update((w.name, w) for w in found)
            indexes += extra_indexes(plan, cell.id)
        lock = plan.locks[group[0].id]
        if not read:
            raise UserError(f"lock: no built wheels for stack {stack}, Python {python} "
                            f"({', '.join(c.id for c in group)}); run invoke wheels --recipes "
                            f"{lock.recipes} --cells {group[0].id} first")
        text = runtime_lock.resolve(stack, python, list(wheels.values()),
                                    extra_indexes=list(dict.fromkeys(indexes)),
                                    recipes=lock.recipes, cells=read, ca_bundle=ca_bundle)
        changed = runtime_lock.write(lock.path, text)
        pins = runtime_lock.parse(text, lock.display)
        say(f"lock: {lock.display}: {len(pins)} pins "
            f"({'written' if changed else 'unchanged'}; from {', '.join(read)})")
        written.append(lock.path)
    return written


def base_images(ins: Inputs, *, roots_only: bool = False) -> None:
    matrix, _ = load(ins)
    refs = {s.build_image for s in matrix.stacks} | {s.runtime_image for s in matrix.stacks}
    if roots_only:
        rootfs.ensure_roots(refs)
        engine.say("base image roots: ready")
        return
    with engine.engine_running():
        rootfs.ensure_images(refs)
    engine.say("base images: ready")


def image(*, cells: str | None, tags: list[str] | None = None,
          builder: str | None = None) -> list[Built]:
    dirs = cell_dirs(WHEELS, cells)
    for d in dirs:  # each set is the one its cell's last `invoke wheels` planned
        wheelset.require_planned(d, wheelset.read_manifest(d))
    if tags and len(tags) != len(dirs):
        raise UserError(f"--tag given {len(tags)} times for {len(dirs)} cells; give one per "
                        f"cell, or none for the default tags")
    with engine.engine_running():
        built = [build_image(d, tag=(tags[i] if tags else None), builder=builder)
                 for i, d in enumerate(dirs)]
    print(images_summary(built))
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
        with engine.engine_running():
            if compare:
                code, text = compare_images(image, compare, args)
                print(text)
            else:
                code = containers.smoke_in_image(image, args, report=out)
    if code != 0:
        raise UserError(f"smoke: failed (exit {code}); see the table above"
                        + (f" and {out}" if out and out.exists() else ""), exit_code=1)


def run_command(image: str | None, command: list[str], *, interactive: bool) -> int:
    image = image or last_pulled()
    with engine.engine_running():
        return containers.run(image, command, interactive=interactive)


def last_pulled() -> str:
    marker = LAST_PULLED
    if not marker.is_file():
        raise UserError("no image given and none pulled yet; pass --image or run invoke pull")
    return marker.read_text().strip()


def _local_image(manifest: dict) -> str:
    local = default_tag(manifest)
    if not engine.image_exists(local):
        raise UserError(f"publish {manifest['cell']}: image {local} not built; run "
                        f"invoke image --cells {manifest['cell']}")
    return local


def push(*, cells: str | None, registry: str, day: _dt.date | None = None,
         refs_file: str | None = None) -> list[Published]:
    """Push each selected cell's image under a new dated tag (and its sha- tag); nothing
    floats. `refs_file` gets REGISTRY/REPO@DIGEST per cell: what to smoke next."""
    reg = Registry(required_host(registry))
    day = day or _dt.datetime.now(_dt.UTC).date()
    with engine.engine_running():
        done = [push_image(manifest, _local_image(manifest), reg, day=day)
                for manifest in map(wheelset.read_manifest, cell_dirs(WHEELS, cells))]
    if refs_file:
        write_refs(Path(refs_file), done)
    print(publish_summary(done))
    return done


def publish(*, cells: str | None, registry: str, smoke_report: str | None = None,
            keep: int = 7, day: _dt.date | None = None, allow_cpu_smoke: bool = False,
            refs_file: str | None = None) -> list[Published]:
    """Push each selected cell's image (or find it by its smoke report's digest), promote
    it on the report's evidence, apply retention. A given report that moves no floating
    tag of a cell fails the run (after everything else is done), naming why."""
    reg = Registry(required_host(registry))
    day = day or _dt.datetime.now(_dt.UTC).date()
    report = read_report(Path(smoke_report) if smoke_report else None)
    if keep < 0:
        raise UserError(f"--keep {keep}: give the number of dated images to keep per cell, "
                        "or 0 to turn retention off")
    done = []
    with engine.engine_running():
        for cell_dir in cell_dirs(WHEELS, cells):
            manifest = wheelset.read_manifest(cell_dir)
            tested = (report or {}).get("image_digest")
            published = (find_published(manifest, reg, tested)
                         if isinstance(tested, str) and tested.startswith("sha256:") else None)
            if published is None:
                published = push_image(manifest, _local_image(manifest), reg, day=day)
            published = promote(manifest, published, reg, report=report,
                                allow_cpu_smoke=allow_cpu_smoke)
            done.append(retain(manifest, published, reg, keep=keep))
    if refs_file:
        write_refs(Path(refs_file), done)
    print(publish_summary(done))
    refused = [p for p in done if p.refused]
    if refused:
        raise UserError("publish: floating tags not moved: " + "; ".join(
            f"{p.cell} ({p.refused})" for p in refused), exit_code=1)
    return done


def publish_summary(done: list[Published]) -> str:
    return terminal.render(["cell", "digest", "tags", "floating", "retention"],
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
    with held(WHEELS_LOCK, what="invoke nightly"):
        _nightly(ins, channel=channel, cells=cells, registry=registry, options=options,
                 keep=keep, smoke_args=smoke_args, day=day, allow_cpu_smoke=allow_cpu_smoke)


def _nightly(ins: Inputs, *, channel: str, cells: str | None, registry: str,
             options: bake.Options, keep: int = 7, smoke_args: list[str] | None = None,
             day: _dt.date | None = None, allow_cpu_smoke: bool = False) -> None:
    ensure_demo_repos(ins)
    matrix, _ = load(ins)
    selected = select(matrix, cells, channel)
    reg = Registry(registry)
    day = day or _dt.datetime.now(_dt.UTC).date()
    failures: dict[str, str] = {}
    done = []
    with engine.engine_running():
        reg.ping(matrix.repository)
        for cell in selected:
            engine.say(f"nightly: === {cell.id} ===")
            try:
                p = make_plan(ins, channel=channel, cells_glob=cell.id)
                build_sets(p, options, out_root=WHEELS)
                built = build_image(WHEELS / cell.id)
                manifest = wheelset.read_manifest(WHEELS / cell.id)
                published = push_image(manifest, built.tag, reg, day=day)
                # Smoke the exact digest the registry holds, pulled back by digest.
                pushed_ref = f"{reg.host}/{published.repository}@{published.digest}"
                engine.docker(["pull", "-q", pushed_ref], what=f"{pushed_ref} ")
                report_path = SMOKE_REPORTS / f"{cell.id}.json"
                code = containers.smoke_in_image(pushed_ref, smoke_args or [],
                                                 report=report_path)
                report = read_report(report_path)
                published = promote(manifest, published, reg, report=report,
                                    allow_cpu_smoke=allow_cpu_smoke)
                done.append(retain(manifest, published, reg, keep=keep))
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
    Registry(registry).ping(matrix.repository)
    with engine.engine_running():
        engine.say(f"pull: {ref}")
        engine.docker(["pull", "-q", ref], what=f"{ref} ", timeout=3600)
        print(describe(ref))
    marker = LAST_PULLED
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(ref + "\n")
    return ref


def demo_job(*, options: bake.Options) -> None:
    """The main job on the demo set: base images, wheels, runtime images, smoke."""
    p = checked_plan(Inputs(recipes_dir=DEMO_RECIPES), channel="stable",
                     cells=None, options=options)
    with held(WHEELS_LOCK, what="invoke demo"):
        _demo_job(p, options=options)


def _demo_job(p: Plan, *, options: bake.Options) -> None:
    with engine.engine_running():
        rows = build_sets(p, options, out_root=WHEELS)
        print(sets_summary(rows))
        built = [build_image(WHEELS / cell.id) for cell in p.cells]
        print(images_summary(built))
        failed = [b.tag for b in built if containers.smoke_in_image(
            b.tag, [], report=SMOKE_REPORTS / f"{b.cell}.json") != 0]
    if failed:
        raise UserError(f"demo: smoke failed in {', '.join(failed)}", exit_code=1)
    engine.say("demo: wheels, runtime images and smoke passed for " +
               ", ".join(c.id for c in p.cells))


def gpu_report(paths: list[Path | str], *, archs: str | None, as_json: bool) -> int:
    """`invoke audit`: the GPU-target audit of wheel sets and wheels; the exit code."""
    return gpu.run(paths, archs=archs, as_json=as_json)


def jit_report(sets: list[Path], *, as_json: bool = False) -> int:
    """`invoke audit --jit`: which JIT modules each wheel set prebuilds; the exit code."""
    return jit.run_sets(sets, as_json=as_json)


def link_report(sets: list[Path], paths: list[str], *, image: str | None,
                as_json: bool = False) -> int:
    """`invoke audit --links`: each wheel set against ``image`` or its manifest's runtime
    image, the other paths against ``image`` (a local image or a root folder); the worst
    exit code."""
    if paths and not image:
        raise UserError("audit --links --path: give --image (a local image or a root folder)")
    runs = [([s], image or _runtime_image(s)) for s in sets] + ([(paths, image)] if paths
                                                                else [])
    return max(links.run(wheels, root if os.path.isdir(root) else rootfs.root_for(root),
                         shown=root, as_json=as_json) for wheels, root in runs)


def _runtime_image(cell_dir: Path) -> str:
    try:
        return str(json.loads((cell_dir / "manifest.json").read_text())["runtime_image"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{cell_dir}/manifest.json: no runtime_image ({exc}); "
                        "give --image") from None
