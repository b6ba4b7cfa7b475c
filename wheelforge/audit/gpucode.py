"""Which AMD GPU targets a binary carries, read from its bytes without running anything.

A binary holds GPU code in one of these forms:

- a standalone code object: an ELF file for machine EM_AMDGPU (224); its target
  (gfx942, gfx9-4-generic, ...) and xnack/sramecc settings live in e_flags
  (``code_object_target`` reads them, ``MACH`` names the processors);
- a clang offload bundle: magic ``__CLANG_OFFLOAD_BUNDLE__``, an entry count, then
  per entry offset, size and an id such as ``hipv4-amdgcn-amd-amdhsa--gfx942:xnack-``;
  or its compressed form (magic ``CCOB``, header versions 1 to 3, zlib or zstd);
- an offload binary (magic 0x10FF10AD) whose entries carry "triple" and "arch" strings.

Where: bundles are looked for only where they are known to be: the ``.hip_fatbin``
section of an ELF file (objects, shared libraries, members of ``ar`` archives), or a file
that starts with a bundle magic; offload binaries in ``.llvm.offloading``. The magic
strings also appear as plain text inside LLVM's own libraries, so nothing else is
searched. A section may hold several bundles back to back; each one is reported on its
own (``Blob``), because the union over a library hides a translation unit built without
one arch.

Target names: a target id is a processor name with feature settings
(``gfx942:sramecc+:xnack-``); a generic target (``gfx9-4-generic``) runs on every
processor of its family (``GENERIC``, after LLVM's AMDGPUUsage). ``covers`` and
``runs_on`` say where code for a target runs; ``ARCH_RE`` tells a GPU arch name (a
processor or generic target) from anything else.

Reading: reads stream (audit/elf.py reads the ELF and ``ar`` containers): only headers,
section tables and bundle headers are read, and a compressed bundle is decompressed only as
far as its header (16 MiB at most). Only the standard library is needed; zstd-compressed
bundles need ``zstandard`` (or Python 3.14's ``compression.zstd``) and are otherwise
reported as not readable here. A malformed binary yields a Blob with a ``problem``; scans
never raise, and one bad bundle does not hide the others.
"""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass

from wheelforge.audit import elf
from wheelforge.audit.elf import AR_MAGIC, ELF_MAGIC, LIMIT, Malformed, Source, Window, exact

FileSource, StreamSource = elf.FileSource, elf.StreamSource  # audit/gpu.py reads with these


try:  # optional: zstd-compressed offload bundles
    import zstandard as _zstandard
except ImportError:  # pragma: no cover - depends on the environment
    _zstandard = None


try:  # Python 3.14+
    from compression import zstd as _zstd314  # type: ignore[import-not-found]
except ImportError:
    _zstd314 = None


EM_AMDGPU = 224


BUNDLE_MAGIC = b"__CLANG_OFFLOAD_BUNDLE__"


CCOB_MAGIC = b"CCOB"


OFFLOAD_MAGIC = b"\x10\xff\x10\xad"


HEADS = (ELF_MAGIC, AR_MAGIC[:4], BUNDLE_MAGIC[:4], CCOB_MAGIC, OFFLOAD_MAGIC)


@dataclass(frozen=True)
class Blob:
    """One unit of GPU code judged on its own: a code object, a bundle or an offload binary.

    ``targets`` are full target ids (``gfx942:sramecc+:xnack-``); ``problem`` says
    why they could not be read ("" when they were).
    """

    kind: str
    where: str
    targets: tuple[str, ...] = ()
    problem: str = ""
    detail: str = ""


def zstd_readable() -> bool:
    return _zstandard is not None or _zstd314 is not None


