"""The registry client against a real loopback registry (distribution 2.8).

Faults (5xx, a host that never answers, a stopped registry) come from a loopback
fault injector; everything a registry *does* is checked against docker-registry itself.
"""

from __future__ import annotations

import base64
import datetime
import gzip
import hashlib
import http.server
import io
import json
import os
import shutil
import subprocess
import tarfile
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import registry_server
from wheelforge.core.terminal import UserError
from wheelforge.publish.registry import (
    OCI_MANIFEST,
    DeleteUnsupported,
    Registry,
    RegistryError,
    next_link,
    parse_challenge,
)
from wheelforge.publish.tags import dated_tag, deletable_digests, expired, floating_tags

pytestmark = [pytest.mark.integration, pytest.mark.one_engine]

if shutil.which(registry_server.BINARY) is None and not os.environ.get("CI"):
    pytest.skip("docker-registry is not installed; run ci/setup-host.sh", allow_module_level=True)

CELL = "nightly-rocm7.2-py3.12-gfx942-ckfree"
REPO = "wheelforge/rocm"
USER, PASSWORD = "wf-ci", registry_server.PASSWORD


def no_sleep(seconds: float) -> None:
    return None


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[registry_server.RegistryServer]:
    with registry_server.start(tmp_path_factory.mktemp("registry")) as srv:
        yield srv


@pytest.fixture(autouse=True)
def no_host_docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never read the credentials of the machine running the tests."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker-config"))


@pytest.fixture()
def client(server: registry_server.RegistryServer) -> Registry:
    return Registry(server.host, sleep=no_sleep)


