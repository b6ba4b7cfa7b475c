"""Choosing cells with `--cells`: comma-separated shell-style globs, matched in bounded work.

The globs select cells of the matrix (matrix.py) and wheel sets by their cell ids
(image.py); a glob that matches nothing is an error, so that a typo never selects nothing.
"""

from __future__ import annotations

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
        _glob_tokens(pattern, flag=flag)
    return items


def glob_match(pattern: str, text: str) -> bool:
    """Shell-style `*`, `?`, `[abc]`, `[a-z]`, `[!a]` match of the whole `text`.

    A dynamic program over (pattern token, text position): at most
    len(pattern) x len(text) steps, whatever the pattern (no backtracking).
    """
    tokens = _glob_tokens(pattern)
    reach = [True] + [False] * len(text)  # reach[j]: tokens so far match text[:j]
    for kind, arg in tokens:
        if kind == "*":
            for j in range(1, len(text) + 1):
                reach[j] = reach[j] or reach[j - 1]
            continue
        nxt = [False] * (len(text) + 1)
        for j in range(len(text)):
            if reach[j] and _token_matches(kind, arg, text[j]):
                nxt[j + 1] = True
        reach = nxt
    return reach[-1]


def _token_matches(kind: str, arg: tuple, char: str) -> bool:
    if kind == "?":
        return True
    if kind == "lit":
        return char == arg[0]
    negate, items = arg
    hit = any(lo <= char <= hi for lo, hi in items)
    return hit != negate


def _glob_tokens(pattern: str, *, flag: str = "--cells") -> list[tuple[str, tuple]]:
    tokens: list[tuple[str, tuple]] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "*":
            if not tokens or tokens[-1][0] != "*":
                tokens.append(("*", ()))
            i += 1
        elif char == "?":
            tokens.append(("?", ()))
            i += 1
        elif char == "[":
            start = i + 1
            start += pattern.startswith("!", start)
            start += pattern.startswith("]", start)  # a leading ']' is a literal one
            end = pattern.find("]", start)
            if end < 0:
                raise UserError(f"{flag} {pattern}: '[' at position {i + 1} is not closed; "
                                f"write [abc] or [a-z], or remove it")
            body = pattern[i + 1:end]
            negate = body.startswith("!")
            body = body[1:] if negate else body
            items, k = [], 0
            while k < len(body):
                if k + 2 < len(body) and body[k + 1] == "-":
                    items.append((body[k], body[k + 2]))
                    k += 3
                else:
                    items.append((body[k], body[k]))
                    k += 1
            tokens.append(("set", (negate, tuple(items))))
            i = end + 1
        else:
            tokens.append(("lit", (char,)))
            i += 1
    return tokens
