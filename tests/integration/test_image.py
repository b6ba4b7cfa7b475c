"""Runtime images from the demo wheel sets: zero compilation, enforced and proven."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
import uuid
from pathlib import Path

import pytest

from tests.conftest import CELLS, ROOT, copy_recipes, env_args, run_invoke
from wheelforge.core import engine, wheelset

pytestmark = pytest.mark.integration


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check)


def by_hand(wheels: Path, tag: str) -> subprocess.CompletedProcess:
    """Dockerfile.clean as a user runs it by hand: no invoke."""
    return subprocess.run(
        ["docker", "buildx", "build", "-f", "docker/Dockerfile.clean", "--build-context",
         f"wheels={wheels}", "--build-arg", "RUNTIME_IMAGE=wheelforge-demo/bookworm:base",
         *env_args(wheels), "--load", "-t", tag, "."], cwd=ROOT, capture_output=True,
        text=True, check=False)


def image_layers(tag: str) -> list[tuple[str, bytes]]:
    """(path, content) of every file in every layer of `tag` (docker save)."""
    saved = subprocess.run(["docker", "save", tag], capture_output=True, check=True).stdout
    files = []
    with tarfile.open(fileobj=io.BytesIO(saved)) as outer:
        for member in outer.getmembers():
            if not member.isfile():
                continue
            data = outer.extractfile(member).read()
            try:
                with tarfile.open(fileobj=io.BytesIO(data)) as layer:
                    for inner in layer.getmembers():
                        if inner.isfile():
                            files.append((inner.name, layer.extractfile(inner).read()))
            except tarfile.TarError:
                files.append((member.name, data))  # configs, manifests
    return files


def test_every_component_imports_in_the_running_image(demo_build, demo_images):
    for cell, built in demo_images.items():
        manifest = wheelset.read_manifest(demo_build.out / cell)
        modules = [m for c in manifest["components"].values() for m in c["imports"]]
        code = "import importlib,sys; [importlib.import_module(m) for m in sys.argv[1:]]"
        proc = docker("run", "--rm", "--network=none", built.tag, "python", "-c", code,
                      *modules, check=False)
        assert proc.returncode == 0, proc.stderr
        labels = engine.image_inspect(built.tag)["Config"]["Labels"]
        assert labels["dev.wheelforge.cell"] == cell
        assert labels["dev.wheelforge.archs"] == manifest["archs"][0]
        assert len(labels["dev.wheelforge.manifest.sha256"]) == 64
        assert labels["org.opencontainers.image.revision"]


@pytest.mark.one_engine
def test_no_compiler_in_the_image(demo_images):
    tag = demo_images[CELLS[0]].tag
    probe = "for c in gcc g++ cc c++ clang hipcc amdclang; do command -v $c; done; true"
    proc = docker("run", "--rm", "--network=none", tag, "sh", "-c", probe)
    assert proc.stdout.strip() == ""


def test_no_wheel_file_in_any_layer_or_history(demo_build, demo_images):
    tag = demo_images[CELLS[0]].tag
    ours = {p.name for p in (demo_build.out / CELLS[0]).glob("*.whl")}
    names = [name for name, _ in image_layers(tag)]
    assert names and ours
    assert not [n for n in names if Path(n).name in ours]
    # the only wheels in the image are the base image's own (Debian's python3-venv)
    assert {n for n in names if n.endswith(".whl") and "/usr/share/python-wheels/" not in n} \
        == set()
    history = docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", tag).stdout
    assert ".whl" not in history


def test_secrets_reach_the_build_but_no_layer(demo_build, tmp_path):
    """A CA bundle and an index token are used by a build step, and land nowhere.

    The index is not reachable: msgpack builds with the builder's own setuptools (no
    index needed), and its toolchain stage comes from the demo build's cache."""
    marker = f"wheelforge-ca-marker-{uuid.uuid4().hex}"
    token = f"tok{uuid.uuid4().hex}"
    ca = tmp_path / "ca.pem"
    ca.write_text(Path("/etc/ssl/certs/ca-certificates.crt").read_text() + f"# {marker}\n")
    check = (f'grep -q {marker} "$PIP_CERT" && test "$PIP_INDEX_URL" = '
             f'"https://user:{token}@index.example.invalid/simple"')
    recipes = copy_recipes(tmp_path / "recipes", {"msgpack.yaml": (
        "steps:\n", f"steps:\n  - {check}\n")})
    os.environ["WHEELFORGE_PIP_INDEX_URL"] = f"https://user:{token}@index.example.invalid/simple"
    try:
        proc = run_invoke("wheels", "--recipes", str(recipes), "--channel", "stable",
                          "--cells", CELLS[0], "--only", "msgpack", "--ca-bundle", str(ca),
                          env={"WHEELFORGE_WHEELS": str(tmp_path / "wheels")})
    finally:
        del os.environ["WHEELFORGE_PIP_INDEX_URL"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    wheels = tmp_path / "wheels" / CELLS[0]
    for path in wheels.iterdir():
        data = path.read_bytes()
        assert marker.encode() not in data and token.encode() not in data, path
    tag = f"wheelforge-test/secrets:{uuid.uuid4().hex[:8]}"
    built = by_hand(wheels, tag)
    assert built.returncode == 0, built.stderr[-3000:]
    try:
        for name, data in image_layers(tag):
            assert marker.encode() not in data and token.encode() not in data, name
        history = docker("history", "--no-trunc", tag).stdout
        assert marker not in history and token not in history
    finally:
        docker("rmi", "-f", tag, check=False)


@pytest.mark.one_engine
def test_planted_sdist_fails_the_build_naming_it(demo_build, tmp_path):
    wheels = tmp_path / "set"
    shutil.copytree(demo_build.out / CELLS[0], wheels)
    (wheels / "evil-1.0.tar.gz").write_bytes(b"not a wheel")
    proc = by_hand(wheels, "wheelforge-test/planted:sdist")
    assert proc.returncode != 0
    assert ("wheelforge-error: 'evil-1.0.tar.gz': not a wheel; an sdist or other file would "
            "need compiling") in proc.stderr


@pytest.mark.one_engine
def test_corrupted_wheel_is_refused_before_install(demo_build, tmp_path):
    wheels = tmp_path / "set"
    shutil.copytree(demo_build.out / CELLS[0], wheels)
    victim = next(wheels.glob("msgpack-1*.whl"))
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.unlink()  # the copy may be a hard link to the good set
    victim.write_bytes(bytes(data))
    proc = by_hand(wheels, "wheelforge-test/planted:corrupt")
    assert proc.returncode != 0
    line = f"wheelforge-error: {victim.name} (msgpack): sha256 "
    assert line in proc.stderr and "is not the manifest's" in proc.stderr
    assert "Successfully installed" not in proc.stderr


@pytest.mark.one_engine
def test_wheel_for_another_python_fails_naming_it(demo_build, tmp_path):
    wheels = tmp_path / "set"
    shutil.copytree(demo_build.out / CELLS[0], wheels)
    manifest = json.loads((wheels / "manifest.json").read_text())
    old = next(wheels.glob("msgpack-1*.whl"))
    new = old.with_name(old.name.replace("cp311-cp311", "cp312-cp312"))
    old.rename(new)
    wheel = manifest["components"]["msgpack"]["wheels"][0]
    wheel["file"] = new.name
    wheelset.write_manifest(wheels, manifest)
    proc = by_hand(wheels, "wheelforge-test/planted:python")
    assert proc.returncode != 0
    assert f"wheelforge-error: {new.name} (msgpack): built for cp312-cp312-linux_x86_64" in (
        proc.stderr)


@pytest.mark.one_engine
def test_smoke_in_image_cpu_path_passes_and_require_gpu_fails(demo_images, tmp_path):
    tag = demo_images[CELLS[0]].tag
    report = tmp_path / "report.json"
    ok = run_invoke("smoke", "--image", tag, "--report", str(report))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    data = json.loads(report.read_text())
    assert data["passed"] is True
    status = {c["name"]: c["status"] for c in data["checks"]}
    assert status["manifest"] == "pass" and status["device"] == "skip"
    assert data["image_digest"] == engine.image_id(tag)
    bad = run_invoke("smoke", "--image", tag, "--require-gpu", "--report", str(report))
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines()[-1].startswith("error: smoke: failed (exit 1)")
    device = next(c for c in json.loads(report.read_text())["checks"] if c["name"] == "device")
    assert device["status"] == "fail" and "--require-gpu" in device["reason"]


@pytest.mark.one_engine
def test_build_from_a_missing_wheel_set_is_one_clear_line(tmp_path):
    proc = run_invoke("image", "--cells", "no-such-cell",
                      env={"WHEELFORGE_WHEELS": str(tmp_path)})
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: {tmp_path}: no wheel sets; run `invoke wheels` first"


def test_fresh_build_context_is_small(demo_build, tmp_path):
    """.dockerignore keeps the context to the two scripts the Dockerfiles read."""
    proc = subprocess.run(
        ["docker", "buildx", "build", "-f", "docker/Dockerfile.clean", "--build-context",
         f"wheels={demo_build.out / CELLS[0]}", "--build-arg",
         "RUNTIME_IMAGE=wheelforge-demo/bookworm:base", *env_args(demo_build.out / CELLS[0]),
         "--progress=plain", "--output", "type=cacheonly", "."], cwd=ROOT, capture_output=True,
        text=True, check=True)
    sizes = [line for line in proc.stderr.splitlines() if "transferring context:" in line]
    assert sizes, proc.stderr[-2000:]
    size = sizes[-1].split("transferring context:")[1].split()[0]  # e.g. 5.84kB
    number = size.rstrip("kMGB")
    assert size.endswith(("kB", "B")) and not size.endswith(("MB", "GB")), sizes[-1]
    assert float(number) < 1000, sizes[-1]


@pytest.mark.one_engine
def test_smoke_compare_runs_the_perf_checks_in_both_images(demo_images):
    a, b = (demo_images[c].tag for c in CELLS)
    proc = run_invoke("smoke", "--image", a, "--compare", b)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{b}/{a}" in proc.stdout  # the ratio column of the comparison table
    assert proc.stdout.count("smoke: PASSED") == 2
