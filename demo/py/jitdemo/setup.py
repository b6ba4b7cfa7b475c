"""The wheel carries jitdemo/_kernel.so when the build compiled it first (the recipe's
step does), and is then a platform wheel; without it the package compiles kernel.c at
first use. Either way the wheel is tagged for this platform, since it may hold a
shared library."""

from setuptools import setup
from setuptools.dist import Distribution


class BinaryDistribution(Distribution):
    def has_ext_modules(self):
        return True


setup(distclass=BinaryDistribution)
