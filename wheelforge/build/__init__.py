"""`invoke wheels`: turn a plan into audited wheel sets, one wheels/<cell>/ with manifest.json
per selected cell.

A run (`build_wheels`):

1. print the run's settings, make the plan and run the ERROR part of `invoke check`
   (contract/) before the checkout lock is taken: a recipe error is reported at once;
2. take the checkout lock (below), bring up the engine, note each cell's plan
   (core/wheelset.py), make the base images this project makes (core/rootfs.py), and
   start extracting the runtime images' roots for the link audit in the background;
3. fetch each build's source on the host (plan/fetch.py);
4. `docker buildx bake` the plan's targets one at a time in dependency order
   (build/bake.py, batches), each shared component once, each with the builder's whole
   width; a dependent reads its dependencies' export folders. build/progress.py shows the
   progress, and the run's timeline is written even when a build fails;
5. check the exported wheels: vendor wheels against their recipe's sha256 map, and every
   wheel's version against its recipe's (plan/__init__.py, gate);
6. stage each cell's wheels and bake the runtime-dependency stage of each cell over them,
   after checking them against the cell's lock (plan/runtime_lock.py); a (stack, Python)
   that has no lock yet while its sets need the index is locked here with uv, to be
   committed, but an existing lock is never remade here;
7. audit each staged set: its GPU code against the cell's archs (audit/gpu.py), its links
   against the cell's runtime image (audit/links.py) and its JIT coverage (audit/jit.py);
   each result goes into the manifest, and a finding stops the build before anything is
   swapped in;
8. write each manifest and swap each set in atomically (core/wheelset.py), once every
   cell's set has passed: a failed run leaves every previous wheels/<cell>/ as it was.

One build per checkout at a time. Two builds in one checkout share `.cache/exports`,
`.cache/sources` and the staging folders under wheels/, and each clears what it takes for
leftovers of an interrupted run: they would delete each other's work in progress. A second
build therefore refuses at once, in one line naming the holder's pid. The lock is
`fcntl.flock` on `.cache/wheels.lock` (`held`; jobs.py takes it for `invoke check`,
`nightly` and `demo` too): the kernel releases it when the holder exits in any way
(Ctrl-C, a crash, kill -9), so it never goes stale.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from wheelforge.audit import gpu, jit, links
from wheelforge.build import bake, progress
from wheelforge.contract import require_no_errors
from wheelforge.core import engine, rootfs, terminal, wheelset
from wheelforge.core.settings import ROOT, WHEELS_LOCK
from wheelforge.core.terminal import UserError
from wheelforge.core.types import Build, Inputs, Plan
from wheelforge.plan import (
    extra_indexes,
    fetch,
    gate,
    make_plan,
    runtime_apt,
    runtime_env,
    runtime_lock,
    step_key,
)
from wheelforge.plan.fetch import ensure_demo_repos
from wheelforge.recipes.component import verify_index_wheels


@contextlib.contextmanager
def held(path: Path, *, what: str = "invoke wheels") -> Iterator[None]:
    """Hold the lock at `path` for the block, or raise UserError if another process has it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            message = (f"{what}: another build is running in this checkout (pid {holder}, "
                       f"holding {path}); wait for it to finish, or stop it")
            raise UserError(message) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def checked_plan(ins: Inputs, *, channel: str | None, cells: str | None,
                 options: bake.Options) -> Plan:
    """The plan, after the ERROR part of `invoke check` (upstream's own files at each source).

    It runs before the checkout lock is taken: a recipe error is reported at once, whatever
    else runs in this checkout. It only adds complete trees to the source cache (never
    clears anything), so a build holding the lock is not disturbed.
    """
    ensure_demo_repos(ins)
    p = make_plan(ins, channel=channel, cells_glob=cells)

    require_no_errors(p, ins, cache=options.sources,
                      work=options.sources.parent / "contract", say=engine.say)
    return p


