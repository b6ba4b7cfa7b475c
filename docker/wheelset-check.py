#!/usr/bin/env python3
"""Runs inside Dockerfile.clean (standard library and pip only).

  before DIR        the set is exactly its manifest: only wheels, each with the
                    manifest's sha256, each installable by this Python
  requirements DIR  name==version of every runtime component's wheels
  after DIR         no compiler, `pip check` passes, every component imports at
                    its manifest version

Each failure is one line starting with `wheelforge-error:` and exit code 1.
"""

import hashlib
import importlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

COMPILERS = ("gcc", "g++", "cc", "c++", "hipcc", "clang", "clang++", "amdclang", "amdclang++")
COMPILER_DIRS = ("/opt/rocm/bin", "/opt/rocm/llvm/bin")


def fail(message):
    print(f"wheelforge-error: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def manifest(folder):
    try:
        return json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError) as exc:
        fail(f"{folder}/manifest.json: unreadable ({exc}); pass a wheel set made by invoke wheels")


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


def before(folder):
    data = manifest(folder)
    wanted = {w["file"]: (comp, w) for comp, w in listed_wheels(data)}
    for path in sorted(folder.iterdir()):
        if path.name == "manifest.json":
            continue
        if not path.name.endswith(".whl"):
            fail(f"{path.name}: not a wheel; an sdist or other file would need compiling "
                 f"or is unknown; remove it and rebuild the set with invoke wheels")
        if path.name not in wanted:
            fail(f"{path.name}: not in manifest.json; remove it or rebuild the set")
    tags = supported_tags()
    for filename, (comp, wheel) in sorted(wanted.items()):
        path = folder / filename
        if not path.is_file():
            fail(f"{filename} ({comp}): listed in manifest.json but missing; rebuild the set")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != wheel["sha256"]:
            fail(f"{filename} ({comp}): sha256 {digest[:16]}... is not the manifest's "
                 f"{wheel['sha256'][:16]}...; the set is corrupted, rebuild it")
        if not wheel_tags(filename) & tags:
            fail(f"{filename} ({comp}): built for {'-'.join(filename[:-4].split('-')[-3:])}, "
                 f"which Python {sys.version_info[0]}.{sys.version_info[1]} here cannot install;"
                 f" build the set for this image's Python")
    print(f"wheel set: {len(wanted)} wheels match manifest.json", flush=True)


def requirements(folder):
    data = manifest(folder)
    pins = sorted({f"{w['distribution']}=={w['version']}" for comp, w in listed_wheels(data)
                   if comp != "runtime dependency"})
    print("\n".join(pins))


def after(folder):
    data = manifest(folder)
    path = os.environ.get("PATH", "").split(os.pathsep) + list(COMPILER_DIRS)
    for compiler in COMPILERS:
        found = shutil.which(compiler, path=os.pathsep.join(path))
        if found:
            fail(f"compiler {found} is in the image; the runtime image must hold none "
                 f"(use a runtime base image without a toolchain)")
    check = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True,
                           text=True, check=False)
    if check.returncode != 0:
        fail(f"pip check: {check.stdout.strip().splitlines()[0]}")
    for name, comp in sorted(data["components"].items()):
        if not comp.get("runtime", True):
            continue
        for wheel in comp["wheels"]:
            have = importlib.metadata.version(wheel["distribution"])
            if norm(have) != norm(wheel["version"]):
                fail(f"{name}: {wheel['distribution']} {have} installed, manifest says "
                     f"{wheel['version']}")
        for module in comp.get("imports", []):
            try:
                importlib.import_module(module)
            except Exception as exc:  # noqa: BLE001 - report any import failure as one line
                fail(f"{name}: import {module} failed: {type(exc).__name__}: {exc}")
    print("runtime image: no compiler, pip check passes, every component imports", flush=True)


if __name__ == "__main__":
    actions = {"before": before, "requirements": requirements, "after": after}
    if len(sys.argv) != 3 or sys.argv[1] not in actions:
        sys.exit("usage: wheelset-check.py before|requirements|after DIR")
    actions[sys.argv[1]](Path(sys.argv[2]))
