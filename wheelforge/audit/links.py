"""Link audit: would every ELF file of a wheel set load in the runtime image? (``ldd -r``
done by reading files: nothing of the set, nor of the image, is run).

What is read: the set is seen as installed: all its wheels unpacked into one venv,
/opt/venv/lib/pythonX.Y/site-packages (X.Y: the image's python3), ``*.data/scripts`` in
/opt/venv/bin, ``*.data/data`` in /opt/venv. The image is a root folder (core/rootfs.py
makes one from a local image). ``Fs`` is that root with the set laid over it (installed
path -> extracted file), symlinks followed inside the root; ``Linker`` finds libraries in
it the way glibc's loader does, from ld.so.conf, RPATH/RUNPATH and the default folders,
and loads closures.

Rules: for each x86-64 executable and shared object of the set, like glibc's loader:

- every DT_NEEDED is found, breadth first over the whole closure: a name already loaded
  (by SONAME or by the name it was needed as) is not searched again; else DT_RPATH (only
  of objects without DT_RUNPATH: the object's, then its loaders' up to the executable),
  DT_RUNPATH (the object's own), the ld.so.conf folders (``include`` globs followed), then
  /lib/x86_64-linux-gnu, /usr/lib/x86_64-linux-gnu, /lib64, /usr/lib64, /lib, /usr/lib.
  ``$ORIGIN`` is the INSTALLED folder of the object; a candidate that is no x86-64 ELF
  (a linker script named libc.so) is passed over, as ld.so does;
- every version the object requires (verneed, weak ones aside) is defined by the library
  found for that file name;
- every undefined non-weak dynamic symbol is defined by an object of the closure (version
  rules of glibc's check_match). An extension module (it exports ``PyInit_*``) and a set
  library that extension modules load are checked in a python process: the image's
  interpreter (its libpython, if any, follows as its DT_NEEDED) is loaded first. When a
  library of the closure is missing, its symbols are not judged (counted as unchecked).
  A wheel whose tags are not for the image's Python (pip will refuse it) is noted, and the
  interpreter's symbols it uses are not judged.

Why not auditwheel's lddtree: it resolves files on one disk tree (the set would have to be
unpacked under the image's root), follows DT_NEEDED only (no verneed, no symbols), does not
pass over a linker script or another machine's file, nor match loaded SONAMEs, and would
bring auditwheel into runtime images, which have no network; the search order is ~40 lines.
ELF files are read with pyelftools (audit/elf.py: section, dynamic, verneed/verdef tables);
the symbol tables are decoded with struct in one pass, which keeps large libraries fast.

Where it runs: ``python3 -m wheelforge.audit.links --root DIR WHEEL_OR_SET... [--json]``
(exit 1 on findings; also `invoke audit --links`). `invoke wheels` runs ``gate`` on every
staged set against the root of the cell's runtime image. That root lacks the cell's runtime
apt packages, so while the cell has any, a missing library is a note there (unless the set
ships that library itself); Dockerfile.clean runs the CLI with ``--root /`` after those
packages are in, before it installs the set. A set that passed ``gate`` against an image's
extracted root is kept in .cache/link-audit by the sha256 of each of its wheels, the image
ID, leniency and the source of links.py and elf.py, so a no-op rebuild audits nothing
again; a finding is never kept.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import os
import posixpath
import re
import shutil
import sys
import tempfile
import zipfile
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from wheelforge.audit import gpu
from wheelforge.audit.elf import MAGIC, Elf, defined, matches, read_elf
from wheelforge.core.settings import LINK_AUDIT_CACHE
from wheelforge.core.terminal import UserError, render

DEFAULT_DIRS = ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64",
                "/lib", "/usr/lib")


GONE = None  # a name searched for and not found


class Fs:
    def __init__(self, root: Path | str, overlay: dict[str, str]) -> None:
        self.root, self.overlay = str(root), overlay

    def resolve(self, vpath: str, *, folder: bool = False) -> str | None:
        """The path of ``vpath`` after the root's symlinks (kept inside the root), or None."""
        vpath = posixpath.normpath(vpath)
        if vpath in self.overlay:
            return None if folder else vpath
        parts, done, hops = [p for p in vpath.split("/") if p], [], 0
        while parts:
            part = parts.pop(0)
            if part in (".", ".."):
                if part == ".." and done:
                    done.pop()
                continue
            disk = os.path.join(self.root, *done, part)
            if os.path.islink(disk):
                hops += 1
                target = os.readlink(disk)
                if hops > 40:
                    return None
                done = [] if target.startswith("/") else done
                parts = [p for p in target.split("/") if p] + parts
            else:
                done.append(part)
        found = "/" + "/".join(done)
        disk = os.path.join(self.root, *done)
        ok = os.path.isdir(disk) if folder else os.path.isfile(disk)
        return found if ok else None

    def disk(self, vpath: str) -> str:
        return self.overlay.get(vpath) or os.path.join(self.root, vpath.lstrip("/"))

    def glob(self, pattern: str) -> list[str]:
        folder, base = posixpath.split(pattern)
        real = self.resolve(folder, folder=True)
        if real is None:
            return []
        return sorted(posixpath.join(folder, n) for n in os.listdir(self.disk(real))
                      if fnmatch.fnmatchcase(n, base))

    def conf_dirs(self, vpath: str = "/etc/ld.so.conf", depth: int = 0) -> list[str]:
        """The folders of ld.so.conf, in order, ``include`` lines followed."""
        real = self.resolve(vpath)
        if real is None or depth > 8:
            return []
        out: list[str] = []
        with open(self.disk(real), errors="replace") as f:
            for line in f:
                words = line.split("#", 1)[0].split()
                if not words or words[0] == "hwcap":
                    continue
                if words[0] == "include":
                    for pat in words[1:]:
                        pat = pat if pat.startswith("/") else posixpath.join(
                            posixpath.dirname(vpath), pat)
                        for conf in self.glob(pat):
                            out += self.conf_dirs(conf, depth + 1)
                    continue
                out += [posixpath.normpath(d.split("=")[0]) for w in words
                        for d in re.split(r"[:,]", w) if d.startswith("/")]
        return list(dict.fromkeys(out))


