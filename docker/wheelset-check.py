#!/usr/bin/env python3
"""Runs inside Dockerfile.clean (standard library and pip only).

  before DIR        the set is exactly its manifest: only wheels, each with the
                    manifest's sha256, each a sound zip whose every member is
                    listed in its RECORD with the right hash, no member path
                    leaving the install folder, each installable by this Python
  requirements DIR  name==version of every runtime component's wheels

After the install, docker/record-check.py proves the result (toolchain policy,
`pip check`, imports, every file in a wheel's RECORD).

Each failure is one line starting with `wheelforge-error:` and exit code 1.
The manifest's shape is checked before anything uses it (one line per problem),
so a hostile manifest can neither crash this script nor smuggle a line into the
requirements pip installs from. The host imports this file too (wheelforge/
core/wheelset.py): the checks raise `Refused`, and only the command line turns that
into the `wheelforge-error:` line.
"""

import base64
import csv
import hashlib
import io
import json
import os
import re
import stat
import sys
import zipfile
from pathlib import Path

MAX_MANIFEST_BYTES = 16 << 20
# The wheel file name (binary distribution format): name-version[-build]-python-abi-platform.
# Applied with fullmatch: no spaces, newlines or path separators can pass.
WHEEL_RE = re.compile(r"(?P<dist>[A-Za-z0-9](?:[A-Za-z0-9._]{0,198}[A-Za-z0-9])?)"
                      r"-(?P<version>[A-Za-z0-9_.!+]{1,100})(?:-(?P<build>[0-9][A-Za-z0-9_.]{0,50}))?"
                      r"-(?P<tags>[A-Za-z0-9_.]{1,200}-[A-Za-z0-9_.]{1,200}-[A-Za-z0-9_.]{1,500})"
                      r"\.whl")
DIST_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,198}[A-Za-z0-9])?")
VERSION_RE = re.compile(r"[A-Za-z0-9_.!+-]{1,100}")
MODULE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}(?:\.[A-Za-z_][A-Za-z0-9_]{0,99}){0,20}")
SHA256_RE = re.compile(r"[0-9a-f]{64}")
CELL_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")  # it becomes an image tag
REPOSITORY_RE = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
                           r"(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*){0,10}")
RECORD_HASHES = ("sha256", "sha384", "sha512")


class Refused(Exception):
    """One line: what is wrong with the set, where, and what to do."""


def fail(message):
    raise Refused(" ".join(str(message).split("\n")))


def read_manifest(folder):
    path = folder / "manifest.json"
    where = f"{folder}/manifest.json"
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_MANIFEST_BYTES:
            fail(f"{where}: not a regular file of at most {MAX_MANIFEST_BYTES} bytes; "
                 f"pass a wheel set made by invoke wheels")
        data = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError) as exc:
        fail(f"{where}: unreadable ({type(exc).__name__}: {str(exc)[:200]}); pass a wheel set "
             f"made by invoke wheels")
    check_manifest(data, where)
    return data



def check_manifest(data, where="manifest.json"):
    """The parts of the manifest this script and pip rely on, strictly; one line per problem."""
    def bad(key, problem):
        fail(f"{where}: {key}: {problem}; rebuild the set with invoke wheels")

    def kind(value, types, key, what):
        if isinstance(value, bool) and bool not in types or not isinstance(value, types):
            bad(key, f"{_short(value)} is not {what}")
        return value

    kind(data, (dict,), "(top level)", "an object")
    for key, pattern in (("cell", CELL_RE), ("repository", REPOSITORY_RE)):
        if key in data and not (isinstance(data[key], str) and pattern.fullmatch(data[key])):
            bad(key, f"{_short(data[key])} is not a valid {key}")
    components = kind(data.get("components"), (dict,), "components", "an object")
    for name, comp in components.items():
        key = f"components.{name if DIST_RE.fullmatch(name) else _short(name)}"
        if not DIST_RE.fullmatch(name):
            bad(key, "the component name is not a name (letters, digits, . _ -)")
        kind(comp, (dict,), key, "an object")
        if "runtime" in comp:
            kind(comp["runtime"], (bool,), f"{key}.runtime", "true or false")
        for i, module in enumerate(kind(comp.get("imports", []), (list,), f"{key}.imports",
                                        "a list")):
            if not isinstance(module, str) or not MODULE_RE.fullmatch(module):
                bad(f"{key}.imports[{i}]", f"{_short(module)} is not a Python module name")
        wheels = kind(comp.get("wheels"), (list,), f"{key}.wheels", "a list")
        for i, wheel in enumerate(wheels):
            _check_entry(wheel, f"{key}.wheels[{i}]", bad, kind)
    deps = kind(data.get("runtime_deps", []), (list,), "runtime_deps", "a list")
    for i, wheel in enumerate(deps):
        _check_entry(wheel, f"runtime_deps[{i}]", bad, kind)
    files = [w["file"] for _, w in all_wheels(data)]
    for file in files:
        if files.count(file) > 1:
            bad("components", f"{file} is listed twice")


