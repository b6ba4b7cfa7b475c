"""wheelforge: pinned upstream sources -> wheels -> zero-compilation runtime image."""

from __future__ import annotations

__version__ = "0.1.0"