def expand(entries: Iterable[str], origin: str) -> list[str]:
    out = []
    for entry in entries:
        entry = re.sub(r"\$(ORIGIN\b|\{ORIGIN\})", origin, entry)
        entry = re.sub(r"\$(LIB\b|\{LIB\})", "lib/x86_64-linux-gnu", entry)
        entry = re.sub(r"\$(PLATFORM\b|\{PLATFORM\})", "x86_64", entry)
        if entry.startswith("/"):  # relative entries are relative to the cwd: not judged
            out.append(posixpath.normpath(entry))
    return out


@dataclass
class Loaded:
    path: str
    elf: Elf
    inherit: list[str]  # DT_RPATH folders it and its loaders give what it loads


class Linker:
    def __init__(self, fs: Fs) -> None:
        self.fs, self.conf = fs, fs.conf_dirs()
        self.elves: dict[str, Elf | None] = {}
        self.defs: dict[str, dict[str, set[str]]] = {}
        self.wanted: set[bytes] = set()
        self.found: dict[tuple, tuple[str | None, str]] = {}

    def elf(self, path: str) -> Elf | None:
        if path not in self.elves:
            self.elves[path] = read_elf(self.fs.disk(path))
        return self.elves[path]

    def symbols(self, loaded: Loaded) -> dict[str, set[str]]:
        if loaded.path not in self.defs:
            self.defs[loaded.path] = defined(loaded.elf, self.wanted)
        return self.defs[loaded.path]

    def search(self, name: str, loader: Loaded) -> tuple[str | None, str]:
        """(installed path or None, where it was looked for)."""
        if "/" in name:
            path = self.fs.resolve(name) if name.startswith("/") else None
            return (path if path and self.elf(path) else None), "as a path"
        origin = posixpath.dirname(loader.path)
        steps = [("RPATH", [] if loader.elf.runpath else loader.inherit),
                 ("RUNPATH", expand(loader.elf.runpath, origin)),
                 ("ld.so.conf", self.conf), ("default dirs", list(DEFAULT_DIRS))]
        key = (name, *(tuple(d) for _, d in steps[:2]))
        if key not in self.found:
            hit = next((p for _, dirs in steps for d in dirs
                        if (p := self.fs.resolve(posixpath.join(d, name))) and self.elf(p)), None)
            where = ", ".join(f"{label} {':'.join(dirs)}" if label in ("RPATH", "RUNPATH")
                              else f"{label} ({len(dirs)})" for label, dirs in steps if dirs)
            self.found[key] = (hit, where)
        return self.found[key]

    def closure(self, path: str, python: str | None) -> tuple[list[Loaded], dict, list]:
        """Load ``path`` (after the interpreter): (loaded objects, name -> Loaded or GONE,
        [(loader, name, where)] for names not found)."""
        order: list[Loaded] = []
        names: dict[str, Loaded | None] = {}
        missing: list[tuple[Loaded, str, str]] = []
        queue: deque[Loaded] = deque()

        def load(where: str, elf: Elf, loader: Loaded | None, via: str) -> Loaded:
            own = [] if elf.runpath else expand(elf.rpath, posixpath.dirname(where))
            done = Loaded(where, elf, own + (loader.inherit if loader else []))
            order.append(done)
            queue.append(done)
            for n in (via, elf.soname):
                if n:
                    names.setdefault(n, done)
            return done

        main = load(python, self.elf(python), None, "") if python else None
        load(path, self.elf(path), main, "")
        while queue:
            loader = queue.popleft()
            for name in loader.elf.needed:
                if name in names:
                    continue
                hit, where = self.search(name, loader)
                if hit:
                    load(hit, self.elf(hit), loader, name)
                else:
                    names[name] = GONE
                    missing.append((loader, name, where))
        return order, names, missing


