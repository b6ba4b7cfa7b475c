"""The runtime policy of Dockerfile.clean, on the real engine.

Zero compilation is proven (every file added to the venv is in an installed wheel's
RECORD); a toolchain in the image is the stack's call (runtime_toolchain in the
manifest); runtime apt packages come from the manifest; JIT caches have a place.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from tests.conftest import CELLS, ROOT, copy_recipes, env_args
from wheelforge.build import build_sets
from wheelforge.core import types, wheelset
from wheelforge.image import build_image, images_summary
from wheelforge.plan import make_plan

pytestmark = [pytest.mark.integration, pytest.mark.one_engine]
BASE = "wheelforge-demo/bookworm:base"


def by_hand(wheels: Path, tag: str, *, env: bool = True) -> subprocess.CompletedProcess:
    """Dockerfile.clean as a user runs it: no invoke, no build args but the base and the
    set's runtime_env (`env`: as the build's first check asks for them).

    Without the build cache, so that the checks run (and print) on every run, whatever
    an earlier run or the other engine of `make test` left in the cache."""
    return subprocess.run(
        ["docker", "buildx", "build", "-f", "docker/Dockerfile.clean", "--build-context",
         f"wheels={wheels}", "--build-arg", f"RUNTIME_IMAGE={BASE}",
         *(env_args(wheels) if env else []), "--progress=plain",
         "--no-cache", "--load", "-t", tag, "."],
        cwd=ROOT, capture_output=True, text=True, check=False)


def rmi(tag: str) -> None:
    subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, check=False)


def edited_set(demo_build, tmp_path: Path, **changes) -> Path:
    """A copy of the first demo cell's set with top-level manifest keys changed."""
    folder = tmp_path / "set"
    shutil.copytree(demo_build.out / CELLS[0], folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest.update(changes)
    wheelset.write_manifest(folder, manifest)
    return folder


def test_demo_image_passes_the_record_proof_and_has_a_jit_cache(demo_build, tmp_path):
    tag = "wheelforge-test/policy:record-ok"
    proc = by_hand(demo_build.out / CELLS[0], tag)
    try:
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "runtime image: toolchain forbidden, none present; pip check passes" in proc.stderr
        assert "files added to /opt/venv are in an installed wheel's RECORD" in proc.stderr
        env = subprocess.run(["docker", "image", "inspect", "-f", "{{json .Config.Env}}", tag],
                             capture_output=True, text=True, check=True).stdout
        assert "TRITON_CACHE_DIR=/var/cache/jit/triton" in env
        # unset on purpose: with it, AITER would ignore the modules its wheel packages
        assert "AITER_JIT_DIR" not in env
        assert "MORI_JIT_CACHE_DIR=/var/cache/jit/mori" in env
        # writable by any user, outside the venv (whose files the proof covers)
        probe = subprocess.run(["docker", "run", "--rm", "--network=none", "--user", "4242",
                                tag, "sh", "-c", 'touch "$TRITON_CACHE_DIR/k" && echo ok'],
                               capture_output=True, text=True, check=False)
        assert probe.stdout.strip() == "ok", probe.stderr
    finally:
        rmi(tag)


def test_toolchain_allowed_passes_and_forbidden_refuses(demo_build, tmp_path):
    """The same runtime base with a compiler (gcc, from the manifest's runtime_apt)."""
    allowed = edited_set(demo_build, tmp_path / "a", runtime_apt=["gcc"],
                         runtime_toolchain="allowed")
    tag = "wheelforge-test/policy:toolchain-allowed"
    proc = by_hand(allowed, tag)
    try:
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "runtime image: toolchain allowed (/usr/bin/gcc" in proc.stderr
        which = subprocess.run(["docker", "run", "--rm", "--network=none", tag, "sh", "-c",
                                "command -v gcc"], capture_output=True, text=True, check=False)
        assert which.stdout.strip() == "/usr/bin/gcc"
    finally:
        rmi(tag)
    forbidden = edited_set(demo_build, tmp_path / "f", runtime_apt=["gcc"],
                           runtime_toolchain="forbidden")
    proc = by_hand(forbidden, "wheelforge-test/policy:toolchain-forbidden")
    assert proc.returncode != 0
    assert ("wheelforge-error: compiler /usr/bin/gcc is in the image; stack bookworm sets "
            "runtime_toolchain: forbidden") in proc.stderr


def _wheel(folder: Path, name: str, version: str, files: dict[str, str]) -> Path:
    """A plain py3 wheel with a correct RECORD (it passes every check of the set)."""
    info = f"{name}-{version}.dist-info"
    files = {**files,
             f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
             f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                              "Tag: py3-none-any\n"}
    rows = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest())
        rows.append(f"{path},sha256={digest.decode().rstrip('=')},{len(text.encode())}")
    rows.append(f"{info}/RECORD,,")
    out = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(out, "w") as zf:
        for path, text in files.items():
            zf.writestr(path, text)
        zf.writestr(f"{info}/RECORD", "\n".join(rows) + "\n")
    return out


