"""One pybind11 extension; the version comes from setuptools_scm (pyproject.toml)."""

from pybind11.setup_helpers import Pybind11Extension
from setuptools import setup

setup(
    packages=["scmext"],
    ext_modules=[Pybind11Extension("scmext._core", ["src/core.cpp"])],
)