VENV = "/opt/venv"


PYTHONS = ("/usr/local/bin/python3", "/usr/bin/python3")


@dataclass(frozen=True)
class Finding:
    wheel: str
    member: str
    kind: str  # "library", "version" or "symbol"
    what: str
    where: str

    def line(self) -> str:
        label = {"library": "missing library", "version": "missing version",
                 "symbol": "undefined symbol"}[self.kind]
        return f"{self.wheel}: {self.member}: {label} {self.what} ({self.where})"


@dataclass
class WheelLinks:
    name: str
    elf_files: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    unchecked: int = 0  # undefined symbols not judged: a library of the closure is missing

    def count(self, kind: str) -> int:
        return sum(f.kind == kind for f in self.findings)


@dataclass
class Result:
    wheels: list[WheelLinks]
    root: str
    notes: list[str] = field(default_factory=list)

    @property
    def findings(self) -> list[str]:
        return [f.line() for w in self.wheels for f in w.findings]

    @property
    def ok(self) -> bool:
        return not self.findings

    def manifest(self) -> dict:
        return {w.name: {"elf_files": len(w.elf_files), "findings": [f.line() for f in
                                                                     w.findings]}
                for w in self.wheels}

    def to_json(self) -> dict:
        return {"ok": self.ok, "root": self.root, "findings": self.findings, "notes": self.notes,
                "wheels": {w.name: {"elf_files": w.elf_files, "unchecked_symbols": w.unchecked,
                                    "findings": [vars(f) for f in w.findings]}
                           for w in self.wheels}}

    def table(self) -> str:
        return render(["wheel", "ELF files", "missing libraries", "missing versions",
                       "undefined symbols"],
                      [[w.name, len(w.elf_files), w.count("library"), w.count("version"),
                        f"{w.count('symbol')}" + (f" (+{w.unchecked} unchecked)" if w.unchecked
                                                  else "")] for w in self.wheels])


def site_packages(fs: Fs) -> tuple[str | None, str]:
    """(the image's python interpreter, the venv's site-packages)."""
    for cand in PYTHONS:
        real = fs.resolve(cand)
        m = re.search(r"python(\d\.\d+)$", real or "")
        if real and m:
            return real, f"{VENV}/lib/python{m.group(1)}/site-packages"
    return None, f"{VENV}/lib/python3/site-packages"