def _check_entry(wheel, key, bad, kind):
    kind(wheel, (dict,), key, "an object")
    file = kind(wheel.get("file"), (str,), f"{key}.file", "a wheel file name")
    parsed = parse_wheel_name(file)
    if parsed is None:
        bad(f"{key}.file", f"{_short(file)} is not a wheel file name "
                           f"(name-version-python-abi-platform.whl)")
    dist = kind(wheel.get("distribution"), (str,), f"{key}.distribution", "a name")
    version = kind(wheel.get("version"), (str,), f"{key}.version", "a version")
    if not DIST_RE.fullmatch(dist):
        bad(f"{key}.distribution", f"{_short(dist)} is not a distribution name")
    if not VERSION_RE.fullmatch(version):
        bad(f"{key}.version", f"{_short(version)} is not a version")
    if (norm(dist), norm(version)) != (norm(parsed[0]), norm(parsed[1])):
        bad(key, f"distribution {dist} {version} differs from its file {file}")
    sha = kind(wheel.get("sha256"), (str,), f"{key}.sha256", "64 hex digits")
    if not SHA256_RE.fullmatch(sha):
        bad(f"{key}.sha256", f"{_short(sha)} is not 64 lowercase hex digits")
    if "size" in wheel:
        kind(wheel["size"], (int,), f"{key}.size", "a whole number")


def _short(value):
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def parse_wheel_name(name):
    """(distribution, version) of a wheel file name, or None. Strict: see WHEEL_RE."""
    match = WHEEL_RE.fullmatch(name) if isinstance(name, str) else None
    if match is None:
        return None
    try:  # pip's own parser too, where this Python has it: it also checks the version
        from pip._vendor.packaging.utils import InvalidWheelFilename, parse_wheel_filename
    except ImportError:
        return match["dist"], match["version"]
    try:
        parse_wheel_filename(name)
    except (InvalidWheelFilename, ValueError):
        return None
    return match["dist"], match["version"]


def all_wheels(data):
    """(component, wheel entry) for every wheel of the set."""
    for name, comp in sorted(data["components"].items()):
        for wheel in comp["wheels"]:
            yield name, wheel
    for wheel in data.get("runtime_deps", []):
        yield "runtime dependency", wheel


def listed_wheels(data):
    """(component, wheel entry) for every wheel the runtime image installs."""
    for name, comp in sorted(data["components"].items()):
        if comp.get("runtime", True):
            for wheel in comp["wheels"]:
                yield name, wheel
    for wheel in data.get("runtime_deps", []):
        yield "runtime dependency", wheel


def norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def supported_tags():
    """Tags this interpreter accepts, as pip computes them (its vendored packaging)."""
    from pip._vendor.packaging.tags import sys_tags

    return {str(tag) for tag in sys_tags()}


def wheel_tags(filename):
    parts = filename[:-4].split("-")
    pys, abis, plats = parts[-3].split("."), parts[-2].split("."), parts[-1].split(".")
    return {f"{p}-{a}-{pl}" for p in pys for a in abis for pl in plats}


