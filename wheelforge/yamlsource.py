"""YAML loading that remembers where every value came from.

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
import os
import stat
from pathlib import Path
from typing import Any

import yaml

from .errors import UserError

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
