"""Timing GPU work: CUDA/HIP events on a GPU, perf_counter on the CPU.

Numbers are reported, never asserted: nothing in the suite fails for being slow.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any


def time_op(torch: Any, device: str, fn: Callable[[], Any], *, warmup: int = 3,
            iters: int = 10, min_ms: float = 1.0) -> float:
    """Median seconds of one call of ``fn``.

    Each sample runs ``fn`` enough times back to back (``reps``) to last about
    ``min_ms``, so that tiny kernels are not lost in the timer's resolution.
    """
    for _ in range(warmup):
        fn()
    once = _sample(torch, device, fn, 1)
    reps = max(1, min(200, int(min_ms / 1000 / once) if once > 0 else 200))
    samples = [_sample(torch, device, fn, reps) / reps for _ in range(iters)]
    return statistics.median(samples)


def _sample(torch: Any, device: str, fn: Callable[[], Any], reps: int) -> float:
    if device == "cuda":
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(reps):
            fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1000.0
    began = time.perf_counter()
    for _ in range(reps):
        fn()
    return time.perf_counter() - began


def wall(torch: Any, device: str, fn: Callable[[], Any]) -> tuple[Any, float]:
    """(result, seconds) of one call, synchronizing the GPU before and after."""
    if device == "cuda":
        torch.cuda.synchronize()
    began = time.perf_counter()
    result = fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return result, time.perf_counter() - began
