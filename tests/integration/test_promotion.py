"""Promotion on evidence, on both image stores, through a registry that needs a login.

Real parts only: the engine (the shared one with the containerd image store, and a
private dockerd with the classic store, started and stopped here), Debian's
docker-registry with htpasswd authentication, skopeo, and the smoke suite.
The registry's credentials reach docker and skopeo only through a credential
helper of the tests' own (`docker-credential-wftest` on PATH, named by `credHelpers` in a
DOCKER_CONFIG of the tests'); no `auths` entry exists in any config that a run reads (the
tests read the registry back with an `auths` file of their own).

No GPU here: the suite's real report says that no check ran on a GPU, and such a report
must not promote. The GPU report is that real report with its device set to a GPU and its
device check passed (the one fabricated input, as a GPU machine would write it).
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import registry_server
from tests.conftest import CELLS, run_invoke
from wheelforge.core import wheelset
from wheelforge.core.engine import stop_group
from wheelforge.publish import push_image
from wheelforge.publish.registry import Registry

pytestmark = pytest.mark.integration

CELL = CELLS[0]
REPO = "wheelforge/demo-runtime"
FLOATING = ("stable-x86-64-v2-default", "stable-x86-64-v2", "latest")
DAY = "2026-11-24"
DATED = f"{CELL}-20261124"
USER, PASSWORD = "wf-helper-user", registry_server.PASSWORD


def _require(binary: str) -> None:
    if shutil.which(binary) is None:
        if os.environ.get("CI"):
            pytest.fail(f"{binary} is not installed; ci/setup-host.sh should have installed it")
        pytest.skip(f"{binary} not installed (run ci/setup-host.sh)")


@dataclass(frozen=True)
class Login:
    """A registry with htpasswd auth and the environment that reaches it via the helper."""

    host: str
    env: dict[str, str]
    helper_log: Path
    reader: Path  # a docker config.json with `auths` for the tests' own reads

    def registry(self) -> Registry:
        return Registry(self.host, config=self.reader)

    def tags(self) -> dict[str, str | None]:
        reg = self.registry()
        return {t: reg.resolve(REPO, t) for t in sorted(reg.tags(REPO))}


@contextlib.contextmanager
def login_registry(root: Path, *, delete: bool = True) -> Iterator[Login]:
    auth = registry_server.htpasswd_auth(root, USER)
    with registry_server.start(root / "registry", auth=auth, delete=delete) as server:
        bin_dir, config = root / "bin", root / "docker-config"
        (config / "cli-plugins").mkdir(parents=True)
        helper_log = registry_server.credential_helper(bin_dir, "wftest", server.host, USER,
                                                       PASSWORD)
        (config / "config.json").write_text(json.dumps({"credHelpers": {server.host: "wftest"}}))
        # The buildx of the DOCKER_CONFIG the tests run under (if any), else the system's.
        outer = Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")
        plugin = outer / "cli-plugins" / "docker-buildx"
        if plugin.is_file():
            (config / "cli-plugins" / "docker-buildx").symlink_to(plugin)
        env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
               "DOCKER_CONFIG": str(config)}
        reader = root / "reader" / "config.json"
        reader.parent.mkdir()
        secret = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        reader.write_text(json.dumps({"auths": {server.host: {"auth": secret}}}))
        yield Login(host=server.host, env=env, helper_log=helper_log, reader=reader)


@contextlib.contextmanager
def classic_engine(root: Path) -> Iterator[dict[str, str]]:
    """A private dockerd with the classic image store (no containerd-snapshotter).

    It shares this host's network namespace (so that it reaches the loopback registry),
    so it gets a bridge of its own, made here and removed after: with `--bridge=none` a
    dockerd deletes the host's `docker0`, which the shared engine's containers use.
    """
    _require("dockerd")
    _require("ip")
    root.mkdir(parents=True, exist_ok=True)
    (root / "daemon.json").write_text("{}")
    sock = root / "docker.sock"
    tag = os.getpid() % 100000
    exec_root = Path(f"/run/wfc{tag}")  # short: containerd's socket lives under it
    bridge, net = f"wfc{tag}", f"10.214.{tag % 250}"
    made = subprocess.run(["ip", "link", "add", bridge, "type", "bridge"], check=False,
                          capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    process = None
    try:
        subprocess.run(["ip", "addr", "add", f"{net}.1/24", "dev", bridge], check=True)
        subprocess.run(["ip", "link", "set", bridge, "up"], check=True)
        log = (root / "dockerd.log").open("ab")
        process = subprocess.Popen(
            ["dockerd", "--config-file", str(root / "daemon.json"), "--data-root",
             str(root / "data"), "--exec-root", str(exec_root), "--pidfile",
             str(root / "dockerd.pid"), "-H", f"unix://{sock}", f"--bridge={bridge}",
             "--iptables=false", "--ip6tables=false"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        env = {"DOCKER_HOST": f"unix://{sock}"}
        for _ in range(120):
            if process.poll() is not None:
                pytest.fail(f"the private dockerd exited; see {root / 'dockerd.log'}")
            info = docker("info", "--format", "{{.Driver}}", env=env, check=False)
            if info.returncode == 0:
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"the private dockerd did not answer; see {root / 'dockerd.log'}")
        assert info.stdout.strip() == "overlay2", info.stdout  # the classic store
        yield env
    finally:
        if process is not None:
            stop_group(process, timeout=60)
        subprocess.run(["ip", "link", "del", bridge], check=False, capture_output=True)
        shutil.rmtree(exec_root, ignore_errors=True)


def docker(*args: str, env: dict | None = None, check: bool = True,
           stdin: int | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, stdin=stdin,
                          env={**os.environ, **(env or {})}, check=False, timeout=900)
    assert not check or proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def invoke(*args: str, env: dict) -> subprocess.CompletedProcess:
    proc = run_invoke(*args, env=env, timeout=1500)
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    return proc


def error_lines(proc: subprocess.CompletedProcess) -> list[str]:
    return [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.startswith("error:")]


def gpu_report(cpu_report: Path, dest: Path) -> Path:
    """The suite's real report as a GPU machine writes it: device cuda, device check run."""
    data = json.loads(cpu_report.read_text())
    data["host"]["device"] = "cuda"
    for check in data["checks"]:
        if check["name"] == "device":
            check.update(status="pass", reason="1 GPU (fabricated by the test)", gpu=True)
    dest.write_text(json.dumps(data))
    return dest


