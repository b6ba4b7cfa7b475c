"""The extension links libhipblend.so (HIPBLEND_LIB, built by hipcc before pip runs) and
libhipsaxpy.so from the hipsaxpy build prefix (HIPSAXPY_PREFIX).

At run time libhipsaxpy.so is the one the hipsaxpy wheel installs: $ORIGIN/../hipsaxpy.
"""

import os
import shutil
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HIPSAXPY = Path(os.environ.get("HIPSAXPY_PREFIX", "/nonexistent"))


class BuildExt(build_ext):
    def run(self):
        lib = Path(os.environ.get("HIPBLEND_LIB", ""))
        if not lib.is_file() or not (HIPSAXPY / "lib" / "libhipsaxpy.so").is_file():
            raise SystemExit("HIPBLEND_LIB must name the libhipblend.so that hipcc built and "
                             "HIPSAXPY_PREFIX the hipsaxpy build prefix")
        dest = Path(self.build_lib) / "hipblend"
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy2(lib, dest / lib.name)
        for ext in self.extensions:
            ext.library_dirs += [str(dest), str(HIPSAXPY / "lib")]
        super().run()


setup(
    packages=["hipblend"],
    ext_modules=[Extension("hipblend._hipblend", ["hipblend/_hipblend.c"],
                           include_dirs=["include", str(HIPSAXPY / "include")],
                           libraries=["hipblend", "hipsaxpy"],
                           runtime_library_dirs=["$ORIGIN", "$ORIGIN/../hipsaxpy"])],
    cmdclass={"build_ext": BuildExt},
)