def check_files(folder, data):
    """The folder holds exactly the manifest's wheels, each a sound wheel with its sha256."""
    wanted = {w["file"]: (comp, w) for comp, w in all_wheels(data)}
    for path in sorted(folder.iterdir()):
        shown = _short(path.name)
        if path.name == "manifest.json":
            continue
        if not stat.S_ISREG(os.lstat(path).st_mode):
            fail(f"{shown}: not a regular file (a link, folder or device); a wheel set holds "
                 f"only wheels, rebuild it with invoke wheels")
        if not path.name.endswith(".whl"):
            fail(f"{shown}: not a wheel; an sdist or other file would need compiling "
                 f"or is unknown; remove it and rebuild the set with invoke wheels")
        if path.name not in wanted:
            fail(f"{shown}: not in manifest.json; remove it or rebuild the set")
    for filename, (comp, wheel) in sorted(wanted.items()):
        path = folder / filename
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            mode = 0
        if not stat.S_ISREG(mode):
            fail(f"{filename} ({comp}): listed in manifest.json but missing (or not a regular "
                 f"file); rebuild the set")
        digest = _file_sha256(path)
        if digest != wheel["sha256"]:
            fail(f"{filename} ({comp}): sha256 {digest[:16]}... is not the manifest's "
                 f"{wheel['sha256'][:16]}...; the set is corrupted, rebuild it")
        check_wheel(path, f"{filename} ({comp})")
    return wanted


def _file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def unsafe_member(name):
    """Why a member path could write outside the install folder, or None."""
    if not name or "\\" in name or any(ord(c) < 32 or c == "\x7f" for c in name):
        return "a backslash or control character in its path"
    if name.startswith("/") or re.match(r"[A-Za-z]:", name):
        return "an absolute path"
    if ".." in name.split("/"):
        return "a '..' part in its path"
    return None


def check_wheel(path, who):
    """Open the wheel: a sound zip, safe member paths, every member in RECORD with its hash."""
    dist, version = parse_wheel_name(path.name)
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            names = [i.filename for i in infos]
            for info in infos:
                why = unsafe_member(info.filename)
                if why:
                    fail(f"{who}: member {_short(info.filename)} has {why}; the wheel is unsafe,"
                         f" rebuild it")
                if stat.S_ISLNK(info.external_attr >> 16):
                    fail(f"{who}: member {_short(info.filename)} is a symbolic link; a wheel "
                         f"holds files only, rebuild it")
            if len(set(names)) != len(names):
                twice = next(n for n in names if names.count(n) > 1)
                fail(f"{who}: member {_short(twice)} appears twice; rebuild the wheel")
            record = _record_name(names, dist, version, who)
            rows = _record_rows(zf.read(record), who)
            for info in infos:
                if info.is_dir():
                    continue
                name = info.filename
                if name in (record, record + ".jws", record + ".p7s"):
                    rows.pop(name, None)
                    continue
                if name not in rows:
                    fail(f"{who}: member {_short(name)} is not listed in {record}; the wheel "
                         f"was changed after it was built, rebuild it")
                algo, expected = rows.pop(name)
                digest = hashlib.new(algo)
                with zf.open(info) as member:  # reading to the end checks the CRC
                    for block in iter(lambda m=member: m.read(1 << 20), b""):
                        digest.update(block)
                got = base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()
                if got != expected and name == record[:-len("RECORD")] + "WHEEL" \
                        and _retagged(zf.read(name), path.name):
                    print(f"note: {who}: {_short(name)} was edited after {record} was written "
                          f"(its tags were changed to the file name's); accepted: it holds only "
                          f"tags, and installers read the name", file=sys.stderr)
                    continue
                if got != expected:
                    fail(f"{who}: member {_short(name)} does not match its {algo} in {record}; "
                         f"the wheel is corrupted, rebuild it")
            if rows:
                fail(f"{who}: {record} lists {_short(next(iter(rows)))}, which the wheel does "
                     f"not hold; rebuild it")
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError,
            NotImplementedError, RuntimeError) as exc:
        fail(f"{who}: not a sound zip file ({type(exc).__name__}: {str(exc)[:120]}); the file "
             f"is truncated or corrupted, rebuild the set")


