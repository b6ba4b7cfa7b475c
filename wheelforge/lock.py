"""Runtime-dependency locks: one per stack and Python version, committed with the recipes.

`<recipes>/locks/<stack>-py<python>.txt` is a pip requirements file of `name==version
--hash=sha256:...` entries: every third-party distribution the wheel sets of that stack
and Python need at run time, with the sha256 of each of its files. `invoke lock`
(lockmake.py) makes it from the `Requires-Dist` of the built wheels with uv's resolver;
`invoke wheels` checks each cell's wheels against it before the runtime-dependency step
(this module), and that step downloads exactly the lock (`pip download --no-deps
--require-hashes`). The lock's sha256 is part of the runtime-dependency step's key, and
of nothing else.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path
from typing import TYPE_CHECKING

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from . import wheelname
from .errors import UserError
from .settings import ROOT

if TYPE_CHECKING:
    from .matrix import Cell
    from .model import Plan

# Every stack's runtime image is x86_64 with glibc 2.28 or newer: the lock is resolved for
# that platform, so each locked version has a wheel for every runtime image; or for the
# newest glibc a wheel of the set itself needs (amd-mori 1.2.4 is manylinux_2_39 only),
# since the set cannot install on an older one anyway (`platform`).
PLATFORM = "x86_64-manylinux_2_28"
MACHINE = "x86_64"
_LEGACY_MANYLINUX = {"manylinux1": 5, "manylinux2010": 12, "manylinux2014": 17}


def platform(wheels: Iterable[Path]) -> str:
    """The platform a lock is resolved for: PLATFORM, or the newest manylinux glibc that
    one of the set's own wheels requires (each wheel needs the oldest of its own tags)."""
    floor = int(PLATFORM.rsplit("_", 1)[1])
    for wheel in wheels:
        needed = []
        for tag in wheelname.parse(wheel.name).tags:
            plat = tag.split("-")[-1]
            match = re.fullmatch(r"manylinux_2_(\d+)_x86_64", plat)
            minor = int(match.group(1)) if match else _LEGACY_MANYLINUX.get(
                plat.removesuffix("_x86_64"))
            if minor is not None:
                needed.append(minor)
        if needed:
            floor = max(floor, min(needed))
    return f"{MACHINE}-manylinux_2_{floor}"
LOCK_FILE_IN_STEP = "requirements.txt"  # its name in the runtime-deps step's `lock` context


@dataclass(frozen=True, kw_only=True)
class Lock:
    """The lock a cell uses: where it is, its sha256 ("" when missing) and its pins."""

    stack: str
    python: str
    path: Path
    display: str  # the path as users see it (relative to the checkout)
    recipes: str  # the recipe directory, as `--recipes` takes it
    sha256: str = ""
    pins: tuple[tuple[str, str], ...] = ()  # (canonical name, version)

    @property
    def exists(self) -> bool:
        return bool(self.sha256)

    def pinned(self) -> dict[str, str]:
        return dict(self.pins)

    def label(self) -> str:
        return (f"{self.display} (sha256 {self.sha256[:12]}, {len(self.pins)} pins)"
                if self.exists else f"{self.display} (missing: run invoke lock)")


