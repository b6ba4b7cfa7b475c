"""`invoke lock`: make the runtime-dependency locks that lock.py reads and checks.

For each (stack, Python) of the selected cells, the built wheels' `Requires-Dist` are
resolved with uv's resolver (`uv pip compile --generate-hashes`) for the runtime images'
platform, through the same index the builds use, and the result is written atomically to
`<recipes>/locks/<stack>-py<python>.txt`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from packaging.utils import canonicalize_name

from . import settings
from .errors import UserError
from .lock import metadata, needs, parse, platform
from .settings import ROOT

if TYPE_CHECKING:
    from .matrix import Cell
    from .model import Inputs, Plan


def built_wheels(plan: Plan, cell: Cell, *, wheels_root: Path, exports: Path) -> list[Path]:
    """The planned component wheels of a cell, as built: from any wheel set holding a
    build of the same key, else from the last `invoke wheels` exports; [] if none."""
    from .wheels import exported_wheels  # wheels.py imports this module

    by_key: dict[str, list[Path]] = {}
    for manifest_file in sorted(wheels_root.glob("*/manifest.json")):
        try:
            comps = json.loads(manifest_file.read_text()).get("components", {})
        except (OSError, ValueError):
            continue
        for comp in comps.values() if isinstance(comps, dict) else ():
            files = [manifest_file.parent / w.get("file", "") for w in comp.get("wheels", [])]
            if comp.get("key") and files and all(f.is_file() for f in files):
                by_key.setdefault(comp["key"], files)
    out, missing = [], []
    for name, target in plan.cell_targets[cell.id].items():
        build = plan.builds[target]
        if not build.wheels:
            continue
        files = by_key.get(build.key) or exported_wheels(exports, build)
        if files:
            out += files
        else:
            missing.append(name)
    if missing and out:
        raise UserError(f"lock: {cell.id}: no built wheels of {', '.join(missing)} at their "
                        f"planned keys; run invoke wheels --recipes {plan.locks[cell.id].recipes} "
                        f"--cells {cell.id} first")
    return out


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
    configured index-url, else None (uv's default, which is pip's default)."""
    if settings.get("WHEELFORGE_PIP_INDEX_URL"):
        return settings.get("WHEELFORGE_PIP_INDEX_URL")
    if os.environ.get("PIP_INDEX_URL", "").strip():
        return os.environ["PIP_INDEX_URL"].strip()
    proc = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True,
                          text=True, check=False)
    for line in proc.stdout.splitlines():
        key, _, value = line.partition("=")
        if key.endswith(".index-url"):
            return value.strip().strip("'\"")
    return None


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


def run(ins: Inputs, *, channel: str | None, cells: str | None, wheels_root: Path,
        exports: Path, ca_bundle: Path | None = None,
        say: Callable[[str], None] = print) -> list[Path]:
    """`invoke lock`: one lock per (stack, python) of the selected cells, from their wheels."""
    from . import demo
    from . import wheels as wheel_builds
    from .plan import make_plan

    if ins.recipes_dir.resolve() == (ROOT / "demo" / "recipes").resolve():
        demo.make_repos()  # the demo's git sources (the nightly channel resolves branches)
    plan = make_plan(ins, channel=channel, cells_glob=cells)
    groups: dict[tuple[str, str], list[Cell]] = {}
    for cell in plan.cells:
        groups.setdefault((cell.stack.name, cell.python), []).append(cell)
    written = []
    for (stack, python), group in groups.items():
        wheels: dict[str, Path] = {}
        read, indexes = [], []
        for cell in group:
            found = built_wheels(plan, cell, wheels_root=wheels_root, exports=exports)
            if not found:
                say(f"lock: {cell.id}: no built wheels, not read")
                continue
            read.append(cell.id)
            wheels.update((w.name, w) for w in found)
            indexes += wheel_builds.extra_indexes(plan, cell.id)
        lock = plan.locks[group[0].id]
        if not read:
            raise UserError(f"lock: no built wheels for stack {stack}, Python {python} "
                            f"({', '.join(c.id for c in group)}); run invoke wheels --recipes "
                            f"{lock.recipes} --cells {group[0].id} first")
        text = resolve(stack, python, list(wheels.values()),
                       extra_indexes=list(dict.fromkeys(indexes)), recipes=lock.recipes,
                       cells=read, ca_bundle=ca_bundle)
        changed = write(lock.path, text)
        pins = parse(text, lock.display)
        say(f"lock: {lock.display}: {len(pins)} pins "
            f"({'written' if changed else 'unchanged'}; from {', '.join(read)})")
        written.append(lock.path)
    return written
