"""GPU-target audit: which AMD GPU targets the GPU code in wheels carries, and what is missing
against a cell's archs.

Wheels are read, never installed or run: audit/gpucode.py reads the binaries, and this
module counts and judges what it read, one wheel's members at a time. A wheel's GPU code
comes as:

- offload bundles (one per translation unit; clang offload bundles in ``.hip_fatbin``,
  offload binaries in ``.llvm.offloading``) inside a member, each one a unit, and
- kernels: standalone code objects. Those kept in per-arch folders
  (``hsa/gfx942/x.co``, ``hsa/gfx950/x.co``) count as ONE kernel, named by its path
  with the arch folder shown as ``<arch>``; a folder tree is the path before the arch
  folder (``hsa``).

Rules: an arch is covered by a target that runs on it (a generic target such as
gfx9-4-generic covers gfx942 and gfx950; ``gfx942:xnack-`` covers gfx942). Only gfx names
are judged: a CPU cell's archs (x86-64-v2, ...) are not, and its wheels are only reported.
Against a cell's archs, one finding line per:

- a bundle lacking one of them (``wheel: member: bundle N: missing gfx950``): a bundle
  is built for a list of archs, and one left out is a build that went wrong;
- a per-arch folder tree lacking one of them: every arch of the cell needs a folder
  (named for it, or a generic target's covering it) holding a code object that runs on
  it (``wheel: hsa/<arch>: no kernels for gfx950``);
- an arch the wheel has no code for at all while it carries GPU code (no bundle, folder
  or code object covers it: ``wheel: no code for gfx942 (its GPU code is for gfx950
  only)``), unless a bundle or tree finding already names that arch or some code is
  not readable here; a wheel without GPU code is fine;
- a code object in the folder of an arch it does not run on (``hsa/gfx942/x.co is in
  folder gfx942 but holds gfx950``), and anything unreadable.

A standalone code object is single-arch by nature, in a per-arch folder or not, and
vendors ship kernels for one arch only by design (AITER's gfx950-only kernels, its
fp4 Triton AOT ``.hsaco`` files): a kernel without code for some arch of the cell is
counted and shown (``partial_kernels``, ``kernels_without`` per arch, the table's
"partial kernels" column), never a finding by itself. Code not readable here (zstd
bundles without a decompressor) is a note, not a finding.

Where it runs: only the standard library is needed, so a runtime image can run it as a
script: ``python3 -m wheelforge.audit.gpu DIR_OR_WHEEL ... [--archs gfx942,gfx950]
[--json]`` (also `invoke audit`). `invoke wheels` runs ``gate`` on each staged set before
it is swapped in (a finding stops the build, the previous set stays) and stores
``Result.manifest_targets()`` as the manifest's ``gpu_targets``; Dockerfile.clean runs this
module again before it installs.

Kept readings (``gate`` only): what was read from a wheel is kept in .cache/audit, by the
wheel's sha256. A rebuild whose components all come from cache re-exports byte-identical
wheels, and cells share wheels (the runtime dependencies of two CPU cells, a component
built once for both): each is read once, not once per cell and run. An entry is keyed by
the wheel's sha256 (from the manifest) and by the source of the reading code
(audit/gpucode.py, audit/elf.py, audit/gpu.py), so a changed reader never sees an old
entry. Only what was read is kept (members and their blobs); judging against a cell's
archs happens afresh each time. An entry that cannot be read is ignored and the wheel is
read again; a wheel that could not be opened is not kept; a cache that cannot be written
is skipped. Entries are written atomically (``write_json``, which the link audit uses for
its kept results too).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import re
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wheelforge.audit import gpucode
from wheelforge.core.settings import AUDIT_CACHE
from wheelforge.core.terminal import UserError, render

MANIFEST = "manifest.json"


CACHE = AUDIT_CACHE  # gate's, by sha256


@dataclass(frozen=True)
class WheelReport:
    name: str
    members: tuple[Member, ...]
    archs: tuple[str, ...] = ()  # judged against these; () = report only
    problem: str = ""

    def units(self) -> list[Unit]:
        return units(self.members)

    def findings(self) -> list[str]:
        lines = [f"{self.name}: {self.problem}"] if self.problem else []
        return lines + [f"{self.name}: {line}"
                        for line in findings(self.members, self.archs)]


@dataclass(frozen=True)
class Result:
    wheels: tuple[WheelReport, ...]

    @property
    def findings(self) -> list[str]:
        return [line for wheel in self.wheels for line in wheel.findings()]

    @property
    def notes(self) -> list[str]:
        return [f"{w.name}: {u.label}: {p}" for w in self.wheels for u in w.units()
                for p in u.problems if NOT_HERE in p]

    @property
    def ok(self) -> bool:
        return not self.findings

    def manifest_targets(self) -> dict[str, dict]:
        """Per wheel: GPU files, bundles, kernels, the bundles/kernels per arch, the kernels
        without code for some arch (``partial_kernels``, ``kernels_without``: per arch) and
        the per-arch folder trees with their arch folders."""
        out = {}
        for wheel in self.wheels:
            units = wheel.units()
            targets = sorted({t for u in units for t in u.targets})
            archs = sorted({a for t in targets for a in gpucode.runs_on(t)} | set(wheel.archs))
            out[wheel.name] = {
                "files": len(wheel.members),
                "bundles": sum(u.kind == "bundle" for u in units),
                "kernels": sum(u.kind == "kernel" for u in units),
                "single_arch_kernels": sum(
                    u.kind == "kernel" and len({gpucode.base_arch(t) for t in u.targets}) == 1
                    for u in units),
                "partial_kernels": partial_total(units, wheel.archs),
                "kernels_without": partial(units, wheel.archs),
                "trees": {tree: sorted(folders) for tree, folders
                          in trees(wheel.members).items()},
                "unreadable": sum(bool(u.problems) for u in units),
                "targets": targets,
                "archs": {a: {"bundles": sum(u.kind == "bundle" and covered(u.targets, a)
                                             for u in units),
                              "kernels": sum(u.kind == "kernel" and covered(u.targets, a)
                                             for u in units)} for a in archs},
            }
        return out

    def to_json(self) -> dict:
        judged = sorted({a for w in self.wheels for a in w.archs})
        wheels = self.manifest_targets()
        for wheel in self.wheels:
            wheels[wheel.name]["judged_archs"] = list(wheel.archs)
            wheels[wheel.name]["members"] = {
                m.path: [{"kind": b.kind, "where": b.where, "targets": list(b.targets),
                          "problem": b.problem, "detail": b.detail} for b in m.blobs]
                for m in wheel.members}
        return {"ok": self.ok, "archs": judged, "findings": self.findings,
                "notes": self.notes, "wheels": wheels}

    def table(self) -> str:
        judged = sorted({a for w in self.wheels for a in w.archs})
        seen = sorted({gpucode.base_arch(t) for w in self.wheels for u in w.units()
                       for t in u.targets})
        archs = judged or seen
        rows = []
        for wheel in self.wheels:
            units = wheel.units()

            def count(arch: str, kind: str, units: list[Unit] = units) -> int:
                return sum(u.kind == kind and (covered(u.targets, arch) if judged else any(
                    gpucode.base_arch(t) == arch for t in u.targets)) for u in units)

            total = partial_total(units, wheel.archs)
            lacking = ", ".join(f"{n} lack {a}" for a, n in
                                partial(units, wheel.archs).items() if n)
            rows.append([wheel.name, len(wheel.members),
                         sum(u.kind == "bundle" for u in units),
                         sum(u.kind == "kernel" for u in units),
                         f"{total} ({lacking})" if total else 0,
                         *[f"{count(a, 'bundle')}/{count(a, 'kernel')}" for a in archs]])
        headers = ["wheel", "gpu files", "bundles", "kernels", "partial kernels",
                   *[f"{a} b/k" for a in archs]]
        return render(headers, rows)




def scan_wheel(path: Path, archs: Sequence[str] = ()) -> WheelReport:
    members = []
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if info.is_dir() or info.file_size < 4:
                    continue
                try:
                    with zf.open(info) as f:
                        head = f.read(4)
                except Exception as exc:  # noqa: BLE001  (a broken member is reported)
                    members.append(Member(info.filename, (gpucode.Blob(
                        "file", "", problem=f"unreadable: {type(exc).__name__}: {exc}"),)))
                    continue
                if head not in gpucode.HEADS:
                    continue
                src = gpucode.StreamSource(lambda info=info: zf.open(info), info.file_size)
                try:
                    blobs = gpucode.scan(src)
                finally:
                    src.close()
                if blobs:
                    members.append(Member(info.filename, tuple(blobs)))
    except (OSError, zipfile.BadZipFile) as exc:
        return WheelReport(path.name, (), tuple(archs), f"not a readable wheel ({exc})")
    return WheelReport(path.name, tuple(members), tuple(archs))


def scan_tree(root: Path, archs: Sequence[str] = ()) -> WheelReport:
    """Every file under ``root`` (an installed environment, an unpacked wheel)."""
    members = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            path = Path(folder, name)
            if path.is_symlink() or not path.is_file():
                continue
            try:
                with open(path, "rb") as f:
                    head = f.read(4)
            except OSError:
                continue
            if head in gpucode.HEADS:
                blobs = gpucode.scan_path(str(path))
                if blobs:
                    members.append(Member(path.relative_to(root).as_posix(), tuple(blobs)))
    return WheelReport(str(root), tuple(members), tuple(archs))


def set_archs(cell_dir: Path) -> tuple[str, ...]:
    """The GPU archs a wheel set's manifest records (none for a CPU-only set)."""
    path = cell_dir / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: cannot read the wheel set's manifest ({exc}); rebuild it "
                        "with `invoke wheels`") from None
    archs = manifest.get("archs", []) if isinstance(manifest, dict) else []
    return gpu_archs(archs if isinstance(archs, list) else [])