def _display(path: Path) -> str:
    path = path.resolve() if path.is_absolute() else (Path.cwd() / path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def path_of(recipes_dir: Path, stack: str, python: str) -> Path:
    return recipes_dir / "locks" / f"{stack}-py{python}.txt"


def locate(recipes_dir: Path, stack: str, python: str) -> Lock:
    """The lock of (stack, python) in this recipe set; read and parsed when it exists."""
    path = path_of(recipes_dir, stack, python)
    ref = Lock(stack=stack, python=python, path=path, display=_display(path),
               recipes=_display(recipes_dir))
    if not path.is_file():
        return ref
    data = path.read_bytes()
    pins = parse(data.decode("utf-8", errors="replace"), ref.display)
    return Lock(stack=stack, python=python, path=path, display=ref.display,
                recipes=ref.recipes, sha256=hashlib.sha256(data).hexdigest(), pins=pins)


def parse(text: str, where: str) -> tuple[tuple[str, str], ...]:
    """(name, version) of each `name==version --hash=...` entry; anything else is an error."""
    pins: dict[str, str] = {}
    logical: list[tuple[int, str]] = []
    buf, start = "", 0
    for number, line in enumerate(text.splitlines(), 1):
        line = re.sub(r"(^|\s)#.*$", "", line).rstrip()
        if not buf:
            start = number
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        if buf.strip():
            logical.append((start, buf.strip()))
        buf = ""
    for number, entry in logical:
        spec, _, _ = entry.partition(" --hash")
        fix = f"{where}:{number}: {entry[:60]!r}"
        try:
            req = Requirement(spec.strip())
        except InvalidRequirement:
            raise UserError(f"{fix} is not a requirement; run invoke lock to remake "
                            f"the lock") from None
        specs = list(req.specifier)
        if (len(specs) != 1 or specs[0].operator != "==" or "*" in specs[0].version
                or "--hash=sha256:" not in entry):
            raise UserError(f"{fix} is not `name==version --hash=sha256:...`; run invoke "
                            f"lock to remake the lock")
        name = canonicalize_name(req.name)
        if name in pins:
            raise UserError(f"{fix}: {name} is pinned twice; run invoke lock to remake the lock")
        pins[name] = specs[0].version
    return tuple(sorted(pins.items()))


def environment(python: str) -> dict[str, str]:
    """Marker values of a cell's runtime: its Python, Linux on x86_64, CPython."""
    return {"python_version": python, "python_full_version": f"{python}.0",
            "sys_platform": "linux", "platform_system": "Linux", "os_name": "posix",
            "platform_machine": MACHINE, "implementation_name": "cpython",
            "platform_python_implementation": "CPython", "extra": ""}


def metadata(wheel: Path) -> tuple[str, str, list[Requirement]]:
    """(canonical name, version, Requires-Dist) of a wheel, from its METADATA."""
    with zipfile.ZipFile(wheel) as whl:
        names = [n for n in whl.namelist()
                 if re.fullmatch(r"[^/]+\.dist-info/METADATA", n)]
        if len(names) != 1:
            raise UserError(f"{wheel}: no single .dist-info/METADATA; rebuild it with "
                            f"invoke wheels")
        msg = HeaderParser().parsestr(whl.read(names[0]).decode("utf-8", errors="replace"))
    reqs = []
    for value in msg.get_all("Requires-Dist") or []:
        try:
            reqs.append(Requirement(value))
        except InvalidRequirement:
            raise UserError(f"{wheel.name}: Requires-Dist {value!r} is not a requirement; "
                            f"fix the component's metadata") from None
    return canonicalize_name(msg["Name"] or ""), msg["Version"] or "", reqs


def needs(wheels: Iterable[Path],
          python: str) -> tuple[dict[str, str], list[tuple[str, Requirement]]]:
    """({own name: version}, [(wheel file, requirement)]) of a set's wheels: the requirements
    that apply on the cell's Python and platform (no extras), own components included."""
    own: dict[str, str] = {}
    applying: list[tuple[str, Requirement]] = []
    env = environment(python)
    for wheel in sorted(wheels):
        name, version, reqs = metadata(wheel)
        own[name] = version
        applying += [(wheel.name, r) for r in reqs if not r.marker or r.marker.evaluate(env)]
    return own, applying


def problems(wheels: Iterable[Path], lock: Lock) -> list[str]:
    """Each requirement of the wheels that neither the set nor the lock satisfies."""
    own, applying = needs(wheels, lock.python)
    pinned = lock.pinned()
    out = [f"{lock.display} pins {name}, which the set builds" for name in pinned if name in own]
    for wheel, req in applying:
        name = canonicalize_name(req.name)
        if name in own:
            if not req.specifier.contains(own[name], prereleases=True):
                out.append(f"{wheel} requires {req}, the set builds {name} {own[name]}")
        elif not lock.exists:
            out.append(f"{wheel} requires {req} and there is no lock {lock.display}")
        elif name not in pinned:
            out.append(f"{wheel} requires {req}, which {lock.display} lacks")
        elif not req.specifier.contains(pinned[name], prereleases=True):
            out.append(f"{wheel} requires {req}, {lock.display} pins {name}=={pinned[name]}")
    return out


def needs_index(wheels: Iterable[Path], python: str) -> bool:
    """Whether the set's wheels require anything the set does not build itself (a set
    that needs nothing downloads nothing, whatever the lock holds: e.g. `--only`)."""
    own, applying = needs(wheels, python)
    return any(canonicalize_name(req.name) not in own for _, req in applying)


def check(cell_id: str, wheels: Iterable[Path], lock: Lock) -> None:
    """Refuse a cell whose wheels need something the lock lacks: one line, the fix in it."""
    found = problems(wheels, lock)
    if found:
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise UserError(f"wheels: {cell_id}: {found[0]}{more}; run invoke lock --recipes "
                        f"{lock.recipes} --cells {cell_id} (the component builds are cached), "
                        f"commit {lock.display} and build again")


def step_key(plan: Plan, cell: Cell) -> str:
    """The key of a cell's runtime-dependency step: its lock, its wheels, its base."""
    from .keys import BUILD_FILES
    from .wheels import extra_indexes, runtime_apt

    identity = {
        "lock_sha256": plan.locks[cell.id].sha256, "runtime_image": cell.stack.runtime_image,
        "python": cell.python, "runtime_apt": runtime_apt(plan, cell.id),
        "extra_indexes": extra_indexes(plan, cell.id),
        "components": sorted(plan.builds[t].key for t in plan.cell_targets[cell.id].values()),
        "build_files": [hashlib.sha256(f.read_bytes()).hexdigest() for f in BUILD_FILES],
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def step_context(lock: Lock, folder: Path, *, needed: bool = True) -> Path:
    """The runtime-deps step's `lock` context: the lock alone (empty when it is missing,
    or not `needed` by the set)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    if lock.exists and needed:
        shutil.copyfile(lock.path, folder / LOCK_FILE_IN_STEP)
    return folder


def with_locks(plan: Plan, shown: str, *, as_json: bool) -> str:
    """`invoke plan`'s output with the lock of each cell's runtime-dependency step (and
    that step's key): `runtime_deps` in JSON; in text, a section before the bake definition."""
    steps = {c.id: (plan.locks[c.id], step_key(plan, c)) for c in plan.cells}
    if as_json:
        data = json.loads(shown)
        data["runtime_deps"] = {cell: {"lock": lock.display, "lock_sha256": lock.sha256 or None,
                                       "pins": dict(lock.pins), "key": key}
                                for cell, (lock, key) in steps.items()}
        return json.dumps(data, indent=2)
    lines = ["runtime dependencies (each cell downloads exactly its lock):",
             *(f"  {cell}: {lock.label()}; step key {key[:12]}"
               for cell, (lock, key) in steps.items()), ""]
    at = shown.find("bake definition (")
    at = len(shown) if at < 0 else at
    return shown[:at] + "\n".join(lines) + "\n" + shown[at:]


# ---- invoke lock --------------------------------------------------------------------
