"""The registry wrapper (skopeo) against a real loopback registry (distribution 2.8).

Everything a registry *does* is checked against docker-registry itself, with tiny images
pushed from OCI layouts (registry_server.push_image); faults (5xx, 4xx, a host that never
answers, a stopped registry) come from a loopback fault injector.
"""

from __future__ import annotations

import base64
import datetime
import http.server
import json
import os
import shutil
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import registry_server
from tests.registry_server import push_image
from wheelforge.core.terminal import UserError
from wheelforge.publish.registry import DeleteUnsupported, Registry, RegistryError
from wheelforge.publish.tags import dated_tag, deletable_digests, expired, floating_tags

pytestmark = [pytest.mark.integration, pytest.mark.one_engine]

for _tool in (registry_server.BINARY, "skopeo"):
    if shutil.which(_tool) is None and not os.environ.get("CI"):
        pytest.skip(f"{_tool} is not installed; run ci/setup-host.sh", allow_module_level=True)

CELL = "nightly-rocm7.2-py3.12-gfx942-ckfree"
REPO = "wheelforge/rocm"
USER, PASSWORD = "wf-ci", registry_server.PASSWORD
WRONG = "wr0ng-Pa55word"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[registry_server.RegistryServer]:
    with registry_server.start(tmp_path_factory.mktemp("registry")) as srv:
        yield srv


