"""Random-access reading of ELF files and ``ar`` archives, for gpucode.py.

Nothing here knows about GPUs: a ``Source`` gives bytes at an offset (a file on
disk, a forward-only stream such as a compressed zip member, or a window into
another source), ``elf_header`` and ``sections`` read an ELF file's header and
section table, and ``archive_members`` lists the members of an ``ar`` archive.
Only headers and tables are read, never whole files. Bytes that do not follow
the format they claim raise ``Malformed``. Only the standard library is used.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

ELF_MAGIC = b"\x7fELF"
AR_MAGIC = b"!<arch>\n"
SHT_NOBITS = 8
LIMIT = 1 << 20  # most entries, members or sections believed before calling a file malformed
_AR_INDEXES = ("/", "/SYM64/", "__.SYMDEF", "__.SYMDEF SORTED")


class Malformed(Exception):
    """The bytes do not follow the format they claim."""


def reason(exc: BaseException) -> str:
    """A one-line account of why reading failed."""
    if isinstance(exc, Malformed):
        return str(exc)
    kind = type(exc).__name__
    return f"{type(exc).__module__}.{kind}: {exc}" if kind == "error" else f"{kind}: {exc}"


# --- random access over files and forward-only streams --------------------------------

class Source:
    """Random-access reads; ``read`` returns fewer bytes at the end, never raises for range."""

    size: int

    def read(self, offset: int, n: int) -> bytes:
        raise NotImplementedError


class FileSource(Source):
    def __init__(self, f: BinaryIO, size: int) -> None:
        self.f, self.size = f, size

    def read(self, offset: int, n: int) -> bytes:
        if offset < 0 or n <= 0 or offset >= self.size:
            return b""
        self.f.seek(offset)
        return self.f.read(min(n, self.size - offset))


class StreamSource(Source):
    """A forward-only stream (a compressed zip member) read as if it could seek.

    Reads ahead skip forward; the last ``tail`` bytes stay in memory so that the
    usual ELF reading order (header, section table, then the names just before it)
    costs one pass; reading further back reopens the stream.
    """

    CHUNK = 1 << 20

    def __init__(self, opener: Callable[[], BinaryIO], size: int, tail: int = 8 << 20) -> None:
        self.opener, self.size, self.tail = opener, size, tail
        self.f: BinaryIO | None = None
        self.pos = 0
        self.chunks: list[tuple[int, bytes]] = []

    def close(self) -> None:
        if self.f is not None:
            self.f.close()
            self.f = None

    def read(self, offset: int, n: int) -> bytes:
        if offset < 0 or n <= 0 or offset >= self.size:
            return b""
        end = min(offset + n, self.size)
        first = self.chunks[0][0] if self.chunks else self.pos
        if self.f is None or offset < first:
            self.close()
            self.f, self.pos, self.chunks = self.opener(), 0, []
        while self.pos < end:
            data = self.f.read(self.CHUNK)
            if not data:
                break
            self.chunks.append((self.pos, data))
            self.pos += len(data)
            keep_from = min(offset, self.pos - self.tail)
            while self.chunks and self.chunks[0][0] + len(self.chunks[0][1]) <= keep_from:
                self.chunks.pop(0)
        parts = []
        for start, data in self.chunks:
            lo, hi = max(offset, start), min(end, start + len(data))
            if lo < hi:
                parts.append(data[lo - start:hi - start])
        return b"".join(parts)


class Window(Source):
    """A part of another source (a section, an archive member)."""

    def __init__(self, src: Source, base: int, size: int) -> None:
        self.src, self.base = src, base
        self.size = max(0, min(size, src.size - base))

    def read(self, offset: int, n: int) -> bytes:
        if offset < 0 or n <= 0 or offset >= self.size:
            return b""
        return self.src.read(self.base + offset, min(n, self.size - offset))


def exact(src: Source, offset: int, n: int, what: str) -> bytes:
    """Exactly ``n`` bytes at ``offset``, or Malformed naming ``what`` was cut short."""
    data = src.read(offset, n)
    if len(data) != n:
        raise Malformed(f"{what} truncated at offset {offset}")
    return data


def cstring(src: Source, offset: int, limit: int = 256) -> str:
    """The NUL-terminated string at ``offset`` (at most ``limit`` bytes)."""
    data = src.read(offset, limit)
    end = data.find(b"\0")
    if end < 0:
        raise Malformed(f"unterminated string at offset {offset}")
    return data[:end].decode("latin-1")


# --- ELF --------------------------------------------------------------------------------

@dataclass(frozen=True)
class ElfHeader:
    ident: bytes
    machine: int
    flags: int
    shoff: int
    shentsize: int
    shnum: int
    shstrndx: int
    wide: bool  # ELFCLASS64


@dataclass(frozen=True)
class Section:
    name: str
    type: int
    offset: int
    size: int


def elf_header(src: Source) -> ElfHeader | None:
    """The header of the ELF file at the start of ``src``; None for big-endian or an
    unknown class (no AMD GPU code object or host binary of interest is either)."""
    ident = exact(src, 0, 16, "ELF header")
    if ident[5] != 1 or ident[4] not in (1, 2):
        return None
    wide = ident[4] == 2
    fmt = "<HHIQQQIHHHHHH" if wide else "<HHIIIIIHHHHHH"
    (_type, machine, _ver, _entry, _phoff, shoff, flags, _eh, _phes, _phn, shentsize, shnum,
     shstrndx) = struct.unpack(fmt, exact(src, 16, struct.calcsize(fmt), "ELF header"))
    return ElfHeader(ident, machine, flags, shoff, shentsize, shnum, shstrndx, wide)


def sections(src: Source, header: ElfHeader) -> list[Section]:
    """Every section of the ELF file in ``src`` (none when it has no section table)."""
    if header.shoff == 0:
        return []
    fmt = "<IIQQQQIIQQ" if header.wide else "<IIIIIIIIII"
    esize = struct.calcsize(fmt)
    if header.shentsize != esize:
        raise Malformed(f"section header size {header.shentsize}, expected {esize}")
    first = struct.unpack(fmt, exact(src, header.shoff, esize, "section header table"))
    shnum = header.shnum or first[5]
    shstrndx = first[6] if header.shstrndx == 0xFFFF else header.shstrndx
    if shnum > LIMIT:
        raise Malformed(f"{shnum} sections")
    table = exact(src, header.shoff, shnum * esize, "section header table")
    rows = [struct.unpack_from(fmt, table, i * esize) for i in range(shnum)]
    if not 0 <= shstrndx < shnum:
        raise Malformed(f"section name table index {shstrndx} out of range")
    names_sec = rows[shstrndx]
    if names_sec[5] > 64 << 20:
        raise Malformed("section name table larger than 64 MiB")
    names = src.read(names_sec[4], names_sec[5])
    result = []
    for row in rows:
        end = names.find(b"\0", row[0])
        name = names[row[0]:end if end >= 0 else len(names)].decode("latin-1")
        result.append(Section(name, row[1], row[4], row[5]))
    return result


# --- ar archives ------------------------------------------------------------------------

def archive_members(src: Source) -> Iterator[tuple[str, Window]]:
    """(name, data) of every member of the ``ar`` archive in ``src`` (GNU and BSD long
    names; the symbol indexes and the long-name table are left out)."""
    pos, longnames, count = 8, b"", 0
    while pos + 60 <= src.size:
        header = exact(src, pos, 60, "archive member header")
        if header[58:60] != b"`\n":
            raise Malformed(f"archive member header at offset {pos} has no end marker")
        try:
            size = int(header[48:58].decode("ascii").strip() or "0")
        except ValueError:
            raise Malformed(f"archive member size at offset {pos} is not a number") from None
        raw = header[:16].decode("latin-1").rstrip()
        data, length = pos + 60, size
        if raw == "//":
            longnames = src.read(data, min(size, 64 << 20))
        elif raw not in _AR_INDEXES:
            name = raw.rstrip("/")
            if raw.startswith("/") and raw[1:].isdigit():
                start = int(raw[1:])
                end = longnames.find(b"/\n", start)
                name = longnames[start:end if end >= 0 else None].decode("latin-1")
            elif raw.startswith("#1/") and raw[3:].isdigit():  # BSD: name before the data
                skip = int(raw[3:])
                name = src.read(data, skip).rstrip(b"\0").decode("latin-1")
                data, length = data + skip, size - skip
            yield name, Window(src, data, length)
        pos = pos + 60 + size + (size & 1)
        count += 1
        if count > LIMIT:
            raise Malformed("more than a million archive members")
