"""Registry credentials from the places the docker client reads them.

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
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import urllib.parse
from pathlib import Path

from .errors import UserError

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