def gpu_archs(archs: Iterable[object]) -> tuple[str, ...]:
    """The GPU archs among a cell's archs: gfx names only. A CPU cell's archs (x86-64-v2,
    ...) are no GPU archs, so nothing in its wheels is judged, only reported."""
    return tuple(a for a in archs if isinstance(a, str) and gpucode.ARCH_RE.match(a))


def audit_set(cell_dir: Path | str, archs: Sequence[str] | None = None) -> Result:
    """Audit the wheel set wheels/<cell>/ against the GPU archs among ``archs`` (default:
    its manifest's)."""
    cell_dir = Path(cell_dir)
    judge = gpu_archs(archs) if archs is not None else set_archs(cell_dir)
    return Result(tuple(scan_wheel(w, judge) for w in sorted(cell_dir.glob("*.whl"))))


def gate(stage: Path, manifest: dict, *, cache: Path | None = CACHE) -> dict:
    """The audit `invoke wheels` runs on a staged set (wheels and all) before it is swapped
    in, against the cell's GPU archs (none for a CPU cell); returns the manifest's
    ``gpu_targets``. The table is printed when the set holds GPU code. On findings the
    finding lines and the table go to stderr and a UserError stops the build: the set is
    never swapped in, and the previous wheels/<cell>/ stays as it was. What was read from
    each wheel is kept by its manifest sha256 in ``cache`` (see the module docstring).
    """

    cell = str(manifest.get("cell", stage.name))
    archs = gpu_archs(manifest.get("archs", ()))
    entries = [*(w for c in manifest.get("components", {}).values()
                 for w in c.get("wheels", [])), *manifest.get("runtime_deps", [])]
    sha = {w.get("file"): w.get("sha256") for w in entries}
    result = Result(tuple(cached(
        cache, sha.get(path.name), lambda path=path: scan_wheel(path, archs),
        lambda members, path=path: WheelReport(path.name, tuple(members), archs))
        for path in sorted(stage.glob("*.whl"))))
    findings = result.findings
    if findings:
        print("\n".join([*findings, *(f"note: {n}" for n in result.notes), result.table()]),
              file=sys.stderr, flush=True)
        recipes = {w.get("file"): c.get("recipe") for c in manifest.get("components", {})
                   .values() for w in c.get("wheels", [])}
        culprits = sorted({str(recipes[w.name]) for w in result.wheels
                           if recipes.get(w.name) and any(f.startswith(f"{w.name}: ")
                                                          for f in findings)})
        more = f" (and {len(findings) - 1} more, listed above)" if len(findings) > 1 else ""
        raise UserError(
            f"wheels: GPU-target audit of {cell}: {findings[0]}{more}; nothing was swapped in "
            f"({stage.parent / cell} is unchanged); make "
            f"{', '.join(culprits) or 'the recipe'} build its GPU code for every arch of the "
            f"cell ({';'.join(archs) or 'none: a CPU cell'})", exit_code=1)
    if any(w.members for w in result.wheels):
        print("\n".join([f"GPU-target audit of {cell} (bundles/kernels per arch; "
                         f"{'judged against ' + ';'.join(archs) if archs else 'not judged'}):",
                         *(f"note: {n}" for n in result.notes), result.table()]), flush=True)
    return result.manifest_targets()