def test_a_file_outside_every_record_fails_the_build_naming_it(demo_build, tmp_path):
    """A package that compiles at first start (here: a .pth hook that drops an extension
    module into site-packages, as build-on-import packages do) is caught, named."""
    folder = edited_set(demo_build, tmp_path)
    hook = ("import os, sys; d = os.path.join(sys.prefix, 'lib', 'python%d.%d' % "
            "sys.version_info[:2], 'site-packages', 'jitpkg'); os.path.isdir(d) and "
            "open(os.path.join(d, '_fast.cpython-311-x86_64-linux-gnu.so'), 'wb').close()\n")
    wheel = _wheel(folder, "jitpkg", "1.0", {"jitpkg/__init__.py": "", "jitpkg.pth": hook})
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["components"]["jitpkg"] = {"runtime": True, "imports": ["jitpkg"],
                                        "wheels": [wheelset.wheel_entry(wheel)]}
    wheelset.write_manifest(folder, manifest)
    proc = by_hand(folder, "wheelforge-test/policy:planted")
    assert proc.returncode != 0
    assert ("wheelforge-error: /opt/venv/lib/python3.11/site-packages/jitpkg/"
            "_fast.cpython-311-x86_64-linux-gnu.so: added to /opt/venv but in no installed "
            "wheel's RECORD") in proc.stderr
    # the same wheel without the hook installs and passes: the proof is what failed
    clean = edited_set(demo_build, tmp_path / "clean")
    good = _wheel(clean, "jitpkg", "1.0", {"jitpkg/__init__.py": ""})
    manifest = json.loads((clean / "manifest.json").read_text())
    manifest["components"]["jitpkg"] = {"runtime": True, "imports": ["jitpkg"],
                                        "wheels": [wheelset.wheel_entry(good)]}
    wheelset.write_manifest(clean, manifest)
    tag = "wheelforge-test/policy:unplanted"
    ok = by_hand(clean, tag)
    rmi(tag)
    assert ok.returncode == 0, ok.stderr[-3000:]


def test_recipe_runtime_apt_reaches_the_image_and_its_table(demo_build, tmp_path):
    """runtime_apt of a runtime component: merged into the manifest, installed, reported."""
    recipes = copy_recipes(tmp_path / "recipes", {"msgpack-numpy.yaml": (
        "imports:", "runtime_apt: [zstd]\nimports:")})
    p = make_plan(types.Inputs(recipes_dir=recipes, only=("msgpack-numpy",)),
                  channel="stable", cells_glob=CELLS[0])
    out = tmp_path / "wheels"
    build_sets(p, replace(demo_build.options, exports=tmp_path / "exports"),
               out_root=out)
    manifest = wheelset.read_manifest(out / CELLS[0])
    assert manifest["runtime_apt"] == ["zstd"]
    assert manifest["runtime_toolchain"] == "forbidden"
    tag = "wheelforge-test/policy:runtime-apt"
    try:
        built = build_image(out / CELLS[0], tag=tag)
        assert "zstd" in built.apt_packages and built.apt_size > 0
        text = images_summary([built])
        assert "runtime apt" in text.splitlines()[0]
        assert f"runtime apt in {CELLS[0]}: " in text and " zstd" in text
        run = subprocess.run(["docker", "run", "--rm", "--network=none", tag, "zstd", "-V"],
                             capture_output=True, text=True, check=False)
        assert run.returncode == 0 and "zstandard" in run.stdout.lower(), run.stderr
    finally:
        rmi(tag)


def test_the_runtime_env_of_the_manifest_is_the_images_environment(demo_build, tmp_path):
    """A set whose manifest carries a runtime_env (as a ckfree cell carries ENABLE_CK=0):
    `invoke image` writes it into the image's environment; a by-hand build that does not
    pass it fails with one line saying which build args to give."""
    folder = edited_set(demo_build, tmp_path, runtime_env={"DEMO_FLAG": "0", "DEMO_MODE": "x"})
    tag = "wheelforge-test/policy:runtime-env"
    try:
        built = build_image(folder, tag=tag)
        env = subprocess.run(["docker", "image", "inspect", "-f", "{{json .Config.Env}}",
                              built.tag], capture_output=True, text=True, check=True).stdout
        assert "DEMO_FLAG=0" in env and "DEMO_MODE=x" in env, env
        assert f"WHEELFORGE_CELL={CELLS[0]}" in env
        proc = by_hand(folder, tag + "-by-hand", env=False)
        assert proc.returncode != 0
        errors = [ln for ln in proc.stderr.splitlines() if "wheelforge-error:" in ln]
        assert errors and "runtime_env sets DEMO_FLAG=0, the image has DEMO_FLAG=(unset); " \
            "build with --build-arg ENV1_NAME=DEMO_FLAG --build-arg ENV1_VALUE=0" in errors[0]
    finally:
        rmi(tag)
        rmi(tag + "-by-hand")