def _retagged(wheel_file, file_name):
    """True when a WHEEL file's Tag lines are exactly the tags of the wheel's file name: a
    retag by hand that left RECORD's hash of WHEEL stale (amd_mori 1.2.4 on PyPI ships so)."""
    pythons, abis, platforms = (part.split(".") for part in
                                WHEEL_RE.fullmatch(file_name)["tags"].split("-"))
    named = {f"{py}-{abi}-{plat}" for py in pythons for abi in abis for plat in platforms}
    text = wheel_file.decode("utf-8", "replace")
    tags = {line.split(":", 1)[1].strip() for line in text.splitlines()
            if line.startswith("Tag:")}
    return tags == named


def _record_name(names, dist, version, who):
    match = []
    for top in sorted({n.split("/", 1)[0] for n in names if "/" in n}):
        if not top.endswith(".dist-info"):
            continue
        name, _, ver = top[:-len(".dist-info")].rpartition("-")
        if (norm(name), norm(ver)) == (norm(dist), norm(version)):
            match.append(top)
    if len(match) != 1 or f"{match[0]}/RECORD" not in names:
        fail(f"{who}: no {dist}-{version}.dist-info/RECORD in the wheel; it is not a wheel of "
             f"{dist} {version}, rebuild it")
    return f"{match[0]}/RECORD"


def _record_rows(raw, who):
    """path -> (hash algorithm, urlsafe base64 digest) of a RECORD file."""
    rows = {}
    try:
        reader = csv.reader(io.StringIO(raw.decode("utf-8"), newline=""))
        for row in reader:
            if not row:
                continue
            if len(row) != 3:
                fail(f"{who}: RECORD line {reader.line_num} has {len(row)} fields, not 3; "
                     f"rebuild the wheel")
            name, hashed, _size = row
            algo, _, value = hashed.partition("=")
            if hashed and (algo not in RECORD_HASHES or not value):
                fail(f"{who}: RECORD line {reader.line_num}: hash {_short(hashed)} is not "
                     f"sha256=... (or sha384/sha512); rebuild the wheel")
            if name in rows:
                fail(f"{who}: RECORD lists {_short(name)} twice; rebuild the wheel")
            rows[name] = (algo, value) if hashed else None
    except (UnicodeDecodeError, csv.Error) as exc:
        fail(f"{who}: RECORD is unreadable ({exc}); rebuild the wheel")
    for name, entry in rows.items():
        if entry is None and not name.endswith(("/RECORD", "/RECORD.jws", "/RECORD.p7s")):
            fail(f"{who}: RECORD lists {_short(name)} without a hash; rebuild the wheel")
    return rows


def before(folder):
    data = read_manifest(folder)
    check_files(folder, data)
    tags = supported_tags()
    installs = {w["file"]: comp for comp, w in listed_wheels(data)}
    for filename, comp in sorted(installs.items()):
        if not wheel_tags(filename) & tags:
            fail(f"{filename} ({comp}): built for {'-'.join(filename[:-4].split('-')[-3:])}, "
                 f"which Python {sys.version_info[0]}.{sys.version_info[1]} here cannot install;"
                 f" build the set for this image's Python")
    print(f"wheel set: {len(installs)} wheels match manifest.json, each opened and checked "
          f"against its RECORD", flush=True)


def requirements(folder):
    data = read_manifest(folder)
    pins = sorted({f"{w['distribution']}=={w['version']}" for comp, w in listed_wheels(data)
                   if comp != "runtime dependency"})
    print("\n".join(pins))


def main(argv):
    actions = {"before": before, "requirements": requirements}
    if len(argv) != 3 or argv[1] not in actions:
        sys.exit("usage: wheelset-check.py before|requirements DIR")
    try:
        actions[argv[1]](Path(argv[2]))
    except Refused as exc:
        print(f"wheelforge-error: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)


if __name__ == "__main__":
    main(sys.argv)
