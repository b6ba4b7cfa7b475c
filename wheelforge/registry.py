"""A small client for the OCI distribution (Docker registry v2) HTTP API, on urllib.

Publishing moves tags through the engine's own client (imagetools.py); this client does
what that cannot: ping, list tags, resolve a tag to a digest, delete by digest (retention),
plus reading a manifest, retagging by digest and monolithic blob/manifest pushes (enough
for tests to push a tiny image without an engine, and for retagging a single manifest
where the installed buildx cannot copy one unchanged).

Auth: anonymous first; on ``401`` the ``WWW-Authenticate`` challenge picks Basic (the
credentials are sent) or Bearer (a token is fetched from the realm with the credentials,
cached per scope). Credentials come from the constructor or from where docker finds them
(credentials.py: ``credHelpers[host]``, ``credsStore``, ``auths[host].auth``). They are sent
only to the registry host itself (``Authorization`` is never forwarded on a redirect) and
never appear in a message, exception or repr: every RegistryError text is scrubbed.

Failures: connection errors, timeouts and 5xx are retried ``retries`` times in total with
bounded exponential backoff, then raise one RegistryError line; other 4xx raise at once.
"""

from __future__ import annotations

import base64
import http.client
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping

from wheelforge import credentials as docker_credentials
from wheelforge.errors import UserError
from wheelforge.registrywire import (
    error_body,
    error_code,
    error_text,
    next_link,
    parse_challenge,
    sha256_digest,
    transport_reason,
)
from wheelforge.tags import (
    validate_digest,
    validate_registry,
    validate_repository,
    validate_tag,
)

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
        self._credentials = credentials or docker_credentials.lookup(host)
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