def wheel_tags(zf: zipfile.ZipFile) -> list[str]:
    """The `Tag:` lines of the wheel's own WHEEL file (py3-none-any, cp312-cp312-linux...)."""
    meta = next((n for n in zf.namelist() if n.count("/") == 1
                 and n.endswith(".dist-info/WHEEL")), None)
    if meta is None:
        return []
    text = zf.read(meta).decode("utf-8", "replace")
    return [line.split(":", 1)[1].strip() for line in text.splitlines()
            if line.startswith("Tag:")]


def for_interpreter(tags: list[str], version: str) -> bool:
    """Whether a wheel with these tags can be installed by CPython `version` (3.14): a tag
    for any Python, for that CPython, or a stable-ABI (abi3) tag of that CPython or older."""
    want = int(version.split(".")[1]) if version.count(".") == 1 else -1
    for tag in tags or ["py3-none-any"]:
        interp, abi = (tag.split("-") + ["", ""])[:2]
        for one in interp.split("."):
            if one.startswith("py") or abi == "none":
                return True
            minor = int(one[3:]) if one.startswith("cp3") and one[3:].isdigit() else None
            if minor is not None and (minor == want or (abi == "abi3" and minor <= want)):
                return True
    return False


def installed(member: str, site: str) -> str | None:
    parts = member.split("/")
    if parts[0].endswith(".data") and len(parts) > 2:
        base = {"purelib": site, "platlib": site, "scripts": f"{VENV}/bin", "data": VENV,
                "headers": f"{VENV}/include/site/{parts[0][:-5]}"}.get(parts[1])
        return posixpath.join(base, *parts[2:]) if base else None
    return posixpath.normpath(posixpath.join(site, member))


def audit(wheels: Sequence[Path], root: Path | str, *, lenient: bool = False) -> Result:
    """Audit the wheels, installed together, against ``root``. ``lenient``: missing libraries
    are notes, not findings (the root lacks packages that will be installed), except those
    that are the set's own (``own_library``): no system package is to provide them."""
    fs = Fs(root, {})
    python, site = site_packages(fs)
    notes = [] if python else [f"no python3 in {root}: extension modules are checked without "
                               "an interpreter"]
    reports, origin, foreign = [], {}, set()
    version = re.search(r"python(\d\.\d+)", site)
    tmp = tempfile.mkdtemp(prefix="wheelforge-linkaudit-")
    try:
        for n, wheel in enumerate(wheels):
            report = WheelLinks(wheel.name)
            reports.append(report)
            try:
                with zipfile.ZipFile(wheel) as zf:
                    if version and not for_interpreter(wheel_tags(zf), version.group(1)):
                        # pip will refuse it (Dockerfile.clean's set check says so); what
                        # its modules need from that interpreter is not judged here
                        foreign.add(wheel.name)
                        notes.append(f"{wheel.name}: its tags are not for this image's "
                                     f"Python {version.group(1)}: the interpreter's symbols "
                                     f"it uses are not judged")
                    for i, info in enumerate(zf.infolist()):
                        where = installed(info.filename, site)
                        if info.is_dir() or info.file_size < 64 or not where:
                            continue
                        with zf.open(info) as src:
                            if src.read(4) != MAGIC:
                                continue
                            disk = os.path.join(tmp, f"{n}-{i}")
                            with open(disk, "wb") as out:
                                out.write(MAGIC)
                                shutil.copyfileobj(src, out, 1 << 20)
                        fs.overlay[where] = disk
                        origin[where] = (report, info.filename)
            except (OSError, zipfile.BadZipFile) as exc:
                raise UserError(f"{wheel}: not a readable wheel ({exc})") from None
        linker = Linker(fs)
        roots = [p for p in fs.overlay if linker.elf(p)]
        for path in roots:
            origin[path][0].elf_files.append(origin[path][1])
            linker.wanted |= {n.encode() for n, _ in linker.elves[path].undefined}
        in_python = set()
        if python and linker.elf(python):
            for path in roots:
                if linker.elves[path].extension:
                    in_python |= {lo.path for lo in linker.closure(path, python)[0]}
        else:
            python = None
        own = {_stem(n) for p in roots for n in (posixpath.basename(p), linker.elves[p].soname)
               if n} if lenient else set()
        for path in roots:
            report, member = origin[path]
            found, unchecked = _judge(linker, path, python if path in in_python else None,
                                      report.name, member, origin, notes, lenient, own,
                                      foreign=report.name in foreign)
            report.findings += found
            report.unchecked += unchecked
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return Result(reports, str(root), notes)


