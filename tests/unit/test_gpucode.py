"""gpucode reads GPU targets from binaries built here byte by byte: code objects, bundles
(plain and compressed) in ELF sections and ar archives, offload binaries."""

from __future__ import annotations

import hashlib
import io
import struct
import zipfile
import zlib
from pathlib import Path

import pytest

from wheelforge.audit import elf, gpu, gpucode

try:
    import zstandard
except ImportError:  # pragma: no cover
    zstandard = None

HIP = "hipv4-amdgcn-amd-amdhsa--"
HOST = "host-x86_64-unknown-linux-gnu-"


# --- sample builders (also used by the fuzz test) ---------------------------------------

def code_object(flags: int, *, abiversion: int = 3, osabi: int = 64) -> bytes:
    """A minimal AMDGPU ELF64 header (no sections) with the given e_flags."""
    ident = b"\x7fELF" + bytes([2, 1, 1, osabi, abiversion]) + bytes(7)
    return ident + struct.pack("<HHIQQQIHHHHHH", 3, gpucode.EM_AMDGPU, 1, 0, 0, 0, flags,
                               64, 56, 0, 64, 0, 0)


def bundle(ids: list[str], align: int = 64) -> bytes:
    """An uncompressed offload bundle; each entry's payload is a code object for its id."""
    header = len(gpucode.BUNDLE_MAGIC) + 8 + sum(24 + len(i) for i in ids)
    pos, payloads, entries = -(-header // align) * align, [], b""
    for entry in ids:
        data = b"" if entry.startswith("host") else code_object(0x54C)
        entries += struct.pack("<QQQ", pos, len(data), len(entry)) + entry.encode()
        payloads.append((pos, data))
        pos = -(-(pos + len(data)) // align) * align
    out = bytearray(gpucode.BUNDLE_MAGIC + struct.pack("<Q", len(ids)) + entries)
    for offset, data in payloads:
        out += bytes(offset - len(out)) + data
    return bytes(out)


def ccob(plain: bytes, *, version: int = 3, method: int = 0) -> bytes:
    """A compressed bundle (header version 1, 2 or 3; method 0 zlib, 1 zstd)."""
    data = zlib.compress(plain) if method == 0 else zstandard.ZstdCompressor().compress(plain)
    digest = int.from_bytes(hashlib.md5(plain).digest()[:8], "little")
    size = {1: 20, 2: 24, 3: 32}[version] + len(data)
    common = b"CCOB" + struct.pack("<HH", version, method)
    fields = {1: struct.pack("<IQ", len(plain), digest),
              2: struct.pack("<IIQ", size, len(plain), digest),
              3: struct.pack("<QQQ", size, len(plain), digest)}[version]
    return common + fields + data


def offload_binary(triple: str, arch: str, image: bytes = b"IMAGE") -> bytes:
    """An offload binary (version 1): header, one entry, a string table, the image."""
    strings = b"triple\0" + triple.encode() + b"\0arch\0" + arch.encode() + b"\0"
    entry_off, str_off = 32, 32 + 40
    table_off = str_off + 32
    image_off = table_off + len(strings)
    size = -(-(image_off + len(image)) // 8) * 8
    keys = [0, 7, 8 + len(triple), 13 + len(triple)]
    table = struct.pack("<QQQQ", *(table_off + k for k in keys))
    entry = struct.pack("<HHIQQQQ", 1, 3, 0, str_off, 2, image_off, len(image))
    out = gpucode.OFFLOAD_MAGIC + struct.pack("<IQQQ", 1, size, entry_off, 40) + entry + table
    out += strings + image
    return out + bytes(size - len(out))


def host_elf(sections: list[tuple[str, bytes]]) -> bytes:
    """An x86-64 ELF64 object with the given sections (plus .text and .shstrtab)."""
    sections = [(".text", b"\x90" * 16 + gpucode.BUNDLE_MAGIC + b"CCOB"), *sections]
    names = b"\0" + b"".join(n.encode() + b"\0" for n, _ in sections) + b".shstrtab\0"
    body, placed = bytearray(bytes(64)), []
    for name, data in [*sections, (".shstrtab", names)]:
        body += bytes(-len(body) % 4096 if name == ".hip_fatbin" else -len(body) % 8)
        placed.append((names.index(name.encode() + b"\0"), len(body), len(data)))
        body += data
    body += bytes(-len(body) % 8)
    shoff = len(body)
    body += bytes(64)  # the null section
    for name_off, offset, size in placed:
        body += struct.pack("<IIQQQQIIQQ", name_off, 1, 2, 0, offset, size, 0, 0, 1, 0)
    ident = b"\x7fELF" + bytes([2, 1, 1, 0, 0]) + bytes(7)
    body[:64] = ident + struct.pack("<HHIQQQIHHHHHH", 1, 62, 1, 0, 0, shoff, 0, 64, 0, 0, 64,
                                    len(placed) + 1, len(placed))
    return bytes(body)


def archive(members: list[tuple[str, bytes]]) -> bytes:
    """A GNU ar archive; names longer than 15 characters go to the '//' table."""
    longnames, out, entries = b"", bytearray(b"!<arch>\n"), []
    for name, data in members:
        if len(name) > 15:
            entries.append((f"/{len(longnames)}", data))
            longnames += name.encode() + b"/\n"
        else:
            entries.append((name + "/", data))
    if longnames:
        entries.insert(0, ("//", longnames))
    for name, data in entries:
        out += f"{name:<16}{0:<12}{0:<6}{0:<6}{644:<8}{len(data):<10}`\n".encode() + data
        out += b"\n" if len(data) % 2 else b""
    return bytes(out)


def fatbin(*bundles: bytes) -> bytes:
    """Bundles back to back, each aligned to 4096 bytes (as one .hip_fatbin holds them)."""
    out = b""
    for one in bundles:
        out += bytes(-len(out) % 4096) + one
    return out


def samples() -> dict[str, bytes]:
    both = bundle([HOST, HIP + "gfx942:sramecc+:xnack-", HIP + "gfx950"])
    only942 = bundle([HOST, HIP + "gfx942"])
    out = {
        "code_object": code_object(0x54C),
        "bundle": both,
        "elf_fatbin": host_elf([(".hip_fatbin", fatbin(both, only942, ccob(both)))]),
        "ccob_v1": ccob(both, version=1), "ccob_v2": ccob(both, version=2),
        "archive": archive([("kernels_with_a_long_name.o", host_elf([(".hip_fatbin", both)])),
                            ("plain.o", host_elf([]))]),
        "offload": host_elf([(".llvm.offloading", offload_binary("amdgcn-amd-amdhsa",
                                                                 "gfx950"))]),
    }
    if zstandard is not None:
        out["ccob_zstd"] = ccob(both, method=1)
    return out


def scan(data: bytes) -> list[gpucode.Blob]:
    return gpucode.scan(gpucode.FileSource(io.BytesIO(data), len(data)))


# --- code objects -------------------------------------------------------------------------

@pytest.mark.parametrize(("flags", "abiversion", "target", "detail"), [
    (0x04C, 3, "gfx942", "code object v5"),                     # v5, xnack/sramecc unsupported
    (0x54C, 3, "gfx942", "code object v5"),                     # any/any: no suffix
    (0xB4F, 2, "gfx950:sramecc-:xnack+", "code object v4"),     # sramecc off, xnack on
    (0xE4C, 4, "gfx942:sramecc+:xnack-", "code object v6"),     # sramecc on, xnack off
    (0x14C, 1, "gfx942:sramecc-:xnack+", "code object v3"),     # v3: xnack bit only
    (0x24F, 1, "gfx950:sramecc+:xnack-", "code object v3"),     # v3: sramecc bit only
    (0x03F, 1, "gfx90a:sramecc-:xnack-", "code object v3"),
    (0x02F | 0x01, 0, "gfx906:xnack+", "code object v2"),       # v2: XNACK_V2 = 0x01
    (0x0100025F, 4, "gfx9-4-generic:xnack-", "code object v6, generic version 1"),
    (0x0200005F, 4, "gfx9-4-generic", "code object v6, generic version 2"),
])
def test_code_object_targets(flags: int, abiversion: int, target: str, detail: str) -> None:
    [blob] = scan(code_object(flags, abiversion=abiversion))
    assert (blob.kind, blob.targets, blob.detail, blob.problem) == (
        "code object", (target,), detail, "")


def test_unknown_mach_is_a_problem_not_a_guess() -> None:
    [blob] = scan(code_object(0x04D))
    assert blob.targets == () and blob.problem == "unknown EF_AMDGPU_MACH 0x04d"


def test_generic_targets_cover_their_processors() -> None:
    assert gpucode.covers("gfx9-4-generic:xnack-", "gfx942")
    assert gpucode.covers("gfx9-4-generic", "gfx950")
    assert not gpucode.covers("gfx9-4-generic", "gfx90a")
    assert gpucode.covers("gfx942:sramecc+:xnack-", "gfx942")
    assert not gpucode.covers("gfx942", "gfx950")


# --- bundles ------------------------------------------------------------------------------

def test_uncompressed_bundle_file() -> None:
    [blob] = scan(samples()["bundle"])
    assert blob.kind == "bundle"
    assert blob.targets == ("gfx942:sramecc+:xnack-", "gfx950")


@pytest.mark.parametrize("version", [1, 2, 3])
def test_compressed_bundle_zlib(version: int) -> None:
    [blob] = scan(ccob(samples()["bundle"], version=version))
    assert blob.kind == "compressed bundle (zlib)" and blob.detail == f"CCOB v{version}"
    assert blob.targets == ("gfx942:sramecc+:xnack-", "gfx950")


@pytest.mark.skipif(zstandard is None, reason="zstandard not installed")
@pytest.mark.parametrize("version", [2, 3])
def test_compressed_bundle_zstd(version: int) -> None:
    [blob] = scan(ccob(samples()["bundle"], version=version, method=1))
    assert blob.kind == "compressed bundle (zstd)" and blob.problem == ""
    assert blob.targets == ("gfx942:sramecc+:xnack-", "gfx950")


@pytest.mark.skipif(zstandard is None, reason="zstandard not installed")
def test_zstd_without_a_decompressor_is_reported_not_guessed(monkeypatch) -> None:
    monkeypatch.setattr(gpucode, "_zstandard", None)
    monkeypatch.setattr(gpucode, "_zstd314", None)
    [blob] = scan(ccob(samples()["bundle"], method=1))
    assert blob.targets == () and blob.problem == "compressed (zstd): not readable here"


def test_only_the_header_of_a_large_compressed_bundle_is_decompressed() -> None:
    plain = bundle([HIP + "gfx942"]) + bytes(64 << 20)  # 64 MiB of code after the header
    data = ccob(plain)
    prefix = gpucode._Prefix(elf.Window(gpucode.FileSource(io.BytesIO(data), len(data)),
                                        32, len(data) - 32), 0)
    ids, _ = gpucode.bundle_ids(prefix)
    assert ids == [HIP + "gfx942"]
    assert len(prefix.buf) < 1 << 20


def test_each_bundle_of_a_section_is_judged_on_its_own() -> None:
    blobs = scan(samples()["elf_fatbin"])
    assert [(b.where, b.kind, b.targets) for b in blobs] == [
        ("bundle 1", "bundle", ("gfx942:sramecc+:xnack-", "gfx950")),
        ("bundle 2", "bundle", ("gfx942",)),
        ("bundle 3", "compressed bundle (zlib)", ("gfx942:sramecc+:xnack-", "gfx950")),
    ]


def test_magic_strings_outside_hip_fatbin_are_not_bundles() -> None:
    # .text of every sample host ELF carries both magics as plain bytes
    assert scan(host_elf([(".rodata", b"__CLANG_OFFLOAD_BUNDLE__" + bytes(64))])) == []


def test_bundles_in_archive_members() -> None:
    blobs = scan(samples()["archive"])
    assert [(b.where, b.targets) for b in blobs] == [
        ("kernels_with_a_long_name.o: bundle 1", ("gfx942:sramecc+:xnack-", "gfx950"))]


def test_offload_binary_in_llvm_offloading_section() -> None:
    [blob] = scan(samples()["offload"])
    assert (blob.kind, blob.targets) == ("offload binary", ("gfx950",))


def test_malformed_bundle_is_unreadable_and_the_next_one_still_read() -> None:
    bad = gpucode.BUNDLE_MAGIC + struct.pack("<Q", 10**9)
    blobs = scan(host_elf([(".hip_fatbin", fatbin(bad, samples()["bundle"]))]))
    assert blobs[0].problem == "unreadable: bundle claims 1000000000 entries"
    assert blobs[-1].targets == ("gfx942:sramecc+:xnack-", "gfx950")


def test_stream_source_reads_like_a_file() -> None:
    data = bytes(range(256)) * 40000  # 10 MB
    opened = []

    def opener():
        opened.append(1)
        return io.BytesIO(data)

    src = gpucode.StreamSource(opener, len(data), tail=1 << 20)
    for offset, n in [(0, 64), (9_000_000, 100), (8_500_000, 1000), (100, 5), (len(data) - 3, 9)]:
        assert src.read(offset, n) == data[offset:offset + n]
    assert len(opened) == 2  # only the jump back to offset 100 reopened the stream


# --- the audit over a wheel ---------------------------------------------------------------

def make_wheel(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_audit_finds_the_bundle_missing_an_arch_and_counts_the_partial_kernel(
        tmp_path: Path) -> None:
    s = samples()
    wheel = make_wheel(tmp_path / "demo-1.0-py3-none-any.whl", {
        "demo/lib.so": s["elf_fatbin"],
        "demo/hsa/gfx942/k.co": code_object(0x54C), "demo/hsa/gfx950/k.co": code_object(0x54F),
        "demo/hsa/gfx942/only.co": code_object(0x54C),
        "demo/generic.co": code_object(0x0100055F, abiversion=4),
        "demo/__init__.py": b"# __CLANG_OFFLOAD_BUNDLE__\n",
    })
    result = gpu.audit_paths([wheel], ("gfx942", "gfx950"))
    # demo/hsa has kernels for both archs: the gfx942-only kernel is counted, not failed
    assert result.findings == [
        "demo-1.0-py3-none-any.whl: demo/lib.so: bundle 2: missing gfx950"]
    targets = result.manifest_targets()["demo-1.0-py3-none-any.whl"]
    assert (targets["partial_kernels"], targets["kernels_without"]) == (
        1, {"gfx942": 0, "gfx950": 1})
    assert (targets["files"], targets["bundles"], targets["kernels"]) == (5, 3, 3)
    assert targets["archs"]["gfx950"] == {"bundles": 2, "kernels": 2}
    assert targets["archs"]["gfx942"] == {"bundles": 3, "kernels": 3}
    assert gpu.main([str(wheel), "--archs", "gfx942,gfx950"]) == 1
    assert gpu.main([str(wheel), "--archs", "gfx942"]) == 0


def test_kernel_in_the_wrong_arch_folder_is_a_finding(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path / "w-1-py3-none-any.whl",
                       {"hsa/gfx942/k.co": code_object(0x54F)})
    assert gpu.audit_paths([wheel]).findings == [
        "w-1-py3-none-any.whl: hsa/gfx942/k.co is in folder gfx942 but holds gfx950"]


def test_wheel_set_is_judged_against_its_manifest_archs(tmp_path: Path, capsys) -> None:
    cell = tmp_path / "stable-rocm7.2-py3.12-gfx942-gfx950-ckfree"
    cell.mkdir()
    (cell / "manifest.json").write_text('{"archs": ["gfx942", "gfx950"], "components": {}}')
    make_wheel(cell / "a-1-py3-none-any.whl", {"a/k.co": code_object(0x54C)})
    assert gpu.main([str(cell)]) == 1
    out = capsys.readouterr().out
    assert (f"{cell.name}/a-1-py3-none-any.whl: no code for gfx950 (its GPU code is for "
            "gfx942 only)") in out
    assert "gfx950 b/k" in out


def test_missing_path_is_one_line_error(tmp_path: Path, capsys) -> None:
    assert gpu.main([str(tmp_path / "nope.whl")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such file or folder" in err
