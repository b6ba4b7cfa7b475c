"""The dynamic-linking facts of an ELF file, read with pyelftools (linkaudit.py).

pyelftools reads the section table, the dynamic section and the verneed/verdef tables;
the dynamic symbol table is decoded with struct in one pass (fast on large libraries).
Defined symbols are kept only for the names some audited file needs.
"""

from __future__ import annotations

import struct
from array import array
from dataclasses import dataclass, field

from .errors import UserError

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
