"""ELF files read for the audits: dynamic-linking facts with pyelftools (audit/links.py), and
headers, sections and ``ar`` archives with the standard library alone (audit/gpucode.py).

Dynamic linking (`read_elf`, `defined`, `matches`): of an x86-64 executable or shared
object, its DT_NEEDED names, RPATH and RUNPATH, SONAME, the versions it requires of each
library (verneed; weak ones aside, as ld.so only warns of them) and those it defines
(verdef), its undefined GLOBAL dynamic symbols with their versions (WEAK ones may stay
unbound), and whether it is an extension module (it exports ``PyInit_*``). Any other file
(another machine's code object, a relocatable object, no ELF at all) gives None; an ELF
file that cannot be read is a UserError. pyelftools reads the section table, the dynamic
section and the verneed/verdef tables; the dynamic symbol table is decoded with struct in
one pass (fast on large libraries). Defined symbols are kept only for the names some
audited file needs. pyelftools is imported inside these functions only, so the reading
below runs with the standard library alone.

Random-access reading, for the GPU code: nothing here knows about GPUs. A ``Source`` gives
bytes at an offset (a file on disk, a forward-only stream such as a compressed zip member,
or a window into another source), ``elf_header`` and ``sections`` read an ELF file's header
and section table, and ``archive_members`` lists the members of an ``ar`` archive (GNU and
BSD long names). Only headers and tables are read, never whole files. Bytes that do not
follow the format they claim raise ``Malformed``, and so do more than LIMIT (2**20)
sections or archive members. Only the standard library is used.
"""

from __future__ import annotations

import struct
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from wheelforge.core.terminal import UserError

MAGIC = b"\x7fELF"


SYM = struct.Struct("<IBBHQQ")


@dataclass
class Elf:
    needed: tuple[str, ...] = ()
    rpath: tuple[str, ...] = ()
    runpath: tuple[str, ...] = ()
    soname: str = ""
    verneed: dict[str, list[str]] = field(default_factory=dict)  # file -> required versions
    verdefs: frozenset[str] = frozenset()
    undefined: list[tuple[str, str]] = field(default_factory=list)  # (name, version or "")
    extension: bool = False  # exports PyInit_*
    disk: str = ""
    vnames: dict[int, str] = field(default_factory=dict)  # version index -> name


def read_elf(disk: str) -> Elf | None:
    """The dynamic-linking facts of an x86-64 ELF executable/shared object; None for any
    other file (other machines' code objects, relocatables, non-ELF)."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    with open(disk, "rb") as f:
        if f.read(4) != MAGIC:
            return None
        f.seek(0)
        try:
            elf = ELFFile(f)
            if (elf.elfclass != 64 or not elf.little_endian or elf["e_machine"] != "EM_X86_64"
                    or elf["e_type"] not in ("ET_DYN", "ET_EXEC")):
                return None
            return _parse(elf, disk)
        except (ELFError, struct.error, ValueError, IndexError, KeyError) as exc:
            raise UserError(f"{disk}: not a readable ELF file ({exc})") from None


def _parse(elf, disk: str) -> Elf:
    out = Elf(disk=disk)
    names = out.vnames
    verdefs, dynsym, versym = set(), None, None
    for sec in elf.iter_sections():
        kind = sec["sh_type"]
        if kind == "SHT_DYNAMIC":
            tags = [(t.entry.d_tag, t) for t in sec.iter_tags()]
            out.needed = tuple(t.needed for d, t in tags if d == "DT_NEEDED")
            out.rpath = tuple(p for d, t in tags if d == "DT_RPATH"
                              for p in t.rpath.split(":") if p)
            out.runpath = tuple(p for d, t in tags if d == "DT_RUNPATH"
                                for p in t.runpath.split(":") if p)
            out.soname = next((t.soname for d, t in tags if d == "DT_SONAME"), "")
        elif kind == "SHT_DYNSYM":
            dynsym = sec
        elif kind == "SHT_GNU_versym":
            versym = array("H", sec.data())
        elif kind == "SHT_GNU_verneed":
            for need, auxs in sec.iter_versions():
                for aux in auxs:
                    names[aux["vna_other"]] = aux.name
                    if not aux["vna_flags"] & 2:  # VER_FLG_WEAK: ld.so only warns
                        out.verneed.setdefault(need.name, []).append(aux.name)
        elif kind == "SHT_GNU_verdef":
            for vdef, auxs in sec.iter_versions():
                name = next(iter(auxs)).name
                if not vdef["vd_flags"] & 1:  # VER_FLG_BASE names the file itself
                    verdefs.add(name)
                    names[vdef["vd_ndx"]] = name
    out.verdefs = frozenset(verdefs)
    if dynsym is not None:
        strtab = elf.get_section(dynsym["sh_link"]).data()
        for _i, name, info, _other, shndx, ver in _symbols(dynsym.data(), strtab, versym):
            if shndx == 0 and info >> 4 == 1:  # undefined GLOBAL (WEAK ones may stay unbound)
                out.undefined.append((name.decode(errors="replace"), names.get(ver & 0x7FFF, "")))
            elif shndx and name.startswith(b"PyInit_"):
                out.extension = True
    return out


def _symbols(data: bytes, strtab: bytes, versym: array | None):
    for i, (st_name, info, other, shndx, _value, _size) in enumerate(SYM.iter_unpack(data)):
        if i and st_name:
            name = strtab[st_name:strtab.index(b"\0", st_name)]
            yield i, name, info, other, shndx, versym[i] if versym and i < len(versym) else 1


def defined(elf: Elf, wanted: set[bytes]) -> dict[str, set[str]]:
    """Defined dynamic symbols among ``wanted``: name -> versions. "" matches any version,
    "v" is a default version (matches v and unversioned), "!v" hidden (matches only v)."""
    from elftools.elf.elffile import ELFFile

    out: dict[str, set[str]] = {}
    with open(elf.disk, "rb") as f:
        e = ELFFile(f)
        dynsym = next((s for s in e.iter_sections() if s["sh_type"] == "SHT_DYNSYM"), None)
        vsec = next((s for s in e.iter_sections() if s["sh_type"] == "SHT_GNU_versym"), None)
        if dynsym is None:
            return out
        versym = array("H", vsec.data()) if vsec is not None else None
        strtab = e.get_section(dynsym["sh_link"]).data()
        names = elf.vnames
        for _i, name, info, other, shndx, ver in _symbols(dynsym.data(), strtab, versym):
            if (not shndx or name not in wanted or info >> 4 not in (1, 2, 10)
                    or info & 0xF in (3, 4) or other & 3 not in (0, 3)):
                continue
            v = names.get(ver & 0x7FFF, "") if versym else ""
            out.setdefault(name.decode(), set()).add(("!" + v) if v and ver & 0x8000 else v)
    return out


def matches(versions: set[str] | None, want: str) -> bool:
    if not versions:
        return False
    if "" in versions:
        return True
    return want in versions or "!" + want in versions if want else any(
        not v.startswith("!") for v in versions)


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
