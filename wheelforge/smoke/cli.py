"""Command line: choose checks, run them, print the table, write the JSON report.

Exit status: 0 nothing failed, 1 a check failed, 2 a usage error (one line on stderr).
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, NoReturn

from . import checks_recipes, inputs, nocompile
from .checks_components import (
    check_aiter,
    check_atom,
    check_flydsl,
    check_manifest,
    check_mori,
)
from .checks_device import check_device
from .checks_dist import check_allreduce
from .checks_model import check_model
from .checks_realmodel import check_real_model
from .checks_torch import check_copy, check_gemm
from .checks_triton import check_triton
from .context import Context, detect_device, host_info, image_digest
from .inputs import UsageError
from .report import (
    FAIL,
    GPU_DEVICE,
    SKIP,
    CheckResult,
    Outcome,
    Skip,
    build_report,
    format_table,
    one_line,
    write_json_atomic,
)

CheckFn = Callable[[Context], Outcome]


@dataclass(frozen=True)
class Check:
    name: str
    run: CheckFn
    summary: str
    perf: bool = False
    # It runs on the suite's device: when that is a GPU and the check does not skip, the
    # report marks it as run on a GPU (the evidence that promotes an image).
    gpu: bool = False
    # "suite": this package's own; "recipe": a component's `smoke:` command (manifest)
    kind: str = "suite"


NO_COMPILE = "no-compile"


def check_no_compile(ctx: Context) -> Outcome:
    """Reads the watcher that ran during the other checks (main stops it first)."""
    return nocompile.outcome(ctx.watcher)


CHECKS: tuple[Check, ...] = (
    Check("device", check_device, "GPUs visible; on ROCm every GPU's gfx arch is expected",
          gpu=True),
    Check("gemm", check_gemm, "bf16 GEMM vs float64 CPU; TFLOP/s at Llama-3.1-8B shapes",
          perf=True, gpu=True),
    Check("copy", check_copy, "device-to-device copy exact; GB/s", perf=True, gpu=True),
    Check("triton", check_triton, "Triton vector add and row softmax vs torch", gpu=True),
    Check("manifest", check_manifest, "manifest modules import; wheels at manifest versions"),
    Check("aiter", check_aiter, "AITER Triton rmsnorm (bf16) vs torch", gpu=True),
    Check("flydsl", check_flydsl, "FlyDSL imports; version"),
    Check("mori", check_mori, "MORI imports; version"),
    Check("atom", check_atom, "ATOM imports; version"),
    Check("model", check_model, "tiny transformer: device greedy tokens = CPU float32; tok/s",
          perf=True, gpu=True),
    Check("real_model", check_real_model, "--model: greedy completions (vs --golden); tok/s",
          perf=True, gpu=True),
    Check("allreduce", check_allreduce, "all-reduce across all GPUs exact; bus GB/s",
          gpu=True),
    # Runs last (after the recipes' own checks): nothing compiled while the others ran.
    Check(NO_COMPILE, check_no_compile, "nothing compiled during the smoke: JIT/cache "
          "folders unchanged, no compiler process started"),
)


def recipe_checks(manifest: Mapping[str, Any] | None) -> list[Check]:
    """The components' own checks (manifest `smoke` entries), named COMPONENT:NAME."""
    return [Check(rc.full_name, checks_recipes.make_check_fn(rc), rc.run.strip().splitlines()[0]
                  if rc.run.strip() else "", gpu=rc.gpu, kind="recipe")
            for rc in checks_recipes.from_manifest(manifest)]