def audit_paths(paths: Iterable[Path | str], archs: Sequence[str] | None = None) -> Result:
    """Audit wheels, wheel sets (folders with manifest.json), folders of wheels or any files.

    A wheel set is judged against its manifest's archs unless ``archs`` is given;
    anything else only against ``archs`` (no judgment when None).
    """
    reports: list[WheelReport] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise UserError(f"{path}: no such file or folder; give a wheel, a folder of "
                            "wheels or a wheel set (wheels/<cell>/)")
        if path.is_dir() and (path / MANIFEST).is_file():
            reports += [WheelReport(f"{path.name}/{w.name}", w.members, w.archs, w.problem)
                        for w in audit_set(path, archs).wheels]
        elif path.is_dir() and any(path.glob("*.whl")):
            reports += [scan_wheel(w, archs or ()) for w in sorted(path.glob("*.whl"))]
        elif path.is_dir():
            reports.append(scan_tree(path, archs or ()))
        elif path.suffix == ".whl":
            reports.append(scan_wheel(path, archs or ()))
        else:
            members = gpucode.scan_path(str(path))
            reports.append(WheelReport(str(path), (Member(path.name, tuple(members)),)
                                       if members else (), tuple(archs or ())))
    return Result(tuple(reports))


def parse_archs(text: str) -> tuple[str, ...]:
    archs = tuple(a.strip() for a in re.split(r"[;,]", text) if a.strip())
    bad = [a for a in archs if not gpucode.ARCH_RE.match(a)]
    if bad or not archs:
        raise UserError(f"--archs {text!r}: expected gfx names separated by ',' "
                        f"(e.g. gfx942,gfx950), got {', '.join(bad) or 'nothing'}")
    return archs


