"""The extension links libhipsaxpy.so, which hipcc builds before pip runs (HIPSAXPY_LIB).

The library goes into the package next to the extension, found through $ORIGIN.
"""

import os
import shutil
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class BuildExt(build_ext):
    def run(self):
        lib = Path(os.environ.get("HIPSAXPY_LIB", ""))
        if not lib.is_file():
            raise SystemExit("HIPSAXPY_LIB must name the libhipsaxpy.so that hipcc built")
        dest = Path(self.build_lib) / "hipsaxpy"
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy2(lib, dest / lib.name)
        for ext in self.extensions:
            ext.library_dirs.append(str(dest))
        super().run()


setup(
    packages=["hipsaxpy"],
    ext_modules=[Extension("hipsaxpy._hipsaxpy", ["hipsaxpy/_hipsaxpy.c"],
                           include_dirs=["include"], libraries=["hipsaxpy"],
                           runtime_library_dirs=["$ORIGIN"])],
    cmdclass={"build_ext": BuildExt},
)
