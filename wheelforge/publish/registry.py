"""The registry API: credentials as the docker client finds them, and a small client for
the OCI distribution HTTP API.

Registry credentials from the places the docker client reads them.

The Docker config (``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``) is read
the way the docker CLI reads it, so a host that ``docker push`` can reach is one that the
registry API client can reach too:

1. ``credHelpers[host]``: the credential helper named for this registry;
2. else ``credsStore``: the helper for every registry;
3. else ``auths[host].auth``: base64 of ``user:password``, written by ``docker login``.

A helper is asked through the docker-credential-helpers protocol: the program
``docker-credential-NAME`` runs with the argument ``get``, the server address on stdin,
and answers JSON ``{"ServerURL": ..., "Username": ..., "Secret": ...}`` on stdout, or
"credentials not found" with a non-zero exit. Nothing a helper prints is ever repeated in
a message: its output may hold the secret.

A small client for the OCI distribution (Docker registry v2) HTTP API, on urllib.

Publishing moves tags through the engine's own client (publish/__init__.py); this client does
what that cannot: ping, list tags, resolve a tag to a digest, delete by digest (retention),
plus reading a manifest, retagging by digest and monolithic blob/manifest pushes (enough
for tests to push a tiny image without an engine, and for retagging a single manifest
where the installed buildx cannot copy one unchanged).

Auth: anonymous first; on ``401`` the ``WWW-Authenticate`` challenge picks Basic (the
credentials are sent) or Bearer (a token is fetched from the realm with the credentials,
cached per scope). Credentials come from the constructor or from where docker finds them
(publish/registry.py: ``credHelpers[host]``, ``credsStore``, ``auths[host].auth``). They are sent
only to the registry host itself (``Authorization`` is never forwarded on a redirect) and
never appear in a message, exception or repr: every RegistryError text is scrubbed.

Failures: connection errors, timeouts and 5xx are retried ``retries`` times in total with
bounded exponential backoff, then raise one RegistryError line; other 4xx raise at once.

What the OCI distribution (Docker registry v2) HTTP API says on the wire.

The parts of its answers that publish/registry.py reads: auth challenges, ``Link`` pagination,
JSON error bodies and content digests, and a short reason for an exchange that got no
answer at all. Pure functions of their input.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path

from wheelforge.core.terminal import UserError
from wheelforge.publish.tags import (
    validate_digest,
    validate_registry,
    validate_repository,
    validate_tag,
)

HELPER_TIMEOUT = 60.0


NOT_FOUND = "credentials not found"


def config_path() -> Path:
    folder = os.environ.get("DOCKER_CONFIG") or str(Path.home() / ".docker")
    return Path(folder) / "config.json"


def _host_of(key: str) -> str:
    """``https://host:port/v1/`` or ``host:port`` -> ``host:port``."""
    return urllib.parse.urlsplit(key if "://" in key else f"//{key}").netloc


def _load(path: Path) -> dict:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise UserError(
            f"cannot read the Docker config {path} ({type(exc).__name__}); fix the JSON or "
            "point DOCKER_CONFIG at another folder"
        ) from None
    return config if isinstance(config, dict) else {}


def lookup(host: str) -> tuple[str, str] | None:
    """(user, secret) for registry ``host``, from the Docker config; None when it has none."""
    path = config_path()
    config = _load(path)
    helpers = config.get("credHelpers")
    helper = None
    if isinstance(helpers, dict):
        helper = next((v for k, v in helpers.items() if _host_of(k) == host), None)
    if not helper and isinstance(config.get("credsStore"), str):
        helper = config["credsStore"]
    if helper:
        return from_helper(str(helper), host, path)
    return _from_auths(config, host, path)