def report(result: Result, *, as_json: bool = False) -> int:
    """Print the result; 0 when nothing is missing, 1 on findings."""
    if not result.wheels:
        raise UserError("audit: no wheels matched; give wheels, folders or --cells")
    if as_json:
        print(json.dumps(result.to_json(), indent=2, sort_keys=True))
    else:
        for line in result.findings + [f"note: {n}" for n in result.notes]:
            print(line)
        print(result.table())
        verdict = "no GPU code is missing an arch" if result.ok else \
            f"{len(result.findings)} finding(s)"
        print(f"audit: {len(result.wheels)} wheel(s), {verdict}")
    return 0 if result.ok else 1


def run(paths: Iterable[Path | str], *, archs: str | None = None, as_json: bool = False) -> int:
    """What `invoke audit` and ``python3 -m wheelforge.audit.gpu`` do; returns the exit code."""
    return report(audit_paths(list(paths), parse_archs(archs) if archs else None),
                  as_json=as_json)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m wheelforge.audit.gpu",
                                     description="Report the AMD GPU targets in wheels.")
    parser.add_argument("paths", nargs="+", metavar="WHEEL_OR_DIR")
    parser.add_argument("--archs", help="judge against these archs, e.g. gfx942,gfx950 "
                                        "(default: a wheel set's manifest; else report only)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    try:
        return run(args.paths, archs=args.archs, as_json=args.json)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code




_READERS = ("gpucode.py", "elf.py", "gpu.py")


@functools.cache
def code_version() -> str:
    digest = hashlib.sha256()
    for name in _READERS:
        digest.update((Path(__file__).parent / name).read_bytes())
    return digest.hexdigest()[:16]


def cached(folder: Path | None, sha256: str | None, read: Callable[[], Any],
           rebuild: Callable[[list], Any]) -> Any:
    """``read()`` (a WheelReport) through the cache entry for ``sha256``.

    ``rebuild(members)`` turns a stored entry back into a report; entries are written
    only for reports without a ``problem``.
    """
    if folder is None or not sha256 or len(sha256) != 64:
        return read()
    entry = folder / f"{sha256}-{code_version()}.json"
    try:
        return rebuild(_members(json.loads(entry.read_text())))
    except (OSError, ValueError, TypeError, KeyError):
        pass
    report = read()
    if not report.problem:
        write_json(entry, [{"path": m.path, "blobs": [
            {"kind": b.kind, "where": b.where, "targets": list(b.targets),
             "problem": b.problem, "detail": b.detail} for b in m.blobs]}
            for m in report.members])
    return report


def _members(data: list) -> list:
    return [Member(str(m["path"]), tuple(gpucode.Blob(
        str(b["kind"]), str(b["where"]), tuple(map(str, b["targets"])), str(b["problem"]),
        str(b["detail"])) for b in m["blobs"])) for m in data]


def write_json(entry: Path, data: Any) -> None:
    """Write one cache entry atomically (a temporary file renamed into place); a cache
    that cannot be written is skipped. The link audit keeps its passed sets with it too."""
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=entry.parent, prefix=".tmp-")
    except OSError:
        return
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f)
        os.replace(tmp, entry)
    except OSError:
        Path(tmp).unlink(missing_ok=True)