def build_wheels(ins: Inputs, *, channel: str | None, cells: str | None, options: bake.Options,
                 builder: str | None = None) -> list[Row]:
    say_settings(options)
    p = checked_plan(ins, channel=channel, cells=cells, options=options)
    # One build per checkout: a second one would clear this one's sources and exports.
    with held(WHEELS_LOCK):
        return _build_wheels(p, options=options, builder=builder)


def say_settings(options: bake.Options) -> None:
    """The settings this run uses (`options.run`, resolved once from the command line, the
    environment and the defaults), one `setting: NAME = value (origin)` line each, secrets
    masked, on stderr as the rest of the progress."""
    for line in options.run.lines():
        engine.say(line)


def _build_wheels(p: Plan, *, options: bake.Options,
                  builder: str | None = None) -> list[Row]:
    with engine.engine_running():
        rows = build_sets(p, options, out_root=options.run.wheels, builder=builder)
    print(sets_summary(rows))
    return rows


@dataclass(frozen=True, kw_only=True)
class Row:
    component: str
    cell: str
    seconds: float
    cached: bool | None
    size: int


def build_sets(plan: Plan, options: bake.Options, *, out_root: Path,
               builder: str | None = None) -> list[Row]:
    wheelset.clean_stale(out_root)
    for cell in plan.cells:  # what `invoke image` will expect of each set (core/wheelset.py)
        wheelset.record_planned(out_root, cell.id, wheelset.plan_id(
            {name: plan.builds[t].key for name, t in plan.cell_targets[cell.id].items()}))
    fetch.clean_partial(options.sources)
    rootfs.ensure_images({b.build_image for b in plan.builds.values()} |
                         {c.stack.runtime_image for c in plan.cells})
    # what the link audit reads of each runtime image, read while the components build
    roots = rootfs.Prefetch(c.stack.runtime_image for c in plan.cells)
    try:
        return _build_sets(plan, options, out_root=out_root, builder=builder, roots=roots)
    finally:
        roots.wait()  # never leave it half-written behind an error


def _build_sets(plan: Plan, options: bake.Options, *, out_root: Path, builder: str | None,
                roots: rootfs.Prefetch) -> list[Row]:
    for b in plan.builds.values():
        engine.say(f"source: {b.component}: {b.source.label()}")
        fetch.fetch(options.sources, b, rewrites=plan.rewrites)
    shutil.rmtree(options.exports, ignore_errors=True)
    tracker = progress.Tracker(plan, display=progress.Display.of(options.run))
    began = _dt.datetime.now(_dt.UTC)
    try:
        with tracker.beating():
            result = _bake_waves(plan, options, builder, tracker)
        tracker.finish(result.ok)
    finally:
        _timeline(plan, tracker, out_root, began)
    if not result.ok:
        raise _failure(plan, result, tracker)
    for b in plan.builds.values():  # vendor wheels: each one listed in its recipe's sha256 map
        verify_index_wheels(b.component, b.recipe_file, b.source.wheel_sha256,
                            exported_wheels(options.exports, b))
    # every wheel at the version its recipe states (plan/__init__.py), before any set is staged
    gate((b.component, b.recipe_file, b.expected_versions(),
          exported_wheels(options.exports, b)) for b in plan.builds.values())
    base_ids = {ref: _image_digest(result, ref) for ref in {b.build_image for b in
                                                            plan.builds.values()}}
    stages = {cell.id: wheelset.staging(out_root, cell.id) for cell in plan.cells}
    roots.wait()
    try:
        for cell in plan.cells:
            for target in plan.cell_targets[cell.id].values():
                for whl in exported_wheels(options.exports, plan.builds[target]):
                    wheelset.add_file(stages[cell.id], whl)
        deps = _runtime_deps(plan, options, stages, builder)
        rows = []
        for cell in plan.cells:
            manifest = _manifest(plan, cell.id, result, options, deps[cell.id], base_ids)
            # GPU-target audit of the staged set: a finding stops here, nothing swapped in
            manifest["gpu_targets"] = gpu.gate(stages[cell.id], manifest)
            # link audit: every ELF file loads in the cell's runtime image (audit/links.py)
            root = rootfs.root_for(manifest["runtime_image"])
            manifest["link_audit"] = links.gate(stages[cell.id], manifest, root,
                                                cacheable=root.parent == rootfs.ROOTS)
            # which JIT modules are prebuilt, for which archs (audit/jit.py)
            manifest["jit_coverage"] = jit.gate(stages[cell.id], manifest)
            wheelset.write_manifest(stages[cell.id], manifest)
            rows += [Row(component=name, cell=cell.id, seconds=c["build_seconds"],
                         cached=c["from_cache"], size=sum(w["size"] for w in c["wheels"]))
                     for name, c in manifest["components"].items()]
        for cell in plan.cells:
            wheelset.swap_in(stages.pop(cell.id), out_root / cell.id)
    finally:
        for stage in stages.values():
            shutil.rmtree(stage, ignore_errors=True)
    return rows