@pytest.fixture(scope="module")
def wheels(demo_build, tmp_path_factory) -> Path:
    """WHEELFORGE_WHEELS for the CLI: the demo cell's wheel set (its manifest)."""
    root = tmp_path_factory.mktemp("promotion-wheels")
    shutil.copytree(demo_build.out / CELL, root / CELL)
    return root


@pytest.fixture(scope="module")
def local_images(demo_images) -> tuple[str, str]:
    """Two different runtime images of the cell, in the shared engine.

    The second is built as runtime images are (one image manifest, no attestations), so
    that its push onto a tag holding the first is what a second publish would send. An
    image index with an attestation would send two HEADs of that tag at once, each asking
    for an OCI manifest, which distribution 2.8 answers by converting the held manifest
    to schema 1 (writing a blob inside a HEAD; see registry_server.py).
    """
    first = demo_images[CELL].tag
    second = "wheelforge-test/runtime:second"
    build = subprocess.run(["docker", "buildx", "build", "--provenance=false", "--sbom=false",
                            "--load", "-q", "-t", second, "-"], text=True, check=False,
                           input=f"FROM {first}\nLABEL dev.wheelforge.test=second\n",
                           capture_output=True, timeout=900)
    assert build.returncode == 0, build.stderr
    return first, second


# ---- 1. only GPU evidence for the pushed digest promotes, on both image stores ----------


