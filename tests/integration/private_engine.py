"""A private Docker engine in a network namespace of its own, started and stopped here.

Tests use it where they must not touch an engine they did not start (pruning a build
cache) and as a second, remote engine reached over TCP (a builder elsewhere). It is a
real dockerd (containerd image store) with its own data root, exec root, pid file and
sockets, in a namespace joined to this host by a veth pair; the host masquerades the
namespace's traffic so that build steps reach the package index.

Registries on this host's loopback are made reachable from the namespace under the
same name (`127.0.0.1:PORT`) by two small TCP relays: one on the veth's host address,
one on the namespace's own loopback. The engine also lists the host address as an
insecure registry, so `HOSTADDR:PORT` names work too.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from wheelforge.core import engine

RELAY = Path(__file__).with_name("tcp_relay.py")
PORT = 2375
# The dockerd to run: the system's, unless WHEELFORGE_TEST_DOCKERD names another (e.g.
# Debian unstable's 28.5, which `ci/setup-host.sh --current-engine` unpacks under
# .cache/engines/current; the Makefile's current pass names it).
DOCKERD = os.environ.get("WHEELFORGE_TEST_DOCKERD") or "dockerd"


def release(dockerd: str) -> str:
    """The version a dockerd binary reports (`Docker version 26.1.5+dfsg1, build ...`)."""
    proc = subprocess.run([dockerd, "--version"], capture_output=True, text=True, check=False)
    words = proc.stdout.replace(",", " ").split()
    return words[2] if len(words) > 2 and words[:2] == ["Docker", "version"] else ""


def same_release_as(server_version: str) -> str | None:
    """The dockerd (WHEELFORGE_TEST_DOCKERD's, else the system's) of the engine's release."""
    for dockerd in dict.fromkeys((DOCKERD, "dockerd")):
        if shutil.which(dockerd) and release(dockerd) == server_version:
            return dockerd
    return None


def missing() -> str | None:
    """Why no private engine can start here, or None."""
    if os.geteuid() != 0:
        return "a private engine needs root (network namespace, dockerd)"
    for tool in ("ip", "iptables", "nsenter", DOCKERD):
        if shutil.which(tool) is None:
            return f"a private engine needs {tool}"
    return None


@dataclass(frozen=True)
class NetnsEngine:
    netns: str
    host_addr: str  # this host's end of the veth pair
    addr: str  # the engine's address inside the namespace
    root: Path
    socket: Path

    @property
    def tcp(self) -> str:
        return f"tcp://{self.addr}:{PORT}"

    @property
    def env(self) -> dict[str, str]:
        """What points docker and buildx at this engine (over its unix socket)."""
        return {"DOCKER_HOST": f"unix://{self.socket}"}


def _run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {proc.stderr.strip()}")
    return proc


@contextlib.contextmanager
def netns_engine(root: Path, *, index: int = 0, relay_ports: tuple[int, ...] = (),
                 dockerd: str = DOCKERD) -> Iterator[NetnsEngine]:
    """Start `dockerd` in a new network namespace; remove every trace of it afterwards."""
    tag = f"{os.getpid() % 10000}x{index}"
    netns, veth_host, veth_ns = f"wfe{tag}", f"wfh{tag}", f"wfn{tag}"
    octet = 16 + (os.getpid() + index * 7) % 200
    host_addr, addr, subnet = f"10.213.{octet}.1", f"10.213.{octet}.2", f"10.213.{octet}.0/30"
    exec_root = Path(f"/run/wfe{tag}")  # short: containerd's socket path lives under it
    root.mkdir(parents=True, exist_ok=True)
    eng = NetnsEngine(netns=netns, host_addr=host_addr, addr=addr, root=root,
                      socket=exec_root / "docker.sock")
    rules = [("-t", "nat", "POSTROUTING", "-s", subnet, "!", "-o", veth_host,
              "-j", "MASQUERADE"),
             ("-t", "filter", "FORWARD", "-i", veth_host, "-j", "ACCEPT"),
             ("-t", "filter", "FORWARD", "-o", veth_host, "-j", "ACCEPT")]
    undo: list[tuple[str, ...]] = []
    processes: list[subprocess.Popen] = []
    try:
        _run("ip", "netns", "add", netns)
        undo.append(("ip", "netns", "del", netns))
        _run("ip", "link", "add", veth_host, "type", "veth", "peer", "name", veth_ns,
             "netns", netns)
        undo.append(("ip", "link", "del", veth_host))
        _run("ip", "addr", "add", f"{host_addr}/30", "dev", veth_host)
        _run("ip", "link", "set", veth_host, "up")
        for cmd in (("addr", "add", f"{addr}/30", "dev", veth_ns),
                    ("link", "set", veth_ns, "up"), ("link", "set", "lo", "up"),
                    ("route", "add", "default", "via", host_addr)):
            _run("ip", "-n", netns, *cmd)
        for table, name, chain, *spec in rules:
            _run("iptables", table, name, "-I", chain, "1", *spec)
            undo.append(("iptables", table, name, "-D", chain, *spec))
        for port in relay_ports:  # host loopback registry -> namespace, same name
            processes.append(_relay(None, f"{host_addr}:{port}", f"127.0.0.1:{port}"))
            processes.append(_relay(netns, f"127.0.0.1:{port}", f"{host_addr}:{port}"))
        config = root / "daemon.json"
        config.write_text(json.dumps({
            "features": {"containerd-snapshotter": True},
            "insecure-registries": [f"{host_addr}:{p}" for p in relay_ports],
        }))
        log = (root / "dockerd.log").open("ab")
        path = engine.dockerd_path(dockerd)
        daemon = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{netns}", "env", f"PATH={path}", dockerd,
             "--config-file", str(config),
             "--data-root", str(root / "data"), "--exec-root", str(exec_root),
             "--pidfile", str(exec_root / "dockerd.pid"), "-H", f"unix://{eng.socket}",
             "-H", f"tcp://{addr}:{PORT}", "--tls=false"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        processes.append(daemon)
        _wait(eng, daemon)
        yield eng
    finally:
        for process in reversed(processes):
            engine.stop_group(process)
        for cmd in reversed(undo):
            _run(*cmd, check=False)
        engine.remove_root(exec_root)
        engine.remove_root(root / "data")


def _relay(netns: str | None, listen: str, target: str) -> subprocess.Popen:
    cmd = [sys.executable, str(RELAY), listen, target]
    if netns:
        cmd = ["nsenter", f"--net=/run/netns/{netns}", *cmd]
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               start_new_session=True)
    ready = process.stdout.readline() if process.stdout else b""
    if b"listening" not in ready:
        engine.stop_group(process)
        raise RuntimeError(f"tcp relay {listen} -> {target} did not start: {ready!r}")
    return process


def _wait(eng: NetnsEngine, dockerd: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if dockerd.poll() is not None:
            raise RuntimeError(f"private dockerd exited ({dockerd.returncode}); see "
                               f"{eng.root / 'dockerd.log'}")
        if _run("docker", "-H", f"unix://{eng.socket}", "info", "--format",
                "{{.ServerVersion}}", check=False).returncode == 0:
            return
        time.sleep(1)
    raise RuntimeError(f"private dockerd did not answer in 120s; see {eng.root / 'dockerd.log'}")
