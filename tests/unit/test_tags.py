"""Tag logic: dated, sha and floating tags; retention selection; validation."""

from __future__ import annotations

import datetime

import pytest

from wheelforge.core.terminal import UserError
from wheelforge.publish.tags import (
    dated_tag,
    dated_tags,
    deletable_digests,
    expired,
    floating_tags,
    next_dated_tag,
    parse_dated,
    sha_tag,
    validate_digest,
    validate_registry,
    validate_tag,
)
from wheelforge.recipes.matrix import validate_repository

GFX942 = "nightly-rocm7.2-py3.12-gfx942-ckfree"
GFX950 = "nightly-rocm7.2-py3.12-gfx950-full"
STABLE = "stable-rocm7.2-py3.12-gfx942-ckfree"
CPU = "stable-bookworm-py3.11-x86-64-v2-default"
D1 = datetime.date(2026, 3, 1)
D2 = datetime.date(2026, 3, 2)


@pytest.mark.parametrize(
    ("cell", "day", "tag"),
    [
        (GFX942, D1, "nightly-rocm7.2-py3.12-gfx942-ckfree-20260301"),
        (GFX950, datetime.date(2026, 12, 31), "nightly-rocm7.2-py3.12-gfx950-full-20261231"),
        (CPU, D2, "stable-bookworm-py3.11-x86-64-v2-default-20260302"),
    ],
)
def test_dated_tag(cell: str, day: datetime.date, tag: str) -> None:
    assert dated_tag(cell, day) == tag
    assert parse_dated(tag, cell) == (day, 0)


def test_sha_tag_uses_seven_lowercase_hex_digits() -> None:
    rev = "0123456789ABCDEF0123456789abcdef01234567"
    assert sha_tag(rev, GFX942) == f"sha-0123456-{GFX942}"
    assert sha_tag("abcdef1", CPU) == f"sha-abcdef1-{CPU}"


@pytest.mark.parametrize("rev", ["", "abc", "xyz1234", "0123456-dirty", "v1.2.3"])
def test_sha_tag_rejects_non_hex_revisions(rev: str) -> None:
    with pytest.raises(UserError, match=r"invalid revision .* git commit id of 7-64 hex digits"):
        sha_tag(rev, GFX942)


@pytest.mark.parametrize(
    ("kwargs", "tags"),
    [
        (
            {"channel": "nightly", "arch": "gfx942", "variant": "ckfree"},
            ["nightly-gfx942-ckfree", "nightly-gfx942"],
        ),
        ({"channel": "nightly", "arch": "gfx950", "variant": "full"}, ["nightly-gfx950-full"]),
        (
            {"channel": "stable", "arch": "gfx942", "variant": "ckfree"},
            ["stable-gfx942-ckfree", "stable-gfx942", "latest"],
        ),
        (
            {"channel": "stable", "arch": "gfx950", "variant": "ckfree"},
            ["stable-gfx950-ckfree", "stable-gfx950"],
        ),
        ({"channel": "stable", "arch": "gfx942", "variant": "full"}, ["stable-gfx942-full"]),
    ],
)
def test_floating_tags(kwargs: dict[str, str], tags: list[str]) -> None:
    assert floating_tags(**kwargs, default_variant="ckfree", default_arch="gfx942") == tags


def test_floating_tags_of_the_cpu_demo_set() -> None:
    tags = floating_tags(
        channel="stable",
        arch="x86-64-v2",
        variant="default",
        default_variant="default",
        default_arch="x86-64-v2",
    )
    assert tags == ["stable-x86-64-v2-default", "stable-x86-64-v2", "latest"]


def test_parse_dated_ignores_other_cells_and_non_dates() -> None:
    assert parse_dated(f"{GFX942}-20260301", GFX950) is None
    assert parse_dated(f"{GFX942}-2026031", GFX942) is None
    assert parse_dated(f"{GFX942}-20261301", GFX942) is None  # month 13
    assert parse_dated("nightly-gfx942", GFX942) is None
    assert parse_dated(f"sha-0123456-{GFX942}", GFX942) is None
    for suffix in (".0", ".01", ".", ".x", ".1.2", "-1"):  # never written by dated_tag
        assert parse_dated(f"{GFX942}-20260301{suffix}", GFX942) is None, suffix


