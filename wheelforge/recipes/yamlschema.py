"""Recipe and matrix files read strictly: a YAML loader that remembers where every value
came from, the pydantic building blocks of the two file models (`RecipeModel` in
component.py, `MatrixModel` in matrix.py), and the one line a file's first problem becomes.

Why pydantic: each key is declared once, with its type, its rules and its description, and
that one declaration is the validation, the JSON Schema and the key tables of
docs/recipes.md (reference.py), so the three cannot drift apart. Messages stay ours: every
rule raises `problem(...)` with the text the user reads, and pydantic's own error kinds (a
missing key, a wrong type) are worded here, so that an error is `file:line: key.path:
problem; fix`. What pydantic cannot do, the loader does before it runs:

- it keeps the line of every key and item (`Mapping`, `Sequence`), so that an error's
  `loc` (its key path) becomes the line of that key (`line_at`);
- numbers keep the text they were written as (`Int`, `Float`: `python: [3.10]` is "3.10",
  not "3.1"), and dates and on/off stay text (a tag `2024-01-01`, `ENABLE_CK: off`);
- hostile files are refused in one line, never with a hang or a traceback: only regular
  files are read (a FIFO, a device, a directory or a symlink loop is refused before any
  read), at most MAX_BYTES of them, nesting at most MAX_DEPTH levels deep, numbers at
  most MAX_NUMBER_CHARS characters long, no duplicate keys, keys that are strings, and
  no aliases (an alias bomb must not pass unnoticed in a field nothing reads).
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError, core_schema

from wheelforge.core.terminal import UserError, did_you_mean

# Control characters (newline, carriage return, escape, NUL, ...) in one-line values.
CONTROL = r"\x00-\x1f\x7f"
CONTROL_RE = re.compile(f"[{CONTROL}]")


def problem(text: str, *at: str | int) -> PydanticCustomError:
    """A validation error worded for the user; `at` extends its key path (a rule of a
    mapping or a list that is about one of its keys or items)."""
    return PydanticCustomError("wheelforge", text, {"at": at})


class Keys(BaseModel):
    """A mapping of a recipe or matrix file: its keys are the fields, and any other key is
    an error that suggests the closest one (before pydantic reports the missing ones)."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in data:
                if key not in cls.model_fields:
                    hint = (did_you_mean(key, cls.model_fields)
                            or f" (allowed: {', '.join(sorted(cls.model_fields))})")
                    raise problem(f"unknown key{hint}", key)
        return data


def text_of(value: Any) -> str:
    """A scalar as the user wrote it: numbers keep their YAML text."""
    return getattr(value, "text", "") or str(value)


def _single_value(control: str, *, multiline: bool) -> Any:
    """The type of one value written as text (a number keeps its YAML text) that holds no
    character of the class `control`."""
    found = re.compile(f"[{control}]").search

    def check(value: Any) -> str:
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise problem("must be a single value (a string)")
        value = text_of(value)
        if bad := found(value):
            raise problem(control_problem(bad.group(), multiline=multiline))
        return value

    return Annotated[str, BeforeValidator(check),
                     WithJsonSchema({"type": "string", "pattern": f"^[^{control}]*$"})]


# A Line is one line; a Text may span lines (steps, descriptions): newlines and tabs only.
Line = _single_value(CONTROL, multiline=False)
Text = _single_value(r"\x00-\x08\x0b-\x1f\x7f", multiline=True)


def _true_or_false(value: Any) -> bool:
    """The loader keeps every YAML boolean as text (on/off/yes/no are values of env);
    a flag is `true` or `false`, nothing else."""
    if value in ("true", "false"):
        return value == "true"
    if isinstance(value, bool):
        return value
    raise problem("must be true or false")


Flag = Annotated[bool, BeforeValidator(_true_or_false)]


