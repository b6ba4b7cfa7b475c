"""Choosing cells with `--cells`: comma-separated shell-style globs, matched in bounded work.

The globs select cells of the matrix (matrix.py) and wheel sets by their cell ids
(image.py); a glob that matches nothing is an error, so that a typo never selects nothing.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence
from typing import TypeVar

from . import schema
from .errors import UserError

MAX_PATTERN = 256
MAX_PATTERNS = 64
T = TypeVar("T")


def choose(patterns: str, items: Sequence[T], name: Callable[[T], str],
           miss: Callable[[str], UserError]) -> list[T]:
    """The items whose `name` matches a glob of `patterns`, each once, in the globs' order.

    A glob that matches no item raises `miss(glob)`.
    """
    chosen: list[T] = []
    for pattern in split_patterns(patterns):
        hits = [item for item in items if glob_match(pattern, name(item))]
        if not hits:
            raise miss(pattern)
        chosen.extend(item for item in hits if item not in chosen)
    return chosen


def split_patterns(patterns: str, *, flag: str = "--cells") -> list[str]:
    """The comma-separated globs of a selection; an empty selection is an error."""
    items = [p.strip() for p in patterns.split(",", MAX_PATTERNS)]
    if len(items) > MAX_PATTERNS:
        raise UserError(f"{flag}: more than {MAX_PATTERNS} globs; select fewer, or use "
                        f"broader globs like '*gfx942*'")
    items = [p for p in items if p]
    if not items:
        raise UserError(f"{flag} {patterns.strip()!r}: selects nothing; give globs such as "
                        f"'*gfx942*', or leave {flag} out for every cell")
    for pattern in items:
        if len(pattern) > MAX_PATTERN:
            raise UserError(f"{flag}: a glob of {len(pattern)} characters (at most "
                            f"{MAX_PATTERN}); shorten it")
        if schema.CONTROL_RE.search(pattern):
            raise UserError(f"{flag} {pattern!r}: {schema.control_problem(pattern)}")
        _check_brackets(pattern, flag)
    return items


def glob_match(pattern: str, text: str) -> bool:
    """Shell-style `*`, `?`, `[abc]`, `[a-z]`, `[!a]` match of the whole `text`, case kept.

    fnmatch, whose translation (CPython 3.11+) uses atomic groups, so a pattern of many
    `*` cannot make the regular expression backtrack without bound; with the lengths
    bounded here (a glob of MAX_PATTERN characters, ids of a few dozen) the work is small.
    """
    return fnmatch.fnmatchcase(text, pattern)


def _check_brackets(pattern: str, flag: str) -> None:
    """fnmatch reads an unclosed `[` as a literal; a selection refuses it, as a typo."""
    i = pattern.find("[")
    while i >= 0:
        start = i + 1
        start += pattern.startswith("!", start)
        start += pattern.startswith("]", start)  # a leading ']' is a literal one
        end = pattern.find("]", start)
        if end < 0:
            raise UserError(f"{flag} {pattern}: '[' at position {i + 1} is not closed; "
                            f"write [abc] or [a-z], or remove it")
        i = pattern.find("[", end + 1)