NOT_HERE = "not readable here"


@dataclass(frozen=True)
class Member:
    """A file (inside a wheel, or on disk) that carries GPU code."""

    path: str
    blobs: tuple[gpucode.Blob, ...]


@dataclass(frozen=True)
class Unit:
    """What is counted: one bundle of a member, or one kernel over its arch folders."""

    kind: str  # "bundle" or "kernel"
    label: str
    targets: tuple[str, ...]
    problems: tuple[str, ...] = ()
    misplaced: tuple[str, ...] = ()  # "folder gfx942 holds gfx950" for kernels


def covered(targets: Iterable[str], arch: str) -> bool:
    return any(gpucode.covers(t, arch) for t in targets)


def arch_folder(path: str) -> tuple[str, str] | None:
    """(tree, folder) of a file under a per-arch folder: ``aiter_meta/hsa/gfx942/x.co`` ->
    (``aiter_meta/hsa``, ``gfx942``); the innermost arch folder counts. None elsewhere."""
    parts = path.split("/")[:-1]
    for i in range(len(parts) - 1, -1, -1):
        if gpucode.ARCH_RE.match(parts[i]):
            return "/".join(parts[:i]), parts[i]
    return None


def tree_label(tree: str) -> str:
    return f"{tree}/<arch>" if tree else "<arch>"


def kernel_key(path: str, where: str = "") -> str:
    """The kernel a code object belongs to: its path with arch folders shown as <arch>."""
    parts = path.split("/")
    folders = ["<arch>" if gpucode.ARCH_RE.match(p) else p for p in parts[:-1]]
    key = "/".join(folders + parts[-1:])
    return f"{key}({where})" if where else key


def misplaced(path: str, blob: gpucode.Blob) -> str:
    found = arch_folder(path)
    if found is None or not blob.targets or covered(blob.targets, found[1]):
        return ""
    return f"{path} is in folder {found[1]} but holds {', '.join(blob.targets)}"