def _from_auths(config: dict, host: str, path: Path) -> tuple[str, str] | None:
    auths = config.get("auths")
    if not isinstance(auths, dict):
        return None
    for key, entry in auths.items():
        if _host_of(key) != host or not isinstance(entry, dict) or not entry.get("auth"):
            continue
        try:
            user, sep, password = base64.b64decode(entry["auth"]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            sep = ""
        if not sep:
            raise UserError(
                f"the Docker config {path} has a malformed auths[{host!r}].auth (expected "
                f"base64 of user:password); run `docker login {host}` again"
            )
        return user, password
    return None


def from_helper(name: str, host: str, path: Path) -> tuple[str, str] | None:
    """Ask ``docker-credential-NAME get`` for ``host``; None when it holds nothing for it."""
    program = f"docker-credential-{name}"
    exe = shutil.which(program)
    if exe is None:
        raise UserError(
            f"the Docker config {path} names the credential helper {name!r} for {host}, but "
            f"{program} is not on PATH; install it or change credHelpers/credsStore there"
        )
    try:
        proc = subprocess.run([exe, "get"], input=host.encode(), capture_output=True,
                              timeout=HELPER_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise UserError(f"{program} get did not answer for {host} within "
                        f"{HELPER_TIMEOUT:g}s; check the helper (is it waiting for a "
                        "keyring unlock?)") from None
    if proc.returncode != 0:
        if NOT_FOUND in (proc.stdout + proc.stderr).decode(errors="replace").lower():
            return None
        raise UserError(f"{program} get failed for {host} (exit {proc.returncode}); run "
                        f"`{program} get` by hand, or `docker login {host}` again")
    try:
        data = json.loads(proc.stdout)
        user, secret = data["Username"], data["Secret"]
    except (ValueError, KeyError, TypeError):
        raise UserError(f"{program} get answered for {host} without JSON "
                        "{Username, Secret}; fix or replace the helper") from None
    if not isinstance(user, str) or not isinstance(secret, str) or not secret:
        return None
    if user == "<token>":
        raise UserError(f"{program} holds an identity token for {host}, which the registry "
                        f"API client cannot use; run `docker login {host} --username USER` with a "
                        "password or an access token")
    return user, secret


OCI_INDEX = "application/vnd.oci.image.index.v1+json"


OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"


DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


MANIFEST_TYPES = (OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST)


_MAX_BACKOFF = 8.0


class RegistryError(UserError):
    """A registry could not be reached or refused a request (one line, no secrets)."""


class DeleteUnsupported(RegistryError):
    """The registry refuses every DELETE (405, or the UNSUPPORTED error code)."""


class _Response:
    def __init__(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


def required_host(host: str | None) -> str:
    """``--registry``'s value, checked: given at all, and host[:port] (tags.validate_registry)."""
    if host is None or host == "":
        raise UserError("--registry HOST[:PORT] is required: the registry to publish to or pull "
                        "from, e.g. --registry 127.0.0.1:5000")
    return validate_registry(host)


def is_loopback(host: str) -> bool:
    """True for 127.x, localhost and [::1], with or without a port."""
    name = urllib.parse.urlsplit(f"//{host}").hostname or ""
    return name == "localhost" or name == "::1" or name.startswith("127.")


class Registry:
    """Client for one registry host, e.g. ``Registry("127.0.0.1:5000")``."""

    def __init__(
        self,
        host: str,
        *,
        scheme: str | None = None,
        retries: int = 4,
        backoff: float = 0.5,
        timeout: float = 10.0,
        credentials: tuple[str, str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        validate_registry(host)
        if scheme not in (None, "http", "https"):
            raise UserError(f"invalid registry scheme {scheme!r} for {host}: use http or https")
        if retries < 1:
            raise UserError(f"invalid retries={retries} for registry {host}: use at least 1")
        self.host = host
        self.scheme = scheme or ("http" if is_loopback(host) else "https")
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout
        self._sleep = sleep
        self._credentials = credentials or lookup(host)
        self._auth: str | None = None  # the last Authorization value that worked
        self._tokens: dict[str, str] = {}  # Bearer tokens per scope
        handlers: list[urllib.request.BaseHandler] = []
        if is_loopback(host):
            handlers.append(urllib.request.ProxyHandler({}))
        self._opener = urllib.request.build_opener(*handlers)

    def __repr__(self) -> str:
        auth = "credentials" if self._credentials else "anonymous"
        return f"Registry({self.host!r}, scheme={self.scheme!r}, {auth})"

    # -- public API ---------------------------------------------------------------

    def ping(self) -> None:
        """Check that ``/v2/`` answers 200 (authenticating if the registry asks)."""
        self._request("GET", "/v2/")

    def tags(self, repo: str, *, page_size: int = 1000) -> list[str]:
        """All tags of ``repo``, following ``Link`` pagination; [] if the repo is unknown."""
        path: str | None = f"/v2/{validate_repository(repo)}/tags/list?n={page_size}"
        found: list[str] = []
        while path:
            resp = self._request("GET", path, ok=(200, 404))
            if resp.status == 404:
                return found
            found.extend(json.loads(resp.body).get("tags") or [])
            path = next_link(resp.headers.get("Link", ""))
        return found

    def resolve(self, repo: str, ref: str) -> str | None:
        """The digest of a tag or digest (HEAD), or None if the registry has no such manifest."""
        path = f"/v2/{validate_repository(repo)}/manifests/{_ref(ref)}"
        resp = self._request("HEAD", path, ok=(200, 404), accept=MANIFEST_TYPES)
        if resp.status == 404:
            return None
        digest = resp.headers.get("Docker-Content-Digest")
        if digest:
            return digest
        return self.get_manifest(repo, ref)[2]

    def get_manifest(self, repo: str, ref: str) -> tuple[str, bytes, str]:
        """(media type, body, digest) of a manifest or index by tag or digest."""
        path = f"/v2/{validate_repository(repo)}/manifests/{_ref(ref)}"
        resp = self._request("GET", path, accept=MANIFEST_TYPES)
        media_type = (resp.headers.get("Content-Type") or "").split(";")[0].strip()
        if media_type not in MANIFEST_TYPES:
            media_type = json.loads(resp.body).get("mediaType") or media_type
        digest = sha256_digest(resp.body)
        if ref.startswith("sha256:") and digest != ref:
            raise RegistryError(
                f"registry {self.host} returned a manifest for {repo}@{ref} whose digest is "
                f"{digest}; the registry's storage may be corrupt"
            )
        return media_type, resp.body, digest

    def tag(self, repo: str, digest: str, tag: str) -> None:
        """Point ``tag`` at the manifest ``digest`` (GET by digest, PUT under the tag)."""
        validate_tag(tag)
        media_type, body, _ = self.get_manifest(repo, validate_digest(digest))
        got = self.put_manifest(repo, tag, body, media_type)
        if got != digest:
            raise RegistryError(
                f"registry {self.host} stored {repo}:{tag} as {got}, not {digest}; it rewrote "
                "the manifest, so retag with a registry that keeps manifests byte-exact"
            )

    def delete(self, repo: str, digest: str) -> bool:
        """Delete a manifest by digest (and with it every tag on it); False if already gone."""
        path = f"/v2/{validate_repository(repo)}/manifests/{validate_digest(digest)}"
        resp = self._request("DELETE", path, ok=(202, 404, 405, 400, 403))
        if resp.status == 405 or (resp.status != 404 and error_code(resp.body) == "UNSUPPORTED"):
            raise DeleteUnsupported(
                f"registry {self.host} does not delete manifests through the API (HTTP "
                f"{resp.status} {error_text(resp.body) or 'UNSUPPORTED'})"
            )
        if resp.status in (400, 403):
            raise RegistryError(self._scrub(self._refusal(resp, f"DELETE {path}")))
        return resp.status == 202

    def put_blob(self, repo: str, data: bytes) -> str:
        """Upload a blob monolithically (POST, then PUT ?digest=); skip if present."""
        digest = sha256_digest(data)
        base = f"/v2/{validate_repository(repo)}/blobs/"
        if self._request("HEAD", base + digest, ok=(200, 404)).status == 200:
            return digest
        started = self._request("POST", base + "uploads/", ok=(202,))
        location = started.headers.get("Location")
        if not location:
            raise RegistryError(
                f"registry {self.host} answered POST {base}uploads/ without a Location; "
                "it does not support blob uploads"
            )
        sep = "&" if "?" in location else "?"
        target = f"{location}{sep}digest={urllib.parse.quote(digest)}"
        headers = {"Content-Type": "application/octet-stream"}
        self._request("PUT", target, ok=(201,), body=data, headers=headers)
        return digest

    def put_manifest(self, repo: str, ref: str, body: bytes, media_type: str) -> str:
        """PUT a manifest under a tag or digest; returns the digest the registry reports."""
        path = f"/v2/{validate_repository(repo)}/manifests/{_ref(ref)}"
        headers = {"Content-Type": media_type}
        resp = self._request("PUT", path, ok=(201,), body=body, headers=headers)
        return resp.headers.get("Docker-Content-Digest") or sha256_digest(body)

    # -- transport ----------------------------------------------------------------

    def _request(
        self,
        method: str,
        path_or_url: str,
        *,
        ok: tuple[int, ...] = (200,),
        accept: tuple[str, ...] = (),
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> _Response:
        url = urllib.parse.urljoin(f"{self.scheme}://{self.host}/", path_or_url)
        where = f"{method} {urllib.parse.urlsplit(url).path}"
        all_headers = dict(headers or {})
        if accept:
            all_headers["Accept"] = ", ".join(accept)
        same_host = urllib.parse.urlsplit(url).netloc == self.host
        resp = self._send(method, url, where, body, all_headers, self._auth if same_host else None)
        if resp.status == 401 and same_host:
            if self._auth is not None:
                self._tokens.clear()  # a cached token may have expired
            challenge = resp.headers.get("WWW-Authenticate", "")
            auth = self._answer(challenge, where)
            if auth is not None:
                resp = self._send(method, url, where, body, all_headers, auth)
                if resp.status != 401:
                    self._auth = auth
        if resp.status not in ok:
            raise RegistryError(self._scrub(self._refusal(resp, where)))
        return resp

    def _send(
        self,
        method: str,
        url: str,
        where: str,
        body: bytes | None,
        headers: Mapping[str, str],
        auth: str | None,
    ) -> _Response:
        for attempt in range(1, self.retries + 1):
            req = urllib.request.Request(url, data=body, method=method, headers=dict(headers))
            if auth:
                req.add_unredirected_header("Authorization", auth)  # never sent to a redirect
            outcome = self._attempt(req)
            if isinstance(outcome, _Response):
                if outcome.status < 500:
                    return outcome
                reason = f"HTTP {outcome.status} {error_text(outcome.body)}".strip()
            else:
                reason = outcome
            if attempt < self.retries:
                self._sleep(min(self.backoff * 2 ** (attempt - 1), _MAX_BACKOFF))
        if isinstance(outcome, _Response):
            text = (
                f"registry {self.host} failed {where} after {self.retries} tries ({reason}); "
                "check the registry's logs or retry later"
            )
        else:
            text = (
                f"registry {self.host} did not answer {where} after {self.retries} tries "
                f"({reason}); start it or check --registry"
            )
        raise RegistryError(self._scrub(text))

    def _attempt(self, req: urllib.request.Request) -> _Response | str:
        """One HTTP exchange: the response (any status), or why there was none."""
        try:
            with self._opener.open(req, timeout=self.timeout) as raw:
                return _Response(raw.status, raw.headers, raw.read())
        except urllib.error.HTTPError as err:
            return _Response(err.code, err.headers, error_body(err))
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            return transport_reason(exc, self.timeout)

    def _basic(self) -> str | None:
        if not self._credentials:
            return None
        user, password = self._credentials
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    def _answer(self, challenge: str, where: str) -> str | None:
        """The Authorization value answering a 401 challenge, or None if we have none."""
        scheme, params = parse_challenge(challenge)
        if scheme == "basic":
            return self._basic()
        if scheme != "bearer" or "realm" not in params:
            return None
        scope = params.get("scope", "")
        if scope not in self._tokens:
            query = {k: v for k, v in params.items() if k in ("service", "scope")}
            realm = params["realm"]
            sep = "&" if "?" in realm else "?"
            url = f"{realm}{sep}{urllib.parse.urlencode(query)}" if query else realm
            self._tokens[scope] = self._fetch_token(url, where)
        return f"Bearer {self._tokens[scope]}"

    def _fetch_token(self, url: str, where: str) -> str:
        parts = urllib.parse.urlsplit(url)
        realm = parts.netloc
        if parts.scheme != "https" and self._credentials and not is_loopback(realm):
            raise RegistryError(
                f"registry {self.host} sent a token realm on {parts.scheme}://{realm}, which "
                "would expose the credentials; use a registry whose realm is https"
            )
        token_where = f"GET {realm}{parts.path} (token for {where})"
        resp = self._send("GET", url, token_where, None, {}, self._basic())
        try:
            data = json.loads(resp.body) if resp.status == 200 else {}
        except ValueError:
            data = {}
        token = (data.get("token") or data.get("access_token")) if isinstance(data, dict) else None
        if not isinstance(token, str) or not token:
            raise RegistryError(
                self._scrub(
                    f"token server {realm} refused a token for {where} on {self.host} "
                    f"(HTTP {resp.status}); run `docker login {self.host}` or check "
                    "the credentials"
                )
            )
        return token

    def _refusal(self, resp: _Response, where: str) -> str:
        text = f"registry {self.host} refused {where}: HTTP {resp.status}"
        detail = error_text(resp.body)
        if detail:
            text += f" {detail}"
        if resp.status == 401:
            how = "the credentials were rejected" if self._credentials else "it needs credentials"
            return f"{text}; {how}: run `docker login {self.host}`"
        if resp.status == 403:
            return f"{text}; the account may not push or delete there: check its permissions"
        if resp.status == 404:
            return f"{text}; check the repository name and reference"
        return f"{text}; check the request against the registry's logs"

    def _scrub(self, text: str) -> str:
        """Remove anything secret from a message (defence in depth)."""
        secrets = [*self._tokens.values(), (self._basic() or "").removeprefix("Basic ")]
        if self._credentials:
            secrets.append(self._credentials[1])
        for secret in sorted(filter(None, secrets), key=len, reverse=True):
            text = text.replace(secret, "***")
        return text


def _ref(ref: str) -> str:
    return validate_digest(ref) if ref.startswith("sha256:") else validate_tag(ref)


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``'Bearer realm="r",scope="s"'`` -> ``('bearer', {'realm': 'r', 'scope': 's'})``."""
    scheme, _, rest = header.strip().partition(" ")
    params = {
        key.lower(): value for key, value in re.findall(r'([A-Za-z_]+)\s*=\s*"([^"]*)"', rest)
    }
    return scheme.lower(), params


def next_link(header: str) -> str | None:
    """The target of ``Link: <url>; rel="next"``, or None."""
    match = re.search(r'<([^>]+)>\s*;\s*rel="?next"?', header)
    return match.group(1) if match else None


def sha256_digest(data: bytes) -> str:
    """The content digest of `data`, as registries write it: ``sha256:<hex>``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def error_body(err: urllib.error.HTTPError) -> bytes:
    """The body of an error response, or b'' when it cannot be read."""
    try:
        return err.read()
    except (OSError, http.client.HTTPException):
        return b""


def error_code(body: bytes) -> str:
    """The first error's ``code`` from the registry's JSON error body, or ''."""
    try:
        code = json.loads(body)["errors"][0]["code"]
    except (ValueError, KeyError, IndexError, TypeError):
        return ""
    return code if isinstance(code, str) else ""


def error_text(body: bytes) -> str:
    """``CODE: message`` from the registry's JSON error body, at most 200 characters."""
    try:
        errors = json.loads(body).get("errors") or []
        first = errors[0]
        text = f"{first.get('code', '')}: {first.get('message', '')}".strip(": ")
    except (ValueError, AttributeError, IndexError, TypeError):
        text = ""
    return " ".join(text.split())[:200]


def transport_reason(exc: BaseException, timeout: float) -> str:
    """Why an HTTP exchange got no response, in a few words."""
    inner = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(inner, ConnectionRefusedError):
        return "connection refused"
    if isinstance(inner, (TimeoutError, socket.timeout)):
        return f"timed out after {timeout:g}s"
    if isinstance(inner, ConnectionResetError):
        return "connection reset"
    if isinstance(inner, http.client.RemoteDisconnected):
        return "connection closed without a response"
    if isinstance(inner, socket.gaierror):
        return "host name not found"
    text = str(inner) or type(inner).__name__
    return text[:120]