def _bake_waves(plan: Plan, options: bake.Options, builder: str | None,
                tracker: progress.Tracker) -> engine.BuildResult:
    """Bake the plan one target at a time in dependency order (bake.batches), until one
    fails."""
    ok, vertices, errors, seconds = True, {}, [], 0.0
    for wave in bake.batches(plan):
        result = engine.bake(bake.definition(plan, options, wave), wave,
                             workdir=options.exports, on_vertex=_progress(plan),
                             builder=builder, env=bake.jobs_secret(options),
                             on_status=tracker.feed)
        vertices.update(result.vertices)
        seconds += result.seconds
        if not result.ok:
            ok = False
            errors.append(result.error)
            break
    return engine.BuildResult(ok=ok, vertices=vertices, error="; ".join(errors),
                              seconds=seconds)


def sets_summary(rows: list[Row]) -> str:
    return terminal.render(
        ["component", "cell", "time", "cache hit", "wheel size"],
        [(r.component, r.cell, f"{r.seconds:.1f}s", {True: "yes", False: "no"}.get(r.cached, "?"),
          terminal.size(r.size) if r.size else "-") for r in rows])


def _progress(plan: Plan):
    seen: set[str] = set()

    def on_vertex(vertex: engine.Vertex) -> None:
        for target in plan.builds:
            if _is_build_step(vertex, target):
                state = ("failed" if vertex.error else "cached" if vertex.cached else "done"
                         ) if vertex.completed else "building"
                if (target, state) not in seen:
                    seen.add((target, state))
                    engine.say(f"[{time.strftime('%H:%M:%S')}] {target}: {state}")
    return on_vertex


def _is_build_step(vertex: engine.Vertex, target: str) -> bool:
    """The RUN step of Dockerfile.wheels' build stage for `target` (args are expanded)."""
    return "build-component build" in vertex.name and target in vertex.name


def _timeline(plan: Plan, tracker: progress.Tracker, out_root: Path,
              began: _dt.datetime) -> None:
    """Write the run's timeline (even of a failed run) and say where it is."""
    try:
        path = progress.write(out_root, progress.render(plan, tracker.spans(), when=began),
                              when=began)
    except OSError as exc:
        engine.say(f"timeline: not written ({exc.strerror or exc})")
        return
    engine.say(f"timeline: {path} (latest: {out_root / 'timeline.html'})")


def _failure(plan: Plan, result: engine.BuildResult,
             tracker: progress.Tracker | None = None) -> UserError:
    result.show_failed_output()
    marked = result.marked_error()
    if marked:
        target = marked.split()[0].removeprefix("target=")
        cells = ", ".join(plan.builds[target].cells) if target in plan.builds else "?"
        detail = marked.split(" ", 1)[1] if " " in marked else marked
        where = (progress.failure_where(plan.builds[target], detail,
                                        step=tracker.step_of(target) if tracker else 0,
                                        display=tracker.display if tracker else None) + "; "
                 if target in plan.builds else "")
        return UserError(f"wheels: build failed: {detail} [{where}cells: {cells}; "
                         f"target {target}]",
                         exit_code=1)
    failed = [v for v in result.vertices.values() if v.error]
    where = f" at {failed[0].name[:120]}" if failed else ""
    return UserError(f"wheels: build failed{where}: {result.error}", exit_code=1)