def units(members: Iterable[Member]) -> list[Unit]:
    """Every bundle on its own, then every kernel (code objects grouped by kernel_key)."""
    out: list[Unit] = []
    kernels: dict[str, list[tuple[str, gpucode.Blob]]] = {}
    for member in members:
        for blob in member.blobs:
            if blob.kind == "code object":
                kernels.setdefault(kernel_key(member.path, blob.where), []).append(
                    (member.path, blob))
            else:
                label = f"{member.path}: {blob.where or blob.kind}"
                out.append(Unit("bundle", label, blob.targets,
                                (blob.problem,) if blob.problem else ()))
    for key, found in sorted(kernels.items()):
        targets = tuple(sorted({t for _, b in found for t in b.targets}))
        problems = tuple(f"{path}: {b.problem}" for path, b in found if b.problem)
        out.append(Unit("kernel", f"kernel {key}", targets, problems,
                        tuple(m for path, b in found if (m := misplaced(path, b)))))
    return out


def trees(members: Iterable[Member]) -> dict[str, dict[str, tuple[str, ...]]]:
    """Per tree (the path before the arch folder): per arch folder, the targets of the
    code objects in it."""
    out: dict[str, dict[str, set[str]]] = {}
    for member in members:
        found = arch_folder(member.path)
        code = [b for b in member.blobs if b.kind == "code object"]
        if found is None or not code:
            continue
        targets = out.setdefault(found[0], {}).setdefault(found[1], set())
        targets.update(t for b in code for t in b.targets)
    return {tree: {folder: tuple(sorted(t)) for folder, t in sorted(folders.items())}
            for tree, folders in sorted(out.items())}


def tree_gaps(members: Iterable[Member], archs: Sequence[str]) -> list[tuple[str, str]]:
    """(tree, arch) for each arch no folder of the tree has kernels for: a folder counts
    for an arch when it is named for it (or is a generic target covering it) and holds a
    code object that runs on it."""
    return [(tree, arch) for tree, folders in trees(members).items() for arch in archs
            if not any(gpucode.covers(folder, arch) and covered(targets, arch)
                       for folder, targets in folders.items())]


def reference_archs(found: Sequence[Unit], archs: Sequence[str]) -> tuple[str, ...]:
    """The archs a wheel is judged against, or when none, the processors its code names."""
    if archs:
        return tuple(archs)
    return tuple(sorted({gpucode.base_arch(t) for u in found for t in u.targets
                         if gpucode.runs_on(t) == (gpucode.base_arch(t),)}))


def partial(found: Sequence[Unit], archs: Sequence[str]) -> dict[str, int]:
    """Per reference arch, how many kernels carry no code for it (counted, not failed)."""
    kernels = [u for u in found if u.kind == "kernel" and u.targets]
    return {a: sum(not covered(u.targets, a) for u in kernels)
            for a in reference_archs(found, archs)}


def partial_total(found: Sequence[Unit], archs: Sequence[str]) -> int:
    ref = reference_archs(found, archs)
    return sum(u.kind == "kernel" and bool(u.targets) and not all(covered(u.targets, a)
                                                                  for a in ref)
               for u in found)


def findings(members: Sequence[Member], archs: Sequence[str]) -> list[str]:
    """The finding lines of one wheel (without the wheel's name) against ``archs``."""
    found = units(members)
    lines: list[str] = []
    named: set[str] = set()  # archs a bundle or tree finding already names
    for unit in found:
        lines += [f"{unit.label}: unreadable ({p})" for p in unit.problems if NOT_HERE not in p]
        lines += list(unit.misplaced)
        if unit.kind != "bundle" or any(NOT_HERE in p for p in unit.problems):
            continue
        missing = [a for a in archs if not covered(unit.targets, a)]
        if missing:
            lines.append(f"{unit.label}: missing {', '.join(missing)}")
            named.update(missing)
    for tree, arch in tree_gaps(members, archs):
        lines.append(f"{tree_label(tree)}: no kernels for {arch}")
        named.add(arch)
    if any(NOT_HERE in p for u in found for p in u.problems):
        return lines  # what cannot be read here may hold the arch
    seen = sorted({gpucode.base_arch(t) for u in found for t in u.targets})
    if seen:
        lines += [f"no code for {arch} (its GPU code is for {', '.join(seen)} only)"
                  for arch in archs if arch not in named
                  and not any(covered(u.targets, arch) for u in found)]
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