def push_image(reg: Registry, repo: str, tag: str, content: bytes) -> str:
    """Push a one-layer OCI image whose only file holds ``content``; returns its digest."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content))
    layer = gzip.compress(raw.getvalue(), mtime=0)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {
                "type": "layers",
                "diff_ids": ["sha256:" + hashlib.sha256(raw.getvalue()).hexdigest()],
            },
        }
    ).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": reg.put_blob(repo, config),
            "size": len(config),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": reg.put_blob(repo, layer),
                "size": len(layer),
            }
        ],
    }
    body = json.dumps(manifest).encode()
    digest = reg.put_manifest(repo, tag, body, OCI_MANIFEST)
    assert digest == "sha256:" + hashlib.sha256(body).hexdigest()
    return digest


def test_push_list_resolve_and_read(client: Registry) -> None:
    client.ping()
    digest = push_image(client, "demo/push", "v1", b"one")
    assert client.tags("demo/push") == ["v1"]
    assert client.resolve("demo/push", "v1") == digest
    assert client.resolve("demo/push", digest) == digest
    assert client.resolve("demo/push", "missing") is None
    media_type, body, got = client.get_manifest("demo/push", "v1")
    assert (media_type, got) == (OCI_MANIFEST, digest)
    assert json.loads(body)["schemaVersion"] == 2
    assert client.tags("demo/never-pushed") == []


def test_tags_with_a_small_page_size_still_lists_every_tag(client: Registry) -> None:
    digest = push_image(client, "demo/pages", "t0", b"pages")
    for i in range(1, 5):
        client.tag("demo/pages", digest, f"t{i}")
    # distribution 2.8 answers tags/list in one page whatever n is; newer registries
    # page with Link headers, which next_link() reads (checked below).
    assert sorted(client.tags("demo/pages", page_size=2)) == [f"t{i}" for i in range(5)]


def test_next_link_reads_relative_and_absolute_links() -> None:
    rel = '</v2/wheelforge/rocm/tags/list?last=t1&n=2>; rel="next"'
    assert next_link(rel) == "/v2/wheelforge/rocm/tags/list?last=t1&n=2"
    absolute = "<https://r.example/v2/x/tags/list?n=2&last=b>; rel=next"
    assert next_link(absolute) == "https://r.example/v2/x/tags/list?n=2&last=b"
    assert next_link("") is None
    assert next_link('</v2/x/tags/list?n=2>; rel="prev"') is None


def test_retag_to_floating_tags_resolves_to_the_same_digest(client: Registry) -> None:
    digest = push_image(client, REPO, dated_tag(CELL, datetime.date(2026, 3, 1)), b"retag")
    floating = floating_tags(
        channel="nightly",
        arch="gfx942",
        variant="ckfree",
        default_variant="ckfree",
        default_arch="gfx942",
    )
    for tag in floating:
        client.tag(REPO, digest, tag)
    assert {client.resolve(REPO, tag) for tag in floating} == {digest}
    assert set(floating) <= set(client.tags(REPO))


def test_delete_by_digest_removes_its_tags(client: Registry) -> None:
    digest = push_image(client, "demo/delete", "a", b"delete-me")
    client.tag("demo/delete", digest, "b")
    keep = push_image(client, "demo/delete", "c", b"keep-me")
    assert client.delete("demo/delete", digest) is True
    assert client.tags("demo/delete") == ["c"]
    assert client.resolve("demo/delete", "a") is None
    assert client.resolve("demo/delete", digest) is None
    assert client.resolve("demo/delete", "c") == keep
    assert client.delete("demo/delete", digest) is False  # already gone: 404


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


def test_retention_deletes_exactly_the_old_days(client: Registry) -> None:
    repo, day1, day2 = "demo/retention", datetime.date(2026, 3, 1), datetime.date(2026, 3, 2)
    old = push_image(client, repo, dated_tag(CELL, day1), b"day 1")
    new = push_image(client, repo, dated_tag(CELL, day2), b"day 2")
    client.tag(repo, new, "nightly-gfx942")
    other = push_image(client, repo, dated_tag("nightly-rocm7.2-py3.12-gfx950-full", day1), b"x")

    assert apply_retention(client, repo, CELL, keep=1) == {old}
    assert sorted(client.tags(repo)) == sorted(
        [
            dated_tag(CELL, day2),
            "nightly-gfx942",
            dated_tag("nightly-rocm7.2-py3.12-gfx950-full", day1),
        ]
    )
    assert client.resolve(repo, "nightly-gfx942") == new
    assert client.resolve(repo, dated_tag("nightly-rocm7.2-py3.12-gfx950-full", day1)) == other
    assert apply_retention(client, repo, CELL, keep=1) == set()  # idempotent


def test_retention_keeps_a_digest_that_a_kept_tag_shares(client: Registry) -> None:
    repo, day1, day2 = "demo/unchanged", datetime.date(2026, 3, 1), datetime.date(2026, 3, 2)
    same = push_image(client, repo, dated_tag(CELL, day1), b"unchanged rebuild")
    assert push_image(client, repo, dated_tag(CELL, day2), b"unchanged rebuild") == same
    assert apply_retention(client, repo, CELL, keep=1) == set()
    assert client.resolve(repo, dated_tag(CELL, day2)) == same


def attempts_and_error(host: str, *, timeout: float = 5.0) -> tuple[int, str]:
    sleeps: list[float] = []
    reg = Registry(host, retries=4, backoff=0.5, timeout=timeout, sleep=sleeps.append)
    with pytest.raises(RegistryError) as info:
        reg.tags(REPO)
    assert sleeps == [0.5, 1.0, 2.0]  # bounded exponential backoff between 4 tries
    return len(sleeps) + 1, str(info.value)


def test_stopped_registry_gives_one_line_after_bounded_retries(tmp_path: Path) -> None:
    srv = registry_server.start(tmp_path)
    srv.stop()
    tries, message = attempts_and_error(srv.host)
    assert tries == 4
    assert message == (
        f"registry {srv.host} did not answer GET /v2/{REPO}/tags/list after 4 tries "
        "(connection refused); start it or check --registry"
    )


@pytest.mark.parametrize("status", [500, 503])
def test_5xx_is_retried_then_one_line(status: int) -> None:
    with registry_server.serve_errors(status=status) as fault:
        tries, message = attempts_and_error(fault.host)
        assert fault.connections == tries == 4
    assert message.startswith(
        f"registry {fault.host} failed GET /v2/{REPO}/tags/list after 4 tries"
    )
    assert f"HTTP {status}" in message and "\n" not in message


def test_never_answering_host_times_out_and_is_retried() -> None:
    with registry_server.serve_errors(status=None) as fault:
        tries, message = attempts_and_error(fault.host, timeout=0.2)
        assert fault.connections == tries == 4
    assert message == (
        f"registry {fault.host} did not answer GET /v2/{REPO}/tags/list after 4 tries "
        "(timed out after 0.2s); start it or check --registry"
    )


def test_4xx_is_not_retried(client: Registry) -> None:
    with pytest.raises(RegistryError, match=r"refused GET .*HTTP 404 MANIFEST_UNKNOWN"):
        client.get_manifest("demo/none", "nope")
    with pytest.raises(RegistryError, match=r"HTTP 400 MANIFEST_BLOB_UNKNOWN"):
        body = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "layers": [],
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": "sha256:" + "1" * 64,
                    "size": 3,
                },
            }
        ).encode()
        client.put_manifest("demo/none", "bad", body, OCI_MANIFEST)


@pytest.fixture()
def docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A DOCKER_CONFIG folder whose config.json holds credentials; returns config.json."""
    folder = tmp_path / "docker-config"
    folder.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(folder))
    return folder / "config.json"