def control_problem(bad: str, *, multiline: bool = False) -> str:
    """The problem text for a value holding the control character `bad`."""
    if multiline:
        return (f"contains the control character {bad!r}; only newlines and tabs may "
                f"appear here, remove it")
    return f"contains the control character {bad!r} (a value is one line); remove it"


def metachar_hint(value: str) -> str:
    bad = sorted({c for c in value if c in ";&|`$<>(){}[]!*?~'\"\\ \t\n"})
    if bad:
        return f" (contains {' '.join(repr(c) for c in bad)}; shell metacharacters are refused)"
    return ""


class Rule:
    """A check pydantic runs after the type's own: `fault(value)` is the `problem` of a
    value it refuses, else None; `extend(schema)` is what it adds to the type's JSON
    Schema."""

    def __init__(self, fault: Callable[[Any], PydanticCustomError | None],
                 extend: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        self.fault, self.extend = fault, extend

    def check(self, value: Any) -> Any:
        if (error := self.fault(value)) is not None:
            raise error
        return value

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self.check, handler(source))

    def __get_pydantic_json_schema__(self, core: Any, handler: Any) -> dict[str, Any]:
        schema = handler(core)
        return {**schema, **self.extend(schema)}


def matches(pattern: str, what: str, fix: Callable[[str], str] = metachar_hint) -> Rule:
    """Text that `pattern` matches in full (`fullmatch`: `re.match` with `$` would accept a
    value ending in a newline); else `'value' is not a valid WHAT` and `fix(value)`."""
    regex = re.compile(pattern)
    return Rule(lambda value: None if regex.fullmatch(value) else
                problem(f"{value!r} is not a valid {what}{fix(value)}"),
                lambda _: {"pattern": f"^(?:{pattern})$"})


def not_empty(text: str) -> Rule:
    """A list or mapping that lists something; `text` says what to do when it is empty."""
    return Rule(lambda value: None if value else problem(text),
                lambda schema: {"minProperties" if schema.get("type") == "object"
                                else "minItems": 1})


def none_of(names: Iterable[str], why: Callable[[str], str]) -> Rule:
    """Text that is none of `names` (names something sets itself); `why(value)` says so."""
    names = frozenset(names)
    return Rule(lambda value: problem(why(value)) if value in names else None,
                lambda _: {"not": {"enum": sorted(names)}})


def _listed_twice(items: list) -> PydanticCustomError | None:
    for i, item in enumerate(items):
        if item in items[:i]:
            return problem(f"{item!r} is listed twice; remove one", i)
    return None


Unique = Rule(_listed_twice, lambda _: {"uniqueItems": True})  # a list that names each once


def name_of(what: str) -> Any:
    """The type of a name (of a component, an arch, a stack, ...): safe in file names, tags
    and shells."""
    return Annotated[Line, matches(r"[a-z0-9][a-z0-9._+-]{0,127}",
                                   f"{what} (lowercase letters, digits, . _ + -)")]


def ref_of(what: str) -> Any:
    """The type of a git ref or a version: no shell metacharacters, no whitespace, no
    option-looking values."""
    return Annotated[Line, matches(r"[A-Za-z0-9][A-Za-z0-9._/+@-]{0,254}", what)]


# pydantic's own error kinds, worded as the rest (the rules above word their own).
WORDING = {
    "bool_type": "must be true or false",
    "list_type": "must be a list ([a, b] or '- a' lines)",
    "dict_type": "must be a mapping (key: value lines)",
    "model_type": "must be a mapping (key: value lines)",
    "float_type": "must be a number, e.g. 1 or 0.5",
    "finite_number": "must be a finite number, e.g. 1 or 0.5",
}


