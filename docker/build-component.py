#!/usr/bin/env python3
"""Runs inside Dockerfile.wheels (standard library only; any Python 3.8+).

  toolchain            put the build tools every recipe may rely on into /opt/venv
  build TARGET         run one component's recipe steps (the SPEC build arg)
  runtime-deps TARGET  download the binary wheels of a cell's runtime-dependency lock

Every failure prints one line starting with `wheelforge-error:` that names the
component, the bake target and the failing command; `invoke wheels` shows it.
"""

import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

SECRETS = Path("/run/secrets")
# The build environment every recipe has (the toolchain stage puts it in /opt/venv):
# recipes build with `python3 -m build --wheel --no-isolation` or
# `pip wheel --no-build-isolation --no-deps`, and install whatever else they need
# (cmake, ninja, pybind11, their build requirements) in their own steps.
BUILD_TOOLS = ("setuptools==80.9.0", "wheel==0.45.1", "build==1.2.2.post1")


def fail(target, message):
    print(f"wheelforge-error: target={target} {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def secret_env():
    """CA bundle and index URL arrive as BuildKit secrets: used, never stored."""
    env = {}
    ca = SECRETS / "ca-bundle"
    if ca.is_file() and ca.stat().st_size:
        for key in ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "GIT_SSL_CAINFO",
                    "CURL_CA_BUNDLE"):
            env[key] = str(ca)
    index = SECRETS / "pip-index-url"
    if index.is_file() and index.stat().st_size:
        env["PIP_INDEX_URL"] = index.read_text().strip()
    return env


def normalize(name):
    return re.sub(r"[-_.]+", "_", name).lower()


