"""Small strict validators shared by the recipe and matrix loaders.

Every check raises `UserError` with `file:line: key: problem; fix` so that a
typo anywhere in recipes/ reads as one line that says where and what to do.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

from .errors import UserError, did_you_mean
from .yamlsource import Mapping, Sequence, line_of, text_of

# Every pattern is applied with `fullmatch`: `re.match` with `$` accepts a value that ends in
# a newline, which would then reach cell ids, image names and planned commands.
# Names of components, archs, variants, channels: safe in file names, tags and shells.
NAME_RE = re.compile(r"[a-z0-9][a-z0-9._+-]{0,127}")
# Git refs and versions: no shell metacharacters, no whitespace, no option-looking values.
REF_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/+@-]{0,254}")
ENV_KEY_RE = re.compile(r"[A-Z_][A-Z0-9_]{0,127}")
# Control characters (newline, carriage return, escape, NUL, ...) in one-line values;
# multi-line values (steps, descriptions) may hold newlines and tabs, nothing else.
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
MULTILINE_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


class Where:
    """A position in a loaded file: `Where(file, mapping)` -> `where.at(key)` text."""

    def __init__(self, file: str, node: Any, path: str = "") -> None:
        self.file = file
        self.node = node
        self.path = path

    def key_path(self, key: str | int) -> str:
        part = f"[{key}]" if isinstance(key, int) else str(key)
        if not self.path:
            return part
        return f"{self.path}{part}" if isinstance(key, int) else f"{self.path}.{part}"

    def fail(self, key: str | int | None, problem: str) -> UserError:
        line = line_of(self.node, key) if key is not None else getattr(self.node, "line", 0)
        label = f" {self.key_path(key)}:" if key is not None else (
            f" {self.path}:" if self.path else "")
        return UserError(f"{self.file}:{line}:{label} {problem}")

    def child(self, key: str | int) -> Where:
        return Where(self.file, self.node[key], self.key_path(key))


def check_keys(where: Where, allowed: Iterable[str], required: Iterable[str] = ()) -> None:
    """Unknown keys (with a did-you-mean) and missing required keys are errors."""
    allowed = set(allowed)
    node = where.node
    for key in node:
        if key not in allowed:
            hint = did_you_mean(key, allowed) or f" (allowed: {', '.join(sorted(allowed))})"
            raise where.fail(key, f"unknown key{hint}")
    for key in required:
        if key not in node:
            raise where.fail(None, f"missing required key {key!r}; add it")


def mapping(where: Where, key: str, *, required: bool = False) -> Where | None:
    if key not in where.node:
        if required:
            raise where.fail(None, f"missing required key {key!r}; add it")
        return None
    if not isinstance(where.node[key], Mapping):
        raise where.fail(key, "must be a mapping (key: value lines)")
    return where.child(key)


def string(where: Where, key: str, *, required: bool = False, pattern: re.Pattern | None = None,
           what: str = "", default: str | None = None, multiline: bool = False) -> str | None:
    node = where.node
    if key not in node:
        if required:
            raise where.fail(None, f"missing required key {key!r}; add it")
        return default
    return _single_value(where, key, node[key], pattern=pattern, what=what or key,
                         multiline=multiline)


def _single_value(where: Where, key: str | int, value: Any, *, pattern: re.Pattern | None,
                  what: str, multiline: bool) -> str:
    """`value`, found under `key` of `where`, as one checked string."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise where.fail(key, "must be a single value (a string)")
    value = text_of(value)
    if (MULTILINE_CONTROL_RE if multiline else CONTROL_RE).search(value):
        raise where.fail(key, control_problem(value, multiline=multiline))
    if pattern is not None and not pattern.fullmatch(value):
        raise where.fail(key, f"{value!r} is not a valid {what}{_metachar_hint(value)}")
    return value


def number(where: Where, key: str, *, default: float, minimum: float) -> float:
    value = where.node.get(key, default)
    # `not value >= minimum` also refuses .nan; .inf is no amount of memory either.
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not value >= minimum or math.isinf(value)):
        raise where.fail(key, f"must be a number >= {minimum}")
    return float(value)


def boolean(where: Where, key: str, *, default: bool) -> bool:
    value = where.node.get(key, default)
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return value == "true"
    raise where.fail(key, "must be true or false")


def string_list(where: Where, key: str, *, pattern: re.Pattern | None = None,
                what: str = "", multiline: bool = False) -> tuple[str, ...]:
    node = where.node
    if key not in node:
        return ()
    value = node[key]
    if not isinstance(value, Sequence):
        raise where.fail(key, "must be a list ([a, b] or '- a' lines)")
    items = where.child(key)
    out = []
    for i, raw in enumerate(value):
        item = _single_value(items, i, raw, pattern=pattern, what=what or key,
                             multiline=multiline)
        if item in out:
            raise items.fail(i, f"{item!r} is listed twice; remove one")
        out.append(item)
    return tuple(out)


def control_problem(value: str, *, multiline: bool = False) -> str:
    """The problem text for a value holding a control character."""
    bad = next(c for c in value if c < " " or c == "\x7f")
    if multiline:
        return (f"contains the control character {bad!r}; only newlines and tabs may "
                f"appear here, remove it")
    return f"contains the control character {bad!r} (a value is one line); remove it"


def _metachar_hint(value: str) -> str:
    bad = sorted({c for c in value if c in ";&|`$<>(){}[]!*?~'\"\\ \t\n"})
    if bad:
        return f" (contains {' '.join(repr(c) for c in bad)}; shell metacharacters are refused)"
    return ""
