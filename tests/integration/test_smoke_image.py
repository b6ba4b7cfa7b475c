"""The smoke suite proves the demo runtime images with the recipes' own checks, and proves
that nothing compiles: jitdemo with its prebuilt kernel passes, without it no-compile
fails naming the compile."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CELLS, ROOT, run_invoke
from wheelforge.core import types
from wheelforge.recipes import load

# What it proves does not depend on the engine release: `make test` runs it once.
pytestmark = [pytest.mark.integration, pytest.mark.one_engine]

JITDEMO_TREE = ROOT / "demo" / "py" / "jitdemo"
OWN_CHECKS = ("lz4:roundtrip", "msgpack:roundtrip", "msgpack-numpy:roundtrip", "scmext:api",
              "jitdemo:kernel")


def jitdemo_recipe():
    _, recipes = load(types.Inputs(recipes_dir=ROOT / "demo" / "recipes"))
    return recipes["jitdemo"]


def build_jitdemo_wheel(tmp: Path, prebuilt: str) -> Path:
    """jitdemo's wheel built here by its recipe's own steps, with JITDEMO_PREBUILT set to
    `prebuilt` ("0": the variant that leaves _kernel.so out)."""
    recipe = jitdemo_recipe()
    src, out = tmp / f"src-{prebuilt}", tmp / f"out-{prebuilt}"
    shutil.copytree(JITDEMO_TREE, src, ignore=shutil.ignore_patterns(
        "__pycache__", "build", "*.egg-info", "*.so"))
    out.mkdir()
    env = {**os.environ, **dict(recipe.env), "JITDEMO_PREBUILT": prebuilt, "OUT": str(out),
           "SRC": str(src), "PIP_NO_INDEX": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for step in recipe.steps:
        subprocess.run(["bash", "-e", "-o", "pipefail", "-c", step], cwd=src, env=env,
                       check=True, capture_output=True, timeout=300)
    wheels = list(out.glob("jitdemo-0.1.0-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def manifest_for(recipe) -> dict:
    return {"schema": 1, "cell": "host", "archs": [], "runtime_env": dict(recipe.runtime_env),
            "components": {recipe.name: {
                "imports": list(recipe.imports), "runtime_env": dict(recipe.runtime_env),
                "wheels": [{"distribution": "jitdemo", "version": recipe.version}],
                "smoke": [{"name": c.name, "run": c.run, "gpu": c.gpu}
                          for c in recipe.smoke]}}}


@pytest.mark.skipif(shutil.which("cc") is None, reason="the JIT path needs cc on this host")
@pytest.mark.parametrize("prebuilt", ["1", "0"])
def test_jitdemo_on_the_host_passes_prebuilt_and_fails_no_compile_without(
        prebuilt: str, tmp_path: Path) -> None:
    """The suite on this host (as `invoke smoke --host` runs it) in a venv holding only
    jitdemo's wheel: with the kernel in the wheel nothing compiles; the variant without
    it works, by compiling kernel.c with cc at import, and no-compile fails naming both
    the compiler and the library it wrote."""
    recipe = jitdemo_recipe()
    wheel = build_jitdemo_wheel(tmp_path, prebuilt)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-index",
                    "--no-deps", str(wheel)], check=True, timeout=300)
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps(manifest_for(recipe)))
    cache, report = tmp_path / "jit-cache", tmp_path / "report.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JITDEMO_CACHE_DIR": str(cache),
           "HOME": str(tmp_path / "home")}
    env.pop("FLYDSL_RUNTIME_RUN_ONLY", None)
    proc = subprocess.run([str(venv / "bin" / "python"), "-m", "wheelforge.smoke",
                           "--manifest", str(manifest), "--report", str(report)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    checks = {c["name"]: c for c in json.loads(report.read_text())["checks"]}
    assert checks["manifest"]["status"] == "pass", checks["manifest"]
    assert checks["jitdemo:kernel"]["status"] == "pass", checks["jitdemo:kernel"]
    no_compile = checks["no-compile"]
    if prebuilt == "1":
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert checks["jitdemo:kernel"]["reason"].endswith("kernel prebuilt")
        assert no_compile["status"] == "pass", no_compile
        assert not cache.exists()
        return
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert no_compile["status"] == "fail"
    [library] = cache.glob("kernel-*.so")
    # compiled while the first check that imports jitdemo ran (manifest imports it)
    assert no_compile["reason"].startswith(
        f"compiled at run time: file written during manifest: {library} (created)")
    # cc, or one of the programs it runs (cc1, as, collect2, ld), named with its command
    # line (a short-lived one may fall between two polls on a busy machine, not all)
    assert any(line.startswith("compiler started during manifest: ")
               and (str(Path("jitdemo") / "kernel.c") in line or str(cache) in line)
               for line in no_compile["output"]), no_compile["output"]
    assert "smoke: FAILED: no-compile" in proc.stdout


def test_recipe_checks_run_and_pass_in_the_demo_image(demo_images, tmp_path):
    """`invoke smoke --image` on a demo CPU image: every component's own checks run from
    the image's manifest and pass, and nothing compiled."""
    tag = demo_images[CELLS[0]].tag
    report = tmp_path / "report.json"
    proc = run_invoke("smoke", "--image", tag, "--report", str(report))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(report.read_text())
    checks = {c["name"]: c for c in data["checks"]}
    for name in OWN_CHECKS:
        assert checks[name]["status"] == "pass", checks[name]
        assert checks[name]["metrics"] == {"exit": 0}
    assert checks["jitdemo:kernel"]["reason"].endswith("kernel prebuilt")
    assert checks["scmext:api"]["reason"] == "scmext 0.1.0 (pybind11 2.13.6)"
    assert checks["no-compile"]["status"] == "pass", checks["no-compile"]
    assert "/var/cache/jit/jitdemo" in checks["no-compile"]["reason"] or (
        checks["no-compile"]["metrics"]["folders"] >= 5)
    assert list(checks)[-1] == "no-compile"
    for name in OWN_CHECKS:
        assert f"\n{name} " in proc.stdout


def test_jitdemo_without_its_artifact_fails_in_the_image(demo_images, tmp_path):
    """The variant wheel swapped into a demo image: the image has no compiler (its stack
    forbids one), so jitdemo cannot even load there; the smoke says so."""
    wheel = build_jitdemo_wheel(tmp_path, "0")
    tag = demo_images[CELLS[0]].tag
    script = (f"pip install -q --no-index --no-deps --force-reinstall /w/{wheel.name} && "
              "python -m smoke --only manifest,jitdemo,no-compile --report /tmp/r.json; "
              "code=$?; cat /tmp/r.json >&2; exit $code")
    proc = subprocess.run(
        ["docker", "run", "--rm", "--network=none", "--user", "0:0",
         "-v", f"{ROOT / 'wheelforge' / 'smoke'}:/opt/forge/smoke:ro",
         "-v", f"{wheel.parent}:/w:ro", "-e", "PYTHONPATH=/opt/forge",
         "-e", "PYTHONDONTWRITEBYTECODE=1", tag, "bash", "-c", script],
        capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    report = json.loads(proc.stderr[proc.stderr.index("{"):])
    checks = {c["name"]: c for c in report["checks"]}
    kernel = checks["jitdemo:kernel"]
    assert kernel["status"] == "fail"
    assert "no prebuilt _kernel.so in the package and no C compiler (cc)" in kernel["reason"]
    assert checks["manifest"]["status"] == "fail"
