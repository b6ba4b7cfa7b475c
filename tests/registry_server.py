"""A real loopback registry for tests and local runs, and a fault injector.

``start(root)`` runs Debian's ``docker-registry`` (CNCF distribution 2.8, installed by
``ci/setup-host.sh``) on 127.0.0.1 with filesystem storage under ``root``, in its own
process group, and waits (bounded) until ``/v2/`` answers. Like Debian's own config it
keeps blob descriptors in memory: without that cache, requests that read a blob's link
file while another request writes it (the filesystem driver truncates, then writes) get
``400 manifest invalid: invalid checksum digest format``, e.g. two HEADs of a tag at once
that both convert a schema 2 manifest to schema 1 and store its empty layer (13 of 200
such HEADs in a loop; 0 of 640 with the cache). Each request is logged (level info), so a
failing test can be read against the registry's side. Deletion is enabled unless
``delete=False``: then the registry answers every DELETE with 405 UNSUPPORTED, as
registries that never delete through the API do.

``htpasswd_auth(folder, user)`` is the ``auth`` for Basic auth as ``user`` with ``PASSWORD``;
``credential_helper(...)`` writes a docker credential helper that answers for one host.

``serve_errors(status=...)`` is not a registry: it is a loopback HTTP server that answers
every request with one 4xx or 5xx status, or accepts connections and never answers, so the
client's retries and its final error line can be checked against a misbehaving host.

``push_image(host, repo, tag, content)`` pushes a tiny image without an engine: it writes
an OCI image layout (``oci-layout``, ``index.json``, ``blobs/sha256/...``) holding a
one-layer image, or an index of one such image per architecture, and copies it with
``skopeo copy oci:DIR:TAG docker://HOST/REPO:TAG``, digests preserved.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import json
import secrets
import shutil
import socket
import subprocess
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

from wheelforge.core.engine import stop_group
from wheelforge.core.terminal import UserError
from wheelforge.publish.registry import config_path, skopeo_message

BINARY = "docker-registry"
_READY_SECONDS = 20.0
# The password of every test user, and its bcrypt (cost 4), made once with
# crypt.crypt(PASSWORD, crypt.mksalt(crypt.METHOD_BLOWFISH)).
PASSWORD = "s3cret-Pa55word"
_PASSWORD_BCRYPT = "$2b$04$zdVlG9/9phK3wTBwlOZsFuuruBNRo77R5NJdEoSCympVjt24C4/B2"
# A docker-credential-helpers program, `get` only: server address on stdin, JSON out.
_HELPER = """#!/bin/sh
[ "$1" = get ] || {{ echo "only get is supported" >&2; exit 1; }}
read -r server
echo "$server" >> "{log}"
if [ "$server" = "{host}" ]; then
  printf '{{"ServerURL":"%s","Username":"{user}","Secret":"{secret}"}}\\n' "$server"
else
  echo "credentials not found in native keychain"; exit 1
fi
"""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _StopOnExit:
    """`with server:` stops the server at the end of the block."""

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@dataclass(frozen=True, kw_only=True)
class RegistryServer(_StopOnExit):
    """A running ``docker-registry serve``; ``.host`` is ``127.0.0.1:PORT``."""

    host: str
    root: Path
    config: Path
    log: Path
    process: subprocess.Popen[bytes] = field(repr=False)

    def stop(self) -> None:
        """Terminate the registry's process group and wait for it (idempotent)."""
        if self.process.poll() is None:
            stop_group(self.process, timeout=10)


