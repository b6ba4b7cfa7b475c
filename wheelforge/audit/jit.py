"""JIT coverage: which of a component's run-time-compiled modules its wheel carries prebuilt.

Components such as AITER list every module they can build in a data file that ships in
the wheel (aiter/jit/optCompilerConfig.json) and import a prebuilt module from a known
place (aiter/jit/<module>.so); a module that is not there is compiled on first use, with
the toolchain of the runtime image, for minutes (ROCm/aiter#4055: ~225 s for one module).
The recipe says where both are:

    jit:
      modules: aiter/jit/optCompilerConfig.json   # a JSON object, one key per module
      prebuilt: aiter/jit/{module}.so             # where a prebuilt module lies
      never: ["*_tune"]                           # modules upstream never prebuilds

For each wheel set the coverage is read from the wheels (never run): the modules listed,
those prebuilt, those that would compile at first use, and the GPU targets inside each
prebuilt module (audit/gpucode.py). A prebuilt module without code for one of the cell's
archs is rebuilt at first use on that GPU (AITER's `_needs_arch_rebuild`), so it counts
as missing there; a module matching `never` is listed but never counted as missing.

`invoke wheels` records it in the manifest (`jit_coverage`) and prints it; a stack with
`jit_coverage: required` refuses a set that would compile at first use, or whose module
list cannot be read (nothing is swapped in). `invoke audit --jit` reports it for built
sets and exits 1 on such a set. Unlike audit/gpu.py and audit/links.py, it runs on the
host only, not in the runtime image's build.
"""

from __future__ import annotations

import fnmatch
import json
import sys
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from wheelforge.audit import gpucode
from wheelforge.core.terminal import UserError, render
from wheelforge.core.wheelset import read_manifest


@dataclass(frozen=True)
class Coverage:
    component: str
    wheel: str
    listed: tuple[str, ...] = ()
    never: tuple[str, ...] = ()  # listed, but never prebuilt upstream (jit.never)
    prebuilt: dict[str, tuple[str, ...]] = field(default_factory=dict)  # module -> targets
    problem: str = ""

    def missing(self, archs: Sequence[str]) -> list[str]:
        """Modules that would compile at first use on one of `archs` (all, when none)."""
        out = []
        for module in self.listed:
            if module in self.never:
                continue
            targets = self.prebuilt.get(module)
            if targets is None or (targets and any(
                    not any(gpucode.covers(t, a) for t in targets) for a in archs)):
                out.append(module)
        return out

    def to_json(self, archs: Sequence[str]) -> dict:
        return {"wheel": self.wheel, "listed": len(self.listed), "never": list(self.never),
                "prebuilt": {m: list(t) for m, t in sorted(self.prebuilt.items())},
                "first_use": self.missing(archs), "problem": self.problem}


def read(component: str, wheel: Path, spec: dict) -> Coverage:
    """The coverage of one wheel, from the recipe's `jit` (modules, prebuilt, never)."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            names = set(zf.namelist())
            if spec["modules"] not in names:
                return Coverage(component, wheel.name, problem=f"{spec['modules']} is not in "
                                f"the wheel: the module list moved, or the wheel is not the "
                                f"one the recipe describes")
            data = json.loads(zf.read(spec["modules"]))
            if not isinstance(data, dict):
                return Coverage(component, wheel.name, problem=f"{spec['modules']} is not a "
                                f"JSON object keyed by module name")
            listed = tuple(sorted(data))
            never = tuple(m for m in listed if any(fnmatch.fnmatchcase(m, g)
                                                   for g in spec.get("never", ())))
            prebuilt = {}
            for module in listed:
                member = spec["prebuilt"].format(module=module)
                if member in names:
                    prebuilt[module] = _targets(zf, member)
    except (OSError, zipfile.BadZipFile, ValueError, KeyError) as exc:
        return Coverage(component, wheel.name, problem=f"unreadable ({exc})")
    return Coverage(component, wheel.name, listed, never, prebuilt)


def _targets(zf: zipfile.ZipFile, member: str) -> tuple[str, ...]:
    info = zf.getinfo(member)
    src = gpucode.StreamSource(lambda: zf.open(info), info.file_size)
    try:
        blobs = gpucode.scan(src)
    finally:
        src.close()
    return tuple(sorted({t for b in blobs for t in b.targets}))


def of_set(stage: Path, manifest: dict) -> list[Coverage]:
    """The coverage of every component of a set whose recipe declares `jit`."""
    out = []
    for name, comp in sorted(manifest.get("components", {}).items()):
        spec = comp.get("jit")
        if not spec:
            continue
        for wheel in comp.get("wheels", []):
            path = stage / wheel["file"]
            if path.is_file():
                out.append(read(name, path, spec))
    return out


def table(found: list[Coverage], archs: Sequence[str]) -> str:
    rows = [(c.component, c.wheel, len(c.listed), len(c.never), len(c.prebuilt),
             len(c.missing(archs)), c.problem or "") for c in found]
    return render(["component", "wheel", "modules", "never prebuilt", "prebuilt",
                   "compile at first use", ""], rows)


def gate(stage: Path, manifest: dict) -> dict:
    """What `invoke wheels` runs on a staged set: the manifest's ``jit_coverage``. Printed
    when a component declares `jit`; a stack with `jit_coverage: required` refuses a set
    in which a module would compile at first use (nothing is swapped in)."""
    archs = [a for a in manifest.get("archs", []) if gpucode.ARCH_RE.match(a)]
    found = of_set(stage, manifest)
    if not found:
        return {}
    cell = manifest.get("cell", stage.name)
    print(f"JIT coverage of {cell} ({';'.join(archs) or 'no GPU arch'}):\n"
          f"{table(found, archs)}", flush=True)
    if manifest.get("jit_coverage_required"):
        for c in found:
            missing = c.missing(archs)
            if c.problem or missing:
                more = ", ..." if len(missing) > 5 else ""
                what = c.problem or (f"{len(missing)} module(s) would compile at first use "
                                     f"({', '.join(missing[:5])}{more})")
                print(table(found, archs), file=sys.stderr, flush=True)
                raise UserError(f"wheels: JIT coverage of {cell}: {c.component} ({c.wheel}): "
                                f"{what}; the stack requires full coverage: prebuild them in "
                                f"the recipe, or list modules upstream never prebuilds under "
                                f"jit.never; nothing was swapped in", exit_code=1)
    return {c.component: c.to_json(archs) for c in found}


def run_sets(sets: Sequence[Path], *, as_json: bool = False) -> int:
    """`invoke audit --jit`: the coverage of each wheel set, from its manifest's recipes;
    1 when a set whose stack requires full coverage would compile at first use."""
    if not sets:
        raise UserError("audit --jit: no wheel sets; give --cells, or run `invoke wheels`")
    failed, out = False, {}
    for folder in sets:
        manifest = read_manifest(folder)
        archs = [a for a in manifest.get("archs", []) if gpucode.ARCH_RE.match(a)]
        found = of_set(folder, manifest)
        out[folder.name] = {c.component: c.to_json(archs) for c in found}
        short = any(c.problem or c.missing(archs) for c in found)
        failed |= bool(manifest.get("jit_coverage_required")) and short
        if not as_json:
            print(f"{folder.name}: " + (f"\n{table(found, archs)}" if found else
                                        "no component declares jit modules"))
    if as_json:
        print(json.dumps(out, indent=2, sort_keys=True))
    return 1 if failed else 0