def _stem(name: str) -> str:
    """A library's name without its version: libhipsaxpy.so.2 -> libhipsaxpy.so."""
    return re.sub(r"(\.so)(\.[0-9][^/]*)?$", r"\1", name)


def own_library(name: str, own: set[str]) -> bool:
    """Whether a missing library is one the set itself ships (by file name or SONAME, at any
    version), or a path: either way no runtime apt package is to provide it, so it is a
    finding of the set's layout (RPATH/RUNPATH, SONAME) even in a lenient audit."""
    return "/" in name or _stem(name) in own


def _judge(linker: Linker, path: str, python: str | None, wheel: str, member: str,
           origin: dict, notes: list[str], lenient: bool,
           own: set[str] = frozenset(), *,
           foreign: bool = False) -> tuple[list[Finding], int]:
    order, names, missing = linker.closure(path, python)
    me = next(lo for lo in order if lo.path == path)
    out: list[Finding] = []
    for loader, name, where in missing:
        if loader is me or loader.path not in origin:  # a set library's own: its own audit
            via = "" if loader is me else f"needed by {loader.path}; "
            if lenient and not own_library(name, own):
                notes.append(f"{wheel}: {member}: library {name} not in the root ({where})")
            else:
                out.append(Finding(wheel, member, "library", name, via + f"searched {where}"))
    for file, versions in me.elf.verneed.items():
        have = names.get(file)
        if have is not None and have.elf.verdefs:
            out += [Finding(wheel, member, "version", f"{v} of {file}", f"in {have.path}")
                    for v in versions if v not in have.elf.verdefs]
    if missing:  # what the missing libraries would define is not known
        return out, len(me.elf.undefined)
    for name, version in me.elf.undefined:
        if foreign and name.startswith(("Py", "_Py")):  # another CPython's API: not judged
            continue
        if not any(matches(linker.symbols(lo).get(name), version) for lo in order if lo is not me):
            out.append(Finding(wheel, member, "symbol", f"{name}@{version}" if version else name,
                               f"not in its {len(order) - 1} loaded objects"))
    return out, 0


def wheel_paths(paths: Iterable[Path | str]) -> list[Path]:
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            out += sorted(path.glob("*.whl"))
        elif path.is_file():
            out.append(path)
        else:
            raise UserError(f"{path}: no such wheel or folder; give wheels or wheel sets")
    if not out:
        raise UserError("link audit: no wheels matched; give wheels or wheel sets")
    return out


def run(paths: Iterable[Path | str], folder: Path | str, *, shown: str | None = None,
        as_json: bool = False) -> int:
    """What ``python3 -m wheelforge.audit.links`` and `invoke audit --links` do: the exit
    code of an audit against the root folder ``folder`` (shown as ``shown``: an image's
    name when the folder is its extracted root)."""
    root = shown or str(folder)
    if not Path(folder).is_dir():
        raise UserError(f"--root {folder}: not a folder; give a root folder (/ inside an "
                        f"image), or audit against a local image with invoke audit --links "
                        f"--image IMAGE")
    result = audit(wheel_paths(paths), folder)
    result.root = root
    if as_json:
        print(json.dumps(result.to_json(), indent=2, sort_keys=True))
    else:
        print("\n".join([*result.findings, *(f"note: {n}" for n in result.notes),
                         result.table()]))
        files = sum(len(w.elf_files) for w in result.wheels)
        print(f"link audit against {root}: {len(result.wheels)} wheel(s), {files} ELF file(s), "
              + ("every library, version and symbol found" if result.ok
                 else f"{len(result.findings)} finding(s)"))
    return 0 if result.ok else 1


