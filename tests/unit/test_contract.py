"""The static readers of upstream trees (no upstream code runs) and the step parsing."""

from __future__ import annotations

import re
from pathlib import Path

from wheelforge.contract import (
    STANDARD_PREFIXES,
    STANDARD_VARIABLES,
    _grep_exclude,
    _pip_installs,
    _words,
    upstream,
)


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


# ---- names ----

def test_pkg_info_is_authoritative(tmp_path):
    tree = write(tmp_path, {"PKG-INFO": "Metadata-Version: 2.1\nName: msgpack\nVersion: 1.1.0\n",
                            "setup.py": "from setuptools import setup\nsetup(name='other')\n"})
    found = upstream.dist_name(tree)
    assert (found.name, found.version, found.file) == ("msgpack", "1.1.0", "PKG-INFO")


def test_pyproject_project_name_and_dynamic_version(tmp_path):
    tree = write(tmp_path, {"pyproject.toml": '[project]\nname = "amd_mori"\n'
                                              'dynamic = ["version"]\n'})
    found = upstream.dist_name(tree)
    assert (found.name, found.version, found.file) == ("amd_mori", None, "pyproject.toml")


def test_pyproject_without_project_falls_back_to_setup_cfg(tmp_path):
    tree = write(tmp_path, {"pyproject.toml": "[build-system]\nrequires = ['setuptools']\n",
                            "setup.cfg": "[metadata]\nname = pkgname\nversion = 2.0\n"})
    found = upstream.dist_name(tree)
    assert (found.name, found.version, found.file) == ("pkgname", "2.0", "setup.cfg")


def test_setup_py_literal_name():
    found = upstream.setup_py_name("import setuptools\nsetuptools.setup(name='lz4', "
                                   "version='4.4.4')\n")
    assert (found.name, found.version) == ("lz4", "4.4.4")


def test_setup_py_name_via_a_variable_assigned_a_literal():
    found = upstream.setup_py_name("PACKAGE = 'amd-aiter'\nfrom setuptools import setup\n"
                                   "setup(name=PACKAGE)\n")
    assert found.name == "amd-aiter" and found.env_var is None


def test_setup_py_name_from_an_environment_variable_with_default():
    found = upstream.setup_py_name("import os\nfrom setuptools import setup\n"
                                   "setup(name=os.environ.get('TRITON_WHEEL_NAME', 'triton'))\n")
    assert (found.name, found.env_var) == ("triton", "TRITON_WHEEL_NAME")


def test_dynamic_setup_py_name_is_unknown_not_guessed():
    found = upstream.setup_py_name("from setuptools import setup\nbase = 'amd'\n"
                                   "setup(name=base + '-aiter')\n")
    assert found.name is None
    assert "not a literal" in found.why
    found = upstream.setup_py_name("from setuptools import setup\nsetup(**kwargs)\n")
    assert found.name is None and "no literal name" in found.why
    found = upstream.setup_py_name("N = 'a'\nN = 'b'\nfrom setuptools import setup\n"
                                   "setup(name=N)\n")
    assert found.name is None and "assigned 2 times" in found.why


def test_no_packaging_at_all(tmp_path):
    assert upstream.dist_name(write(tmp_path, {"lz4.c": "int x;\n"})) is None


def test_normalize():
    assert upstream.normalize("Amd_Aiter") == upstream.normalize("amd-aiter") == "amd-aiter"


# ---- environment variables ----

def test_python_env_reads_every_form():
    text = """
import os
from os import environ, getenv
a = os.environ["SUBSCRIPT"]
b = os.environ.get("DOT_GET", "0")
c = os.getenv("GETENV")
d = getenv("BARE_GETENV")
os.environ.setdefault("SET_DEFAULT", "1")
e = environ.get("BARE_ENVIRON")
if "MEMBERSHIP" in os.environ:
    pass
f = os.environ.pop("POPPED", None)
g = {"NOT_A_READ": 1}
"""
    assert upstream.python_env_reads([text]) == {
        "SUBSCRIPT", "DOT_GET", "GETENV", "BARE_GETENV", "SET_DEFAULT", "BARE_ENVIRON",
        "MEMBERSHIP", "POPPED"}


def test_python_env_reads_through_a_helper_function_in_another_file():
    helper = "import os\ndef flag(name, default=''):\n    return os.getenv(name, default)\n"
    user = "from helpers import flag\nif flag('USE_THING'):\n    pass\nprint('NOT_READ')\n"
    assert upstream.python_env_reads([helper, user]) == {"USE_THING"}


