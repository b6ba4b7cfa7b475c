"""What every check gets: the chosen device, the options, and lazy access to torch."""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import platform
import sys
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from .report import Skip

NO_TORCH = "torch not installed"
NO_GPU = "no GPU visible"


@dataclass(frozen=True)
class Context:
    """Options and environment shared by all checks.

    ``device`` is "cuda" (the torch.cuda API, also HIP on ROCm), "cpu" when the
    suite was asked to exercise its GPU checks on the CPU (``--device cpu``), or
    None when there is nothing to run GPU checks on; ``no_device_reason`` then
    says why. ``quick`` shrinks problem sizes (set with ``--device cpu``).
    """

    device: str | None = None
    no_device_reason: str = NO_GPU
    quick: bool = False
    require_gpu: bool = False
    archs: tuple[str, ...] = ()
    manifest: dict[str, Any] | None = None
    manifest_path: str | None = None
    model: str | None = None
    model_backend: str = "auto"
    golden: list[dict[str, str]] | None = None
    write_golden: str | None = None
    gpu_nodes: tuple[str, ...] = ()  # GPU driver device nodes present (see checks_recipes)
    watcher: Any = None  # the no-compile Watcher while the checks run (nocompile.py)

    def torch(self) -> ModuleType:
        """The torch module, or Skip("torch not installed")."""
        return import_optional("torch")

    def gpu_device(self) -> str:
        """The device GPU checks run on, or Skip with the reason there is none."""
        if self.device is None:
            raise Skip(self.no_device_reason)
        return self.device

    def synchronize(self) -> None:
        if self.device == "cuda":
            self.torch().cuda.synchronize()


def import_optional(name: str) -> ModuleType:
    """Import a module that may be absent: Skip("<name> not installed") if so.

    A module that is installed but fails to import (a missing shared library, a
    broken dependency) raises its own error, so that the check fails.
    """
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        top = name.split(".")[0]
        if exc.name is not None and (exc.name == top or name.startswith(f"{exc.name}.")):
            raise Skip(f"{top} not installed") from None
        raise


def detect_device(requested: str) -> tuple[str | None, str]:
    """("cuda" | "cpu" | None, reason when None) for ``--device auto|cpu``."""
    try:
        torch = importlib.import_module("torch")
    except ModuleNotFoundError:
        return None, NO_TORCH
    except Exception as exc:  # noqa: BLE001  (installed but broken: the checks report it)
        return None, f"torch failed to import ({type(exc).__name__}: {exc})"
    if requested == "cpu":
        return "cpu", ""
    try:
        if torch.cuda.is_available() and torch.cuda.device_count() > 0:
            return "cuda", ""
    except Exception as exc:  # noqa: BLE001  (a broken driver must not crash the suite)
        return None, f"{NO_GPU} ({type(exc).__name__}: {exc})"
    return None, NO_GPU


def arch_of(props: Any) -> str | None:
    """'gfx942' from a device-properties object with gcnArchName 'gfx942:sramecc+:xnack-'."""
    name = getattr(props, "gcnArchName", None)
    if not name:
        return None
    return str(name).split(":")[0].strip() or None


def gpu_list(torch: Any) -> list[dict[str, Any]]:
    """One dict per visible GPU: index, name, arch (ROCm) or capability (CUDA), memory."""
    gpus = []
    try:
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # noqa: BLE001  (host info is best effort)
        count = 0
    for i in range(count):
        props = torch.cuda.get_device_properties(i)
        gpu: dict[str, Any] = {
            "index": i,
            "name": getattr(props, "name", "?"),
            "memory_gib": round(getattr(props, "total_memory", 0) / 2**30, 1),
        }
        if getattr(torch.version, "hip", None):
            gpu["arch"] = arch_of(props)
            gpu["gcn_arch_name"] = getattr(props, "gcnArchName", None)
        else:
            gpu["capability"] = [getattr(props, "major", 0), getattr(props, "minor", 0)]
        gpus.append(gpu)
    return gpus


def host_info() -> dict[str, Any]:
    """Python, platform, torch/HIP/CUDA versions and the visible GPUs."""
    info: dict[str, Any] = {
        "hostname": platform.node(),
        "python": platform.python_version(),
        "executable": sys.executable,
        "platform": platform.platform(),
        "torch": None,
        "hip": None,
        "cuda": None,
        "gpus": [],
    }
    try:
        torch = importlib.import_module("torch")
    except Exception:  # noqa: BLE001  (host info is best effort)
        return info
    info["torch"] = torch.__version__
    info["hip"] = getattr(torch.version, "hip", None)
    info["cuda"] = getattr(torch.version, "cuda", None)
    try:
        info["gpus"] = gpu_list(torch)
    except Exception as exc:  # noqa: BLE001  (host info is best effort)
        info["gpus_error"] = f"{type(exc).__name__}: {exc}"
    return info


def image_digest() -> str | None:
    return os.environ.get("SMOKE_IMAGE_DIGEST") or None


def installed_version(*dists: str) -> str | None:
    """The installed version of the first of ``dists`` that is installed."""
    for dist in dists:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None
