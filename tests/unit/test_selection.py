"""`--cells` globs choose cells and wheel sets: each once, in the globs' order, no silent miss."""

from __future__ import annotations

from pathlib import Path

import pytest

from wheelforge.core import wheelset
from wheelforge.core.terminal import UserError
from wheelforge.image import cell_dirs
from wheelforge.recipes import matrix

IDS = ["stable-a-gfx942", "stable-b-gfx950", "nightly-a-gfx942"]


def miss(pattern: str) -> UserError:
    return UserError(f"missed {pattern}")


def test_choose_keeps_the_globs_order_and_lists_each_item_once():
    chosen = matrix.choose("nightly-*,*gfx942*,stable-*", IDS, str, miss)
    assert chosen == ["nightly-a-gfx942", "stable-a-gfx942", "stable-b-gfx950"]


def test_choose_raises_what_miss_makes_for_a_glob_that_matches_nothing():
    with pytest.raises(UserError, match=r"^missed \*gfx90a\*$"):
        matrix.choose("stable-*,*gfx90a*", IDS, str, miss)


def test_wheel_sets_are_chosen_by_their_cell_id(tmp_path: Path):
    for cell in IDS:
        (tmp_path / cell).mkdir()
        (tmp_path / cell / wheelset.MANIFEST).write_text("{}")
    (tmp_path / "not-a-set").mkdir()
    assert [p.name for p in cell_dirs(tmp_path, "*-b-*,*gfx942*")] == [
        "stable-b-gfx950", "nightly-a-gfx942", "stable-a-gfx942"]
    assert len(cell_dirs(tmp_path, None)) == 3
    with pytest.raises(UserError, match=r"--cells \*gfx90a\*: no wheel set matches; have: "):
        cell_dirs(tmp_path, "*gfx90a*")
