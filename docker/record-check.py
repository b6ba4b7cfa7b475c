#!/usr/bin/env python3
"""Runs inside Dockerfile.clean (standard library only), next to wheelset-check.py.

  env DIR                     the environment is the manifest's runtime_env (each variable
                              set to its value; Dockerfile.clean's ENV slots)
  apt DIR                     the runtime system packages the set's manifest.json names
  snapshot VENV               every file of a fresh venv (before anything is installed)
  after DIR VENV SNAPSHOT     the installed image obeys the runtime policy:
                                - toolchain: the manifest's runtime_toolchain says whether a
                                  compiler may be in the image (forbidden unless allowed);
                                - `pip check` passes; every component has its manifest
                                  version and imports;
                                - zero compilation, proven: every file added to VENV is
                                  listed in the RECORD of an installed distribution (with
                                  its sha256 where RECORD gives one)

What may be added outside a RECORD: nothing but a `__pycache__/*.pyc` whose source
file is listed (byte code Python writes for a listed module, not native code).
The venv's own files (pyvenv.cfg, bin/python*, bin/activate*, and pip as ensurepip
put it there) are in SNAPSHOT, taken right after `python3 -m venv`; pip itself is
also a listed distribution. So a file that a package writes at first import (a
`.pth` hook, a build-on-import extension) or that any step after the install
drops into the venv fails the build, named.

Each failure is one line starting with `wheelforge-error:` and exit code 1.
"""

import base64
import hashlib
import importlib
import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

# The manifest reader (with its strict shape checks) and version normalization are
# wheelset-check.py's, mounted beside this file.
HERE = Path(__file__).resolve().parent
COMPILERS = ("gcc", "g++", "cc", "c++", "hipcc", "clang", "clang++", "amdclang", "amdclang++")
COMPILER_DIRS = ("/opt/rocm/bin", "/opt/rocm/llvm/bin")
_spec = importlib.util.spec_from_file_location("wheelset_check", HERE / "wheelset-check.py")
wheelset_check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(wheelset_check)


def fail(message):
    print(f"wheelforge-error: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def manifest(folder):
    """manifest.json, read with wheelset-check.py's checks (one line per problem)."""
    try:
        return wheelset_check.read_manifest(folder)
    except wheelset_check.Refused as exc:
        fail(str(exc))


PYC_RE = re.compile(r"^(?P<stem>[^.]+)\.[A-Za-z0-9_-]+(?:\.opt-[12])?\.pyc$")


def runtime_env(folder):
    wanted = manifest(folder).get("runtime_env", {})
    if not isinstance(wanted, dict):
        fail("manifest.json: runtime_env: not a mapping; rebuild the set with invoke wheels")
    if len(wanted) > 4:
        fail(f"manifest.json: runtime_env has {len(wanted)} variables, and the image has four "
             f"slots (Dockerfile.clean ENV1..ENV4); set fewer")
    for slot, (name, value) in enumerate(sorted(wanted.items()), 1):
        if os.environ.get(name) != value:
            have = os.environ.get(name)
            fail(f"runtime image: the cell's runtime_env sets {name}={value}, the image has "
                 f"{name}={have if have is not None else '(unset)'}; build with --build-arg "
                 f"ENV{slot}_NAME={name} --build-arg ENV{slot}_VALUE={value} (invoke image "
                 f"passes them)")
    if wanted:
        print("runtime image: environment " + " ".join(f"{k}={v}" for k, v in
                                                      sorted(wanted.items())), flush=True)


def runtime_apt(folder):
    value = manifest(folder).get("runtime_apt", [])
    packages = value.split() if isinstance(value, str) else list(value)
    for name in packages:
        if not re.fullmatch(r"[a-z0-9][a-z0-9.+-]*(=[A-Za-z0-9.+:~-]+)?", name):
            fail(f"manifest.json: runtime_apt {name!r} is not an apt package name; rebuild "
                 f"the set with invoke wheels")
    print(" ".join(sorted(set(packages))))


def files_under(root):
    out = set()
    for base, dirs, files in os.walk(root):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(base, d))]:
            out.add(os.path.normpath(os.path.join(base, name)))
    return out


def snapshot(venv):
    print("\n".join(sorted(files_under(venv))))


