"""ci/setup-host.sh on hosts that differ from the one it was first written for.

The script runs for real (bash, its awk/sed/sort) with a PATH that holds only what
each case needs: stand-ins for docker, apt-get, sudo and pip that answer like the real
ones and record how they were called, so a test can say exactly what would have been
installed. The last test runs the real script on this host, twice.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.one_engine  # nothing engine-specific (see tests/conftest.py)

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "ci" / "setup-host.sh"
TOOLS = ("bash", "sed", "awk", "sort", "head", "tr", "grep", "dirname", "basename", "cat",
         "env", "mkdir", "rm", "cp", "mv", "tee")
UBUNTU = 'NAME="Ubuntu"\nID=ubuntu\nID_LIKE=debian\nVERSION_ID="24.04"\n'


def stub(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text(f"#!/bin/bash\necho \"{name} $*\" >> \"$CALLS\"\n{body}\n")
    path.chmod(0o755)


def host(tmp_path: Path, *, engine: str | None, buildx: str | None, have: tuple[str, ...],
         uid: int = 0, os_release: str = UBUNTU, running: bool = True) -> dict[str, str]:
    """A PATH and environment for one kind of host; returns the environment. With
    running=False the engine is installed but its daemon is stopped: the client then
    prints an empty line for the server's version and exits 1, as the real one does."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    for tool in TOOLS:
        os.symlink(shutil.which(tool), bin_ / tool)
    if engine and not running:
        stub(bin_, "dockerd", f'echo "Docker version {engine}, build abc"')
    server = engine if running else None
    if engine or buildx:
        stub(bin_, "docker", f"""
case "$1 $2" in
  "version --format") [ -n "{server or ''}" ] && echo "{server or ''}" || {{ echo; exit 1; }} ;;
  "buildx version") [ -n "{buildx or ''}" ] && echo "github.com/docker/buildx {buildx} abc" \
                      || exit 1 ;;
esac""")
    for name in have:
        stub(bin_, name, "")
    stub(bin_, "id", f"echo {uid}")
    stub(bin_, "sudo", '"$@"')
    stub(bin_, "apt-get", "")
    stub(bin_, "python3", "")
    (tmp_path / "os-release").write_text(os_release)
    (tmp_path / "apt" / "sources.list.d").mkdir(parents=True)
    (tmp_path / "apt" / "preferences.d").mkdir()
    return {"PATH": str(bin_), "CALLS": str(tmp_path / "calls"), "HOME": str(tmp_path),
            "WHEELFORGE_OS_RELEASE": str(tmp_path / "os-release"),
            "WHEELFORGE_APT_ETC": str(tmp_path / "apt")}


