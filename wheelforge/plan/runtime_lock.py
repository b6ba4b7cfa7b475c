"""Runtime-dependency locks: one per stack and Python version, committed with the recipes;
how they are read, checked and made.

The file: `<recipes>/locks/<stack>-py<python>.txt` is a pip requirements file of
`name==version --hash=sha256:...` entries: every third-party distribution the wheel sets
of that stack and Python need at run time, with the sha256 of each of its files. Any other
line is refused (`parse`), with `invoke lock` as the fix. The lock's sha256 is part of the
runtime-dependency step's key, and of nothing else.

Checking (`check`): `invoke wheels` checks each cell's wheels against the lock before the
runtime-dependency step: every `Requires-Dist` that applies on the cell's Python and
platform (no extras) must be met by the set's own wheels or by the lock, and the lock must
not pin a distribution the set builds; one line names the first problem and the `invoke
lock` command that fixes it. That step then downloads exactly the lock (`pip download
--no-deps --require-hashes`), which is its `lock` context; a set that requires nothing it
does not build downloads nothing, whatever the lock holds.

Making (`resolve`, `write`): `invoke lock`, for each (stack, Python) of the selected cells,
and `invoke wheels` for one that has no lock yet, resolve the built wheels' `Requires-Dist`
with uv's resolver (`uv pip compile --generate-hashes`, binary only) for the runtime
images' platform, through the same index the builds use (WHEELFORGE_PIP_INDEX_URL, else
pip's configured index; handed to uv in the environment, as it may carry a token) and the
indexes of the cells' index sources. That platform is x86_64 manylinux_2_28, or the newest
glibc that one of the set's own wheels requires. The set's own wheels are inputs, never
locked. The result, with a header saying how it was made, is written atomically to
`<recipes>/locks/<stack>-py<python>.txt`.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable
from email.parser import HeaderParser
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from wheelforge.core import settings, wheelset
from wheelforge.core.settings import ROOT
from wheelforge.core.terminal import UserError
from wheelforge.core.types import Lock
from wheelforge.plan.fetch import pip_index

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
        for tag in wheelset.parse(wheel.name).tags:
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


def step_context(lock: Lock, folder: Path, *, needed: bool = True) -> Path:
    """The runtime-deps step's `lock` context: the lock alone (empty when it is missing,
    or not `needed` by the set)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    if lock.exists and needed:
        shutil.copyfile(lock.path, folder / LOCK_FILE_IN_STEP)
    return folder


def uv_command() -> list[str]:
    try:
        from uv import find_uv_bin  # the uv wheel of ci/requirements.txt

        return [find_uv_bin()]
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if found:
            return [found]
    raise UserError("lock: uv not found; pip install -r ci/requirements.txt")


def configured_index() -> str | None:
    """The index the builds use: WHEELFORGE_PIP_INDEX_URL (their secret), else pip's own
    configured index, else None (uv's default, which is pip's default)."""
    return settings.get("WHEELFORGE_PIP_INDEX_URL") or pip_index()


def resolve(stack: str, python: str, wheels: list[Path], *, extra_indexes: Iterable[str],
            recipes: str, cells: list[str], ca_bundle: Path | None = None) -> str:
    """The lock's text for these built wheels: uv pip compile --generate-hashes."""
    own: dict[str, str] = {}
    reqs: set[str] = set()
    for wheel in wheels:
        name, version, _ = metadata(wheel)
        own[name] = version
    for _, req in needs(wheels, python)[1]:
        if canonicalize_name(req.name) not in own:
            req.marker = None  # evaluated for this cell's Python and platform already
            reqs.add(str(req))
    uv = uv_command()
    words = subprocess.run([*uv, "--version"], capture_output=True, text=True,
                           check=False).stdout.split()
    uv_version = words[1] if len(words) > 1 else "?"
    target = platform(wheels)
    flags = ["--generate-hashes", "--python-version", python, "--python-platform", target,
             "--only-binary", ":all:", "--index-strategy", "unsafe-best-match"]
    with tempfile.TemporaryDirectory(prefix="wheelforge-lock-") as tmp:
        links = Path(tmp, "own")
        links.mkdir()
        for wheel in wheels:
            if not (links / wheel.name).exists():
                shutil.copyfile(wheel, links / wheel.name)
        inputs = [f"{n}=={v}" for n, v in sorted(own.items())] + sorted(reqs)
        Path(tmp, "requirements.in").write_text("".join(f"{line}\n" for line in inputs))
        cmd = [*uv, "--no-config", "--no-python-downloads", "--quiet", "pip", "compile",
               "requirements.in", *flags, "--find-links", str(links), "--no-header",
               "--annotation-style", "line",
               *(a for n in sorted(own) for a in ("--no-emit-package", n)),
               *(a for url in extra_indexes for a in ("--extra-index-url", url))]
        env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
        index = configured_index()
        if index:
            env["UV_INDEX_URL"] = index  # in the environment: it may carry a token
        if ca_bundle:
            env["SSL_CERT_FILE"] = str(ca_bundle)
        proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, env=env,
                              check=False)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        first = next((ln for ln in proc.stderr.splitlines() if ln.strip()), "no output")
        raise UserError(f"lock: {stack} py{python}: uv could not resolve the runtime "
                        f"requirements ({first.strip()[:200]}); see uv's output above, "
                        f"then align the recipes' pins")
    body = "\n".join(ln for ln in proc.stdout.splitlines()
                     if not ln.startswith("# The following packages were excluded")
                     and not (ln.startswith("# ") and canonicalize_name(ln[2:]) in own))
    header = [
        f"# Runtime-dependency lock: stack {stack}, Python {python}, {target}.",
        f"# Made by `invoke lock --recipes {recipes}` with uv {uv_version}:",
        "#   uv pip compile requirements.in " + " ".join(flags[:5]),
        "#     " + " ".join(flags[5:]),
        "# from the Requires-Dist of the built wheels of these cells:",
        *(f"#   {cell}" for cell in cells),
        "# requirements.in: their wheels (the set's own, not locked) and what they need:",
        *(f"#   {n}=={v}" for n, v in sorted(own.items())),
        *(f"#   {r}" for r in sorted(reqs)),
        "# Do not edit; run invoke lock again when the wheels' requirements change.",
    ]
    return "\n".join(header) + "\n" + (body.strip() + "\n" if body.strip() else "")


def write(path: Path, text: str) -> bool:
    """Write atomically (a reader sees the old lock or the new one); True when it changed."""
    if path.is_file() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
    return True
