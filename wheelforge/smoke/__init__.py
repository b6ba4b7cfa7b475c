"""The smoke suite: proves a runtime image (torch, triton, aiter, ...) on a GPU.

Runs as ``python -m wheelforge.smoke`` in the repository, or, with only this
folder bind-mounted at /opt/forge/smoke and PYTHONPATH=/opt/forge, as
``python -m smoke`` inside an image. Standard library only at import time; every
third-party package is imported lazily inside the check that needs it.
"""

from __future__ import annotations

SCHEMA = 1
