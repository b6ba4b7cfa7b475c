"""Components: the manifest's wheels are installed at their versions and import;
AITER's Triton rmsnorm is right; FlyDSL, MORI and ATOM import."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
from collections.abc import Callable
from typing import Any

from .checks_torch import relative_error
from .context import Context, installed_version
from .report import Outcome, Skip, failed, passed, skipped

Importer = Callable[[str], Any]
VersionOf = Callable[[str], str]
FindSpec = Callable[[str], Any]

RMSNORM_MODULES = ("aiter.ops.triton.normalization.rmsnorm", "aiter.ops.triton.rmsnorm")
RMSNORM_NAMES = ("rms_norm", "rmsnorm", "rmsnorm_forward_inference")
RMSNORM_BOUND = 1e-2


def _same_version(installed: str, wanted: str) -> bool:
    def norm(v: str) -> str:
        return v.strip().lower().removeprefix("v")
    return norm(installed) == norm(wanted)


def check_manifest(ctx: Context, importer: Importer = importlib.import_module,
                   version_of: VersionOf = importlib.metadata.version) -> Outcome:
    """Proves every module the manifest lists imports and every wheel is installed at
    the manifest's version (a stale or shadowing install fails)."""
    if ctx.manifest is None:
        return skipped("no manifest (give --manifest FILE)")
    problems: list[str] = []
    modules = wheels = 0
    for comp, entry in sorted(ctx.manifest["components"].items()):
        for module in entry.get("imports", []):
            modules += 1
            try:
                importer(module)
            except Exception as exc:  # noqa: BLE001  (any import error is a finding)
                problems.append(f"{comp}: import {module} failed ({type(exc).__name__}: "
                                f"{' '.join(str(exc).split())[:160]})")
        for wheel in entry.get("wheels", []):
            wheels += 1
            dist, wanted = wheel["distribution"], wheel["version"]
            try:
                installed = version_of(dist)
            except importlib.metadata.PackageNotFoundError:
                problems.append(f"{comp}: {dist} not installed (manifest: {wanted})")
                continue
            if not _same_version(installed, wanted):
                problems.append(f"{comp}: {dist} {installed} installed, manifest has {wanted}")
    metrics = {"cell": ctx.manifest.get("cell"), "modules": modules, "wheels": wheels,
               "problems": len(problems)}
    if problems:
        return failed("; ".join(problems), metrics, ("problems",))
    return passed(f"{modules} modules import, {wheels} wheels at manifest versions "
                  f"(cell {ctx.manifest.get('cell')})", metrics, ("modules", "wheels"))


def find_aiter_rmsnorm(importer: Importer = importlib.import_module,
                       find_spec: FindSpec = importlib.util.find_spec) -> Callable[..., Any]:
    """AITER's Triton rmsnorm(x, weight, eps), whatever this version calls it."""
    if find_spec("aiter") is None:
        raise Skip("aiter not installed")
    tried = []
    for module_name in RMSNORM_MODULES:
        try:
            module = importer(module_name)
        except ModuleNotFoundError as exc:
            tried.append(f"{module_name} ({exc})")
            continue
        for name in RMSNORM_NAMES:
            if callable(getattr(module, name, None)):
                return getattr(module, name)
        tried.append(f"{module_name} (no {'/'.join(RMSNORM_NAMES)})")
    raise LookupError("AITER Triton rmsnorm not found: " + "; ".join(tried))


def reference_rmsnorm(x: Any, weight: Any, eps: float) -> Any:
    """RMSNorm in float32: x / sqrt(mean(x^2) + eps) * weight."""
    x = x.float()
    return x * (x.pow(2).mean(-1, keepdim=True) + eps).rsqrt() * weight.float()


def check_aiter(ctx: Context, rmsnorm: Callable[..., Any] | None = None) -> Outcome:
    """Proves AITER's Triton rmsnorm runs on this GPU and matches a torch reference
    on bf16 (works in a CK-free build). ``rmsnorm`` replaces AITER's (tests)."""
    torch = ctx.torch()
    device = ctx.gpu_device()
    if rmsnorm is None:
        if find_spec_safe("aiter") is None:
            raise Skip("aiter not installed")
        if device != "cuda":
            raise Skip(f"AITER kernels need a GPU (device is {device})")
        rmsnorm = find_aiter_rmsnorm()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4096, generator=gen).to(torch.bfloat16)
    w = (1 + 0.1 * torch.randn(4096, generator=gen)).to(torch.bfloat16)
    eps = 1e-6
    got = rmsnorm(x.to(device), w.to(device), eps)
    ctx.synchronize()
    if isinstance(got, tuple):  # some versions also return rsigma
        got = got[0]
    want = reference_rmsnorm(x, w, eps)
    if tuple(got.shape) != tuple(want.shape):
        return failed(f"AITER rmsnorm gave shape {tuple(got.shape)}, want {tuple(want.shape)}")
    err = relative_error(got.float().cpu(), want)
    metrics = {"rel_error": err, "version": installed_version("amd-aiter", "aiter")}
    if not err <= RMSNORM_BOUND:
        return failed(f"AITER rmsnorm relative error {err:.3g} > {RMSNORM_BOUND:g} vs torch "
                      "reference", metrics, ("rel_error",))
    return passed(f"AITER Triton rmsnorm bf16 matches torch (error {err:.2e})", metrics,
                  ("rel_error", "version"))


def check_module(ctx: Context, module: str, dists: tuple[str, ...] = (),
                 importer: Importer = importlib.import_module,
                 find_spec: FindSpec | None = None) -> Outcome:
    """Proves an installed component imports (its native libraries load) and reports
    its version. Not installed: skip. Installed but broken: fail."""
    find = find_spec or find_spec_safe
    if find(module) is None:
        return skipped(f"{module} not installed")
    try:
        mod = importer(module)
    except Exception as exc:  # noqa: BLE001  (any import error is a finding)
        return failed(f"{module} is installed but import failed: {type(exc).__name__}: "
                      f"{' '.join(str(exc).split())[:200]}")
    version = getattr(mod, "__version__", None) or installed_version(*dists, module)
    return passed(f"import {module} OK (version {version or 'unknown'})",
                  {"version": str(version) if version else None}, ("version",))


def find_spec_safe(name: str) -> Any:
    try:
        return importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None


def check_flydsl(ctx: Context) -> Outcome:
    """FlyDSL imports (its bundled MLIR and libamdhip64 load)."""
    return check_module(ctx, "flydsl", ("flydsl",))


def check_mori(ctx: Context) -> Outcome:
    """MORI imports (its native library loads)."""
    return check_module(ctx, "mori", ("amd-mori", "amd-mori-nightly", "mori"))


def check_atom(ctx: Context) -> Outcome:
    """ATOM imports."""
    return check_module(ctx, "atom", ("atom", "amd-atom"))