def test_python_that_does_not_parse_reads_nothing():
    assert upstream.python_env_reads(["print 'python 2'\nos.environ['X']\n"]) == set()


def test_cmake_env_reads():
    text = ('if(DEFINED ENV{ROCM_PATH})\n  set(R $ENV{ROCM_PATH})\nendif()\n'
            'set(A "$ENV{MORI_GPU_ARCHS}")\n# $ENV{IN_A_COMMENT}\n')
    assert upstream.cmake_env_reads(text) == {"ROCM_PATH", "MORI_GPU_ARCHS"}


def test_shell_env_reads():
    text = 'cmake -DX="${MLIR_PATH}" $EXTRA_FLAGS ${JOBS:-4}\n# $COMMENTED\necho "$1"\n'
    assert upstream.shell_env_reads(text) == {"MLIR_PATH", "EXTRA_FLAGS", "JOBS"}


def test_build_files_follow_setup_py_imports_and_named_scripts(tmp_path):
    tree = write(tmp_path, {
        "setup.py": "import sys\nfrom jit import core\nfrom setuptools import setup\n"
                    "setup(name='x')\n",
        "pkg/jit/__init__.py": "",
        "pkg/jit/core.py": "import os\nfrom . import utils\nA = os.environ['CORE_VAR']\n",
        "pkg/jit/utils.py": "import os\nB = os.getenv('UTILS_VAR')\n",
        "pkg/unrelated.py": "import os\nC = os.getenv('UNRELATED_VAR')\n",
        "scripts/build.sh": "#!/bin/bash\nbash \"$(dirname $0)/helper.sh\"\necho $SCRIPT_VAR\n",
        "scripts/helper.sh": "echo ${HELPER_VAR}\n",
        "CMakeLists.txt": "message($ENV{CMAKE_READ_VAR})\n",
    })
    files = upstream.build_files(tree, ["scripts/build.sh"])
    assert files.python == ("pkg/jit/__init__.py", "pkg/jit/core.py", "pkg/jit/utils.py",
                            "setup.py")
    assert files.shell == ("scripts/build.sh", "scripts/helper.sh")
    assert files.cmake == ("CMakeLists.txt",)
    reads = upstream.env_reads(tree, files)
    assert {"CORE_VAR", "UTILS_VAR", "SCRIPT_VAR", "HELPER_VAR", "CMAKE_READ_VAR"} <= reads
    assert "UNRELATED_VAR" not in reads


# ---- build requirements ----

def test_pyproject_build_requires(tmp_path):
    tree = write(tmp_path, {"pyproject.toml": '[build-system]\nrequires = ["setuptools>=45", '
                                              '"setuptools_scm[toml]>=6.2", "wheel"]\n'})
    assert upstream.pyproject_build_requires(tree) == ["setuptools", "setuptools_scm", "wheel"]


def test_requirements_file_follows_includes_and_excludes(tmp_path):
    tree = write(tmp_path, {"requirements-build.txt": "-r base.txt\ntorch>=2.0\ntriton\n"
                                                      "ninja  # build\n",
                            "base.txt": "cmake>=3.20 ; python_version>'3'\n"})
    assert upstream.requirements_file(tree / "requirements-build.txt") == [
        "cmake", "torch", "triton", "ninja"]
    assert upstream.requirements_file(tree / "requirements-build.txt",
                                      re.compile("^(torch|triton)")) == ["cmake", "ninja"]


def test_pip_install_words():
    words = _words('pip install /deps/wheels/pkgconfig-*.whl "setuptools>=45" '
                   '-r requirements.txt --index-url X wheel && echo done')
    assert [found[:2] for found in _pip_installs(words)] == [
        ("pkgconfig", None), ("setuptools", None), ("", "requirements.txt"), ("wheel", None)]
    assert _pip_installs(words)[1][2] == "setuptools>=45"


def test_grep_exclude():
    words = _words("grep -v -E '^(torch|triton)' requirements-build.txt > /tmp/r.txt")
    pattern = _grep_exclude(words)
    assert pattern.search("torch>=2") and not pattern.search("ninja")


def test_standard_variables_are_not_warned():
    assert {"CFLAGS", "MAX_JOBS", "PKG_CONFIG_PATH"} <= STANDARD_VARIABLES
    assert "CMAKE_BUILD_TYPE".startswith(STANDARD_PREFIXES)
    assert "SETUPTOOLS_SCM_PRETEND_VERSION_FOR_LZ4".startswith(STANDARD_PREFIXES)
