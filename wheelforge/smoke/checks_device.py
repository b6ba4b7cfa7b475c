"""device: the GPUs are visible and, on ROCm, of an architecture the image was built for.

On ROCm the GPU's arch is also compared with the GPU code the wheels really carry:
the manifest's ``gpu_targets`` (written by the GPU-target audit, wheelforge/audit/gpu.py)
counts, per wheel, the bundles and kernels with code for each arch. A wheel with GPU
code but none for this GPU fails at run time with "invalid device function".
"""

from __future__ import annotations

from typing import Any

from .context import NO_GPU, NO_TORCH, Context, arch_of
from .report import Outcome, failed, passed, skipped


def arch_mismatches(gpu_archs: list[tuple[int, str | None]],
                    expected: tuple[str, ...]) -> list[str]:
    """One message per GPU whose architecture is not among ``expected``."""
    wanted = {a.lower() for a in expected}
    return [
        f"GPU {i} is {arch or 'unknown'}"
        for i, arch in gpu_archs
        if arch is None or arch.lower() not in wanted
    ]


def missing_code(gpu_archs: list[str], gpu_targets: Any) -> list[str]:
    """One message per GPU arch that some wheel with GPU code carries no code for."""
    if not isinstance(gpu_targets, dict):
        return []
    out = []
    for arch in sorted({a.lower() for a in gpu_archs}):
        lacking = sorted(wheel for wheel, entry in gpu_targets.items()
                         if isinstance(entry, dict) and entry.get("files")
                         and not _has_code(entry, arch))
        if lacking:
            out.append(f"no code for {arch} in {', '.join(lacking)}")
    return out


def _has_code(entry: dict[str, Any], arch: str) -> bool:
    archs = entry.get("archs")
    counts = archs.get(arch) if isinstance(archs, dict) else None
    if not isinstance(counts, dict):
        return False
    return any(isinstance(n, int) and n > 0 for n in counts.values())


def check_device(ctx: Context, torch_module: Any = None) -> Outcome:
    """Proves that torch sees a GPU, and on ROCm that every GPU's gfx arch was built for.

    ``torch_module`` replaces the real torch (tests pass a fake with chosen
    device properties).
    """
    torch = torch_module
    if torch is None:
        try:
            import torch
        except ModuleNotFoundError:
            return _no_gpu(ctx, NO_TORCH)
    try:
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception as exc:  # noqa: BLE001  (a broken driver is reported, not raised)
        return _no_gpu(ctx, f"{NO_GPU} ({type(exc).__name__}: {exc})")
    if count == 0:
        return _no_gpu(ctx, NO_GPU)
    props = [torch.cuda.get_device_properties(i) for i in range(count)]
    names = sorted({str(getattr(p, "name", "?")) for p in props})
    metrics: dict[str, Any] = {"gpu_count": count, "gpu_names": ", ".join(names)}
    hip = getattr(torch.version, "hip", None)
    if hip:
        return _check_rocm(ctx, props, metrics, hip)
    cuda = getattr(torch.version, "cuda", None)
    first = props[0]
    metrics["capability"] = f"{getattr(first, 'major', '?')}.{getattr(first, 'minor', '?')}"
    metrics["memory_gib"] = round(getattr(first, "total_memory", 0) / 2**30, 1)
    note = "; --archs ignored (gfx archs apply to ROCm)" if ctx.archs else ""
    return passed(f"{count} CUDA GPU(s) ({', '.join(names)}), CUDA {cuda}{note}", metrics,
                  ("gpu_count", "capability"))


def _check_rocm(ctx: Context, props: list[Any], metrics: dict[str, Any], hip: str) -> Outcome:
    archs = [(i, arch_of(p)) for i, p in enumerate(props)]
    metrics["archs"] = ",".join(sorted({a or "unknown" for _, a in archs}))
    metrics["memory_gib"] = round(getattr(props[0], "total_memory", 0) / 2**30, 1)
    bad = arch_mismatches(archs, ctx.archs) if ctx.archs else []
    if bad:
        return failed(
            f"{'; '.join(bad)} but the image was built for {';'.join(ctx.archs)}: its kernels "
            "would fail at run time with 'HIP error: invalid device function'",
            metrics, ("gpu_count", "archs"))
    gpu_targets = (ctx.manifest or {}).get("gpu_targets")
    lacking = missing_code([a for _, a in archs if a], gpu_targets)
    if isinstance(gpu_targets, dict):
        metrics["gpu_code_wheels"] = sum(isinstance(e, dict) and bool(e.get("files"))
                                         for e in gpu_targets.values())
    if lacking:
        return failed(f"the image's wheels carry no code for the GPU it runs on: "
                      f"{'; '.join(lacking)} (manifest gpu_targets); their kernels would fail "
                      "with 'HIP error: invalid device function'", metrics,
                      ("gpu_count", "archs"))
    checked = (f"; GPU code of {metrics['gpu_code_wheels']} wheel(s) covers it"
               if isinstance(gpu_targets, dict) else "")
    if not ctx.archs:
        return passed(f"{len(props)} ROCm GPU(s) ({metrics['archs']}), HIP {hip}; "
                      f"no arch constraint given{checked}", metrics, ("gpu_count", "archs"))
    return passed(f"{len(props)} ROCm GPU(s), all {metrics['archs']} (expected "
                  f"{';'.join(ctx.archs)}), HIP {hip}{checked}", metrics,
                  ("gpu_count", "archs"))


def _no_gpu(ctx: Context, reason: str) -> Outcome:
    if ctx.require_gpu:
        return failed(f"--require-gpu: {reason}")
    return skipped(reason)