@pytest.mark.parametrize("store", ["containerd", "classic"])
def test_promotion_needs_gpu_evidence_for_the_pushed_digest(
        store: str, wheels: Path, local_images, tmp_path: Path) -> None:
    local = f"{REPO}:{CELL}"  # the tag `invoke push` reads (images.default_tag)
    with contextlib.ExitStack() as stack:
        engine_env: dict[str, str] = {}
        if store == "classic":
            engine_env = stack.enter_context(classic_engine(tmp_path / "engine"))
            saved = subprocess.Popen(["docker", "save", local_images[0]],
                                     stdout=subprocess.PIPE)
            docker("load", "-q", env=engine_env, stdin=saved.stdout)
            assert saved.wait() == 0
        docker("tag", local_images[0], local, env=engine_env)
        login = stack.enter_context(login_registry(tmp_path / "login"))
        env = {**login.env, **engine_env, "WHEELFORGE_WHEELS": str(wheels)}

        refs = tmp_path / "refs.txt"
        pushed = invoke("push", "--registry", login.host, "--cells", CELL, "--date", DAY,
                        "--refs-file", str(refs), env=env)
        assert pushed.returncode == 0, pushed.stdout + pushed.stderr
        ref = refs.read_text().strip()
        digest = ref.split("@", 1)[1]
        assert ref == f"{login.host}/{REPO}@{digest}"
        after_push = login.tags()
        assert after_push[DATED] == digest  # the registry's digest, read back
        assert not set(FLOATING) & set(after_push)
        local_id = docker("image", "inspect", "--format", "{{.Id}}", local,
                          env=engine_env).stdout.strip()
        if store == "classic":
            assert local_id != digest  # the trap: a local id is not what the registry holds

        if store == "classic":
            # The old way: smoke the local tag. Its report names the local id, which is no
            # digest in the registry: publish pushes (the same digest again, under the next
            # free dated tag) and refuses to promote, and the run fails instead of passing.
            local_report = tmp_path / "local-report.json"
            invoke("smoke", "--image", local, "--report", str(local_report), env=env)
            assert json.loads(local_report.read_text())["image_digest"] == local_id
            stale = invoke("publish", "--registry", login.host, "--cells", CELL, "--date", DAY,
                           "--keep", "0", "--smoke-report",
                           str(gpu_report(local_report, tmp_path / "local-gpu.json")), env=env)
            assert stale.returncode == 1, stale.stdout + stale.stderr
            assert f"the smoke report is for {local_id}, not {digest}" in stale.stderr
            after_push = login.tags()
            assert after_push[f"{DATED}.1"] == digest  # the registry's digest, again
            assert not set(FLOATING) & set(after_push)

        # Smoke what was pushed, pulled back by digest: a real report, no check on a GPU.
        docker("pull", "-q", ref, env={**login.env, **engine_env})
        report = tmp_path / "smoke-report.json"
        smoked = invoke("smoke", "--image", ref, "--report", str(report), env=env)
        assert smoked.returncode == 0, smoked.stdout + smoked.stderr
        data = json.loads(report.read_text())
        assert data["image_digest"] == digest and data["passed"] is True
        assert data["gpu_checks"] == 0

        refused = invoke("publish", "--registry", login.host, "--cells", CELL, "--date", DAY,
                         "--smoke-report", str(report), env=env)
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert error_lines(refused) == [
            f"error: publish: floating tags not moved: {CELL} (no smoke check ran on a GPU "
            "(device: none); smoke it on a GPU machine (--require-gpu), or pass "
            "--allow-cpu-smoke to promote anyway)"]
        newest = f"{DATED}.1" if store == "classic" else DATED  # newest with this digest
        assert f"already published as {newest}; not pushing it again" in refused.stderr
        assert login.tags() == after_push  # nothing moved, nothing pushed again

        proven = invoke("publish", "--registry", login.host, "--cells", CELL, "--date", DAY,
                        "--smoke-report", str(gpu_report(report, tmp_path / "gpu.json")),
                        env=env)
        assert proven.returncode == 0, proven.stdout + proven.stderr
        assert "smoke passed with 1 checks on a GPU (device)" in proven.stderr
        final = login.tags()
        for tag in FLOATING:
            assert final[tag] == digest, tag
        assert final[DATED] == digest
        assert login.helper_log.read_text().split()  # the helper answered for the registry
    assert "s3cret" not in pushed.stdout + pushed.stderr + proven.stdout + proven.stderr


# ---- 2. one day, two images; a helper is the only login ---------------------------------