def with_recipe_checks(checks: Sequence[Check], manifest: Mapping[str, Any] | None
                       ) -> list[Check]:
    """The suite's checks with the recipes' inserted before no-compile."""
    own = recipe_checks(manifest)
    out = [c for c in checks if c.name != NO_COMPILE]
    return out + own + [c for c in checks if c.name == NO_COMPILE]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def make_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=f"python -m {__package__}",
                     description="Prove a runtime image on a GPU: correctness and speed.")
    parser.add_argument("--require-gpu", action="store_true",
                        help="no GPU visible (or no torch) fails instead of skipping")
    parser.add_argument("--report", metavar="FILE", help="write the JSON report here")
    parser.add_argument("--archs", metavar="LIST",
                        help="expected gfx archs, ';' or ',' separated (default: manifest's)")
    parser.add_argument("--manifest", metavar="FILE",
                        help=f"wheelset manifest (default {inputs.DEFAULT_MANIFEST} if present)")
    parser.add_argument("--model", metavar="PATH", help="local checkpoint for real_model")
    parser.add_argument("--model-backend", choices=("auto", "atom", "transformers"),
                        default="auto", help="real_model backend (auto: ATOM if installed)")
    parser.add_argument("--golden", metavar="FILE", help="golden completions to compare with")
    parser.add_argument("--write-golden", metavar="FILE", help="write completions here")
    parser.add_argument("--only", metavar="NAME,...", help="run only these checks")
    parser.add_argument("--perf-only", action="store_true",
                        help="run only device and the performance checks")
    parser.add_argument("--device", choices=("auto", "cpu"), default="auto",
                        help="cpu: run the GPU checks on the CPU with small sizes (to test "
                             "the suite itself; speeds then mean nothing)")
    parser.add_argument("--watch", metavar="DIR", action="append", default=[],
                        help="no-compile: also watch this folder (repeatable)")
    parser.add_argument("--list", action="store_true", help="list the checks and exit")
    return parser