def validate(model: type[Keys], data: Mapping, file: str) -> Any:
    """`data`, a loaded file, as `model`; else its first problem as one UserError line."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        loc, text = _worded(exc.errors(include_url=False)[0])
        raise fail(file, data, loc, text) from None


def _worded(error: ErrorDetails) -> tuple[tuple[str | int, ...], str]:
    """An error's key path and its problem as the user reads it."""
    loc = tuple(part for part in error["loc"] if part != "[key]")  # a mapping key's own error
    ctx = error.get("ctx") or {}
    kind = error["type"]
    if kind == "wheelforge":
        return loc + tuple(ctx["at"]), error["msg"]
    if kind == "missing":
        return loc[:-1], f"missing required key {loc[-1]!r}; add it"
    if kind == "literal_error":
        choices = re.findall(r"'([^']*)'", ctx["expected"])
        value = text_of(error["input"])
        return loc, (f"{value!r}: write {', '.join(choices[:-1])} or {choices[-1]}"
                     f"{did_you_mean(value, choices)}")
    if kind == "greater_than_equal":
        return loc, f"must be a number >= {ctx['ge']}"
    return loc, WORDING.get(kind, f"{error['msg']} (see docs/recipes.md)")


def fail(file: str, data: Mapping, loc: tuple[str | int, ...], text: str) -> UserError:
    """`file:line: key.path: text`, the line being that of the key `loc` names in `data`."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
    label = f" {path}:" if path else ""
    return UserError(f"{file}:{line_at(data, loc)}:{label} {text}")


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

    def _number(self, node: yaml.ScalarNode, kind: type[Int | Float],
                construct: Callable[[yaml.ScalarNode], Any]) -> Int | Float:
        if len(node.value) > MAX_NUMBER_CHARS:
            raise _TooBig(
                problem=f"a number of {len(node.value)} characters (at most "
                        f"{MAX_NUMBER_CHARS}); quote it if it is text",
                problem_mark=node.start_mark)
        out = kind(construct(node))
        out.text = node.value
        return out

    def construct_yaml_int(self, node: yaml.ScalarNode) -> Int:
        return self._number(node, Int, super().construct_yaml_int)

    def construct_yaml_float(self, node: yaml.ScalarNode) -> Float:
        return self._number(node, Float, super().construct_yaml_float)

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

    yaml_constructors = {**yaml.SafeLoader.yaml_constructors,
                         "tag:yaml.org,2002:map": construct_mapping,
                         "tag:yaml.org,2002:seq": construct_sequence,
                         "tag:yaml.org,2002:int": construct_yaml_int,
                         "tag:yaml.org,2002:float": construct_yaml_float}

    # Keep on/off/yes/no as strings: a recipe value `ENABLE_CK: off` must not become False;
    # and dates: an unquoted tag `2024-01-01` is the tag's name, not a date.
    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers
                if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:timestamp")]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }


def load(path: Path, *, display: str | None = None) -> Mapping:
    """Parse one YAML file into a top-level `Mapping`, or raise one clear line."""
    where = display or str(path)
    data = read_regular(path, where=where)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = exc.object.count(b"\n", 0, exc.start) + 1
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


def read_regular(path: Path, *, where: str) -> bytes:
    """The bytes of a regular file of at most MAX_BYTES bytes, else one clear line."""
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
        if info.st_size > MAX_BYTES:
            raise UserError(f"{where}: {info.st_size} bytes, more than the {MAX_BYTES} a file "
                            f"here may have; this is not a recipe file")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise UserError(f"{where}: cannot read ({exc.strerror})") from None
    finally:
        os.close(fd)
    if len(data) > MAX_BYTES:
        raise UserError(f"{where}: more than {MAX_BYTES} bytes; this is not a recipe file")
    return data


def line_at(data: Mapping, loc: tuple[str | int, ...]) -> int:
    """The line of the key or item `loc` names in a loaded file (its deepest part there)."""
    node, line = data, data.line
    for part in loc:
        in_mapping = isinstance(node, Mapping) and part in node
        in_sequence = isinstance(node, Sequence) and isinstance(part, int) and 0 <= part < len(node)
        if not (in_mapping or in_sequence):
            break
        line, node = node.lines[part], node[part]
    return line