def gate(stage: Path, manifest: dict, root: Path, *, cacheable: bool) -> dict:
    """The link audit `invoke wheels` runs on a staged set, against the cell's runtime image
    (its root folder ``root``; ``cacheable``: a kept result may be used and kept, as for
    an image's extracted root); returns the manifest's ``link_audit``. The runtime apt
    packages are not in that image (Dockerfile.wheels installs them only in a stage it
    exports nothing of): with any, a missing library is a note here, and Dockerfile.clean,
    which runs this audit after installing them, judges it; a missing library that the set
    itself ships (the same name or SONAME at any version: ``own_library``) stays a finding,
    since no package is to provide it. A finding stops the build."""

    cell, image = str(manifest.get("cell", stage.name)), str(manifest["runtime_image"])
    apt = list(manifest.get("runtime_apt", []))
    wheels = sorted(stage.glob("*.whl"))
    entry = _passed_entry(wheels, manifest, root, lenient=bool(apt)) if cacheable else None
    kept = _read_passed(entry)
    if kept is not None:  # this very set passed against this very image before
        if any(w["elf_files"] for w in kept["wheels"].values()):
            print("\n".join([f"link audit of {cell} against {image}:", *kept["lines"]]),
                  flush=True)
        return {"image": image, "runtime_apt_not_in_root": apt, "wheels": kept["wheels"]}
    result = audit(wheels, root, lenient=bool(apt))
    lines = [*(f"note: {n}" for n in result.notes), result.table()]
    if not result.ok:
        print("\n".join([*result.findings, *lines]), file=sys.stderr, flush=True)
        recipes = {w.get("file"): c.get("recipe") for c in manifest.get("components", {})
                   .values() for w in c.get("wheels", [])}
        first = next(w for w in result.wheels if w.findings)
        more = len(result.findings) - 1
        raise UserError(
            f"wheels: link audit of {cell} against {image}: {result.findings[0]}"
            f"{f' (and {more} more, listed above)' if more else ''}; nothing was swapped in; "
            f"fix {recipes.get(first.name) or 'the recipe of ' + first.name} (its "
            "runtime_apt, its RPATH/RUNPATH) or the stack's runtime image", exit_code=1)
    if any(w.elf_files for w in result.wheels):
        print("\n".join([f"link audit of {cell} against {image}:", *lines]), flush=True)
    if entry is not None:
        gpu.write_json(entry, {"lines": lines, "wheels": result.manifest()})
    return {"image": image, "runtime_apt_not_in_root": apt, "wheels": result.manifest()}


# A set that passed is kept by what decides the result: the sha256 of each of its wheels
# (from the manifest), the image's ID (its root's folder name), leniency, and the source of
# the auditing code; a no-op rebuild then audits nothing again. A finding is never kept.
_AUDIT_CODE = ("links.py", "elf.py")


def _passed_entry(wheels: list[Path], manifest: dict, root: Path, *,
                  lenient: bool) -> Path | None:
    by_file = {w.get("file"): w.get("sha256") for c in manifest.get("components", {}).values()
               for w in c.get("wheels", [])}
    by_file.update((w.get("file"), w.get("sha256")) for w in manifest.get("runtime_deps", []))
    shas = [by_file.get(w.name) for w in wheels]
    if not all(shas):
        return None
    digest = hashlib.sha256()
    for name in _AUDIT_CODE:
        digest.update((Path(__file__).parent / name).read_bytes())
    digest.update(json.dumps([root.name, lenient, sorted(zip(
        [w.name for w in wheels], shas, strict=True))]).encode())
    return LINK_AUDIT_CACHE / f"{digest.hexdigest()}.json"


def _read_passed(entry: Path | None) -> dict | None:
    if entry is None:
        return None
    try:
        kept = json.loads(entry.read_text())
        wheels = {str(name): {"elf_files": int(w["elf_files"]), "findings": list(w["findings"])}
                  for name, w in kept["wheels"].items()}
        return {"lines": [str(x) for x in kept["lines"]], "wheels": wheels}
    except (OSError, ValueError, TypeError, KeyError):
        return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m wheelforge.audit.links", description=(
        "Check that every ELF file of the wheels would load in a runtime image."))
    parser.add_argument("--root", required=True, metavar="DIR",
                        help="a root folder (/ inside an image; for a local image: "
                             "invoke audit --links --image IMAGE)")
    parser.add_argument("paths", nargs="+", metavar="WHEEL_OR_SET")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    try:
        return run(args.paths, args.root, as_json=args.json)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
