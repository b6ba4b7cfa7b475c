"""The build matrix: cell expansion, stable ids, glob selection, and `invoke matrix --json`."""

from __future__ import annotations

import json

import pytest

from tests.unit.conftest import ROOT, run_invoke
from wheelforge.core.terminal import UserError
from wheelforge.core.types import Matrix
from wheelforge.recipes.matrix import load_matrix, select

PRODUCTION_STABLE = [
    "stable-rocm7.2-py3.12-gfx942-ckfree",
    "stable-rocm7.2-py3.12-gfx942-full",
    "stable-rocm7.2-py3.12-gfx950-ckfree",
    "stable-rocm7.2-py3.12-gfx950-full",
    "stable-rocm7.2-py3.12-gfx942-gfx950-ckfree",
    "stable-rocm7.2-py3.12-gfx942-gfx950-full",
]


@pytest.fixture(scope="module")
def production() -> Matrix:
    return load_matrix(ROOT / "recipes" / "matrix.yaml", display="recipes/matrix.yaml")


@pytest.fixture(scope="module")
def demo() -> Matrix:
    return load_matrix(ROOT / "demo" / "recipes" / "matrix.yaml",
                       display="demo/recipes/matrix.yaml")


def ids(cells) -> list[str]:
    return [c.id for c in cells]


# --- expansion -----------------------------------------------------------------------

def test_production_stable_cells(production: Matrix):
    """3 arch sets x 2 variants, in matrix order."""
    assert ids(production.cells("stable")) == PRODUCTION_STABLE


def test_production_nightly_cells(production: Matrix):
    expected = [i.replace("stable-", "nightly-", 1) for i in PRODUCTION_STABLE]
    assert ids(production.cells("nightly")) == expected
    assert ids(production.cells()) == PRODUCTION_STABLE + expected


def test_production_cell_values(production: Matrix):
    cell = {c.id: c for c in production.cells("stable")}[
        "stable-rocm7.2-py3.12-gfx942-gfx950-full"]
    assert (cell.channel, cell.python, cell.arch, cell.variant) == (
        "stable", "3.12", "gfx942-gfx950", "full")
    assert cell.archs == ("gfx942", "gfx950")
    assert cell.stack.build_image == "rocm/dev-ubuntu-24.04:7.2-complete"
    assert cell.runner == ("self-hosted", "linux", "mi300x")
    assert cell.var() == {
        "archs": "gfx942;gfx950", "archs_comma": "gfx942,gfx950", "arch": "gfx942-gfx950",
        "python": "3.12", "stack": "rocm7.2", "channel": "stable", "variant": "full",
        "enable_ck": "1",
    }
    ckfree = {c.id: c for c in production.cells("stable")}[
        "stable-rocm7.2-py3.12-gfx950-ckfree"]
    assert ckfree.var()["enable_ck"] == "0"
    assert ckfree.runner == ("self-hosted", "linux", "mi355x")


def test_demo_cells(demo: Matrix):
    assert ids(demo.cells("stable")) == ["stable-bookworm-py3.11-x86-64-v2-default",
                                         "stable-bookworm-py3.11-x86-64-v3-default",
                                         "stable-rocm6.4-sid-py3.14-gfx942-default",
                                         "stable-rocm6.4-sid-py3.14-gfx950-default",
                                         "stable-rocm6.4-sid-py3.14-gfx942-gfx950-default"]
    assert demo.cells("stable")[1].var()["archs"] == "x86-64-v3"
    assert demo.cells("stable")[4].var()["archs"] == "gfx942;gfx950"
    assert demo.cells("stable")[0].runner == ()


def test_cell_ids_are_unique(production: Matrix):
    all_ids = ids(production.cells())
    assert len(all_ids) == len(set(all_ids)) == 12


# --- selection -----------------------------------------------------------------------

@pytest.mark.parametrize(("patterns", "channel", "expected"), [
    (None, "stable", PRODUCTION_STABLE),
    ("*gfx942-ckfree", "stable", ["stable-rocm7.2-py3.12-gfx942-ckfree"]),
    ("*gfx942-ckfree", None, ["stable-rocm7.2-py3.12-gfx942-ckfree",
                              "nightly-rocm7.2-py3.12-gfx942-ckfree"]),
    ("*gfx942*ckfree", "stable", ["stable-rocm7.2-py3.12-gfx942-ckfree",
                                  "stable-rocm7.2-py3.12-gfx942-gfx950-ckfree"]),
    ("*-gfx950-full, *gfx942-ckfree", "stable", ["stable-rocm7.2-py3.12-gfx950-full",
                                                 "stable-rocm7.2-py3.12-gfx942-gfx950-full",
                                                 "stable-rocm7.2-py3.12-gfx942-ckfree"]),
    ("*py3.12-gfx950-*,*-full", "nightly", ["nightly-rocm7.2-py3.12-gfx950-ckfree",
                                            "nightly-rocm7.2-py3.12-gfx950-full",
                                            "nightly-rocm7.2-py3.12-gfx942-full",
                                            "nightly-rocm7.2-py3.12-gfx942-gfx950-full"]),
    ("stable-rocm7.2-py3.12-gfx950-ckfree", None, ["stable-rocm7.2-py3.12-gfx950-ckfree"]),
])
def test_select(production: Matrix, patterns, channel, expected):
    """Globs in order, each cell once even when several globs match it."""
    assert ids(select(production, patterns, channel)) == expected


def test_select_glob_matching_nothing_suggests_a_cell(production: Matrix):
    with pytest.raises(UserError) as caught:
        select(production, "stable-rocm7.2-py3.12-gfx924-ckfree", "stable")
    assert str(caught.value) == (
        "--cells stable-rocm7.2-py3.12-gfx924-ckfree: matches no cell (did you mean "
        "'stable-rocm7.2-py3.12-gfx942-ckfree'?); `invoke plan --list` shows the cell ids")


def test_select_reports_the_glob_that_matches_nothing(production: Matrix):
    with pytest.raises(UserError) as caught:
        select(production, "*gfx942-ckfree,*mi300*", "stable")
    assert str(caught.value).startswith("--cells *mi300*: matches no cell")
    assert "\n" not in str(caught.value)


def test_select_unknown_channel(production: Matrix):
    with pytest.raises(UserError) as caught:
        select(production, None, "nigthly")
    assert str(caught.value) == ("--channel nigthly: unknown channel (did you mean 'nightly'?); "
                                 "choose from stable, nightly")


# --- invoke matrix --------------------------------------------------------------------

def test_invoke_matrix_json():
    proc = run_invoke("matrix", "--json", "--recipes", "recipes", "--channel", "stable")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    include = data["include"]
    assert [e["cell"] for e in include] == PRODUCTION_STABLE
    for entry in include:
        assert {"cell", "arch", "variant", "runner"} <= set(entry)
        assert entry["cell"].endswith(f"-{entry['arch']}-{entry['variant']}")
        assert entry["runner"] and all(isinstance(r, str) for r in entry["runner"])
        assert entry["image"] == f"rocm/wheelforge-runtime:{entry['cell']}"  # invoke image's tag
    assert include[2]["runner"] == ["self-hosted", "linux", "mi355x"]


def test_invoke_matrix_bad_glob_is_one_line():
    proc = run_invoke("matrix", "--json", "--channel", "stable", "--cells", "*gfx924*")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert len(proc.stderr.splitlines()) == 1
    assert proc.stderr.startswith("error: --cells *gfx924*: matches no cell")
