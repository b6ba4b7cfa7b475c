"""Fixtures shared by the integration tests: a real engine, a real registry, demo builds.

Nothing here is mocked: the engine is dockerd with buildx (started for the test
session when none runs, stopped after), the registry is the CNCF distribution
registry on loopback, and the demo wheel sets are real builds.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import wheelforge.image
from wheelforge import cli
from wheelforge.build import bake, build_sets
from wheelforge.core import settings, types, wheelset
from wheelforge.core.engine import engine_running
from wheelforge.image import Built, build_image
from wheelforge.plan import fetch, make_plan

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import diskspace, registry_server  # noqa: E402

DEMO = ROOT / "demo" / "recipes"
CELLS = ("stable-bookworm-py3.11-x86-64-v2-default", "stable-bookworm-py3.11-x86-64-v3-default")
ROCM_STACK = "rocm6.4-sid"


def pytest_configure(config):
    """A stopped test run (SIGTERM: a cancelled CI job, a timeout) unwinds like Ctrl-C, so
    fixtures still stop their engines and registries and remove network namespaces,
    veth links and forwarding rules, instead of leaving them behind."""
    def interrupt(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut the cleanup
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)


def pytest_collection_modifyitems(items):
    """Tests that prune the engine's build cache run after every other test. Tests marked
    `one_engine` (what they prove does not depend on the engine's release) are skipped in
    every pass of `make test` but the last (WHEELFORGE_TEST_ONE_ENGINE_DONE=1 there)."""
    items.sort(key=lambda item: item.get_closest_marker("prunes_cache") is not None)
    if os.environ.get("WHEELFORGE_TEST_ONE_ENGINE_DONE") == "1":
        skip = pytest.mark.skip(reason="engine-independent: runs in the last engine's pass")
        for item in items:
            if item.get_closest_marker("one_engine"):
                item.add_marker(skip)


def _require(binary: str) -> None:
    """Outside CI a missing tool skips; in CI (CI=true) it fails: nothing is silently skipped."""
    if shutil.which(binary) is None:
        if os.environ.get("CI"):
            pytest.fail(f"{binary} is not installed; ci/setup-host.sh should have installed it")
        pytest.skip(f"{binary} not installed (run ci/setup-host.sh)")


@pytest.fixture(scope="session")
def engine() -> bool:
    """The engine the tests build on; True when this test run started it. One that
    answers is used; else WHEELFORGE_TEST_DOCKERD (default: the system's) is started on
    an empty data root of its own, removed when the run ends (core/engine.py, scratch)."""
    dockerd = os.environ.get("WHEELFORGE_TEST_DOCKERD") or "dockerd"
    _require(dockerd)
    diskspace.require_free()
    with engine_running(dockerd, scratch=True) as started:
        yield started


@pytest.fixture(scope="session")
def prunable_engine(engine, registry, tmp_path_factory) -> dict[str, str]:
    """Environment for an engine whose build cache a test may empty.

    The engine this run started is its own to prune. An engine that was already
    running belongs to someone else: then a private engine (network namespace, own
    data root) is started for the session, with the test registry reachable from it
    under the same name; without root the test is skipped, saying why.
    """
    if engine:
        yield {}
        return
    from tests.integration import private_engine

    why = private_engine.missing()
    if why:
        pytest.skip(f"the engine was running before the tests, so its cache is not pruned; {why}")
    port = int(registry.host.rsplit(":", 1)[1])
    with private_engine.netns_engine(tmp_path_factory.mktemp("private-engine"),
                                     relay_ports=(port,)) as private:
        yield private.env


@pytest.fixture(autouse=True)
def _prune_only_an_engine_of_this_run(request, monkeypatch):
    if request.node.get_closest_marker("prunes_cache") is not None:
        for key, value in request.getfixturevalue("prunable_engine").items():
            monkeypatch.setenv(key, value)


@pytest.fixture(scope="session")
def registry(tmp_path_factory):
    _require("docker-registry")
    with registry_server.start(tmp_path_factory.mktemp("registry")) as server:
        yield server


@dataclass(frozen=True)
class DemoBuild:
    plan: types.Plan
    rows: list
    out: Path
    options: bake.Options


def build_demo(out: Path, exports: Path, *, recipes: Path = DEMO, cells: str | None = None,
               rewrites: tuple = (), channel: str = "stable") -> DemoBuild:
    fetch.make_repos()
    ins = types.Inputs(recipes_dir=recipes, rewrites=rewrites)
    p = make_plan(ins, channel=channel, cells_glob=cells)
    options = bake.Options(sources=ROOT / ".cache" / "sources", exports=exports,
                           ca_bundle=cli.ca_bundle_path("auto"))
    rows = build_sets(p, options, out_root=out)
    return DemoBuild(plan=p, rows=rows, out=out, options=options)


@pytest.fixture(scope="session")
def demo_build(engine, tmp_path_factory) -> DemoBuild:
    """The demo set's two stable CPU cells, built once for the session (the ROCm cells:
    rocm_build)."""
    root = tmp_path_factory.mktemp("demo")
    return build_demo(root / "wheels", root / "exports", cells="stable-bookworm-*")


@pytest.fixture(scope="session")
def rocm_build(engine, tmp_path_factory) -> DemoBuild:
    """The three stable ROCm cells of the demo set (gfx942, gfx950 and the fat one), built
    once for the session. Tests that break a build copy a cell out of it first."""
    root = tmp_path_factory.mktemp("rocm")
    return build_demo(root / "wheels", root / "exports", cells=f"stable-{ROCM_STACK}-*")


@pytest.fixture(scope="session")
def demo_images(demo_build) -> dict[str, Built]:
    """The runtime image of each demo cell (tagged for the tests)."""
    return {cell: build_image(demo_build.out / cell, tag=f"wheelforge-test/runtime:{cell}")
            for cell in CELLS}


def run_invoke(*args: str, env: dict | None = None, timeout: float = 1800,
               cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """`invoke ARGS` as a user runs it; returns the completed process (text)."""
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=cwd, text=True,
                          capture_output=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, check=False)


def env_args(cell_dir: Path) -> list[str]:
    """The build args a by-hand Dockerfile.clean build gives for the set's runtime_env
    (ENV1_NAME/ENV1_VALUE, ...), as the build's first check asks for them."""
    return wheelforge.image.env_args(wheelset.read_manifest(cell_dir))


def copy_recipes(dest: Path, edit: dict[str, tuple[str, str]] | None = None) -> Path:
    """A copy of the demo recipes with text replacements: {file: (old, new)}."""
    shutil.copytree(DEMO, dest)
    for name, (old, new) in (edit or {}).items():
        path = dest / name
        text = path.read_text()
        assert old in text, f"{old!r} not in {name}"
        path.write_text(text.replace(old, new))
    return dest


def new_lz4c_commit(tmp: Path, note: str) -> tuple[str, Path]:
    """A new commit on a copy of the demo's lz4-c repository: (commit, bare repo path)."""
    work, bare = tmp / "lz4-c-work", tmp / "lz4-c.git"
    subprocess.run(["git", "clone", "-q", str(settings.DEMO_GIT / "lz4-c.git"), str(work)],
                   check=True)
    with (work / "lz4.h").open("a") as f:
        f.write(f"\n/* {note} */\n")
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    subprocess.run(["git", "-C", str(work), "commit", "-qam", note], check=True, env=env)
    commit = subprocess.run(["git", "-C", str(work), "rev-parse", "HEAD"], check=True,
                            capture_output=True, text=True).stdout.strip()
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)
    return commit, bare


LZ4C_URL = "https://demo.wheelforge.invalid/lz4-c.git"
# The demo's components on its CPU stack (bookworm)
CPU_COMPONENTS = frozenset({"liblz4", "lz4", "pkgconfig", "msgpack", "msgpack-numpy", "scmext",
                            "jitdemo"})
