"""gemm and copy: torch's BLAS and memory system give right answers, at measured speed."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from .context import Context
from .report import Outcome, failed, passed
from .timing import time_op

# Llama-3.1-8B: hidden 4096, intermediate 14336, 32 heads, 8 kv heads, head dim 128.
# (projection, N, K) of y[M, N] = x[M, K] @ W[N, K]^T
LLAMA_8B_PROJECTIONS = (
    ("qkv", (32 + 2 * 8) * 128, 4096),
    ("o", 4096, 4096),
    ("gate_up", 2 * 14336, 4096),
    ("down", 4096, 14336),
)
DECODE_M = (1, 16, 64, 256)
PREFILL_M = 4096
PEAK_N = 8192
# --device cpu: the same structure, 16x smaller, so the suite runs in seconds.
QUICK_PROJECTIONS = tuple((name, n // 16, k // 16) for name, n, k in LLAMA_8B_PROJECTIONS)
QUICK_M = (1, 16, 256)
QUICK_PEAK_N = 512

GEMM_ERROR_BOUND = 1e-2  # relative Frobenius error of a bf16 product (rounding ~ 2^-9)
COPY_BYTES = 1 << 30
QUICK_COPY_BYTES = 16 << 20

Matmul = Callable[[Any, Any], Any]


def default_matmul(a: Any, b: Any) -> Any:
    return a @ b


def relative_error(got: Any, want: Any) -> float:
    """||got - want||_F / ||want||_F, computed in float64."""
    want = want.double()
    diff = (got.double() - want).norm().item()
    norm = want.norm().item()
    return diff / norm if norm else diff


def check_gemm(ctx: Context, matmul: Matmul = default_matmul,
               check_shape: tuple[int, int, int] = (192, 320, 256),
               projections: tuple[tuple[str, int, int], ...] | None = None,
               ms: tuple[int, ...] | None = None, peak_n: int | None = None,
               bound: float = GEMM_ERROR_BOUND) -> Outcome:
    """Proves a bf16 GEMM on the GPU matches a float64 CPU product; measures TFLOP/s.

    ``matmul`` computes the product (tests plant a wrong one). Speeds are at
    Llama-3.1-8B projection shapes and relative to a measured large square GEMM.
    """
    torch = ctx.torch()
    device = ctx.gpu_device()
    m, k, n = check_shape
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(m, k, generator=gen).to(torch.bfloat16)
    b = torch.randn(k, n, generator=gen).to(torch.bfloat16)
    got = matmul(a.to(device), b.to(device)).cpu()
    want = a.double() @ b.double()
    if tuple(got.shape) != (m, n):
        return failed(f"bf16 GEMM {m}x{k}x{n} gave shape {tuple(got.shape)}, want {(m, n)}")
    err = relative_error(got, want)
    metrics: dict[str, Any] = {"rel_error": err, "error_bound": bound}
    if not math.isfinite(err) or err > bound:
        return failed(f"bf16 GEMM {m}x{k}x{n} relative error {err:.3g} > {bound:g} "
                      "(vs float64 CPU reference)", metrics, ("rel_error",))

    if projections is None:
        projections = QUICK_PROJECTIONS if ctx.quick else LLAMA_8B_PROJECTIONS
    if ms is None:
        ms = (*QUICK_M,) if ctx.quick else (*DECODE_M, PREFILL_M)
    if peak_n is None:
        peak_n = QUICK_PEAK_N if ctx.quick else PEAK_N

    peak = _tflops(torch, device, matmul, peak_n, peak_n, peak_n, transpose=False)
    metrics["peak_tflops"] = peak
    for name, big_n, big_k in projections:
        for rows in ms:
            tf = _tflops(torch, device, matmul, rows, big_n, big_k, transpose=True)
            metrics[f"{name}_m{rows}_tflops"] = tf
            metrics[f"{name}_m{rows}_of_peak"] = tf / peak if peak else float("nan")
    headline = ["rel_error", "peak_tflops"]
    if ms:
        headline += [f"gate_up_m{min(ms)}_tflops", f"gate_up_m{max(ms)}_tflops"]
    return passed(f"bf16 GEMM error {err:.2e} <= {bound:g}; peak {peak:.1f} TFLOP/s at "
                  f"{peak_n}^3", metrics, headline)


def _tflops(torch: Any, device: str, matmul: Matmul, m: int, n: int, k: int,
            transpose: bool) -> float:
    """TFLOP/s of x[m,k] @ W (W given as [n,k] and transposed, like a Linear layer)."""
    x = torch.randn(m, k, device=device, dtype=torch.bfloat16)
    w = torch.randn(n, k, device=device, dtype=torch.bfloat16) if transpose else \
        torch.randn(k, n, device=device, dtype=torch.bfloat16)
    wt = w.t() if transpose else w
    seconds = time_op(torch, device, lambda: matmul(x, wt), warmup=3, iters=7)
    return 2.0 * m * n * k / seconds / 1e12 if seconds > 0 else float("nan")


def default_copy(dst: Any, src: Any) -> Any:
    return dst.copy_(src)


def check_copy(ctx: Context, copy: Callable[[Any, Any], Any] = default_copy,
               nbytes: int | None = None) -> Outcome:
    """Proves a device-to-device copy is exact; measures its bandwidth.

    Two conventions: ``one_way_gbps`` counts the bytes copied, and
    ``read_plus_write_gbps`` counts bytes read plus bytes written (twice as many).
    """
    torch = ctx.torch()
    device = ctx.gpu_device()
    if nbytes is None:
        nbytes = QUICK_COPY_BYTES if ctx.quick else COPY_BYTES
    count = nbytes // 4
    src = torch.arange(count, dtype=torch.int32, device=device)
    dst = torch.empty_like(src)
    copy(dst, src)
    ctx.synchronize()
    if not torch.equal(dst, src):
        bad = int((dst != src).sum().item())
        return failed(f"device-to-device copy of {nbytes / 2**20:.0f} MiB corrupted "
                      f"{bad} of {count} int32 elements")
    seconds = time_op(torch, device, lambda: copy(dst, src), warmup=2, iters=10)
    one_way = nbytes / seconds / 1e9
    metrics = {"bytes": nbytes, "seconds_per_copy": seconds, "one_way_gbps": one_way,
               "read_plus_write_gbps": 2 * one_way}
    return passed(f"{nbytes / 2**20:.0f} MiB copy exact; {2 * one_way:.0f} GB/s read+write "
                  f"({one_way:.0f} GB/s copied)", metrics, ("read_plus_write_gbps",))