def select_checks(checks: Sequence[Check], only: str | None, perf_only: bool) -> list[Check]:
    names = [c.name for c in checks]
    chosen = list(checks)
    if only:
        wanted = [n.strip() for n in only.split(",") if n.strip()]
        for name in wanted:
            if name not in names and not any(n.startswith(f"{name}:") for n in names):
                close = difflib.get_close_matches(name, names, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise UsageError(f"--only: no check named {name!r}{hint}; "
                                 f"checks: {', '.join(names)}")
        chosen = [c for c in chosen
                  if c.name in wanted or c.name.split(":", 1)[0] in wanted and ":" in c.name]
    if perf_only:
        chosen = [c for c in chosen if c.perf or c.name == "device"]
    return chosen


def read_manifest(args: argparse.Namespace) -> tuple[dict[str, Any] | None, str | None]:
    """(manifest, its path): --manifest, else the image's if present, else (None, None)."""
    manifest, manifest_path = None, args.manifest
    if manifest_path is None and os.path.exists(inputs.DEFAULT_MANIFEST):
        manifest_path = inputs.DEFAULT_MANIFEST
    if manifest_path:
        manifest = inputs.load_manifest(manifest_path)
    return manifest, manifest_path


def build_context(args: argparse.Namespace,
                  read: tuple[dict[str, Any] | None, str | None] | None = None) -> Context:
    """Read the inputs the options name; UsageError on any problem."""
    manifest, manifest_path = read if read is not None else read_manifest(args)
    if args.archs is not None:
        archs = inputs.parse_archs(args.archs)
    elif manifest and manifest.get("archs"):
        # A manifest of a CPU-only set (the demo's x86-64 levels) sets no GPU arch constraint.
        archs = tuple(a for a in manifest["archs"] if inputs.ARCH_RE.match(a))
    else:
        archs = ()
    if (args.golden or args.write_golden) and not args.model:
        raise UsageError("--golden and --write-golden need --model PATH")
    golden = inputs.load_golden(args.golden) if args.golden else None
    device, reason = detect_device(args.device)
    return Context(device=device, no_device_reason=reason, quick=device == "cpu",
                   require_gpu=args.require_gpu, archs=archs, manifest=manifest,
                   manifest_path=manifest_path, model=args.model,
                   model_backend=args.model_backend, golden=golden,
                   write_golden=args.write_golden,
                   gpu_nodes=checks_recipes.present_gpu_nodes())


def run_check(check: Check, ctx: Context) -> CheckResult:
    """Run one check; a Skip becomes 'skip', any other exception 'fail' with its message."""
    began = time.perf_counter()
    try:
        outcome = check.run(ctx)
    except Skip as skip:
        outcome = Outcome(SKIP, str(skip))
    except Exception as exc:  # noqa: BLE001  (a crashing check fails, the suite goes on)
        outcome = Outcome(FAIL, f"{type(exc).__name__}: {exc}")
    seconds = time.perf_counter() - began
    _release_gpu_memory(ctx)
    on_device = ctx.device == GPU_DEVICE or (
        check.kind == "recipe" and checks_recipes.gpu_missing(ctx) is None)
    on_gpu = check.gpu and on_device and outcome.status != SKIP
    return CheckResult(check.name, outcome.status, one_line(outcome.reason), seconds,
                       dict(outcome.metrics), outcome.headline, gpu=on_gpu,
                       output=tuple(outcome.output))


def run_all(selected: Sequence[Check], ctx: Context, *, watch: Sequence[str] = ()
            ) -> list[CheckResult]:
    """Run the checks in order; with no-compile among them, the watcher runs around the
    others and no-compile, last, reports what it saw."""
    watched = [c for c in selected if c.name == NO_COMPILE]
    watcher = None
    if watched:
        watcher = nocompile.Watcher(nocompile.watched_folders(ctx.manifest, extra=watch))
        watcher.start()
        ctx = replace(ctx, watcher=watcher)
    results = []
    try:
        for check in selected:
            if check.name == NO_COMPILE:
                continue
            print(f"smoke: {check.name} ...", file=sys.stderr, flush=True)
            if watcher is not None:
                watcher.begin(check.name)
            results.append(run_check(check, ctx))
            if watcher is not None:
                watcher.checkpoint(check.name)
    finally:
        if watcher is not None:
            watcher.stop()
    for check in watched:
        print(f"smoke: {check.name} ...", file=sys.stderr, flush=True)
        results.append(run_check(check, ctx))
    return results


def _release_gpu_memory(ctx: Context) -> None:
    if ctx.device == "cuda" and "torch" in sys.modules:
        with contextlib.suppress(RuntimeError):
            sys.modules["torch"].cuda.empty_cache()


def main(argv: Sequence[str] | None = None, *,
         overrides: Mapping[str, CheckFn] | None = None) -> int:
    """Run the suite. ``overrides`` replaces checks' functions by name (tests plant
    failures this way); names not in the suite are an error."""
    checks: list[Check] = list(CHECKS)
    for name, fn in (overrides or {}).items():
        index = next((i for i, c in enumerate(checks) if c.name == name), None)
        if index is None:
            raise KeyError(f"no check named {name!r}")
        checks[index] = replace(checks[index], run=fn)
    try:
        args = make_parser().parse_args(argv)
        read = read_manifest(args)
        checks = with_recipe_checks(checks, read[0])
        if args.list:
            for c in checks:
                print(f"{c.name:<11} {'perf ' if c.perf else '     '}{c.summary}")
            return 0
        selected = select_checks(checks, args.only, args.perf_only)
        ctx = build_context(args, read)
    except UsageError as exc:
        print(f"smoke: error: {exc}", file=sys.stderr)
        return 2

    results = run_all(selected, ctx, watch=args.watch)
    print(format_table(results), flush=True)
    report = build_report(_host(ctx), results, image_digest())
    if args.report:
        try:
            write_json_atomic(args.report, report)
        except OSError as exc:
            print(f"smoke: error: cannot write report {args.report}: {exc.strerror or exc}",
                  file=sys.stderr)
            return 2
    return 0 if report["passed"] else 1


def _host(ctx: Context) -> dict[str, Any]:
    info = host_info()
    info["device"] = ctx.device
    return info
