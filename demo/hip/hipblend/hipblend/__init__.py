"""y = a * x + b * y on an AMD GPU: a HIP kernel of its own plus hipsaxpy's."""

from ._hipblend import axpby, device_count

__all__ = ["axpby", "device_count"]
__version__ = "0.1.0"