def write_auth(config: Path, host: str, user: str, password: str) -> str:
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    config.write_text(json.dumps({"auths": {host: {"auth": auth}}}))
    return auth


def test_basic_auth_from_docker_config_and_no_secret_in_messages(
    tmp_path: Path, docker_config: Path
) -> None:
    auth = registry_server.htpasswd_auth(tmp_path, USER)
    with registry_server.start(tmp_path / "reg", auth=auth) as srv:
        with pytest.raises(RegistryError, match=r"HTTP 401 UNAUTHORIZED.*needs credentials"):
            Registry(srv.host, sleep=no_sleep).ping()

        write_auth(docker_config, srv.host, USER, PASSWORD)
        good = Registry(srv.host, sleep=no_sleep)
        good.ping()
        digest = push_image(good, "demo/auth", "v1", b"with auth")
        assert good.resolve("demo/auth", "v1") == digest

        bad_password = "wr0ng-Pa55word"
        secret = write_auth(docker_config, srv.host, USER, bad_password)
        bad = Registry(srv.host, sleep=no_sleep)
        with pytest.raises(RegistryError) as info:
            bad.tags("demo/auth")
        assert "credentials were rejected" in str(info.value)
        texts = [str(info.value), repr(info.value), repr(bad), repr(good)]
    for text in texts:
        for leak in (PASSWORD, bad_password, secret, USER + ":"):
            assert leak not in text
    assert repr(good) == f"Registry({srv.host!r}, scheme='http', credentials)"

    sleeps: list[float] = []
    stopped = Registry(srv.host, sleep=sleeps.append)
    with pytest.raises(RegistryError) as info:
        stopped.ping()
    assert bad_password not in str(info.value) and secret not in str(info.value)


def test_malformed_docker_config_auth_is_one_clear_line(docker_config: Path) -> None:
    docker_config.write_text(json.dumps({"auths": {"127.0.0.1:1": {"auth": "bm9jb2xvbg=="}}}))
    with pytest.raises(UserError, match=r"malformed auths\['127.0.0.1:1'\]\.auth"):
        Registry("127.0.0.1:1")


@pytest.mark.parametrize("host", ["a b", "http://127.0.0.1:5000", "127.0.0.1:5000/v2",
                                  "user@127.0.0.1", "127.0.0.1:70000", ""])
def test_a_malformed_host_is_refused_at_once(host: str, docker_config: Path) -> None:
    # Refused before anything else: the (malformed) Docker config is not even read.
    docker_config.write_text(json.dumps({"auths": {"127.0.0.1:1": {"auth": "bm9jb2xvbg=="}}}))
    with pytest.raises(UserError) as info:
        Registry(host, sleep=no_sleep)
    assert str(info.value) == (
        f"invalid registry host {host!r}: give host[:port] without a scheme, path, user or "
        "spaces, e.g. '127.0.0.1:5000'")


def test_scheme_defaults_and_challenge_parsing() -> None:
    assert Registry("127.0.0.1:5000", credentials=("u", "p")).scheme == "http"
    assert Registry("localhost:5000", credentials=("u", "p")).scheme == "http"
    assert Registry("[::1]:5000", credentials=("u", "p")).scheme == "http"
    assert Registry("ghcr.io", credentials=("u", "p")).scheme == "https"
    assert parse_challenge(  # the Bearer flow's input, as ghcr.io and Docker Hub send it
        'Bearer realm="https://auth.example/token",service="registry.example",'
        'scope="repository:wheelforge/rocm:pull,push"'
    ) == (
        "bearer",
        {
            "realm": "https://auth.example/token",
            "service": "registry.example",
            "scope": "repository:wheelforge/rocm:pull,push",
        },
    )
    assert parse_challenge('Basic realm="wheelforge"') == ("basic", {"realm": "wheelforge"})


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