def test_the_same_days_next_images_get_a_suffix() -> None:
    assert dated_tag(CPU, D1, 3) == f"{CPU}-20260301.3"
    assert parse_dated(f"{CPU}-20260301.3", CPU) == (D1, 3)
    assert parse_dated(f"{CPU}-20260301.12", CPU) == (D1, 12)
    with pytest.raises(UserError, match="invalid sequence -1"):
        dated_tag(CPU, D1, -1)
    # .10 sorts after .9 (by number, not by text), and the day comes first
    tags = [dated_tag(CPU, D1, n) for n in (10, 0, 9)] + [dated_tag(CPU, D2)]
    assert [t for _, _, t in dated_tags(tags, CPU)] == [
        f"{CPU}-20260301", f"{CPU}-20260301.9", f"{CPU}-20260301.10", f"{CPU}-20260302"]
    assert next_dated_tag(tags, CPU, D1) == f"{CPU}-20260301.11"
    assert next_dated_tag(tags, CPU, D2) == f"{CPU}-20260302.1"
    assert next_dated_tag(tags, GFX942, D1) == f"{GFX942}-20260301"
    assert expired(tags, CPU, keep=2) == [f"{CPU}-20260301", f"{CPU}-20260301.9"]


def test_expired_two_days_keep_one() -> None:
    tags = [
        dated_tag(GFX942, D1),
        dated_tag(GFX942, D2),
        "nightly-gfx942",
        "nightly-gfx942-ckfree",
        f"sha-0123456-{GFX942}",
        dated_tag(GFX950, D1),
    ]
    assert expired(tags, GFX942, keep=1) == [dated_tag(GFX942, D1)]
    assert expired(tags, GFX942, keep=2) == []
    assert expired(tags, GFX950, keep=1) == []


def test_expired_orders_by_date_not_by_listing_order() -> None:
    days = [datetime.date(2026, 1, d) for d in (5, 1, 30, 2)]
    tags = [dated_tag(CPU, d) for d in days]
    assert expired(tags, CPU, keep=2) == [dated_tag(CPU, days[1]), dated_tag(CPU, days[3])]


@pytest.mark.parametrize("keep", [0, -1, True, 1.5])
def test_expired_rejects_bad_keep(keep: object) -> None:
    with pytest.raises(UserError, match=r"keep at least 1 dated tag"):
        expired([], GFX942, keep=keep)  # type: ignore[arg-type]


def test_deletable_digests_keeps_digests_that_kept_tags_reference() -> None:
    a, b = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    expired_map = {dated_tag(GFX942, D1): a, "old-same-as-today": b}
    kept = {dated_tag(GFX942, D2): b, "nightly-gfx942": b}
    assert deletable_digests(expired_map, kept) == {a}
    assert deletable_digests({}, kept) == set()


def test_deletable_digests_rejects_a_tag_in_both_maps() -> None:
    a = "sha256:" + "a" * 64
    with pytest.raises(UserError, match=r"both expired and kept"):
        deletable_digests({"x": a}, {"x": a})


@pytest.mark.parametrize("tag", ["", "-dash", ".dot", "has space", "colon:tag", "a" * 129, "é"])
def test_invalid_tags_raise_one_line_user_error(tag: str) -> None:
    with pytest.raises(UserError) as info:
        validate_tag(tag)
    message = str(info.value)
    assert "\n" not in message
    assert repr(tag) in message and "rename it" in message


def test_dated_tag_too_long_names_the_cell() -> None:
    cell = "c" * 120
    with pytest.raises(UserError, match=r"invalid dated tag of cell 'c+'"):
        dated_tag(cell, D1)


def test_reference_parts_are_validated() -> None:
    assert validate_registry("127.0.0.1:5000") == "127.0.0.1:5000"
    assert validate_repository("wheelforge/rocm") == "wheelforge/rocm"
    with pytest.raises(UserError, match=r"invalid repository name 'Wheelforge'"):
        validate_repository("Wheelforge")
    with pytest.raises(UserError, match=r"without a scheme"):
        validate_registry("http://127.0.0.1:5000")
    with pytest.raises(UserError, match=r"invalid digest"):
        validate_digest("sha256:xyz")
