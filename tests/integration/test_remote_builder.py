"""`--builder`: a second, real Docker engine elsewhere on the network builds the wheels.

The remote engine is dockerd in a network namespace of its own (its own data root, no
image or build cache of this host), reached only over TCP at the namespace's address
through a docker context, exactly as a team reaches a build machine. The registry
cache is shared: this host's engine exports it to the loopback registry, and the
remote engine reads the same repository at the registry's address on the veth link
(an insecure registry in its daemon.json). See docs/builders.md.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import DEMO, ROOT
from tests.integration import private_engine
from wheelforge import cli
from wheelforge.build import bake, build_sets
from wheelforge.core import rootfs, types
from wheelforge.plan import fetch, make_plan

pytestmark = pytest.mark.integration

CELL = "stable-bookworm-py3.11-x86-64-v2-default"
REPO = "wheelforge/remote-cache"


def docker(*args: str, env: dict, stdin=None) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], env=env, stdin=stdin, capture_output=True,
                          text=stdin is None, timeout=900, check=False)


@pytest.fixture()
def remote(engine, registry, tmp_path, monkeypatch):
    """(engine, docker context name, env) of a remote engine; gone afterwards."""
    why = private_engine.missing()
    if why:
        pytest.skip(why)
    port = int(registry.host.rsplit(":", 1)[1])
    # Contexts live in a DOCKER_CONFIG of the test's own; buildx keeps its plugin.
    config = tmp_path / "docker-config"
    config.mkdir()
    plugins = Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker") / "cli-plugins"
    if plugins.is_dir():
        (config / "cli-plugins").symlink_to(plugins)
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    env = {**os.environ, "DOCKER_CONFIG": str(config)}
    # The same dockerd release as this host's engine: BuildKit's cache keys are only
    # promised to match between like engines (a 26.1 remote missed every entry that a
    # 28.5 engine had exported, and the other way round, in this test).
    here = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"],
                          capture_output=True, text=True, check=False).stdout.strip()
    dockerd = private_engine.same_release_as(here)
    if dockerd is None:
        pytest.skip(f"no dockerd of this engine's release ({here}) to run as the remote")
    with private_engine.netns_engine(tmp_path / "remote-engine", relay_ports=(port,),
                                     dockerd=dockerd) as eng:
        name = "wf-remote"
        made = docker("context", "create", name, "--docker", f"host={eng.tcp}", env=env)
        assert made.returncode == 0, made.stderr
        yield eng, name, env


def build(p: types.Plan, out: Path, *, builder: str | None = None,
          **cache: tuple[str, ...]) -> tuple[list, dict]:
    options = bake.Options(sources=ROOT / ".cache" / "sources", exports=out / "exports",
                           ca_bundle=cli.ca_bundle_path("auto"), **cache)
    rows = build_sets(p, options, out_root=out / "wheels", builder=builder)
    return rows, json.loads((out / "wheels" / CELL / "manifest.json").read_text())


def wheels(manifest: dict) -> dict[str, str]:
    return {w["file"]: w["sha256"] for c in manifest["components"].values() for w in c["wheels"]}


def test_wheels_built_on_a_remote_engine_from_the_shared_registry_cache(remote, registry,
                                                                        tmp_path):
    eng, context, env = remote
    fetch.make_repos()
    p = make_plan(types.Inputs(recipes_dir=DEMO), channel="stable", cells_glob=CELL)

    # 1. this host's engine builds and exports the registry cache (mode=max)
    _, local = build(p, tmp_path / "local",
                     cache_to=(f"type=registry,ref={registry.host}/{REPO},mode=max",))

    # 2. the remote engine starts with nothing; it gets the base images this project
    #    makes itself (a registry would hold them for a real team) and nothing else
    info = docker("--context", context, "info", "--format", "{{.Name}} {{.Images}}", env=env)
    assert info.returncode == 0 and info.stdout.split()[1] == "0", info.stdout + info.stderr
    made = ({b.build_image for b in p.builds.values()} |
            {c.stack.runtime_image for c in p.cells}) & set(rootfs.MADE_HERE)
    for ref in sorted(made):
        save = subprocess.Popen(["docker", "save", ref], stdout=subprocess.PIPE, env=env)
        loaded = docker("--context", context, "load", env=env, stdin=save.stdout)
        assert save.wait() == 0 and loaded.returncode == 0, loaded.stderr

    # 3. --builder CONTEXT: every component comes from the shared cache, and the wheel
    #    set lands here exactly as a local build's does
    rows, remote_ = build(p, tmp_path / "remote", builder=context,
                          cache_from=(f"type=registry,ref={eng.host_addr}:"
                                      f"{registry.host.rsplit(':', 1)[1]}/{REPO}",))
    assert sorted(r.component for r in rows) == sorted(p.cell_targets[CELL])
    assert {r.component: r.cached for r in rows} == {r.component: True for r in rows}
    assert wheels(remote_) == wheels(local) and wheels(remote_)
    on_disk = {f.name for f in (tmp_path / "remote" / "wheels" / CELL).glob("*.whl")}
    assert set(wheels(remote_)) <= on_disk
    assert {c: v["key"] for c, v in remote_["components"].items()} == \
        {c: v["key"] for c, v in local["components"].items()}

    # the build ran there: the remote engine, empty before, now holds build cache
    du = docker("--context", context, "buildx", "du", env=env)
    total = [ln.split()[-1] for ln in du.stdout.splitlines() if ln.startswith("Total:")]
    assert du.returncode == 0 and total and total[0] not in ("0", "0B"), du.stdout + du.stderr
