"""Where glibc's loader finds a library: a root folder with the wheel set installed over
it (``overlay``: installed path -> extracted file), ld.so.conf, RPATH/RUNPATH, closures.
See linkaudit.py for the search order.
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
import re
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .elfdyn import Elf, defined, read_elf

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
