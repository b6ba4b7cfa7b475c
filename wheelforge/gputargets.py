"""AMD GPU target names: the processor an ELF code object is for, and where code runs.

A target id is a processor name with feature settings (``gfx942:sramecc+:xnack-``);
a generic target (``gfx9-4-generic``) runs on every processor of its family.
"""

from __future__ import annotations

import re

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
