"""Image tags for one build-matrix cell: pure functions, no I/O.

Tags follow docker/metadata-action's conventions:

- a dated tag per nightly build, ``<cell_id>-YYYYMMDD``, and ``<cell_id>-YYYYMMDD.N``
  (N = 1, 2, ...) for the second, third, ... image of the same day (never moves; retention
  prunes it),
- a commit tag, ``sha-<7 hex>-<cell_id>``: the first image built from that wheelforge
  revision (set once, never moved; retention keeps it),
- floating tags that move to the newest build that passed its smoke test:
  ``<channel>-<arch>-<variant>``, ``<channel>-<arch>`` for the default variant, and
  ``latest`` for the stable channel's default arch and default variant.

Retention (for the caller, e.g. the publish step): distribution 2.8 can only delete a
manifest *by digest*, and doing so removes every tag that points at that digest. Tags of
different days can share one digest (an image pushed again unchanged, a floating tag
still on an older day's image). Therefore:

1. ``expired(all_tags, cell_id, keep)`` picks the dated tags to drop;
2. resolve each expired tag and each tag that stays (kept dated tags, floating tags,
   sha tags, other cells' tags) to its digest;
3. ``deletable_digests(expired_map, kept_map)`` gives the digests that no staying tag
   references; only those may be deleted. An expired tag whose digest is still
   referenced stays in the registry until that digest is no longer kept.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable, Mapping

from wheelforge.core.terminal import UserError

TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


_HEX_RE = re.compile(r"[0-9a-fA-F]{7,64}")


_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")


_DATED_RE = re.compile(r"(?P<day>[0-9]{8})(?:\.(?P<seq>[1-9][0-9]{0,8}))?")


# host[:port]: DNS labels, an IPv4 address or a bracketed IPv6 address; no user@, no spaces.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"


_REGISTRY_RE = re.compile(
    rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9A-Fa-f:.]{{2,45}}\])(?::(?P<port>[0-9]{{1,5}}))?")


def validate_tag(tag: str, *, what: str = "tag") -> str:
    """Return ``tag`` if it is a valid OCI tag, else raise a one-line UserError."""
    if not isinstance(tag, str) or not TAG_RE.fullmatch(tag):
        raise UserError(
            f"invalid {what} {tag!r}: an OCI tag is 1-128 characters of [A-Za-z0-9_.-] "
            "and does not start with '.' or '-'; rename it"
        )
    return tag


def validate_registry(host: str) -> str:
    """Return ``host`` if it is ``host[:port]`` (no scheme, path, user or spaces), else raise."""
    match = _REGISTRY_RE.fullmatch(host) if isinstance(host, str) and len(host) <= 255 else None
    if match is None or (match["port"] is not None and not 0 < int(match["port"]) < 65536):
        raise UserError(
            f"invalid registry host {host!r}: give host[:port] without a scheme, path, user or "
            "spaces, e.g. '127.0.0.1:5000'"
        )
    return host


def validate_digest(digest: str) -> str:
    """Return ``digest`` if it is ``sha256:<64 lowercase hex>``, else raise UserError."""
    if not isinstance(digest, str) or not _DIGEST_RE.fullmatch(digest):
        raise UserError(
            f"invalid digest {digest!r}: expected 'sha256:' followed by 64 lowercase hex digits"
        )
    return digest


def dated_tag(cell_id: str, day: datetime.date, seq: int = 0) -> str:
    """``<cell_id>-YYYYMMDD`` (``seq`` 0), else ``<cell_id>-YYYYMMDD.<seq>``: the
    never-moving tag of one image of that day."""
    validate_tag(cell_id, what="cell id")
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
        raise UserError(f"invalid sequence {seq!r} for a dated tag of cell {cell_id!r}: "
                        "use 0 (the day's first image) or a positive number")
    suffix = f".{seq}" if seq else ""
    return validate_tag(f"{cell_id}-{day:%Y%m%d}{suffix}",
                        what=f"dated tag of cell {cell_id!r}")


def sha_tag(revision: str, cell_id: str) -> str:
    """``sha-<first 7 hex of revision>-<cell_id>``, the tag of one source revision."""
    if not isinstance(revision, str) or not _HEX_RE.fullmatch(revision):
        raise UserError(
            f"invalid revision {revision!r} for the sha tag of cell {cell_id!r}: expected a git "
            "commit id of 7-64 hex digits (e.g. from `git rev-parse HEAD`)"
        )
    validate_tag(cell_id, what="cell id")
    return validate_tag(f"sha-{revision[:7].lower()}-{cell_id}", what="sha tag")


def floating_tags(
    *, channel: str, arch: str, variant: str, default_variant: str, default_arch: str
) -> list[str]:
    """The tags that move to the newest passing build of a (channel, arch, variant).

    ``<channel>-<arch>-<variant>`` always; ``<channel>-<arch>`` for the default variant;
    and, for the stable channel only, ``latest`` for the default arch + default variant.
    """
    for what, value in (("channel", channel), ("arch", arch), ("variant", variant)):
        validate_tag(value, what=what)
    tags = [validate_tag(f"{channel}-{arch}-{variant}", what="floating tag")]
    if variant == default_variant:
        tags.append(validate_tag(f"{channel}-{arch}", what="floating tag"))
        if channel == "stable" and arch == default_arch:
            tags.append("latest")
    return tags


def parse_dated(tag: str, cell_id: str) -> tuple[datetime.date, int] | None:
    """(day, sequence) of a dated tag of ``cell_id``, or None if ``tag`` is not one.

    ``<cell_id>-YYYYMMDD`` is (day, 0); ``<cell_id>-YYYYMMDD.N`` is (day, N) for N >= 1
    without leading zeros (``.0`` and ``.01`` are not dated tags: ``dated_tag`` never
    writes them).
    """
    prefix = f"{cell_id}-"
    if not isinstance(tag, str) or not tag.startswith(prefix):
        return None
    match = _DATED_RE.fullmatch(tag[len(prefix) :])
    if match is None:
        return None
    try:
        day = datetime.datetime.strptime(match["day"], "%Y%m%d").date()
    except ValueError:
        return None
    return day, int(match["seq"] or 0)


def dated_tags(tags: Iterable[str], cell_id: str) -> list[tuple[datetime.date, int, str]]:
    """(day, sequence, tag) of each dated tag of ``cell_id`` among ``tags``, oldest first."""
    return sorted(
        (*key, tag) for tag in set(tags) if (key := parse_dated(tag, cell_id)) is not None
    )


def next_dated_tag(tags: Iterable[str], cell_id: str, day: datetime.date) -> str:
    """The first free dated tag of ``day``: ``<cell_id>-YYYYMMDD``, else the next ``.N``
    after the highest one used that day (a gap left by retention is not reused)."""
    used = [seq for d, seq, _ in dated_tags(tags, cell_id) if d == day]
    return dated_tag(cell_id, day, max(used) + 1 if used else 0)


def expired(tags: Iterable[str], cell_id: str, keep: int) -> list[str]:
    """The dated tags of ``cell_id`` beyond the newest ``keep`` ones, oldest first
    (by day, then by sequence within a day).

    Tags of other cells, floating tags and sha tags are never returned.
    """
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise UserError(
            f"invalid retention keep={keep!r} for cell {cell_id!r}: keep at least 1 dated tag "
            "(e.g. --keep 7)"
        )
    dated = dated_tags(tags, cell_id)
    return [tag for _, _, tag in dated[: max(len(dated) - keep, 0)]]


def deletable_digests(
    expired_tags_to_digest: Mapping[str, str], kept_tags_to_digest: Mapping[str, str]
) -> set[str]:
    """Digests of expired tags that no kept tag (dated, sha or floating) points at.

    Deleting a digest in distribution 2.8 removes every tag on it, so a digest that a
    kept tag still references must not be deleted (see the module docstring).
    """
    overlap = set(expired_tags_to_digest) & set(kept_tags_to_digest)
    if overlap:
        raise UserError(
            f"tags {sorted(overlap)} are both expired and kept; pass each tag in one map only"
        )
    return set(expired_tags_to_digest.values()) - set(kept_tags_to_digest.values())
