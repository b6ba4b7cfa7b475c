"""What the OCI distribution (Docker registry v2) HTTP API says on the wire.

The parts of its answers that registry.py reads: auth challenges, ``Link`` pagination,
JSON error bodies and content digests, and a short reason for an exchange that got no
answer at all. Pure functions of their input.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import re
import socket
import urllib.error


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