def test_two_publishes_on_one_day_keep_both_dated_digests(
        wheels: Path, local_images, tmp_path: Path) -> None:
    local = f"{REPO}:{CELL}"
    with login_registry(tmp_path / "login") as login:
        env = {**login.env, "WHEELFORGE_WHEELS": str(wheels)}
        anonymous = Registry(login.host)  # DOCKER_CONFIG of the test process: no login
        with pytest.raises(Exception, match="needs credentials"):
            anonymous.ping(REPO)

        digests = []
        for image in local_images:
            docker("tag", image, local)
            refs = tmp_path / "refs.txt"
            proc = invoke("push", "--registry", login.host, "--cells", CELL, "--date", DAY,
                          "--refs-file", str(refs), env=env)
            assert proc.returncode == 0, proc.stdout + proc.stderr
            digests.append(refs.read_text().strip().split("@", 1)[1])
        assert digests[0] != digests[1]
        tags = login.tags()
        assert tags[DATED] == digests[0] and tags[f"{DATED}.1"] == digests[1]

        report = tmp_path / "report.json"
        # The second image's GPU report (the suite's report shape, written for its digest).
        report.write_text(json.dumps({
            "schema": 1, "host": {"device": "cuda"}, "image_digest": digests[1], "passed": True,
            "checks": [{"name": "device", "status": "pass", "reason": "1 GPU", "seconds": 0.1,
                        "metrics": {}, "gpu": True}], "gpu_checks": 1}))
        proc = invoke("publish", "--registry", login.host, "--cells", CELL, "--date", DAY,
                      "--smoke-report", str(report), env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        final = login.tags()
        assert final[DATED] == digests[0] and final[f"{DATED}.1"] == digests[1]
        for tag in FLOATING:
            assert final[tag] == digests[1], tag
        assert not [t for t in final if t.startswith(f"{DATED}.2")]  # nothing pushed again
        assert login.helper_log.read_text().split()


# ---- 3. a registry that does not delete ------------------------------------------------


def test_registry_without_delete_publishes_with_retention_off(
        wheels: Path, local_images, tmp_path: Path) -> None:
    local = f"{REPO}:{CELL}"
    with login_registry(tmp_path / "login", delete=False) as login:
        env = {**login.env, "WHEELFORGE_WHEELS": str(wheels)}
        # Day 26 republishes day 24's image: the sha- tag pins that digest, so retention
        # (keep 1) must delete day 25's digest, and the registry refuses.
        digests = []
        days = ("2026-11-24", "2026-11-25", "2026-11-26")
        for image, day in zip((*local_images, local_images[0]), days, strict=True):
            docker("tag", image, local)
            refs = tmp_path / "refs.txt"
            proc = invoke("publish", "--registry", login.host, "--cells", CELL, "--date", day,
                          "--keep", "1", "--refs-file", str(refs), env=env)
            assert proc.returncode == 0, proc.stdout + proc.stderr
            digests.append(refs.read_text().strip().split("@", 1)[1])
        said = [ln for ln in proc.stderr.splitlines() if "retention off" in ln]
        assert len(said) == 1 and "does not delete manifests through the API (HTTP 405" in \
            said[0], proc.stderr
        assert "off (registry does not delete)" in proc.stdout
        tags = login.tags()
        assert digests[0] == digests[2] != digests[1]
        assert [tags[f"{CELL}-2026112{d}"] for d in (4, 5, 6)] == digests  # all stay

        off = invoke("publish", "--registry", login.host, "--cells", CELL, "--date",
                     "2026-11-26", "--keep", "0", env=env)
        assert off.returncode == 0, off.stdout + off.stderr
        assert "retention off" not in off.stderr  # --keep 0: not even tried
        assert login.tags()[f"{CELL}-20261126.1"] == digests[0]


# ---- 4. two publishes of one cell at the same moment -----------------------------------


def test_simultaneous_publishes_of_a_cell_keep_both_images_dated(
        wheels: Path, local_images, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both chose the same free dated tag; the other publish's push lands right after ours,
    before we read the tag back (a real second push through the engine, forced into that
    moment by running it from our first read-back). Ours moves to the next free suffix."""
    manifest = wheelset.read_manifest(wheels / CELL)
    day = datetime.date.fromisoformat(DAY)
    with registry_server.start(tmp_path / "registry") as server:
        contested = f"{server.host}/{REPO}:{DATED}"
        reg = Registry(server.host)
        read_back = reg.resolve
        raced: list[str] = []

        def other_publish_lands_first(repo: str, ref: str) -> str | None:
            if (repo, ref) == (REPO, DATED) and not raced:
                raced.append(ref)
                docker("tag", local_images[1], contested)
                docker("push", "-q", contested)
                docker("rmi", contested)
            return read_back(repo, ref)

        monkeypatch.setattr(reg, "resolve", other_publish_lands_first)
        published = push_image(manifest, local_images[0], reg, day=day)
        assert raced == [DATED]  # the other push really happened in between
        theirs, ours = reg.resolve(REPO, DATED), reg.resolve(REPO, f"{DATED}.1")
        assert published.tags[0] == f"{DATED}.1"
        assert ours == published.digest and theirs and theirs != ours
        assert f"{CELL}-20261124.2" not in reg.tags(REPO)
        sha = [t for t in published.tags[1:] if t.startswith("sha-")]
        assert [reg.resolve(REPO, t) for t in sha] == [ours] * len(sha)