def test_bearer_token_flow_against_the_real_registry(tmp_path: Path) -> None:
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
            with pytest.raises(RegistryError, match=r"token server 127\.0\.0\.1:\d+ refused"):
                Registry(srv.host, sleep=no_sleep).ping()  # anonymous: no token
            reg = Registry(srv.host, sleep=no_sleep, credentials=(USER, PASSWORD))
            reg.ping()
            digest = push_image(reg, "demo/bearer", "v1", b"bearer")  # pull,push scope
            reg.tag("demo/bearer", digest, "v2")
            assert sorted(reg.tags("demo/bearer")) == ["v1", "v2"]
            assert reg.resolve("demo/bearer", "v2") == digest
            assert "Bearer" not in repr(reg) and PASSWORD not in repr(reg)
    finally:
        tokens.http.shutdown()
        tokens.http.server_close()
    assert tokens.requests[1:] and all(r.startswith("Basic ") for r in tokens.requests[1:])


# ---- credentials from where docker finds them; registries that do not delete -----------

def test_credentials_from_cred_helpers_and_creds_store(
    tmp_path: Path, docker_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    auth = registry_server.htpasswd_auth(tmp_path, USER)
    with registry_server.start(tmp_path / "reg", auth=auth) as srv:
        bin_dir = tmp_path / "bin"
        good = registry_server.credential_helper(bin_dir, "wfgood", srv.host, USER, PASSWORD)
        wrong = registry_server.credential_helper(bin_dir, "wfwrong", srv.host, USER,
                                                  "wr0ng-Pa55word")
        monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
        stale = base64.b64encode(f"{USER}:stale".encode()).decode()

        # credHelpers[host] wins over credsStore and over a stale auths entry.
        docker_config.write_text(json.dumps({
            "credHelpers": {srv.host: "wfgood"}, "credsStore": "wfwrong",
            "auths": {srv.host: {"auth": stale}}}))
        reg = Registry(srv.host, sleep=no_sleep)
        digest = push_image(reg, "demo/helper", "v1", b"via helper")
        assert reg.resolve("demo/helper", "v1") == digest
        assert good.read_text().split() == [srv.host]
        assert not wrong.exists()

        # credsStore serves every registry without a credHelpers entry; auths is not read.
        docker_config.write_text(json.dumps({"credsStore": "wfgood",
                                             "auths": {srv.host: {"auth": stale}}}))
        assert Registry(srv.host, sleep=no_sleep).tags("demo/helper") == ["v1"]

        # A helper that has nothing for this host: anonymous, and the 401 says so.
        docker_config.write_text(json.dumps({"credHelpers": {"127.0.0.1:1": "wfgood",
                                                             srv.host: "wfgood"}}))
        other = Registry("127.0.0.1:1", sleep=no_sleep)
        assert repr(other) == "Registry('127.0.0.1:1', scheme='http', anonymous)"

        docker_config.write_text(json.dumps({"credsStore": "wfwrong"}))
        with pytest.raises(RegistryError) as info:
            Registry(srv.host, sleep=no_sleep).tags("demo/helper")
    assert "credentials were rejected" in str(info.value)
    assert "wr0ng" not in str(info.value)


def test_a_missing_or_broken_helper_is_one_clear_line(
    tmp_path: Path, docker_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docker_config.write_text(json.dumps({"credHelpers": {"127.0.0.1:1": "wf-absent"}}))
    with pytest.raises(UserError, match=r"names the credential helper 'wf-absent' for "
                       r"127\.0\.0\.1:1, but docker-credential-wf-absent is not on PATH"):
        Registry("127.0.0.1:1")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    broken = bin_dir / "docker-credential-wfbroken"
    broken.write_text("#!/bin/sh\necho 'secret-ish output'; exit 3\n")
    broken.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    docker_config.write_text(json.dumps({"credsStore": "wfbroken"}))
    with pytest.raises(UserError) as info:
        Registry("127.0.0.1:1")
    assert str(info.value) == ("docker-credential-wfbroken get failed for 127.0.0.1:1 (exit 3); "
                               "run `docker-credential-wfbroken get` by hand, or `docker login "
                               "127.0.0.1:1` again")


def test_a_registry_that_does_not_delete_says_so(tmp_path: Path) -> None:
    with registry_server.start(tmp_path / "reg", delete=False) as srv:
        reg = Registry(srv.host, sleep=no_sleep)
        digest = push_image(reg, "demo/nodelete", "v1", b"stays")
        with pytest.raises(DeleteUnsupported) as info:
            reg.delete("demo/nodelete", digest)
        assert reg.resolve("demo/nodelete", "v1") == digest
    assert str(info.value) == (f"registry {srv.host} does not delete manifests through the API "
                               "(HTTP 405 UNSUPPORTED: The operation is unsupported.)")