def read_int(path):
    try:
        return int(Path(path).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def builder_cores():
    """Cores this step may use: affinity, capped by a cgroup CPU quota (v2, then v1)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        quota, period = (read_int("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"),
                         read_int("/sys/fs/cgroup/cpu/cpu.cfs_period_us"))
        if quota and period and quota > 0:
            cores = min(cores, math.ceil(quota / period))
    return max(1, cores or 1)


def builder_memory_gb():
    """Memory this step may use: MemTotal, capped by a cgroup memory limit (v2, then v1)."""
    total = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                total = int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        limit = read_int(path)
        if limit:
            total = min(total, limit) if total else limit
            break
    return (total or 4 << 30) / (1 << 30)


def build_jobs(spec):
    """(MAX_JOBS, how it was decided), computed here on the builder.

    The client's part arrives in the build-jobs secret (no cache key sees it): the
    user's --max-jobs. Builds run one at a time (wheelforge/build/bake.py: batches), so each
    gets this builder's cores and memory.
    """
    client = {}
    secret = SECRETS / "build-jobs"
    if secret.is_file() and secret.stat().st_size:
        client = json.loads(secret.read_text())
    if client.get("max_jobs"):
        return int(client["max_jobs"]), "--max-jobs"
    cores, mem_gb = builder_cores(), builder_memory_gb()
    by_memory = math.floor(mem_gb * 0.9 / spec.get("mem_per_job_gb", 1.0))
    jobs = max(1, min(cores, by_memory))
    return jobs, (f"{cores} cores, {mem_gb:.1f} GiB, {spec.get('mem_per_job_gb', 1.0)} GiB "
                  f"per job")


def toolchain():
    env = dict(os.environ)
    env.update(secret_env())
    cmd = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", *BUILD_TOOLS]
    print("==> toolchain:", " ".join(cmd), flush=True)
    if subprocess.call(cmd, env=env) != 0:
        fail("toolchain", "component=toolchain pip install of the build tools failed "
                          f"({', '.join(BUILD_TOOLS)}); see the pip output above")


def link_dependencies():
    """/deps/<component> for each dependency, and all their wheels in /deps/wheels."""
    wheels = Path("/deps/wheels")
    wheels.mkdir(parents=True, exist_ok=True)
    for slot in sorted(Path("/deps/.slot").glob("*")):
        for comp in sorted(p for p in slot.iterdir() if p.is_dir()):
            Path("/deps", comp.name).symlink_to(comp)
            for wheel in sorted((comp / "wheels").glob("*.whl")):
                (wheels / wheel.name).symlink_to(wheel)


def build(target):
    spec = json.loads(os.environ["SPEC"])
    comp = spec["component"]
    where = f"component={comp}"
    have = f"{sys.version_info[0]}.{sys.version_info[1]}"
    # Prebuilt wheels (an index source) are downloaded for the cell's Python (pip download
    # --python-version): the image's own Python only runs pip. Everything else builds with it.
    if have != spec["python"] and not spec.get("prebuilt"):
        fail(target, f"{where} the build image has Python {have}, the cell wants "
                     f"{spec['python']}; fix the stack's build_image or the matrix python")
    link_dependencies()
    out = Path("/out", comp)
    jobs, why = build_jobs(spec)
    print(f"==> {comp}: MAX_JOBS={jobs} ({why})", flush=True)
    env = dict(os.environ)
    env.update(secret_env())
    env.update({
        "SRC": "/src", "DEPS": "/deps", "OUT": str(out / "wheels"),
        "PREFIX": str(out / "prefix"), "MAX_JOBS": str(jobs),
        "CMAKE_BUILD_PARALLEL_LEVEL": str(jobs),
        "PIP_FIND_LINKS": "/deps/wheels", "CCACHE_DIR": "/root/.cache/ccache",
    })
    env.update(spec["env"])
    (out / "wheels").mkdir(parents=True)
    started = time.time()
    steps = spec["steps"]
    for i, step in enumerate(steps, 1):
        print(f"wheelforge-step: {i}/{len(steps)}", flush=True)  # the host maps it to file:line
        print(f"==> {comp} step {i}/{len(steps)}: {step}", flush=True)
        code = subprocess.call(["bash", "-e", "-o", "pipefail", "-c", step], cwd="/src", env=env)
        if code != 0:
            first = step.strip().splitlines()[0]
            fail(target, f"{where} step {i}/{len(steps)} exited {code}: {first}")
    seconds = time.time() - started
    made = sorted((out / "wheels").glob("*.whl"))
    declared = {normalize(d) for d in spec["wheels"]}
    for wheel in made:  # a second name would be a second copy of something: never silent
        if normalize(wheel.name.split("-")[0]) not in declared:
            fail(target, f"{where} produced {wheel.name}, whose distribution "
                         f"{wheel.name.split('-')[0]!r} is not in outputs.wheels "
                         f"({', '.join(spec['wheels']) or 'none'}); declare it there, or stop "
                         f"the steps from writing it to $OUT")
    strays = sorted(p.name for p in (out / "wheels").iterdir() if not p.name.endswith(".whl"))
    if strays:
        fail(target, f"{where} left {', '.join(strays)} in $OUT, which holds wheels only; "
                     f"write other files elsewhere")
    for dist in spec["wheels"]:
        if not any(normalize(w.name.split("-")[0]) == normalize(dist) for w in made):
            fail(target, f"{where} produced no wheel of {dist!r} in $OUT "
                         f"(found: {', '.join(w.name for w in made) or 'nothing'}); "
                         f"fix the recipe's steps or outputs.wheels")
    if spec["prefix"] and not any((out / "prefix").glob("*")):
        fail(target, f"{where} installed nothing into $PREFIX; fix the recipe's steps")
    info = {
        "component": comp, "target": target, "python": have, "seconds": round(seconds, 1),
        "env": spec["env"], "max_jobs": jobs, "max_jobs_from": why,
        "wheels": [{"file": w.name, "sha256": hashlib.sha256(w.read_bytes()).hexdigest()}
                   for w in made],
    }
    (out / "build-info.json").write_text(json.dumps(info, indent=1, sort_keys=True))
    print(f"==> {comp}: built in {seconds:.1f}s: {', '.join(w.name for w in made) or 'prefix'}")


def top_levels(wheel):
    """The import names a wheel installs: first path parts outside its .dist-info, and the
    same under .data/purelib|platlib (so a module under another distribution name shows)."""
    names = set()
    with zipfile.ZipFile(wheel) as whl:
        for entry in whl.namelist():
            parts = entry.split("/")
            if parts[0].endswith(".data") and len(parts) > 2 and parts[1] in ("purelib",
                                                                               "platlib"):
                parts = parts[2:]
            elif parts[0].endswith((".dist-info", ".data")):
                continue
            name = parts[0] if len(parts) > 1 else re.sub(r"(\.[^.]+)+$", "", parts[0])
            if name and name != "__pycache__" and not entry.endswith(".pth"):
                names.add(name)
    return names


def runtime_deps(target):
    """Exactly the wheels of the cell's lock (/lock/requirements.txt), checked by hash.

    `pip download --no-deps --require-hashes` of the lock (made by `invoke lock`; the host
    has checked that it satisfies every requirement of /wheels/*.whl), from the configured
    index plus the index of each component that comes from one (EXTRA_INDEX_URLS: e.g.
    PyTorch's). A downloaded wheel that installs a module one of ours already installs is
    a second copy of a component under another name: an error, never a silent second copy.
    """
    ours = sorted(Path("/wheels").rglob("*.whl"))
    if not ours:
        fail(target, "component=runtime-deps the wheel set is empty")
    lock = Path("/lock/requirements.txt")
    data = lock.read_bytes() if lock.is_file() else b""
    if hashlib.sha256(data).hexdigest() != os.environ.get("LOCK_SHA256") and data:
        fail(target, "component=runtime-deps the lock differs from LOCK_SHA256; run the "
                     "build through invoke wheels")
    download = Path("/tmp/download")
    download.mkdir(parents=True, exist_ok=True)
    entries = [ln for ln in data.decode().splitlines() if ln.strip() and ln[0] not in "# \t"]
    if entries:
        env = dict(os.environ)
        env.update(secret_env())
        subprocess.check_call([sys.executable, "-m", "venv", "/tmp/venv"])
        extra = [arg for url in os.environ.get("EXTRA_INDEX_URLS", "").split()
                 for arg in ("--extra-index-url", url)]
        cmd = ["/tmp/venv/bin/pip", "download", "--disable-pip-version-check", "--no-deps",
               "--require-hashes", "--only-binary=:all:", "--dest", str(download), *extra,
               "-r", str(lock)]
        print("==> runtime-deps:", " ".join(cmd), flush=True)
        if subprocess.call(cmd, env=env) != 0:
            fail(target, "component=runtime-deps pip download of the lock failed (a locked "
                         "version with no wheel for this Python and platform, a file whose "
                         "sha256 is not in the lock, or no index); see the pip output above, "
                         "then run invoke lock")
    mine = {w.name for w in ours}
    provided = {}
    for wheel in ours:
        for name in top_levels(wheel):
            provided.setdefault(name, wheel.name)
    added = sorted(f for f in download.iterdir() if f.name not in mine)
    for file in added:
        if normalize(file.name.split("-")[0]) in {normalize(w.name.split("-")[0]) for w in ours}:
            fail(target, f"component=runtime-deps {file.name}: a second version of a "
                         f"distribution the set builds; align the set's pins with what its "
                         f"wheels require")
        clash = sorted(n for n in top_levels(file) if n in provided)
        if clash:
            fail(target, f"component=runtime-deps {file.name} would install {clash[0]!r}, "
                         f"which {provided[clash[0]]} of this set already installs: a second "
                         f"copy under another name; make the recipe's outputs.wheels use the "
                         f"name the requirers ask for, or drop the requirement")
    out = Path("/out/_runtime-deps/wheels")
    out.mkdir(parents=True)
    for file in added:
        shutil.copy2(file, out / file.name)
    print("==> runtime-deps:", ", ".join(sorted(p.name for p in out.iterdir())) or "none")


if __name__ == "__main__":
    if sys.argv[1:] == ["toolchain"]:
        toolchain()
    elif len(sys.argv) == 3 and sys.argv[1] in ("build", "runtime-deps"):
        {"build": build, "runtime-deps": runtime_deps}[sys.argv[1]](sys.argv[2])
    else:
        sys.exit("usage: build-component toolchain | build TARGET | runtime-deps TARGET")
