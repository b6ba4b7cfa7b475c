"""y = a * x + y on an AMD GPU (a HIP kernel in libhipsaxpy.so, next to this file)."""

from ._hipsaxpy import device_count, saxpy

__all__ = ["device_count", "saxpy"]
__version__ = "0.1.0"