def scan_path(path: str) -> list[Blob]:
    """The GPU code in a file on disk (never raises)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            return scan(FileSource(f, f.tell()))
    except OSError as exc:
        return [Blob("file", "", problem=f"unreadable: {exc.strerror or exc}")]


def scan(src: Source) -> list[Blob]:
    """The GPU code in ``src``; [] when there is none. Never raises."""
    out: list[Blob] = []
    try:
        _scan(src, "", out, depth=0)
    except Exception as exc:  # noqa: BLE001  (a malformed binary is a finding, not a crash)
        out.append(Blob("file", "", problem=f"unreadable: {elf.reason(exc)}"))
    return out


def _scan(src: Source, where: str, out: list[Blob], depth: int) -> None:
    head = src.read(0, 8)
    if head.startswith(ELF_MAGIC):
        _elf(src, where, out)
    elif head == AR_MAGIC and depth < 3:
        _archive(src, where, out, depth)
    elif head.startswith((BUNDLE_MAGIC[:8], CCOB_MAGIC, OFFLOAD_MAGIC)):
        _region(src, where, out)


def _at(where: str, what: str) -> str:
    return f"{where}: {what}" if where else what


def _elf(src: Source, where: str, out: list[Blob]) -> None:
    header = elf.elf_header(src)
    if header is None:
        return
    if header.machine == EM_AMDGPU:
        target, detail = code_object_target(header.ident, header.flags)
        out.append(Blob("code object", where, (target,), detail=detail) if target
                   else Blob("code object", where, problem=detail))
        return
    bundles = 0
    for sec in elf.sections(src, header):
        if sec.type == elf.SHT_NOBITS or sec.size == 0:
            continue
        if sec.name == ".hip_fatbin" or sec.name.startswith(".llvm.offloading"):
            found: list[Blob] = []
            _region(Window(src, sec.offset, sec.size), "", found, first=bundles + 1)
            bundles += len(found)
            out.extend(Blob(b.kind, _at(where, b.where), b.targets, b.problem, b.detail)
                       for b in found)


def _archive(src: Source, where: str, out: list[Blob], depth: int) -> None:
    for name, member in elf.archive_members(src):
        if member.read(0, 4) in HEADS:
            _scan(member, _at(where, name), out, depth + 1)


def _region(src: Source, where: str, out: list[Blob], first: int = 1) -> None:
    """Every bundle / offload binary in ``src`` (a .hip_fatbin section or a bundle file)."""
    pos, index = 0, first
    while pos < src.size and index - first < LIMIT:
        pos = _next_magic(src, pos)
        if pos < 0:
            return
        label = _at(where, f"bundle {index}")
        try:
            blob, length = _one(Window(src, pos, src.size - pos), label)
        except Exception as exc:  # noqa: BLE001  (one bad bundle must not hide the others)
            why = f"unreadable: {elf.reason(exc)}"
            blob, length = Blob("bundle", label, problem=why), 0
        out.append(blob)
        index += 1
        pos += max(length, 4)


def _next_magic(src: Source, pos: int) -> int:
    """Offset of the next bundle or offload-binary magic at or after ``pos``, or -1."""
    step = 1 << 20
    while pos < src.size:
        chunk = src.read(pos, step + len(BUNDLE_MAGIC))
        hits = [i for i in (chunk.find(BUNDLE_MAGIC), chunk.find(CCOB_MAGIC),
                            chunk.find(OFFLOAD_MAGIC)) if i >= 0]
        if hits:
            return pos + min(hits)
        pos += step
    return -1


def _one(src: Source, label: str) -> tuple[Blob, int]:
    head = src.read(0, 24)
    if head.startswith(BUNDLE_MAGIC):
        ids, length = bundle_ids(src)
        return Blob("bundle", label, _targets(ids)), length
    if head.startswith(CCOB_MAGIC):
        return _compressed(src, label)
    return _offload_binary(src, label)


def bundle_ids(src: Source) -> tuple[list[str], int]:
    """The entry ids of an uncompressed bundle at the start of ``src``, and its length."""
    count = struct.unpack("<Q", exact(src, 24, 8, "bundle header"))[0]
    if count > 4096:
        raise Malformed(f"bundle claims {count} entries")
    pos, ids, length = 32, [], 32
    for _ in range(count):
        offset, size, id_len = struct.unpack("<QQQ", exact(src, pos, 24, "bundle entry"))
        if id_len > 4096:
            raise Malformed(f"bundle entry id of {id_len} bytes")
        ids.append(exact(src, pos + 24, id_len, "bundle entry id").decode("latin-1"))
        pos += 24 + id_len
        length = max(length, pos, offset + size)
    return ids, length


def _targets(ids: list[str]) -> tuple[str, ...]:
    """Device target ids of bundle entry ids; host entries are left out."""
    found = []
    for entry in ids:
        kind, _, rest = entry.partition("-")
        if kind == "host" or not rest:
            continue
        parts = rest.split("-", 4)
        target = parts[4] if len(parts) == 5 else parts[-1]
        if not target:
            continue
        if not parts[0].startswith("amdgcn"):
            target = f"{parts[0]}:{target}"
        found.append(target)
    return tuple(found)


_CCOB_HEADERS = {1: ("<IQ", 20), 2: ("<IIQ", 24), 3: ("<QQQ", 32)}


def _compressed(src: Source, label: str) -> tuple[Blob, int]:
    version, method = struct.unpack("<HH", exact(src, 4, 4, "compressed bundle header"))
    if version not in _CCOB_HEADERS:
        raise Malformed(f"unknown compressed bundle version {version}")
    fmt, header = _CCOB_HEADERS[version]
    fields = struct.unpack(fmt, exact(src, 8, header - 8, "compressed bundle header"))
    total = fields[0] if version >= 2 else src.size  # v1 records no total size
    if not header <= total <= src.size:
        raise Malformed(f"compressed bundle size {total} does not fit ({src.size} bytes left)")
    if method not in (0, 1):
        raise Malformed(f"unknown compression method {method}")
    kind = "compressed bundle (zlib)" if method == 0 else "compressed bundle (zstd)"
    length = total if version >= 2 else 0
    data = Window(src, header, total - header)
    if method == 1 and not zstd_readable():
        return Blob(kind, label, problem="compressed (zstd): not readable here"), length
    prefix = _Prefix(data, method)
    if prefix.read(0, 24) != BUNDLE_MAGIC:
        raise Malformed("decompressed data is not a bundle")
    ids, _ = bundle_ids(prefix)
    return Blob(kind, label, _targets(ids), detail=f"CCOB v{version}"), length


class _Prefix(Source):
    """The first bytes of a compressed stream, decompressed on demand (at most 16 MiB)."""

    MAX = 16 << 20

    def __init__(self, data: Source, method: int) -> None:
        self.data, self.method, self.buf, self.fed, self.done = data, method, b"", 0, False
        self.size = self.MAX
        self.reader = None
        if method == 0:
            self.z = zlib.decompressobj()
        elif _zstandard is not None:
            self.reader = _zstandard.ZstdDecompressor().stream_reader(_Raw(self))
        else:
            self.z = _zstd314.ZstdDecompressor()

    def next_input(self, n: int = 16384) -> bytes:
        chunk = self.data.read(self.fed, n)
        self.fed += len(chunk)
        return chunk

    def read(self, offset: int, n: int) -> bytes:
        want = min(offset + n, self.MAX)
        while len(self.buf) < want and not self.done:
            room = want - len(self.buf)
            if self.reader is not None:
                got = self.reader.read(room)
                self.done = not got
                self.buf += got
                continue
            if self.method == 0:
                chunk = self.z.unconsumed_tail or self.next_input()
            else:
                chunk = self.next_input() if self.z.needs_input else b""
            if not chunk and (self.method == 0 or self.z.needs_input):
                self.done = True
                break
            self.buf += self.z.decompress(chunk, room)
            self.done = self.z.eof
        return self.buf[offset:offset + n] if offset >= 0 else b""


class _Raw:
    """The compressed bytes as a file object (what zstandard's stream reader wants)."""

    def __init__(self, prefix: _Prefix) -> None:
        self.prefix = prefix

    def read(self, n: int = -1) -> bytes:
        return self.prefix.next_input(16384 if n is None or n < 0 else min(n, 1 << 20))


def _offload_binary(src: Source, label: str) -> tuple[Blob, int]:
    _magic, version, size, entry_off, entry_size = struct.unpack(
        "<4sIQQQ", exact(src, 0, 32, "offload binary header"))
    if not 32 <= size <= src.size:
        raise Malformed(f"offload binary size {size} does not fit ({src.size} bytes left)")
    if version == 0 or version > 8:
        raise Malformed(f"unknown offload binary version {version}")
    body = Window(src, 0, size)
    count = 1 if version == 1 else entry_size // 40
    if count > 1024:
        raise Malformed(f"offload binary claims {count} entries")
    targets = []
    for i in range(count):
        (_image, _kind, _flags, str_off, nstr, _img_off, _img_size) = struct.unpack(
            "<HHIQQQQ", exact(body, entry_off + 40 * i, 40, "offload binary entry"))
        if nstr > 1024:
            raise Malformed(f"offload binary entry claims {nstr} strings")
        strings = {}
        for j in range(nstr):
            key, value = struct.unpack("<QQ", exact(body, str_off + 16 * j, 16,
                                                    "offload binary string entry"))
            strings[elf.cstring(body, key)] = elf.cstring(body, value)
        triple, arch = strings.get("triple", ""), strings.get("arch", "")
        if not arch:
            raise Malformed("offload binary entry has no arch")
        targets.append(arch if triple.startswith("amdgcn") or not triple
                       else f"{triple.split('-')[0]}:{arch}")
    return Blob("offload binary", label, tuple(targets), detail=f"version {version}"), size


# A processor or generic target name, e.g. a per-arch folder of code objects in a wheel.
ARCH_RE = re.compile(r"^gfx(?:[0-9]+(?:-[0-9]+)*-generic|[0-9a-f]+)$", re.IGNORECASE)


# EF_AMDGPU_MACH values (LLVM AMDGPUUsage, "AMDGPU EF_AMDGPU_MACH Values").
MACH = {
    0x020: "gfx600", 0x021: "gfx601", 0x022: "gfx700", 0x023: "gfx701", 0x024: "gfx702",
    0x025: "gfx703", 0x026: "gfx704", 0x028: "gfx801", 0x029: "gfx802", 0x02a: "gfx803",
    0x02b: "gfx810", 0x02c: "gfx900", 0x02d: "gfx902", 0x02e: "gfx904", 0x02f: "gfx906",
    0x030: "gfx908", 0x031: "gfx909", 0x032: "gfx90c", 0x033: "gfx1010", 0x034: "gfx1011",
    0x035: "gfx1012", 0x036: "gfx1030", 0x037: "gfx1031", 0x038: "gfx1032", 0x039: "gfx1033",
    0x03a: "gfx602", 0x03b: "gfx705", 0x03c: "gfx805", 0x03d: "gfx1035", 0x03e: "gfx1034",
    0x03f: "gfx90a", 0x040: "gfx940", 0x041: "gfx1100", 0x042: "gfx1013", 0x043: "gfx1150",
    0x044: "gfx1103", 0x045: "gfx1036", 0x046: "gfx1101", 0x047: "gfx1102", 0x048: "gfx1200",
    0x049: "gfx1250", 0x04a: "gfx1151", 0x04b: "gfx941", 0x04c: "gfx942", 0x04e: "gfx1201",
    0x04f: "gfx950", 0x050: "gfx1310", 0x051: "gfx9-generic", 0x052: "gfx10-1-generic",
    0x053: "gfx10-3-generic", 0x054: "gfx11-generic", 0x055: "gfx1152", 0x058: "gfx1153",
    0x059: "gfx12-generic", 0x05a: "gfx1251", 0x05b: "gfx12-5-generic", 0x05c: "gfx1172",
    0x05d: "gfx1170", 0x05e: "gfx1171", 0x05f: "gfx9-4-generic",
}


# Which processors a generic target runs on (AMDGPUUsage, "AMDGPU Generic Processors").
GENERIC = {
    "gfx9-generic": ("gfx900", "gfx902", "gfx904", "gfx906", "gfx909", "gfx90c"),
    "gfx9-4-generic": ("gfx940", "gfx941", "gfx942", "gfx950"),
    "gfx10-1-generic": ("gfx1010", "gfx1011", "gfx1012", "gfx1013"),
    "gfx10-3-generic": ("gfx1030", "gfx1031", "gfx1032", "gfx1033", "gfx1034", "gfx1035",
                        "gfx1036"),
    "gfx11-generic": ("gfx1100", "gfx1101", "gfx1102", "gfx1103", "gfx1150", "gfx1151",
                      "gfx1152", "gfx1153"),
    "gfx12-generic": ("gfx1200", "gfx1201"),
    "gfx12-5-generic": ("gfx1250", "gfx1251"),
}


_SRAMECC = {"gfx906", "gfx908", "gfx90a", "gfx940", "gfx941", "gfx942", "gfx950",
            "gfx9-4-generic"}


_XNACK = {"gfx801", "gfx810", "gfx900", "gfx902", "gfx904", "gfx906", "gfx908", "gfx909",
          "gfx90a", "gfx90c", "gfx940", "gfx941", "gfx942", "gfx950", "gfx1010", "gfx1011",
          "gfx1012", "gfx1013", "gfx9-generic", "gfx9-4-generic", "gfx10-1-generic"}


_V4_SETTING = {0: "", 1: "", 2: "-", 3: "+"}  # unsupported, any, off, on


def base_arch(target: str) -> str:
    """'gfx942' from 'gfx942:sramecc+:xnack-'."""
    return target.split(":", 1)[0].strip().lower()


def covers(target: str, arch: str) -> bool:
    """Whether code for ``target`` runs on processor ``arch`` (generic targets included)."""
    base, arch = base_arch(target), arch.lower()
    return base == arch or arch in GENERIC.get(base, ())


def runs_on(target: str) -> tuple[str, ...]:
    """The processors code for ``target`` runs on."""
    base = base_arch(target)
    return GENERIC.get(base, (base,))


def code_object_target(ident: bytes, flags: int) -> tuple[str, str]:
    """(target id, detail) of an AMDGPU code object from e_ident and e_flags.

    The target id is '' when it cannot be told; detail then says why.
    """
    osabi, abiversion = ident[7], ident[8]
    mach = flags & 0xFF
    name = MACH.get(mach)
    if name is None:
        return "", f"unknown EF_AMDGPU_MACH 0x{mach:03x}" if mach else "no EF_AMDGPU_MACH set"
    if osabi != 64:  # not ELFOSABI_AMDGPU_HSA (PAL, Mesa): no HSA code object versions
        return name, f"osabi {osabi}"
    version = abiversion + 2  # ELFABIVERSION_AMDGPU_HSA_V2 is 0
    features = ""
    if version == 2:
        features = ":xnack+" if flags & 0x01 else ""
    elif version == 3:
        if name in _SRAMECC:
            features += ":sramecc+" if flags & 0x200 else ":sramecc-"
        if name in _XNACK:
            features += ":xnack+" if flags & 0x100 else ":xnack-"
    else:
        sramecc, xnack = _V4_SETTING[(flags >> 10) & 3], _V4_SETTING[(flags >> 8) & 3]
        features = (f":sramecc{sramecc}" if sramecc else "") + (f":xnack{xnack}" if xnack
                                                                else "")
    detail = f"code object v{version}"
    if version >= 6 and name.endswith("-generic"):
        detail += f", generic version {flags >> 24}"
    return name + features, detail
