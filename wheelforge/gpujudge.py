"""Judging what the GPU-target audit read from one wheel against a cell's archs.

audit.py reads the wheels and states the rules for users (its docstring); this module
applies them to one wheel's members: its bundles, its kernels, its per-arch folder
trees, and the wheel as a whole. Only the standard library is needed (Dockerfile.clean
runs the audit in a bare image).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from . import gpucode, gputargets

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
    return any(gputargets.covers(t, arch) for t in targets)


def arch_folder(path: str) -> tuple[str, str] | None:
    """(tree, folder) of a file under a per-arch folder: ``aiter_meta/hsa/gfx942/x.co`` ->
    (``aiter_meta/hsa``, ``gfx942``); the innermost arch folder counts. None elsewhere."""
    parts = path.split("/")[:-1]
    for i in range(len(parts) - 1, -1, -1):
        if gputargets.ARCH_RE.match(parts[i]):
            return "/".join(parts[:i]), parts[i]
    return None


def tree_label(tree: str) -> str:
    return f"{tree}/<arch>" if tree else "<arch>"


def kernel_key(path: str, where: str = "") -> str:
    """The kernel a code object belongs to: its path with arch folders shown as <arch>."""
    parts = path.split("/")
    folders = ["<arch>" if gputargets.ARCH_RE.match(p) else p for p in parts[:-1]]
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
            if not any(gputargets.covers(folder, arch) and covered(targets, arch)
                       for folder, targets in folders.items())]


def reference_archs(found: Sequence[Unit], archs: Sequence[str]) -> tuple[str, ...]:
    """The archs a wheel is judged against, or when none, the processors its code names."""
    if archs:
        return tuple(archs)
    return tuple(sorted({gputargets.base_arch(t) for u in found for t in u.targets
                         if gputargets.runs_on(t) == (gputargets.base_arch(t),)}))


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
    seen = sorted({gputargets.base_arch(t) for u in found for t in u.targets})
    if seen:
        lines += [f"no code for {arch} (its GPU code is for {', '.join(seen)} only)"
                  for arch in archs if arch not in named
                  and not any(covered(u.targets, arch) for u in found)]
    return lines