def htpasswd_auth(folder: Path, user: str) -> dict[str, dict[str, str]]:
    """Write ``folder/htpasswd`` for ``user`` with ``PASSWORD``; the ``auth`` that reads it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "htpasswd"
    path.write_text(f"{user}:{_PASSWORD_BCRYPT}\n", encoding="utf-8")
    return {"htpasswd": {"realm": "wf", "path": str(path)}}


def credential_helper(folder: Path, name: str, host: str, user: str, secret: str) -> Path:
    """A ``docker-credential-NAME`` in ``folder`` that answers for ``host`` only; its log.

    The log gets a line per server the helper was asked about.
    """
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / f"{name}.log"
    helper = folder / f"docker-credential-{name}"
    helper.write_text(_HELPER.format(log=log, host=host, user=user, secret=secret),
                      encoding="utf-8")
    helper.chmod(0o755)
    return log


def write_config(
    root: Path,
    port: int,
    *,
    auth: Mapping[str, Mapping[str, str]] | None = None,
    delete: bool = True,
    blob_cache: bool = True,
) -> Path:
    """Write the registry's config.yml under ``root`` and return its path."""
    storage = root / "storage"
    storage.mkdir(parents=True, exist_ok=True)
    lines = [
        "version: 0.1",
        "log:",
        "  level: info",
        "  accesslog:",
        "    disabled: true",
        "storage:",
        *(["  cache:", "    blobdescriptor: inmemory"] if blob_cache else []),
        "  filesystem:",
        f"    rootdirectory: {storage}",
        "  delete:",
        f"    enabled: {'true' if delete else 'false'}",
        "http:",
        f"  addr: 127.0.0.1:{port}",
        f"  secret: {secrets.token_hex(16)}",  # upload-state HMAC; random per run
    ]
    if auth:
        lines.append("auth:")
        for kind, options in auth.items():
            lines.append(f"  {kind}:")
            lines += [f"    {key}: {json.dumps(str(value))}" for key, value in options.items()]
    config = root / "config.yml"
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return config


def start(
    root: Path,
    port: int | None = None,
    *,
    auth: Mapping[str, Mapping[str, str]] | None = None,
    delete: bool = True,
    blob_cache: bool = True,
    binary: str = BINARY,
) -> RegistryServer:
    """Start ``docker-registry serve`` on 127.0.0.1 and wait until ``/v2/`` answers.

    ``auth`` is the config's ``auth`` section, e.g. ``{"htpasswd": {"realm": "wf", "path":
    "htpasswd"}}`` for Basic auth (bcrypt lines) or ``{"token": {...}}`` for Bearer.
    """
    exe = shutil.which(binary)
    if exe is None:
        raise UserError(
            f"{binary} is not installed, so no loopback registry can start under {root}; "
            "run `sudo ci/setup-host.sh` (or `apt-get install -y docker-registry`)"
        )
    root = Path(root).resolve()
    port = port or free_port()
    config = write_config(root, port, auth=auth, delete=delete, blob_cache=blob_cache)
    log = root / "registry.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [exe, "serve", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = RegistryServer(
        host=f"127.0.0.1:{port}", root=root, config=config, log=log, process=process
    )
    try:
        _wait_ready(server)
    except BaseException:
        server.stop()
        raise
    return server