def setup(env: dict[str, str], *args: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    proc = subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    calls = Path(env["CALLS"])
    return proc, calls.read_text().splitlines() if calls.exists() else []


def test_an_engine_that_came_first_is_used_and_nothing_of_it_is_installed(tmp_path):
    env = host(tmp_path, engine="28.5.2", buildx="v0.29.1",
               have=("docker-registry", "skopeo", "debootstrap", "chromium"), uid=1001)
    proc, calls = setup(env)
    assert proc.returncode == 0, proc.stderr
    assert not [c for c in calls if c.startswith(("apt-get", "sudo"))], calls
    pip = [c for c in calls if c.startswith("python3")]
    assert len(pip) == 1 and pip[0].startswith("python3 -m pip install")
    assert pip[0].endswith("ci/requirements-dev.txt")
    assert "engine 28.5.2, buildx v0.29.1" in proc.stdout
    assert not any((tmp_path / "apt" / "sources.list.d").iterdir())


def test_an_installed_engine_whose_daemon_is_stopped_is_not_installed_again(tmp_path):
    env = host(tmp_path, engine="26.1.5+dfsg1", buildx="0.13.1+ds1",
               have=("docker-registry", "skopeo", "debootstrap", "chromium"), running=False)
    proc, calls = setup(env)
    assert proc.returncode == 0, proc.stderr
    assert not [c for c in calls if c.startswith(("apt-get", "sudo"))], calls
    assert "older than" not in proc.stdout + proc.stderr
    assert "engine 26.1.5+dfsg1, buildx 0.13.1+ds1" in proc.stdout


def test_dry_run_says_what_it_would_install_and_runs_nothing(tmp_path):
    env = host(tmp_path, engine="28.5.2", buildx="v0.29.1", have=())
    proc, calls = setup(env, "--dry-run", "--runtime")
    assert proc.returncode == 0, proc.stderr
    assert "would install engine packages: nothing" in proc.stdout
    assert "would install packages: docker-registry skopeo debootstrap" in proc.stdout
    assert "would install Python tools: requirements.txt" in proc.stdout
    assert [c.split()[0] for c in calls] == ["docker", "docker"]  # it only asked versions


def test_a_missing_registry_comes_from_the_hosts_own_suites_through_sudo(tmp_path):
    env = host(tmp_path, engine="27.3.1", buildx="v0.17.1",
               have=("skopeo", "debootstrap", "chromium"), uid=1001)
    proc, calls = setup(env)
    assert proc.returncode == 0, proc.stderr
    apt = [c for c in calls if c.startswith("sudo")]
    assert apt == ["sudo apt-get update -qq",
                   "sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
                   "docker-registry"]
    assert not any((tmp_path / "apt" / "sources.list.d").iterdir())  # no Debian suite


@pytest.mark.parametrize(("engine", "buildx"), [(None, None), ("20.10.24", "v0.29.1"),
                                                ("28.5.2", "v0.12.1")])
def test_an_engine_that_cannot_be_installed_here_is_one_line(tmp_path, engine, buildx):
    env = host(tmp_path, engine=engine, buildx=buildx,
               have=("docker-registry", "skopeo", "debootstrap", "chromium"))
    proc, calls = setup(env)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("setup-host: missing "), proc.stderr
    assert "(Docker >= 26.1 with buildx >= 0.13)" in lines[0]
    assert not [c for c in calls if c.startswith(("apt-get", "sudo", "python3"))]
    assert not any((tmp_path / "apt" / "sources.list.d").iterdir())


def test_the_debian_mirror_comes_from_the_hosts_apt_sources(tmp_path):
    env = host(tmp_path, engine=None, buildx=None, have=())
    lists = tmp_path / "apt" / "sources.list.d"
    (lists / "security.list").write_text("deb [arch=amd64 signed-by=/k.gpg] "
                                         "http://sec.example/debian-security sid-security main\n")
    (lists / "debian.sources").write_text(
        "Types: deb\nURIs: http://sec.example/debian-security\nSuites: trixie-security\n\n"
        "Types: deb\nURIs: http://mirror.example/debian/\nSuites: trixie trixie-updates\n")
    proc, _ = setup(env, "--print-debian-mirror")
    assert (proc.returncode, proc.stdout) == (0, "http://mirror.example/debian\n")
    (lists / "main.list").write_text("# none\n"
                                     "deb [ arch=amd64 ] http://one.example/debian trixie main\n")
    proc, _ = setup(env, "--print-debian-mirror")
    assert proc.stdout == "http://one.example/debian\n"
    proc, _ = setup({**env, "WHEELFORGE_DEBIAN_MIRROR": "http://override.example/d"},
                    "--print-debian-mirror")
    assert proc.stdout == "http://override.example/d\n"
    for path in lists.iterdir():
        path.unlink()
    proc, _ = setup(env, "--print-debian-mirror")
    assert proc.returncode == 1 and "set WHEELFORGE_DEBIAN_MIRROR" in proc.stderr


@pytest.mark.integration
def test_on_this_host_a_second_run_installs_nothing():
    if os.geteuid() != 0 and shutil.which("sudo") is None:
        pytest.skip("setup-host.sh installs with apt: needs root or sudo")
    first = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True,
                           timeout=1800, check=False)
    assert first.returncode == 0, first.stderr
    second = subprocess.run(["bash", str(SCRIPT), "--dry-run"], capture_output=True,
                            text=True, timeout=300, check=False)
    assert second.returncode == 0, second.stderr
    assert "would install engine packages: nothing" in second.stdout
    assert "would install packages: nothing" in second.stdout
