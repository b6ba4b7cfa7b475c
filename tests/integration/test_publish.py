"""Publishing for real: nightly runs, promotion, retention, pull/run, failures, auth, cache.

Everything runs against the real engine and a real loopback registry (Debian's
docker-registry, distribution 2.8); nothing is mocked. The nightly history is
built up by chained module fixtures, one nightly run per day, so that each test
runs only the days it needs:

    two_days       2026-11-20 (library, demo set) and 2026-11-21 (CLI, a changed set): pass,
                   promoted with --allow-cpu-smoke (no GPU here)
    failed_day     2026-11-22 (CLI, --require-gpu: the smoke fails on a CPU machine)
    retention_day  2026-11-23 (library, keep=1, the smoke passes but no check ran on a GPU:
                   without --allow-cpu-smoke nothing is promoted)

Each day after the first builds from a copy of the demo recipes whose msgpack-numpy
recipe has one extra harmless step, so its wheel set has a new key and its image a new
digest for a reason of its own. (A rebuild of unchanged recipes gets a new digest too
today, because manifest.json records `created`; the tests do not rely on that.)

The build-cache test prunes the engine's BuildKit cache, so it stays last here.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import registry_server
from tests.conftest import DEMO, ROOT, copy_recipes, run_invoke
from wheelforge import cli, jobs
from wheelforge.build import bake, build_sets
from wheelforge.core import types
from wheelforge.core.terminal import UserError
from wheelforge.plan import fetch, make_plan
from wheelforge.publish.registry import Registry
from wheelforge.publish.tags import dated_tag, sha_tag

pytestmark = pytest.mark.integration

CELL = "stable-bookworm-py3.11-x86-64-v2-default"
REPO = "wheelforge/demo-runtime"  # demo/recipes/matrix.yaml: repository
# stable channel, default arch x86-64-v2, default variant `default`: all three float.
FLOATING = ("stable-x86-64-v2-default", "stable-x86-64-v2", "latest")
DAYS = [datetime.date(2026, 11, d) for d in (20, 21, 22, 23)]
USER, PASSWORD = "wf-publisher", registry_server.PASSWORD
CLI_TIMEOUT = 1500  # a hung command fails the test (subprocess timeout), never hangs it


# ---- helpers ----------------------------------------------------------------------------


def dated(day: datetime.date) -> str:
    return dated_tag(CELL, day)


def head() -> str:
    return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()


def snapshot(reg: Registry, repo: str = REPO) -> dict[str, str | None]:
    """Every tag of `repo` -> the digest it resolves to now."""
    return {t: reg.resolve(repo, t) for t in sorted(reg.tags(repo))}


def docker(*args: str, env: dict | None = None, input: str | None = None,
           check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, input=input,
                          env={**os.environ, **(env or {})}, check=check, timeout=900)


def error_lines(proc: subprocess.CompletedProcess) -> list[str]:
    return [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.startswith("error:")]


def assert_one_error_line(proc: subprocess.CompletedProcess) -> str:
    """A failed CLI run: exactly one `error:` line, no traceback; returns that line."""
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    lines = error_lines(proc)
    assert len(lines) == 1, proc.stderr
    return lines[0]


def day_recipes(root: Path, name: str) -> Path:
    """The demo recipes with one more (harmless) msgpack-numpy step: new key, new wheel set."""
    return copy_recipes(root / name, {"msgpack-numpy.yaml": (
        "\nsteps:\n", f"\nsteps:\n  - echo {name}\n")})


@dataclass(frozen=True)
class Day:
    """One nightly run and the registry as it was right after it."""

    day: datetime.date
    tags: dict[str, str | None]  # tag -> digest, after the run
    manifest: bytes  # the wheel set's manifest.json the run built
    heads: tuple[str, str]  # git HEAD before and after the run
    proc: subprocess.CompletedProcess | None = None  # CLI runs
    error: UserError | None = None  # library runs that failed

    @property
    def digest(self) -> str:
        digest = self.tags.get(dated(self.day))
        assert digest, f"no dated tag {dated(self.day)} in {sorted(self.tags)}"
        return digest

    @property
    def revision(self) -> str:
        """The wheelforge commit the run recorded (HEAD may move while tests run)."""
        return json.loads(self.manifest)["wheelforge_revision"]

    @property
    def sha_tag(self) -> str:
        return sha_tag(self.revision, CELL)

    def check_sha_tag(self, earlier: tuple[Day, ...] | list[Day] = ()) -> None:
        """The sha- tag of the revision the image was built from (its manifest's, like its
        revision label) exists and points at the first image of that revision: set once,
        never moved."""
        assert self.sha_tag in self.tags, sorted(self.tags)
        first = next((r for r in earlier if r.revision == self.revision), self)
        assert self.tags[self.sha_tag] == first.digest

    def named(self) -> set[str]:
        """Every tag but the sha- ones (whose revision depends on when each run happened)."""
        return {t for t in self.tags if not t.startswith("sha-")}


@dataclass(frozen=True)
class History:
    host: str
    wheels: Path  # WHEELFORGE_WHEELS of every run
    exports: Path
    recipes_root: Path

    def registry(self) -> Registry:
        return Registry(self.host)

    def manifest(self) -> bytes:
        return (self.wheels / CELL / "manifest.json").read_bytes()

    def nightly_library(self, day: datetime.date, recipes: Path, *, keep: int = 7,
                        smoke_args: list[str] | None = None,
                        allow_cpu_smoke: bool = False) -> Day:
        error, before = None, head()
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(jobs, "WHEELS", self.wheels)  # never the repository's wheels/
            options = bake.Options(sources=ROOT / ".cache" / "sources", exports=self.exports,
                                   ca_bundle=cli.ca_bundle_path("auto"))
            try:
                jobs.nightly(types.Inputs(recipes_dir=recipes), channel="stable",
                             cells=CELL, registry=self.host, options=options, keep=keep,
                             smoke_args=smoke_args, day=day,
                             allow_cpu_smoke=allow_cpu_smoke)
            except UserError as exc:
                error = exc
        return Day(day=day, tags=snapshot(self.registry()), manifest=self.manifest(),
                   heads=(before, head()), error=error)

    def nightly_cli(self, day: datetime.date, recipes: Path, *extra: str) -> Day:
        before = head()
        proc = run_invoke("nightly", "--registry", self.host, "--recipes", str(recipes),
                          "--channel", "stable", "--cells", CELL, "--date", day.isoformat(),
                          *extra, env={"WHEELFORGE_WHEELS": str(self.wheels)},
                          timeout=CLI_TIMEOUT)
        return Day(day=day, tags=snapshot(self.registry()), manifest=self.manifest(),
                   heads=(before, head()), proc=proc)


@pytest.fixture(scope="module")
def history(engine, tmp_path_factory) -> Iterator[History]:
    """A registry of its own (the tests check the repository's exact tag set), same binary
    and configuration as the session's `registry`."""
    root = tmp_path_factory.mktemp("nightly")
    with registry_server.start(root / "registry") as server:
        yield History(host=server.host, wheels=root / "wheels", exports=root / "exports",
                      recipes_root=root / "recipes")


@pytest.fixture(scope="module")
def two_days(history: History) -> tuple[Day, Day]:
    """Day 1 through the library on the demo set; day 2 through the CLI on a changed set."""
    assert history.registry().tags(REPO) == []
    first = history.nightly_library(DAYS[0], DEMO, allow_cpu_smoke=True)
    assert first.error is None, first.error
    second = history.nightly_cli(DAYS[1], day_recipes(history.recipes_root, "day2"),
                                 "--allow-cpu-smoke")
    assert second.proc.returncode == 0, second.proc.stdout + second.proc.stderr
    return first, second


@pytest.fixture(scope="module")
def failed_day(history: History, two_days) -> Day:
    """Day 3: a changed set whose smoke run fails (--require-gpu on a CPU machine)."""
    return history.nightly_cli(DAYS[2], day_recipes(history.recipes_root, "day3"),
                               "--smoke-args=--require-gpu")


@pytest.fixture(scope="module")
def retention_day(history: History, failed_day) -> Day:
    """Day 4, keep=1: a changed set whose smoke passes with no check on a GPU (and no
    --allow-cpu-smoke), so the floating tags stay on day 2."""
    return history.nightly_library(DAYS[3], day_recipes(history.recipes_root, "day4"), keep=1)


@pytest.fixture()
def keep_last_pulled():
    """`invoke pull` writes .cache/last-pulled; put back what was there."""
    marker = ROOT / ".cache" / "last-pulled"
    before = marker.read_bytes() if marker.is_file() else None
    yield marker
    if before is None:
        marker.unlink(missing_ok=True)
    else:
        marker.write_bytes(before)


@pytest.fixture()
def docker_config(tmp_path: Path) -> Path:
    """An empty DOCKER_CONFIG folder: never the credentials of the machine running the tests."""
    folder = tmp_path / "docker-config"
    folder.mkdir()
    return folder


# ---- 1. two days of nightlies -----------------------------------------------------------


def test_two_nightlies_tag_by_day_and_float_to_the_newest(history: History, two_days) -> None:
    first, second = two_days
    # Day 1 alone: its dated and sha- tags, and every floating tag on its digest.
    assert first.named() == {dated(DAYS[0]), *FLOATING}
    first.check_sha_tag()
    assert {first.tags[t] for t in FLOATING} == {first.digest}

    # Day 2 (the CLI) published a new digest; both days stay; all moving tags follow.
    assert first.digest != second.digest, "day 2's changed recipe set gave the same image"
    assert first.manifest != second.manifest
    assert second.named() == {dated(DAYS[0]), dated(DAYS[1]), *FLOATING}
    assert second.tags[dated(DAYS[0])] == first.digest
    second.check_sha_tag([first])
    for tag in FLOATING:
        assert second.tags[tag] == second.digest, tag
    assert dated(DAYS[1]) in second.proc.stdout  # the publish summary
    assert "--allow-cpu-smoke: PROMOTING AN IMAGE THAT NO SMOKE CHECK RAN ON A GPU" in \
        second.proc.stderr
    assert "Traceback" not in second.proc.stderr

    # The image behind `latest` is day 2's, and says so.
    ref = f"{history.host}/{REPO}:latest"
    docker("pull", "-q", ref)
    info = json.loads(docker("image", "inspect", ref).stdout)[0]
    assert f"{history.host}/{REPO}@{second.digest}" in info["RepoDigests"]
    labels = info["Config"]["Labels"]
    assert labels["dev.wheelforge.cell"] == CELL
    assert labels["org.opencontainers.image.revision"] == second.revision
    is_commit = ["git", "-C", str(ROOT), "cat-file", "-e", f"{second.revision}^{{commit}}"]
    assert subprocess.run(is_commit, check=False).returncode == 0, second.revision
    assert labels["dev.wheelforge.manifest.sha256"] == hashlib.sha256(second.manifest).hexdigest()
    inside = docker("run", "--rm", "--network=none", ref, "cat", "/opt/wheelset/manifest.json")
    assert inside.stdout.encode() == second.manifest
    # built from day 2's recipe set: a new msgpack-numpy key, the other components' as before
    keys = [{c: v["key"] for c, v in json.loads(d.manifest)["components"].items()}
            for d in (first, second)]
    assert {c for c in keys[0] if keys[0][c] != keys[1][c]} == {"msgpack-numpy"}
    assert json.loads(second.manifest)["components"]["msgpack-numpy"]["recipe"] == \
        "day2/msgpack-numpy.yaml"


# ---- 2. a failing smoke moves nothing ---------------------------------------------------


def test_failing_smoke_leaves_every_floating_tag_in_place(two_days, failed_day: Day) -> None:
    _, passed = two_days
    proc = failed_day.proc
    assert proc.returncode == 1, proc.stdout + proc.stderr
    line = assert_one_error_line(proc)
    assert line == f"error: nightly: failed cells: {CELL} (smoke failed)"
    assert "floating tags stay where they are" in proc.stderr

    # The new image is published under its day, and nothing that users pull moved.
    assert failed_day.digest not in set(passed.tags.values())
    assert failed_day.named() == {*passed.named(), dated(DAYS[2])}
    for tag in FLOATING:
        assert failed_day.tags[tag] == passed.digest, tag
    for tag in (dated(DAYS[0]), dated(DAYS[1])):
        assert failed_day.tags[tag] == passed.tags[tag], tag


# ---- 3. retention -----------------------------------------------------------------------


def test_retention_deletes_exactly_the_old_days_and_never_a_kept_digest(
        history: History, two_days, failed_day: Day, retention_day: Day) -> None:
    first, second = two_days
    last = retention_day
    assert isinstance(last.error, UserError) and last.error.exit_code == 1
    assert str(last.error) == (
        f"nightly: failed cells: {CELL} (not promoted: no smoke check ran on a GPU (device: "
        "none); smoke it on a GPU machine (--require-gpu), or pass --allow-cpu-smoke to "
        "promote anyway)")

    # keep=1: days 1-3 are expired. Day 2's digest is what every floating tag still points
    # at (day 4 had no GPU evidence), so it is not deleted, and its dated tag stays with it.
    # Days 1 and 3 are deleted with their manifests -- unless a sha- tag still holds one:
    # sha- tags are never pruned, and the newest image of a wheelforge commit keeps its
    # sha- tag when HEAD moves (as it can while these tests run next to other work).
    pinned = {d for tag, d in last.tags.items() if tag.startswith("sha-")}
    old = {dated(DAYS[0]): first.digest, dated(DAYS[2]): failed_day.digest}
    assert last.named() == {dated(DAYS[1]), dated(DAYS[3]), *FLOATING,
                            *(tag for tag, d in old.items() if d in pinned)}
    assert last.tags[dated(DAYS[1])] == second.digest
    for tag in FLOATING:
        assert last.tags[tag] == second.digest, tag
    last.check_sha_tag([first, second, failed_day])
    assert last.digest not in (first.digest, second.digest, failed_day.digest)
    kept = {second.digest, last.digest} | pinned
    assert set(last.tags.values()) == kept  # sha- tags included: none dangles

    reg = history.registry()
    for digest in set(old.values()) - pinned:
        assert reg.resolve(REPO, digest) is None, digest
    for digest in kept:
        assert reg.resolve(REPO, digest) == digest


# ---- 4. pull and run --------------------------------------------------------------------


def test_pull_picks_the_floating_image_and_run_uses_it(history: History, two_days,
                                                       keep_last_pulled: Path) -> None:
    host = history.host
    want = history.registry().resolve(REPO, "stable-x86-64-v2-default")
    assert want
    proc = run_invoke("pull", "--recipes", "demo/recipes", "--registry", host,
                      "--arch", "x86-64-v2", "--channel", "stable", timeout=CLI_TIMEOUT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ref = f"{host}/{REPO}:stable-x86-64-v2-default"
    assert f"dev.wheelforge.cell = {CELL}" in proc.stdout.splitlines()
    assert f"pull: {ref}" in proc.stderr
    for component in ("component lz4: lz4 4.4.4", "component msgpack: msgpack 1.1.0",
                      "component msgpack-numpy: msgpack_numpy 0.4.8",
                      "component liblz4: build-time only"):
        assert component in proc.stdout.splitlines(), proc.stdout
    assert keep_last_pulled.read_text().strip() == ref
    info = json.loads(docker("image", "inspect", ref).stdout)[0]
    assert f"{host}/{REPO}@{want}" in info["RepoDigests"]

    ran = run_invoke("run", "--", "python", "-c",
                     "import lz4.frame, msgpack_numpy; print('imported')", timeout=600)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert ran.stdout.strip().splitlines()[-1] == "imported"

    bad = run_invoke("pull", "--recipes", "demo/recipes", "--registry", host,
                     "--arch", "x86-64-v9", "--channel", "stable", timeout=300)
    assert bad.returncode == 2
    line = assert_one_error_line(bad)
    assert line.startswith("error: --arch x86-64-v9: no such arch set (did you mean 'x86-64-v")
    assert "choose from x86-64-v2, x86-64-v3" in line
    assert keep_last_pulled.read_text().strip() == ref  # a failed pull changes nothing


# ---- 5. a registry that is down or failing ----------------------------------------------


@pytest.mark.parametrize("fault", ["closed-port", "http-503"])
def test_publish_to_a_broken_registry_is_one_line_and_tags_nothing(
        history: History, two_days, docker_config: Path, fault: str) -> None:
    reg = history.registry()
    before = snapshot(reg)
    env = {"WHEELFORGE_WHEELS": str(history.wheels), "DOCKER_CONFIG": str(docker_config)}
    args = ["--cells", CELL, "--date", "2026-12-01", "--keep", "1"]
    if fault == "closed-port":
        host = f"127.0.0.1:{registry_server.free_port()}"  # nothing listens there
        proc = run_invoke("publish", "--registry", host, *args, env=env, timeout=300)
        expected = (f"error: registry {host} could not list the tags of {REPO} after 4 tries "
                    "(connection refused); start it or check --registry")
    else:
        with registry_server.serve_errors(status=503) as broken:
            host = broken.host
            proc = run_invoke("publish", "--registry", host, *args, env=env, timeout=300)
            assert broken.requests.count("GET /v2/") == 4  # bounded retries, then it gives up
        expected = (f"error: registry {host} could not list the tags of {REPO} after 4 tries "
                    f"(pinging container registry {host}: invalid status code from registry 503")
    line = assert_one_error_line(proc)
    assert line.startswith(expected), line
    assert proc.returncode == 2
    # Nothing half-done: no tag anywhere, not even the local one a push would need.
    assert snapshot(reg) == before
    assert docker("image", "inspect", f"{host}/{REPO}:{CELL}-20261201",
                  check=False).returncode != 0


# ---- 5b. --registry missing or malformed: one line, before anything runs -----------------


@pytest.mark.parametrize("task", ["push", "publish", "nightly", "pull"])
def test_registry_missing_or_malformed_is_one_line(task: str, tmp_path: Path) -> None:
    extra = ["--arch", "x86-64-v2"] if task == "pull" else []
    # The real recipes: nightly would resolve branch heads over the network, and pull read
    # the matrix, if the registry were not checked first.
    env = {"WHEELFORGE_WHEELS": str(tmp_path / "no-wheels")}
    missing = run_invoke(task, *extra, env=env, timeout=300)
    assert assert_one_error_line(missing) == (
        "error: --registry HOST[:PORT] is required: the registry to publish to or pull from, "
        "e.g. --registry 127.0.0.1:5000")
    assert missing.returncode == 2 and missing.stdout == ""
    spaced = run_invoke(task, "--registry", "a b", *extra, env=env, timeout=300)
    assert assert_one_error_line(spaced) == (
        "error: invalid registry host 'a b': give host[:port] without a scheme, path, user or "
        "spaces, e.g. '127.0.0.1:5000'")
    assert spaced.returncode == 2 and spaced.stdout == ""


# ---- 6. credentials ---------------------------------------------------------------------


def test_publish_with_docker_login_never_prints_the_password(history: History, two_days,
                                                             tmp_path: Path,
                                                             docker_config: Path) -> None:
    auth = registry_server.htpasswd_auth(tmp_path, USER)
    day = "2026-11-20"
    with registry_server.start(tmp_path / "auth-registry", auth=auth) as server:
        env = {"WHEELFORGE_WHEELS": str(history.wheels), "DOCKER_CONFIG": str(docker_config)}
        login = docker("login", server.host, "-u", USER, "--password-stdin", env=env,
                       input=PASSWORD + "\n", check=False)
        assert login.returncode == 0, login.stderr
        ok = run_invoke("publish", "--registry", server.host, "--cells", CELL, "--date", day,
                        env=env, timeout=CLI_TIMEOUT)
        assert ok.returncode == 0, ok.stdout + ok.stderr
        held = Registry(server.host, config=docker_config / "config.json")  # docker login's
        published = held.tags(REPO)
        assert {t for t in published if not t.startswith("sha-")} == {f"{CELL}-20261120"}
        assert [t for t in published if t.startswith("sha-")] != []
        assert f"{CELL}-20261120" in ok.stdout

        wrong = "wr0ng-Pa55word"
        bad_config = tmp_path / "bad-docker-config"
        bad_config.mkdir()
        wrong_auth = base64.b64encode(f"{USER}:{wrong}".encode()).decode()
        (bad_config / "config.json").write_text(
            json.dumps({"auths": {server.host: {"auth": wrong_auth}}}))
        bad = run_invoke("publish", "--registry", server.host, "--cells", CELL,
                         "--date", "2026-11-21", env={**env, "DOCKER_CONFIG": str(bad_config)},
                         timeout=CLI_TIMEOUT)
        assert held.tags(REPO) == published  # the rejected run added nothing
    line = assert_one_error_line(bad)
    assert line.startswith(f"error: registry {server.host} could not list the tags of "), line
    assert line.endswith(f"it needs credentials that it accepts: run `docker login "
                         f"{server.host}`"), line

    good_auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    for proc in (login, ok, bad):
        text = proc.stdout + proc.stderr
        for secret in (PASSWORD, good_auth, wrong, wrong_auth,
                       base64.b64encode(PASSWORD.encode()).decode()):
            assert secret not in text


# ---- 7. build cache through the registry (LAST: it prunes the BuildKit cache) ----------


@pytest.mark.prunes_cache
def test_registry_build_cache_survives_a_pruned_builder(engine, registry,
                                                        tmp_path: Path) -> None:
    fetch.make_repos()
    p = make_plan(types.Inputs(recipes_dir=DEMO), channel="stable", cells_glob=CELL)
    base = f"{registry.host}/wheelforge/cache"

    def build(name: str, **cache: tuple[str, ...]) -> tuple[list, dict]:
        options = bake.Options(sources=ROOT / ".cache" / "sources",
                               exports=tmp_path / name / "exports",
                               ca_bundle=cli.ca_bundle_path("auto"), **cache)
        rows = build_sets(p, options, out_root=tmp_path / name / "wheels")
        manifest = json.loads((tmp_path / name / "wheels" / CELL / "manifest.json").read_text())
        return rows, manifest

    _, exported = build("export", cache_to=(f"type=registry,ref={base},mode=max",))
    cache_tags = {bake.cache_tag(b) for b in p.builds.values()}
    assert cache_tags <= set(Registry(registry.host).tags("wheelforge/cache"))

    docker("buildx", "prune", "-af")  # this machine forgets everything it built
    rows, imported = build("import", cache_from=(f"type=registry,ref={base}",))

    assert sorted(r.component for r in rows) == sorted(p.cell_targets[CELL])
    assert {r.component: r.cached for r in rows} == {r.component: True for r in rows}

    def wheels(manifest: dict) -> dict:
        return {w["file"]: w["sha256"] for c in manifest["components"].values()
                for w in c["wheels"]}

    assert wheels(imported) == wheels(exported) and wheels(imported)
    assert {c: v["key"] for c, v in imported["components"].items()} == \
        {c: v["key"] for c, v in exported["components"].items()}
