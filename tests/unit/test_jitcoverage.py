"""JIT coverage read from wheels: listed modules, prebuilt ones and their GPU targets, what
would compile at first use, and the stack's `jit_coverage: required`."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from wheelforge.audit import jit
from wheelforge.core.terminal import UserError

SPEC = {"modules": "pkg/jit/config.json", "prebuilt": "pkg/jit/{module}.so",
        "never": ["*_tune"]}


def wheel(tmp_path: Path, modules: list[str], prebuilt: dict[str, bytes]) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("pkg/jit/config.json", json.dumps({m: {} for m in modules}))
        for module, data in prebuilt.items():
            zf.writestr(f"pkg/jit/{module}.so", data)
    return path


def manifest(path: Path, required: bool) -> dict:
    return {"cell": "c", "archs": ["gfx942"], "jit_coverage_required": required,
            "components": {"pkg": {"jit": SPEC, "wheels": [{"file": path.name}]}}}


def test_listed_prebuilt_never_and_first_use(tmp_path):
    path = wheel(tmp_path, ["module_a", "module_b", "module_b_tune"], {"module_a": b"\x7fELF"})
    found = jit.read("pkg", path, SPEC)
    assert found.listed == ("module_a", "module_b", "module_b_tune")
    assert found.never == ("module_b_tune",) and set(found.prebuilt) == {"module_a"}
    assert found.missing(["gfx942"]) == ["module_b"]


def test_required_coverage_refuses_a_set_that_would_compile(tmp_path, capsys):
    path = wheel(tmp_path, ["module_a", "module_b"], {"module_a": b"\x7fELF"})
    assert jit.gate(tmp_path, manifest(path, False))["pkg"]["first_use"] == ["module_b"]
    with pytest.raises(UserError) as err:
        jit.gate(tmp_path, manifest(path, True))
    assert "1 module(s) would compile at first use (module_b)" in str(err.value)
    assert "\n" not in str(err.value)
    full = wheel(tmp_path / "full", ["module_a"], {"module_a": b"\x7fELF"})
    assert jit.gate(tmp_path / "full", manifest(full, True))["pkg"]["first_use"] == []


def test_a_missing_module_list_is_a_problem(tmp_path):
    path = tmp_path / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("pkg/__init__.py", "")
    assert "is not in the wheel" in jit.read("pkg", path, SPEC).problem
