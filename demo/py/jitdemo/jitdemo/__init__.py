"""jitdemo: a C kernel loaded with ctypes, prebuilt in the wheel or compiled at first use.

At import it loads ``_kernel.so`` from this package when the wheel carries it. Otherwise
it compiles ``kernel.c`` with ``cc`` (or $CC) into a cache folder ($JITDEMO_CACHE_DIR,
default ~/.cache/jitdemo), keyed by the source's sha256, and loads that: the way AITER
and MORI build their JIT modules on the machine that runs them.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import subprocess
import tempfile
from pathlib import Path

__version__ = "0.1.0"
__all__ = ["KERNEL_FROM", "KERNEL_PATH", "cache_dir", "dot", "__version__"]

_HERE = Path(__file__).resolve().parent
SOURCE = _HERE / "kernel.c"
PREBUILT = _HERE / "_kernel.so"
ABI = 1


def cache_dir() -> Path:
    return Path(os.environ.get("JITDEMO_CACHE_DIR") or Path.home() / ".cache" / "jitdemo")


def _compile() -> tuple[Path, str]:
    """The kernel compiled from SOURCE in the cache folder: (path, "compiled" | "cached")."""
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:16]
    target = cache_dir() / f"kernel-{digest}.so"
    if target.exists():
        return target, "cached"
    target.parent.mkdir(parents=True, exist_ok=True)
    compiler = os.environ.get("CC") or "cc"
    fd, tmp = tempfile.mkstemp(prefix=".kernel-", suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        subprocess.run([compiler, "-O2", "-fPIC", "-shared", "-o", tmp, str(SOURCE)],
                       check=True, capture_output=True, text=True)
        os.replace(tmp, target)
    except FileNotFoundError:
        raise ImportError(f"jitdemo: no prebuilt {PREBUILT.name} in the package and no C "
                          f"compiler ({compiler}) to build {SOURCE.name} at first use") from None
    except subprocess.CalledProcessError as exc:
        raise ImportError(f"jitdemo: {compiler} failed on {SOURCE}: {exc.stderr.strip()}") from None
    finally:
        Path(tmp).unlink(missing_ok=True)
    return target, "compiled"


def _load() -> tuple[ctypes.CDLL, Path, str]:
    if PREBUILT.exists():
        path, how = PREBUILT, "prebuilt"
    else:
        path, how = _compile()
    lib = ctypes.CDLL(str(path))
    lib.jitdemo_dot.restype = ctypes.c_double
    lib.jitdemo_dot.argtypes = (ctypes.POINTER(ctypes.c_double), ctypes.POINTER(ctypes.c_double),
                                ctypes.c_size_t)
    lib.jitdemo_abi.restype = ctypes.c_int
    if lib.jitdemo_abi() != ABI:
        raise ImportError(f"jitdemo: {path} has kernel ABI {lib.jitdemo_abi()}, want {ABI}")
    return lib, path, how


_LIB, KERNEL_PATH, KERNEL_FROM = _load()


def dot(xs, ys) -> float:
    """sum(x * y) of two equally long sequences of numbers, computed by the C kernel."""
    if len(xs) != len(ys):
        raise ValueError("xs and ys must have the same length")
    array = ctypes.c_double * len(xs)
    return _LIB.jitdemo_dot(array(*xs), array(*ys), len(xs))
