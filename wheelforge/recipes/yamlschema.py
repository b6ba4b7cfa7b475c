"""Recipe YAML read strictly: a loader that remembers where every value came from, and
the small validators the recipe and matrix loaders share.

Small strict validators shared by the recipe and matrix loaders.

Every check raises `UserError` with `file:line: key: problem; fix` so that a
typo anywhere in recipes/ reads as one line that says where and what to do.

YAML loading that remembers where every value came from.

Validation errors must name the file, the line and the key. PyYAML's composer
knows the line of every node; this loader keeps it: mappings become `Mapping`
(a dict with the line of each key) and sequences become `Sequence` (a list with
the line of each item). Numbers keep the text they were written as (`Int`,
`Float`), so that a value meant as a string, like `python: [3.10]`, reads as
"3.10" and not as the float's "3.1".

Hostile files are refused in one line, never with a hang or a traceback: only
regular files are read (a FIFO, a device, a directory or a symlink loop is
refused before any read), at most MAX_BYTES of them, nesting at most MAX_DEPTH
levels deep, numbers at most MAX_NUMBER_CHARS characters long, and no aliases (an alias
bomb must not pass unnoticed in a field nothing reads). Dates stay text, like on/off.
"""

from __future__ import annotations

import errno
import math
import os
import re
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from wheelforge.core.terminal import UserError, did_you_mean

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


MAX_BYTES = 1 << 20  # 1 MiB: far more than any recipe or matrix needs


MAX_DEPTH = 32


MAX_NUMBER_CHARS = 64  # a 40-digit pin or a 64-digit sha256 written unquoted still loads


class Mapping(dict):
    """A YAML mapping; `line` is its own line, `lines[key]` the line of each key."""

    line: int = 0
    lines: dict[str, int]


class Sequence(list):
    """A YAML sequence; `line` is its own line, `lines[i]` the line of item i."""

    line: int = 0
    lines: list[int]


class Int(int):
    """A YAML integer that remembers its text (`0755`, `1_000`)."""

    text: str = ""


class Float(float):
    """A YAML float that remembers its text (`3.10`, not 3.1)."""

    text: str = ""


def text_of(value: Any) -> str:
    """A scalar as the user wrote it: numbers keep their YAML text."""
    return getattr(value, "text", "") or str(value)


class _TooBig(yaml.MarkedYAMLError):
    """A bound of this loader, not a syntax error: its problem says how to fix it."""


class _Loader(yaml.SafeLoader):
    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise _TooBig(problem="a YAML alias (*name): recipes and the matrix take no "
                                  "anchors or aliases; write the value out",
                          problem_mark=self.peek_event().start_mark)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _TooBig(
                    problem=f"nested more than {MAX_DEPTH} levels deep; flatten it",
                    problem_mark=self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def _number_text(self, node: yaml.ScalarNode) -> None:
        if len(node.value) > MAX_NUMBER_CHARS:
            raise _TooBig(
                problem=f"a number of {len(node.value)} characters (at most "
                        f"{MAX_NUMBER_CHARS}); quote it if it is text",
                problem_mark=node.start_mark)

    def construct_yaml_int(self, node: yaml.ScalarNode) -> Int:
        self._number_text(node)
        out = Int(super().construct_yaml_int(node))
        out.text = node.value
        return out

    def construct_yaml_float(self, node: yaml.ScalarNode) -> Float:
        self._number_text(node)
        out = Float(super().construct_yaml_float(node))
        out.text = node.value
        return out

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> Mapping:
        out = Mapping()
        out.line = node.start_mark.line + 1
        out.lines = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                raise yaml.MarkedYAMLError(problem=f"key {key!r} is not a string",
                                           problem_mark=key_node.start_mark)
            if key in out:
                raise yaml.MarkedYAMLError(problem=f"key {key!r} appears twice",
                                           problem_mark=key_node.start_mark)
            out[key] = self.construct_object(value_node, deep=True)
            out.lines[key] = key_node.start_mark.line + 1
        return out

    def construct_sequence(self, node: yaml.SequenceNode, deep: bool = False) -> Sequence:
        out = Sequence(self.construct_object(child, deep=True) for child in node.value)
        out.line = node.start_mark.line + 1
        out.lines = [child.start_mark.line + 1 for child in node.value]
        return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _Loader.construct_mapping)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG,
                        _Loader.construct_sequence)


_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)


_Loader.add_constructor("tag:yaml.org,2002:float", _Loader.construct_yaml_float)


# Keep on/off/yes/no as strings: a recipe value `ENABLE_CK: off` must not become False;
# and dates: an unquoted tag `2024-01-01` is the tag's name, not a date.
_STRINGS = ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:timestamp")


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in _STRINGS]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load(path: Path, *, display: str | None = None) -> Mapping:
    """Parse one YAML file into a top-level `Mapping`, or raise one clear line."""
    where = display or str(path)
    data = read_regular(path, where=where)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = text_line(exc.object, exc.start)
        raise UserError(f"{where}:{line}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x}); "
                        f"save the file as UTF-8") from None
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - SafeLoader subclass
    except _TooBig as exc:
        raise UserError(f"{where}:{exc.problem_mark.line + 1}: {exc.problem}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark else ""
        raise UserError(f"{where}{line}: invalid YAML: {exc.problem}; fix the syntax") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{where}: invalid YAML: {exc}") from None
    if not isinstance(data, Mapping):
        raise UserError(f"{where}:1: the file must be a mapping of keys to values")
    return data


def read_regular(path: Path, *, where: str, limit: int = MAX_BYTES) -> bytes:
    """The bytes of a regular file of at most `limit` bytes, else one clear line."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UserError(f"{where}: cannot read (a symlink loop); point the link at a "
                            f"file") from None
        raise UserError(f"{where}: cannot read ({exc.strerror})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = ("a directory" if stat.S_ISDIR(info.st_mode) else
                    "a FIFO" if stat.S_ISFIFO(info.st_mode) else
                    "a device" if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode)
                    else "a socket" if stat.S_ISSOCK(info.st_mode) else "not a file")
            raise UserError(f"{where}: {kind}, not a regular file; give a YAML file")
        if info.st_size > limit:
            raise UserError(f"{where}: {info.st_size} bytes, more than the {limit} a file "
                            f"here may have; this is not a recipe file")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise UserError(f"{where}: cannot read ({exc.strerror})") from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise UserError(f"{where}: more than {limit} bytes; this is not a recipe file")
    return data


def text_line(data: bytes, offset: int) -> int:
    """The 1-based line of byte `offset` in `data`."""
    return data.count(b"\n", 0, offset) + 1


def line_of(container: Any, key: str | int) -> int:
    """The line of `key` in a loaded Mapping/Sequence, else the container's own line."""
    if isinstance(container, Mapping) and isinstance(key, str):
        return container.lines.get(key, container.line)
    if isinstance(container, Sequence) and isinstance(key, int) and key < len(container.lines):
        return container.lines[key]
    return getattr(container, "line", 0)
