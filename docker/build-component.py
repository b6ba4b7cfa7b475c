#!/usr/bin/env python3
"""Runs inside Dockerfile.wheels (standard library only; any Python 3.8+).

  build TARGET         run one component's recipe steps (the SPEC build arg)
  runtime-deps TARGET  download the binary wheels a cell's wheel set needs

Every failure prints one line starting with `wheelforge-error:` that names the
component, the bake target and the failing command; `invoke wheels` shows it.
"""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

SECRETS = Path("/run/secrets")


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
    if have != spec["python"]:
        fail(target, f"{where} the build image has Python {have}, the cell wants "
                     f"{spec['python']}; fix the stack's build_image or the matrix python")
    link_dependencies()
    out = Path("/out", comp)
    env = dict(os.environ)
    env.update(secret_env())
    env.update({
        "SRC": "/src", "DEPS": "/deps", "OUT": str(out / "wheels"),
        "PREFIX": str(out / "prefix"), "MAX_JOBS": os.environ.get("MAX_JOBS", "1"),
        "CMAKE_BUILD_PARALLEL_LEVEL": os.environ.get("MAX_JOBS", "1"),
        "PIP_FIND_LINKS": "/deps/wheels", "CCACHE_DIR": "/root/.cache/ccache",
    })
    env.update(spec["env"])
    (out / "wheels").mkdir(parents=True)
    started = time.time()
    steps = spec["steps"]
    for i, step in enumerate(steps, 1):
        print(f"==> {comp} step {i}/{len(steps)}: {step}", flush=True)
        code = subprocess.call(["bash", "-e", "-o", "pipefail", "-c", step], cwd="/src", env=env)
        if code != 0:
            first = step.strip().splitlines()[0]
            fail(target, f"{where} step {i}/{len(steps)} exited {code}: {first}")
    seconds = time.time() - started
    made = sorted((out / "wheels").glob("*.whl"))
    for dist in spec["wheels"]:
        if not any(normalize(w.name.split("-")[0]) == normalize(dist) for w in made):
            fail(target, f"{where} produced no wheel of {dist!r} in $OUT "
                         f"(found: {', '.join(w.name for w in made) or 'nothing'}); "
                         f"fix the recipe's steps or outputs.wheels")
    if spec["prefix"] and not any((out / "prefix").glob("*")):
        fail(target, f"{where} installed nothing into $PREFIX; fix the recipe's steps")
    info = {
        "component": comp, "target": target, "python": have, "seconds": round(seconds, 1),
        "env": spec["env"], "max_jobs": env["MAX_JOBS"],
        "wheels": [{"file": w.name, "sha256": hashlib.sha256(w.read_bytes()).hexdigest()}
                   for w in made],
    }
    (out / "build-info.json").write_text(json.dumps(info, indent=1, sort_keys=True))
    print(f"==> {comp}: built in {seconds:.1f}s: {', '.join(w.name for w in made) or 'prefix'}")


def runtime_deps(target):
    """Binary wheels of every runtime requirement of /wheels/*.whl, not already in it."""
    ours = sorted(Path("/wheels").rglob("*.whl"))
    if not ours:
        fail(target, "component=runtime-deps the wheel set is empty")
    env = dict(os.environ)
    env.update(secret_env())
    subprocess.check_call([sys.executable, "-m", "venv", "/tmp/venv"])
    pins = Path("/tmp/ours.txt")
    pins.write_text("".join(f"{w.name.split('-')[0]}=={w.name.split('-')[1]}\n" for w in ours))
    download = Path("/tmp/download")
    cmd = ["/tmp/venv/bin/pip", "download", "--disable-pip-version-check", "--only-binary=:all:",
           "--dest", str(download), "--find-links", "/wheels", "--constraint", str(pins),
           *map(str, ours)]
    print("==> runtime-deps:", " ".join(cmd), flush=True)
    if subprocess.call(cmd, env=env) != 0:
        fail(target, "component=runtime-deps pip download of the runtime requirements failed "
                     "(a requirement with no binary wheel for this Python, or no index); "
                     "see the pip output above")
    out = Path("/out/_runtime-deps/wheels")
    out.mkdir(parents=True)
    mine = {w.name for w in ours}
    for file in sorted(download.iterdir()):
        if file.name not in mine:
            shutil.copy2(file, out / file.name)
    print("==> runtime-deps:", ", ".join(sorted(p.name for p in out.iterdir())) or "none")


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("build", "runtime-deps"):
        sys.exit("usage: build-component build|runtime-deps TARGET")
    {"build": build, "runtime-deps": runtime_deps}[sys.argv[1]](sys.argv[2])
