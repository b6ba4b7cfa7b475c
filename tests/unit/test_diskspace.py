"""The free-disk check an integration pass makes before it starts an engine."""

from __future__ import annotations

import shutil

import pytest

from tests import diskspace


def test_enough_space_passes(tmp_path):
    assert diskspace.shortfall({"cache": tmp_path, "temp": tmp_path},
                               {"cache": 0, "temp": 0}) is None


def test_too_little_space_is_one_line_naming_the_place(tmp_path):
    free = shutil.disk_usage(tmp_path).free / diskspace.GIB
    line = diskspace.shortfall({"cache": tmp_path / "not" / "made", "temp": tmp_path},
                               {"cache": free + 1, "temp": 0})
    assert line is not None and "\n" not in line
    assert str(tmp_path / "not" / "made") in line and "WHEELFORGE_TEST_MIN_FREE_GIB" in line


def test_places_on_one_filesystem_add_up(tmp_path):
    half = shutil.disk_usage(tmp_path).free / diskspace.GIB * 0.6
    (tmp_path / "a").mkdir()
    places = {"cache": tmp_path / "a", "temp": tmp_path}
    assert diskspace.shortfall(places, {"cache": half, "temp": 0}) is None
    assert diskspace.shortfall(places, {"cache": half, "temp": half}) is not None


def test_override_zero_turns_the_check_off(monkeypatch):
    monkeypatch.setenv("WHEELFORGE_TEST_MIN_FREE_GIB", "0")
    monkeypatch.setattr(diskspace, "NEEDS_GIB", {"cache": 10**9, "temp": 10**9})
    diskspace.require_free()


def test_override_must_be_a_number(monkeypatch):
    monkeypatch.setenv("WHEELFORGE_TEST_MIN_FREE_GIB", "lots")
    with pytest.raises(pytest.fail.Exception, match="not a number"):
        diskspace.require_free()