def exported_wheels(exports: Path, b: Build) -> list[Path]:
    """The wheels a build exported (exports/<target>/<component>/wheels/)."""
    return sorted((exports / b.target / b.component / "wheels").glob("*.whl")) if b.wheels else []


def _runtime_deps(plan: Plan, options: bake.Options, stages: dict[str, Path],
                  builder: str | None) -> dict[str, list]:
    """Bake Dockerfile.wheels' runtime-deps stage for every cell; add its wheels.

    Each cell's wheels are checked against its lock first (one line naming what is
    missing, and `invoke lock`); the step then downloads exactly the lock, which is its
    `lock` context (so its content is in BuildKit's key) and LOCK_SHA256."""
    _lock_where_none(plan, options, stages)
    targets = {}
    for cell in plan.cells:
        name = re.sub(r"[^A-Za-z0-9_-]", "_", f"runtime-deps-{cell.id}")
        lock = plan.locks[cell.id]
        built = sorted(stages[cell.id].glob("*.whl"))
        runtime_lock.check(cell.id, built, lock)
        needed = runtime_lock.needs_index(built, lock.python)
        lock_dir = runtime_lock.step_context(lock, options.exports / "_locks" / name, needed=needed)
        targets[name] = {
            "context": str(ROOT), "dockerfile": "docker/Dockerfile.wheels",
            "target": "runtime-deps-export",
            "contexts": {"wheels": str(stages[cell.id]), "lock": str(lock_dir)},
            "args": {"RUNTIME_IMAGE": cell.stack.runtime_image, "TARGET": name,
                     "LOCK_SHA256": lock.sha256 if needed else "",
                     "RUNTIME_APT": " ".join(runtime_apt(plan, cell.id)),
                     "EXTRA_INDEX_URLS": " ".join(extra_indexes(plan, cell.id))},
            "output": [f"type=local,dest={options.exports / name}"],
        }
        secrets = bake.secrets(options)
        if secrets:
            targets[name]["secret"] = secrets
    result = engine.bake({"group": {"default": {"targets": list(targets)}}, "target": targets},
                         list(targets), workdir=options.exports, builder=builder)
    if not result.ok:
        raise _failure(plan, result)
    out = {}
    for cell, name in zip(plan.cells, targets, strict=True):
        found = sorted((options.exports / name / "_runtime-deps" / "wheels").glob("*.whl"))
        for whl in found:
            wheelset.add_file(stages[cell.id], whl)
        out[cell.id] = [wheelset.wheel_entry(w) for w in found]
    return out


def _lock_where_none(plan: Plan, options: bake.Options, stages: dict[str, Path]) -> None:
    """A (stack, Python) with no lock yet whose sets need the index is locked here, from
    the staged wheels, as `invoke lock` would (uv); said on one line, to be committed. A
    lock that exists is never remade here: one the wheels outgrew is refused
    (runtime_lock.check)."""
    groups: dict[Path, list] = {}
    for cell in plan.cells:
        lock = plan.locks[cell.id]
        built = sorted(stages[cell.id].glob("*.whl"))
        if not lock.exists and runtime_lock.needs_index(built, lock.python):
            groups.setdefault(lock.path, []).append(cell)
    for path, cells in groups.items():
        lock = plan.locks[cells[0].id]
        wheels = {w.name: w for c in cells for w in stages[c.id].glob("*.whl")}
        indexes = [i for c in cells for i in extra_indexes(plan, c.id)]
        text = runtime_lock.resolve(lock.stack, lock.python, sorted(wheels.values()),
                                    extra_indexes=list(dict.fromkeys(indexes)),
                                    recipes=lock.recipes, cells=[c.id for c in cells],
                                    ca_bundle=options.ca_bundle)
        runtime_lock.write(path, text)
        made = runtime_lock.locate(path.parent.parent, lock.stack, lock.python)
        for cell in plan.cells:
            if plan.locks[cell.id].path == path:
                plan.locks[cell.id] = made
        engine.say(f"lock: {made.display}: there was none; made from the built wheels with uv "
                   f"({len(made.pins)} pins): commit it")