@pytest.fixture(autouse=True)
def docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A DOCKER_CONFIG of the test's own (never the machine's); returns its config.json,
    which does not exist until a test writes it."""
    folder = tmp_path / "docker-config"
    folder.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(folder))
    return folder / "config.json"


@pytest.fixture()
def client(server: registry_server.RegistryServer) -> Registry:
    return Registry(server.host)


def write_auth(config: Path, host: str, user: str, password: str) -> str:
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    config.write_text(json.dumps({"auths": {host: {"auth": auth}}}))
    return auth


def test_push_list_and_resolve(client: Registry, server: registry_server.RegistryServer) -> None:
    digest = push_image(server.host, "demo/push", "v1", b"one")
    client.ping("demo/push")
    client.ping("demo/never-pushed")  # a missing repository is still a registry that answers
    assert client.tags("demo/push") == ["v1"]
    assert client.resolve("demo/push", "v1") == digest
    assert client.resolve("demo/push", digest) == digest
    assert client.resolve("demo/push", "missing") is None
    assert client.resolve("demo/never-pushed", "v1") is None
    assert client.tags("demo/never-pushed") == []


@pytest.mark.parametrize("archs", [(), ("amd64", "arm64")], ids=["manifest", "index"])
def test_retag_keeps_the_digest(client: Registry, server: registry_server.RegistryServer,
                                archs: tuple[str, ...]) -> None:
    repo = f"demo/retag-{len(archs)}"
    digest = push_image(server.host, repo, dated_tag(CELL, datetime.date(2026, 3, 1)),
                        b"retag", archs=archs)
    assert client.resolve(repo, dated_tag(CELL, datetime.date(2026, 3, 1))) == digest
    floating = floating_tags(channel="nightly", arch="gfx942", variant="ckfree",
                             default_variant="ckfree", default_arch="gfx942")
    for tag in floating:
        client.tag(repo, digest, tag)
    # The digest is the sha256 of the bytes the registry serves: the same bytes.
    assert {client.resolve(repo, tag) for tag in floating} == {digest}
    assert set(floating) <= set(client.tags(repo))


def test_delete_by_digest_removes_its_tags(client: Registry,
                                           server: registry_server.RegistryServer) -> None:
    digest = push_image(server.host, "demo/delete", "a", b"delete-me")
    client.tag("demo/delete", digest, "b")
    keep = push_image(server.host, "demo/delete", "c", b"keep-me")
    assert client.delete("demo/delete", digest) is True
    assert client.tags("demo/delete") == ["c"]
    assert client.resolve("demo/delete", "a") is None
    assert client.resolve("demo/delete", digest) is None
    assert client.resolve("demo/delete", "c") == keep
    assert client.delete("demo/delete", digest) is False  # already gone


def apply_retention(reg: Registry, repo: str, cell: str, keep: int) -> set[str]:
    """What a publish step does: expired() + deletable_digests(), then delete."""
    all_tags = reg.tags(repo)
    old = expired(all_tags, cell, keep)
    old_map = {tag: reg.resolve(repo, tag) or "" for tag in old}
    kept_map = {tag: reg.resolve(repo, tag) or "" for tag in all_tags if tag not in old}
    doomed = deletable_digests(old_map, kept_map)
    for digest in sorted(doomed):
        assert reg.delete(repo, digest)
    return doomed


def test_retention_deletes_exactly_the_old_days(client: Registry,
                                                server: registry_server.RegistryServer) -> None:
    repo, day1, day2 = "demo/retention", datetime.date(2026, 3, 1), datetime.date(2026, 3, 2)
    other_cell = dated_tag("nightly-rocm7.2-py3.12-gfx950-full", day1)
    old = push_image(server.host, repo, dated_tag(CELL, day1), b"day 1")
    new = push_image(server.host, repo, dated_tag(CELL, day2), b"day 2")
    client.tag(repo, new, "nightly-gfx942")
    other = push_image(server.host, repo, other_cell, b"x")

    assert apply_retention(client, repo, CELL, keep=1) == {old}
    assert sorted(client.tags(repo)) == sorted([dated_tag(CELL, day2), "nightly-gfx942",
                                                other_cell])
    assert client.resolve(repo, "nightly-gfx942") == new
    assert client.resolve(repo, other_cell) == other
    assert apply_retention(client, repo, CELL, keep=1) == set()  # idempotent


def test_retention_keeps_a_digest_that_a_kept_tag_shares(
        client: Registry, server: registry_server.RegistryServer) -> None:
    repo, day1, day2 = "demo/unchanged", datetime.date(2026, 3, 1), datetime.date(2026, 3, 2)
    same = push_image(server.host, repo, dated_tag(CELL, day1), b"unchanged rebuild")
    assert push_image(server.host, repo, dated_tag(CELL, day2), b"unchanged rebuild") == same
    assert apply_retention(client, repo, CELL, keep=1) == set()
    assert client.resolve(repo, dated_tag(CELL, day2)) == same


def test_a_registry_that_does_not_delete_says_so(tmp_path: Path) -> None:
    with registry_server.start(tmp_path / "reg", delete=False) as srv:
        reg = Registry(srv.host)
        digest = push_image(srv.host, "demo/nodelete", "v1", b"stays")
        with pytest.raises(DeleteUnsupported) as info:
            reg.delete("demo/nodelete", digest)
        assert reg.resolve("demo/nodelete", "v1") == digest
    assert str(info.value) == (f"registry {srv.host} does not delete manifests through the API "
                               "(HTTP 405 UNSUPPORTED)")


# ---- failures: one line, bounded --------------------------------------------------------


def test_stopped_registry_gives_one_line_after_bounded_retries(tmp_path: Path) -> None:
    srv = registry_server.start(tmp_path)
    srv.stop()
    with pytest.raises(RegistryError) as info:
        Registry(srv.host, retries=1).tags(REPO)  # skopeo's own retry: one, after 1s
    assert str(info.value) == (
        f"registry {srv.host} could not list the tags of {REPO} after 2 tries "
        "(connection refused); start it or check --registry")


@pytest.mark.parametrize("status", [500, 503])
def test_5xx_is_retried_then_one_line(status: int) -> None:
    sleeps: list[float] = []
    with registry_server.serve_errors(status=status) as fault:
        with pytest.raises(RegistryError) as info:
            Registry(fault.host, retries=2, sleep=sleeps.append).tags(REPO)
        tries = fault.requests.count("GET /v2/")  # each try starts with the /v2/ check
    assert (tries, sleeps) == (3, [1, 2])
    message = str(info.value)
    assert message.startswith(f"registry {fault.host} could not list the tags of {REPO} after "
                              f"3 tries (pinging container registry {fault.host}: ")
    assert f" {status} " in message and "\n" not in message
    assert message.endswith("; check the registry's logs or retry later")


@pytest.mark.parametrize("status", [403, 404])
def test_4xx_is_not_retried_nor_taken_for_an_empty_repository(status: int) -> None:
    sleeps: list[float] = []
    with registry_server.serve_errors(status=status) as fault, \
            pytest.raises(RegistryError) as info:
        Registry(fault.host, retries=3, sleep=sleeps.append).tags(REPO)
    assert (fault.requests.count("GET /v2/"), sleeps) == (1, [])
    assert str(info.value).startswith(
        f"registry {fault.host} could not list the tags of {REPO} (pinging container registry "
        f"{fault.host}: invalid status code from registry {status} (")
    if status == 403:
        assert str(info.value).endswith("; the account may not do that there: check its "
                                        "permissions")


def test_a_host_that_never_answers_is_bounded_by_the_timeout() -> None:
    with registry_server.serve_errors(status=None) as fault, pytest.raises(RegistryError) as info:
        Registry(fault.host, retries=1, timeout=1).tags(REPO)
    assert str(info.value) == (f"registry {fault.host} could not list the tags of {REPO} (no "
                               "answer within 1s); start it or check --registry")


@pytest.mark.parametrize("host", ["a b", "http://127.0.0.1:5000", "127.0.0.1:5000/v2",
                                  "user@127.0.0.1", "127.0.0.1:70000", ""])
def test_a_malformed_host_is_refused_at_once(host: str) -> None:
    with pytest.raises(UserError) as info:
        Registry(host)
    assert str(info.value) == (
        f"invalid registry host {host!r}: give host[:port] without a scheme, path, user or "
        "spaces, e.g. '127.0.0.1:5000'")


def test_without_skopeo_it_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UserError) as info:
        Registry("127.0.0.1:5000")
    assert str(info.value) == ("skopeo is not installed, so registry 127.0.0.1:5000 cannot be "
                               "reached; run `ci/setup-host.sh` (or `apt-get install -y skopeo`)")


@pytest.mark.parametrize(("host", "verify"), [
    ("127.0.0.1:5000", "false"), ("localhost:5000", "false"), ("[::1]:5000", "false"),
    ("registry.example.invalid", "true"), ("10.1.2.3:5000", "true")])
def test_tls_is_verified_except_on_loopback(host: str, verify: str, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    # A stand-in skopeo that records its arguments: no traffic to any of these hosts.
    calls = tmp_path / "calls"
    stand_in = tmp_path / "skopeo"
    stand_in.write_text(f'#!/bin/sh\necho "$*" >> {calls}\necho \'{{"Tags": ["t"]}}\'\n')
    stand_in.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    reg = Registry(host)
    assert reg.tags(REPO) == ["t"]
    reg.tag(REPO, "sha256:" + "a" * 64, "t2")
    first, second = calls.read_text().splitlines()
    assert f"--tls-verify={verify}" in first.split()
    assert {f"--src-tls-verify={verify}", f"--dest-tls-verify={verify}"} <= set(second.split())


# ---- credentials from where docker finds them -------------------------------------------


def test_basic_auth_from_docker_config_and_no_secret_in_messages(
        tmp_path: Path, docker_config: Path) -> None:
    auth = registry_server.htpasswd_auth(tmp_path, USER)
    with registry_server.start(tmp_path / "reg", auth=auth) as srv:
        with pytest.raises(RegistryError) as anonymous:
            Registry(srv.host).ping("demo/auth")

        good = write_auth(docker_config, srv.host, USER, PASSWORD)
        reg = Registry(srv.host)
        reg.ping("demo/auth")
        digest = push_image(srv.host, "demo/auth", "v1", b"with auth")
        reg.tag("demo/auth", digest, "v2")
        assert reg.resolve("demo/auth", "v2") == digest

        bad = write_auth(docker_config, srv.host, USER, WRONG)
        with pytest.raises(RegistryError) as rejected:
            reg.tags("demo/auth")
        with pytest.raises(RegistryError) as refused_delete:
            reg.delete("demo/auth", digest)
    for info in (anonymous, rejected, refused_delete):
        text = str(info.value)
        assert text.startswith(f"registry {srv.host} could not ")
        assert text.endswith(f"it needs credentials that it accepts: run `docker login "
                             f"{srv.host}`"), text
        for secret in (PASSWORD, WRONG, good, bad, USER + ":"):
            assert secret not in text


def test_credentials_from_cred_helpers_and_creds_store(
        tmp_path: Path, docker_config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    auth = registry_server.htpasswd_auth(tmp_path, USER)
    with registry_server.start(tmp_path / "reg", auth=auth) as srv:
        write_auth(docker_config, srv.host, USER, PASSWORD)
        digest = push_image(srv.host, "demo/helper", "v1", b"via helper")
        bin_dir = tmp_path / "bin"
        good = registry_server.credential_helper(bin_dir, "wfgood", srv.host, USER, PASSWORD)
        wrong = registry_server.credential_helper(bin_dir, "wfwrong", srv.host, USER, WRONG)
        monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
        stale = base64.b64encode(f"{USER}:stale".encode()).decode()

        # credHelpers[host] wins over credsStore and over a stale auths entry.
        docker_config.write_text(json.dumps({
            "credHelpers": {srv.host: "wfgood"}, "credsStore": "wfwrong",
            "auths": {srv.host: {"auth": stale}}}))
        assert Registry(srv.host).resolve("demo/helper", "v1") == digest
        assert good.read_text().split() == [srv.host]
        assert not wrong.exists()

        # credsStore serves a registry without a credHelpers entry, before auths.
        docker_config.write_text(json.dumps({"credsStore": "wfgood",
                                             "auths": {srv.host: {"auth": stale}}}))
        assert Registry(srv.host).tags("demo/helper") == ["v1"]
        assert good.read_text().split() == [srv.host, srv.host]

        docker_config.write_text(json.dumps({"credsStore": "wfwrong"}))
        with pytest.raises(RegistryError) as info:
            Registry(srv.host).tags("demo/helper")
    assert wrong.read_text().split() == [srv.host]
    assert str(info.value).endswith(f"run `docker login {srv.host}`")
    assert WRONG not in str(info.value)


def test_a_missing_or_broken_helper_is_one_line_without_its_output(
        tmp_path: Path, docker_config: Path, monkeypatch: pytest.MonkeyPatch,
        server: registry_server.RegistryServer) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    broken = bin_dir / "docker-credential-wfbroken"
    broken.write_text(f"#!/bin/sh\necho 'output with {PASSWORD}'; exit 3\n")
    broken.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    fix = (f"fix the credential helper that {docker_config} names for it, or run `docker "
           f"login {server.host}`")
    for helper, why in (("wfbroken", "exit status 3, out: `***`"),
                        ("wfabsent", "docker-credential-wfabsent")):
        docker_config.write_text(json.dumps({"credHelpers": {server.host: helper}}))
        with pytest.raises(RegistryError) as info:
            Registry(server.host).tags(REPO)
        text = str(info.value)
        assert text.startswith(f"registry {server.host} could not list the tags of {REPO} (")
        assert why in text and text.endswith(fix), text
        assert PASSWORD not in text and "output with" not in text


def test_malformed_docker_config_is_one_clear_line(docker_config: Path) -> None:
    docker_config.write_text("{not json")
    with pytest.raises(UserError) as info:
        Registry("127.0.0.1:1").tags(REPO)
    assert str(info.value) == (f"cannot read the Docker config {docker_config} "
                               "(JSONDecodeError); fix the JSON or point DOCKER_CONFIG at "
                               "another folder")


class TokenServer:
    """A real token server (the Docker token protocol) for the real registry's Bearer auth.

    It signs RS256 JWTs with a self-signed certificate made by the openssl CLI; the
    registry trusts that certificate through ``auth.token.rootcertbundle``.
    """

    def __init__(self, folder: Path) -> None:
        self.key, self.cert = folder / "token.key", folder / "token.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", "/CN=wheelforge-test-token", "-keyout", str(self.key),
             "-out", str(self.cert)],
            check=True, capture_output=True,
        )  # fmt: skip
        der = subprocess.run(
            ["openssl", "x509", "-in", str(self.cert), "-outform", "DER"],
            check=True, capture_output=True,
        ).stdout  # fmt: skip
        self.x5c = base64.b64encode(der).decode()
        self.requests: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                server.requests.append(self.headers.get("Authorization", ""))
                expected = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
                if self.headers.get("Authorization") != f"Basic {expected}":
                    self.send_response(401)
                    self.end_headers()
                    return
                body = json.dumps({"token": server.sign(query)}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return

        self.http = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.realm = f"http://127.0.0.1:{self.http.server_address[1]}/token"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def sign(self, query: dict[str, list[str]]) -> str:
        access = []
        for scope in query.get("scope", []):
            kind, name, actions = scope.split(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        claims = {
            "iss": "wf-test-issuer", "sub": USER, "aud": query["service"][0],
            "exp": now + 600, "nbf": now - 60, "iat": now, "jti": str(now), "access": access,
        }  # fmt: skip
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        signing_input = f"{b64url(header)}.{b64url(claims)}".encode()
        signature = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", str(self.key)],
            input=signing_input, check=True, capture_output=True,
        ).stdout  # fmt: skip
        return (
            signing_input.decode() + "." + base64.urlsafe_b64encode(signature).decode().rstrip("=")
        )


def b64url(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def test_bearer_token_flow_against_the_real_registry(tmp_path: Path, docker_config: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to sign test tokens")
    tokens = TokenServer(tmp_path)
    auth = {
        "token": {
            "realm": tokens.realm, "service": "wf-test", "issuer": "wf-test-issuer",
            "rootcertbundle": str(tokens.cert),
        }
    }  # fmt: skip
    try:
        with registry_server.start(tmp_path / "reg", auth=auth) as srv:
            with pytest.raises(RegistryError, match="needs credentials"):
                Registry(srv.host).ping("demo/bearer")  # anonymous: no token
            write_auth(docker_config, srv.host, USER, PASSWORD)
            reg = Registry(srv.host)
            reg.ping("demo/bearer")
            digest = push_image(srv.host, "demo/bearer", "v1", b"bearer")  # pull,push scope
            reg.tag("demo/bearer", digest, "v2")
            assert sorted(reg.tags("demo/bearer")) == ["v1", "v2"]
            assert reg.resolve("demo/bearer", "v2") == digest
    finally:
        tokens.http.shutdown()
        tokens.http.server_close()
    assert [r for r in tokens.requests if r.startswith("Basic ")]
