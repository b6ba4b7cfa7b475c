"""scmext: a pybind11 extension whose version comes from git tags."""

from importlib.metadata import version

from ._core import pybind11_version, scale

__version__ = version("scmext")
__all__ = ["pybind11_version", "scale", "__version__"]