def toolchain(data):
    policy = data.get("runtime_toolchain", "forbidden")
    if policy not in ("allowed", "forbidden"):
        fail(f"manifest.json: runtime_toolchain {policy!r}: allowed or forbidden")
    path = os.environ.get("PATH", "").split(os.pathsep) + list(COMPILER_DIRS)
    found = [f for f in (shutil.which(c, path=os.pathsep.join(path))
                         for c in COMPILERS) if f]
    if found and policy == "forbidden":
        fail(f"compiler {found[0]} is in the image; stack {data.get('stack', '?')} sets "
             f"runtime_toolchain: forbidden (use a runtime base image without a toolchain, or "
             f"allow it in matrix.yaml where packages compile at run time)")
    return policy, found


def imports(data):
    check = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True,
                           text=True, check=False)
    if check.returncode != 0:
        fail(f"pip check: {(check.stdout.strip() or check.stderr.strip()).splitlines()[0]}")
    for name, comp in sorted(data["components"].items()):
        if not comp.get("runtime", True):
            continue
        for wheel in comp["wheels"]:
            have = importlib.metadata.version(wheel["distribution"])
            if wheelset_check.norm(have) != wheelset_check.norm(wheel["version"]):
                fail(f"{name}: {wheel['distribution']} {have} installed, manifest says "
                     f"{wheel['version']}")
        for module in comp.get("imports", []):
            try:
                importlib.import_module(module)
            except Exception as exc:  # noqa: BLE001 - report any import failure as one line
                fail(f"{name}: import {module} failed: {type(exc).__name__}: {exc}")


def recorded(venv):
    """{absolute path: (distribution, sha256 digest or None)} over every RECORD in venv."""
    out = {}
    site = [p for p in sys.path if p.startswith(str(venv)) and p.endswith("site-packages")]
    for dist in importlib.metadata.distributions(path=site):
        for entry in dist.files or ():
            path = os.path.normpath(str(dist.locate_file(entry)))
            digest = entry.hash.value if entry.hash and entry.hash.mode == "sha256" else None
            out[path] = (dist.metadata["Name"], digest)
    return out


def record_proof(venv, before):
    listed = recorded(venv)
    added = sorted(files_under(venv) - before)
    unlisted = []
    for path in added:
        if path in listed:
            continue
        parent, name = os.path.split(path)
        match = PYC_RE.match(name)
        if os.path.basename(parent) == "__pycache__" and match:
            source = os.path.join(os.path.dirname(parent), match["stem"] + ".py")
            if source in listed or source in before:
                continue
        unlisted.append(path)
    if unlisted:
        more = f" (and {len(unlisted) - 1} more)" if len(unlisted) > 1 else ""
        fail(f"{unlisted[0]}{more}: added to {venv} but in no installed wheel's RECORD: "
             f"something was compiled or written after the install; ship it inside a wheel "
             f"of the set, or stop the package from writing into the venv")
    for path, (dist, digest) in sorted(listed.items()):
        if digest is None or not path.startswith(str(venv)) or not os.path.isfile(path):
            continue
        sha = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):  # noqa: B023
                sha.update(block)
        have = base64.urlsafe_b64encode(sha.digest())
        if have.decode().rstrip("=") != digest.rstrip("="):
            fail(f"{path} ({dist}): differs from its RECORD sha256: changed after the "
                 f"install; rebuild the image from an unmodified wheel set")
    return len(added)


def after(folder, venv, snapshot_file):
    data = manifest(folder)
    policy, found = toolchain(data)
    imports(data)
    before = set(Path(snapshot_file).read_text().split("\n")) - {""}
    added = record_proof(venv, before)
    tools = f"toolchain {policy}" + (f" ({', '.join(found)})" if found else ", none present")
    print(f"runtime image: {tools}; pip check passes; every component imports; all {added} "
          f"files added to {venv} are in an installed wheel's RECORD", flush=True)


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["env"] and len(args) == 2:
        runtime_env(Path(args[1]))
    elif args[:1] == ["apt"] and len(args) == 2:
        runtime_apt(Path(args[1]))
    elif args[:1] == ["snapshot"] and len(args) == 2:
        snapshot(Path(args[1]))
    elif args[:1] == ["after"] and len(args) == 4:
        after(Path(args[1]), Path(args[2]), args[3])
    else:
        sys.exit("usage: record-check.py env DIR | apt DIR | snapshot VENV | "
                 "after DIR VENV SNAPSHOT")