def _wait_ready(server: RegistryServer) -> None:
    """Poll ``/v2/`` until it answers (any HTTP status), the process exits, or time runs out."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + _READY_SECONDS
    while True:
        if server.process.poll() is not None:
            tail = _tail(server.log)
            raise UserError(
                f"docker-registry exited with status {server.process.returncode} on "
                f"{server.host} ({tail}); see {server.log}"
            )
        try:
            with opener.open(f"http://{server.host}/v2/", timeout=1):
                return
        except urllib.error.HTTPError:
            return  # it answered, e.g. 401 when auth is on
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise UserError(
                f"docker-registry on {server.host} did not answer /v2/ within "
                f"{_READY_SECONDS:g}s; see {server.log}"
            )
        time.sleep(0.05)


def _tail(log: Path) -> str:
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return "no log"
    return " ".join(lines[-1].split())[:200] if lines else "no output"


class FaultServer(_StopOnExit):
    """A loopback HTTP server that fails every request; see ``serve_errors``."""

    def __init__(self, status: int | None) -> None:
        self.status = status
        self._lock = threading.Lock()
        self._requests: list[str] = []
        self._release = threading.Event()
        fault = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def handle(self) -> None:
                if fault.status is None:
                    fault._release.wait()  # accept, never answer
                    return
                super().handle()

            def _fail(self) -> None:
                with fault._lock:
                    fault._requests.append(f"{self.command} {self.path}")
                code = "UNAVAILABLE" if (fault.status or 500) >= 500 else "DENIED"
                body = json.dumps({"errors": [{"code": code, "message": "injected fault"}]})
                self.send_response(fault.status or 500)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body.encode())
                self.close_connection = True

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = do_PATCH = _fail

            def log_message(self, format: str, *args: object) -> None:
                return

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.host = f"127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def requests(self) -> list[str]:
        """``METHOD PATH`` of each HTTP request it has answered, in order."""
        with self._lock:
            return list(self._requests)

    def stop(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()



def serve_errors(*, status: int | None = 500) -> FaultServer:
    """Answer every request with ``status`` (e.g. 403, 503); ``None``: accept, never answer."""
    if status is not None and not 400 <= status <= 599:
        raise UserError(f"serve_errors(status={status}) injects 4xx and 5xx faults; use 400-599")
    return FaultServer(status)


def _blob(layout: Path, media_type: str, data: bytes) -> dict[str, object]:
    """Store ``data`` under ``layout/blobs/sha256/``; its OCI descriptor."""
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}


def _image(layout: Path, content: bytes, arch: str) -> dict[str, object]:
    """A one-layer image whose only file, hello.txt, holds ``content``; its descriptor."""
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w") as archive:
        info = tarfile.TarInfo("hello.txt")
        info.size = len(content)
        archive.addfile(info, io.BytesIO(content))
    diff_id = "sha256:" + hashlib.sha256(tar.getvalue()).hexdigest()
    config = {"architecture": arch, "os": "linux",
              "rootfs": {"type": "layers", "diff_ids": [diff_id]}}
    manifest = {
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": _blob(layout, "application/vnd.oci.image.config.v1+json",
                        json.dumps(config).encode()),
        "layers": [_blob(layout, "application/vnd.oci.image.layer.v1.tar+gzip",
                         gzip.compress(tar.getvalue(), mtime=0))],
    }
    return _blob(layout, manifest["mediaType"], json.dumps(manifest).encode())


def push_image(host: str, repo: str, tag: str, content: bytes, *, archs: tuple[str, ...] = (),
               authfile: Path | None = None) -> str:
    """Push a tiny image to HOST/REPO:TAG; its digest (with ``archs``, an index's of one
    image per arch). Credentials: ``authfile``, else the docker config, if it exists."""
    with tempfile.TemporaryDirectory(prefix="wheelforge-oci-") as folder:
        layout = Path(folder)
        if archs:
            manifests = [{**_image(layout, content + arch.encode(), arch),
                          "platform": {"architecture": arch, "os": "linux"}} for arch in archs]
            index = {"schemaVersion": 2, "manifests": manifests,
                     "mediaType": "application/vnd.oci.image.index.v1+json"}
            top = _blob(layout, index["mediaType"], json.dumps(index).encode())
        else:
            top = _image(layout, content, "amd64")
        top["annotations"] = {"org.opencontainers.image.ref.name": tag}
        (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
        (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [top]}))
        auth = authfile or config_path()
        proc = subprocess.run(["skopeo", "copy", "--quiet", "--all", "--preserve-digests",
                               "--dest-tls-verify=false",
                               *(["--dest-authfile", str(auth)] if auth.is_file() else []),
                               f"oci:{layout}:{tag}", f"docker://{host}/{repo}:{tag}"],
                              capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0:
        raise UserError(f"skopeo could not push {host}/{repo}:{tag}: "
                        f"{skopeo_message(proc.stderr)}")
    return str(top["digest"])