def _manifest(plan: Plan, cell_id: str, result: engine.BuildResult, options: bake.Options,
              runtime_deps: list, base_ids: dict[str, str]) -> dict:
    cell = next(c for c in plan.cells if c.id == cell_id)
    components = {}
    for name, target in plan.cell_targets[cell_id].items():
        b = plan.builds[target]
        info_file = options.exports / target / name / "build-info.json"
        info = json.loads(info_file.read_text()) if info_file.exists() else {}
        vertex = [v for v in result.vertices.values() if _is_build_step(v, target)]
        components[name] = {
            "target": target, "key": b.key, "recipe": b.recipe_file,
            "source": {**b.source.identity(), "fetch_url": b.source.fetch_url},
            "archs": list(b.archs), "env": dict(b.env), "imports": list(b.imports),
            "runtime_env": dict(b.runtime_env), "jit": dict(b.jit),
            "smoke": [{"name": c.name, "run": c.run, "gpu": c.gpu} for c in b.smoke],
            "runtime": b.runtime, "prefix_only": not b.wheels,
            "build_image": {"ref": b.build_image, "digest": base_ids.get(b.build_image, "")},
            "build_seconds": info.get("seconds", _seconds(vertex)),
            "from_cache": all(v.cached for v in vertex) if vertex else None,
            "wheels": [wheelset.wheel_entry(w) for w in exported_wheels(options.exports, b)],
        }
    return {
        "schema": 1, "cell": cell.id, "channel": cell.channel, "stack": cell.stack.name,
        "python": cell.python, "arch": cell.arch, "archs": list(cell.archs),
        "variant": cell.variant, "runtime_image": cell.stack.runtime_image,
        "runtime_apt": runtime_apt(plan, cell_id), "runtime_env": runtime_env(plan, cell_id),
        "runtime_toolchain": getattr(cell.stack, "runtime_toolchain", "forbidden"),
        "jit_coverage_required": cell.stack.jit_coverage == "required",
        "repository": plan.matrix.repository,
        "default_arch": plan.matrix.default_arch, "default_variant": plan.matrix.default_variant,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "wheelforge_revision": revision(), "components": components,
        "runtime_deps": runtime_deps,
        "runtime_lock": {"file": plan.locks[cell_id].display,
                         "sha256": plan.locks[cell_id].sha256,
                         "step_key": step_key(plan, cell)},
    }


def _seconds(vertices: list[engine.Vertex]) -> float:
    """How long BuildKit ran a step (0 when it came from cache)."""
    total = 0.0
    for v in vertices:
        if v.started and v.completed and not v.cached:
            start, end = (_dt.datetime.fromisoformat(re.sub(r"(\.\d{6})\d*", r"\1", t)
                                                     .replace("Z", "+00:00"))
                          for t in (v.started, v.completed))
            total += (end - start).total_seconds()
    return round(total, 1)


def _image_digest(result: engine.BuildResult, ref: str) -> str:
    """The digest BuildKit resolved for base image `ref`, read from its FROM step."""
    name = ref if "/" in ref.split(":")[0] or "." in ref.split("/")[0] else f"library/{ref}"
    for vertex in result.vertices.values():
        m = re.search(r"FROM (\S+)@(sha256:[0-9a-f]{64})", vertex.name)
        if m and m.group(1).endswith(name):
            return m.group(2)
    return ""


def revision() -> str:
    proc = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else "unknown"
