"""triton: Triton compiles kernels for this GPU and they compute what torch computes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .context import Context, import_optional, installed_version
from .report import Outcome, Skip, failed, passed


@dataclass(frozen=True)
class KernelCase:
    """A kernel under test: inputs -> kernel output, compared with reference output."""

    name: str
    inputs: Callable[[], tuple[Any, ...]]
    kernel: Callable[..., Any]
    reference: Callable[..., Any]
    atol: float = 1e-5
    rtol: float = 1e-5


def compare_outputs(torch: Any, name: str, got: Any, want: Any, atol: float,
                    rtol: float) -> str | None:
    """None when ``got`` matches ``want``, else a one-line description of the mismatch."""
    if tuple(got.shape) != tuple(want.shape):
        return f"{name}: shape {tuple(got.shape)}, want {tuple(want.shape)}"
    got, want = got.float().cpu(), want.float().cpu()
    if torch.allclose(got, want, atol=atol, rtol=rtol):
        return None
    worst = (got - want).abs().max().item()
    return f"{name}: max abs error {worst:.3g} (atol {atol:g}, rtol {rtol:g})"


def default_cases(torch: Any, device: str) -> list[KernelCase]:
    import_optional("triton")
    from . import _triton_kernels as tk  # imports triton

    gen = torch.Generator().manual_seed(0)

    def add_inputs() -> tuple[Any, ...]:
        return (torch.randn(10_000, generator=gen).to(device),
                torch.randn(10_000, generator=gen).to(device))

    def softmax_inputs() -> tuple[Any, ...]:
        return (torch.randn(64, 1000, generator=gen).to(device),)

    return [
        KernelCase("vector_add", add_inputs, tk.vector_add, lambda x, y: x + y),
        KernelCase("row_softmax", softmax_inputs, tk.row_softmax,
                   lambda x: torch.softmax(x, dim=-1), atol=1e-6, rtol=1e-4),
    ]


def check_triton(ctx: Context, cases: Sequence[KernelCase] | None = None) -> Outcome:
    """Proves Triton JIT-compiles and runs a vector add and a row softmax correctly.

    ``cases`` replaces the kernels (tests plant a wrong kernel on the CPU).
    """
    torch = ctx.torch()
    device = ctx.gpu_device()
    if cases is None:
        if device != "cuda":
            raise Skip(f"Triton kernels need a GPU (device is {device})")
        cases = default_cases(torch, device)
    metrics: dict[str, Any] = {}
    triton = installed_version("triton", "pytorch-triton-rocm", "pytorch-triton")
    if triton:
        metrics["triton_version"] = triton
    errors = []
    for case in cases:
        args = case.inputs()
        got = case.kernel(*args)
        ctx.synchronize()
        error = compare_outputs(torch, case.name, got, case.reference(*args), case.atol,
                                case.rtol)
        if error:
            errors.append(error)
    names = ", ".join(c.name for c in cases)
    if errors:
        return failed("Triton kernel output differs from torch: " + "; ".join(errors), metrics)
    return passed(f"{names} match torch", metrics, ("triton_version",))
