"""The registry, through skopeo: list tags, resolve a tag to its digest, retag by digest,
delete by digest.

Why skopeo: it is a kept, packaged tool (Debian's `skopeo`, 1.9.3 or newer, installed by
ci/setup-host.sh) that already does what a registry client needs, which we would
otherwise write and keep ourselves: Basic and token auth, credentials from the docker
client's config (`auths` and `credHelpers`), `Link` pagination, retries of network
failures (`--retry-times`), and copying a manifest or an index unchanged (`copy --all
--preserve-digests`). Pushing itself goes through the engine's own client
(publish/__init__.py); every tag that publishing reads or sets goes through here.

What stays here is little:

- Credentials as the docker CLI finds them: skopeo gets `--authfile` with the config.json
  that docker reads (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`). skopeo
  1.9.3 reads its `auths` and `credHelpers` but not `credsStore`, so a config whose
  `credsStore` serves this host is handed over as a file of our own that names that store
  as the host's credential helper (it holds no secret).
- TLS is verified for every registry but a loopback one (127.x, localhost, [::1]): only
  there does skopeo get `--tls-verify=false`, so that a test registry on plain HTTP works.
- Every call is bounded (`--command-timeout`, and a kill a little later). skopeo 1.9.3
  retries only network failures; an answer of 5xx is retried here, as many times and
  with the same delays.
- A failure becomes one UserError line: the registry, what was asked, why (from skopeo's
  message), and how to fix it. Anything that could be secret (a credential helper's
  output, tokens, URL credentials) is scrubbed from it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path

from wheelforge.core.terminal import UserError
from wheelforge.publish.tags import validate_digest, validate_registry, validate_tag
from wheelforge.recipes.matrix import validate_repository

GRACE_S = 30  # past skopeo's own --command-timeout, before the process is killed


# An answer of 5xx, as skopeo words it: "...from registry 503", "status: 500", "(502 ...)".
_SERVER_ERROR = r"(?:registry|status:|\() ?5\d\d\b"


# skopeo's message -> (a short reason, or None to quote the message; how to fix it).
_DIAGNOSES = (
    (r"connection refused", "connection refused", "start it or check --registry"),
    (r"deadline exceeded|i/o timeout", "no answer within {timeout:g}s",
     "start it or check --registry"),
    (r"no such host", "host name not found", "check --registry"),
    (r"error getting credentials", None,
     "fix the credential helper that {config} names for it, or run `docker login {host}`"),
    (r"unauthorized|authentication required", None,
     "it needs credentials that it accepts: run `docker login {host}`"),
    (r"denied|forbidden", None, "the account may not do that there: check its permissions"),
    (r"x509|certificate|tls:", None,
     "give it a certificate this host trusts (TLS is verified for every non-loopback registry)"),
    (_SERVER_ERROR, None, "check the registry's logs or retry later"),
    (r"unknown flag", None, "install skopeo 1.9.3 or newer (run `ci/setup-host.sh`)"),
)


_SECRETS = (  # (pattern, replacement): what must never reach a message
    (r"out: `[^`]*`", "out: `***`"),  # a credential helper's output
    (r"(?i)\b(basic|bearer)\s+\S+", r"\1 ***"),
    (r"(?i)\b((?:access_|refresh_|id)?token|password|secret)=[^&\s\"']+", r"\1=***"),
    (r"//[^/@\s]+@", "//***@"),
)


def _name(repo: str, ref: str = "") -> str:
    """``REPO``, ``REPO:TAG`` or ``REPO@DIGEST``."""
    sep = "@" if ref.startswith("sha256:") else ":"
    return f"{validate_repository(repo)}{sep + ref if ref else ''}"


class RegistryError(UserError):
    """A registry could not be reached or refused a request (one line, no secrets)."""


class DeleteUnsupported(RegistryError):
    """The registry refuses every DELETE (405, or the UNSUPPORTED error code)."""


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


def config_path() -> Path:
    """The docker client's config.json: ``$DOCKER_CONFIG/config.json``, else ``~/.docker``'s."""
    return Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker") / "config.json"


def scrub(text: str) -> str:
    """``text`` without anything that could be a secret."""
    for pattern, replacement in _SECRETS:
        text = re.sub(pattern, replacement, text)
    return text


def skopeo_message(stderr: str) -> str:
    """What skopeo said went wrong: its last fatal line's ``msg``, on one line."""
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()] or ["no output"]
    fatal = next((ln for ln in reversed(lines) if "level=fatal" in ln), lines[-1])
    match = re.search(r'msg="((?:[^"\\]|\\.)*)"', fatal)
    text = match[1] if match else fatal
    if match:
        with contextlib.suppress(ValueError):
            text = json.loads(f'"{text}"')
    text = re.sub(r'^Error (?:parsing image name "[^"]*"|listing repository tags): ', "", text)
    return " ".join(text.split())


class Registry:
    """One registry host, e.g. ``Registry("127.0.0.1:5000")``.

    ``retries``: how often a failed call is tried again (network failures by skopeo, 5xx
    answers here); ``timeout``: seconds for one call, its retries included; ``config``:
    the docker config.json to take credentials from (default: the one docker reads).
    """

    def __init__(self, host: str, *, retries: int = 3, timeout: float = 60.0,
                 config: Path | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.host = validate_registry(host)
        if retries < 0:
            raise UserError(f"invalid retries={retries} for registry {host}: use 0 or more")
        self.retries = retries
        self.timeout = timeout
        self.config = config
        self._sleep = sleep
        exe = shutil.which("skopeo")
        if exe is None:
            raise UserError(f"skopeo is not installed, so registry {host} cannot be reached; "
                            "run `ci/setup-host.sh` (or `apt-get install -y skopeo`)")
        self._exe = exe

    def ping(self, repo: str) -> None:
        """Check that the registry answers and lets us read ``repo`` (it need not exist)."""
        self.tags(repo)

    def tags(self, repo: str) -> list[str]:
        """All tags of ``repo`` ([] when the registry has no such repository)."""
        out = self._skopeo(f"list the tags of {repo}", "list-tags", self._ref(repo),
                           gone=r"tags list: .* 404\b|name unknown")
        return [] if out is None else json.loads(out).get("Tags") or []

    def resolve(self, repo: str, ref: str) -> str | None:
        """The digest of the manifest (or index) a tag or digest names, exactly as the
        registry holds it; None when there is none."""
        ref = validate_digest(ref) if ref.startswith("sha256:") else validate_tag(ref)
        raw = self._skopeo(f"read {_name(repo, ref)}", "inspect", "--raw", self._ref(repo, ref),
                           gone=r"manifest unknown|name unknown")
        return None if raw is None else "sha256:" + hashlib.sha256(raw).hexdigest()

    def tag(self, repo: str, digest: str, tag: str) -> None:
        """Point ``tag`` at the manifest or index ``digest``, unchanged (same digest)."""
        source = self._ref(repo, validate_digest(digest))
        self._skopeo(f"tag {repo}@{digest} as {tag}", "copy", "--quiet", "--all",
                     "--preserve-digests", source, self._ref(repo, validate_tag(tag)))

    def delete(self, repo: str, digest: str) -> bool:
        """Delete a manifest by digest (and with it every tag on it); False if already gone."""
        try:
            return self._skopeo(f"delete {repo}@{digest}", "delete",
                                self._ref(repo, validate_digest(digest)),
                                gone=r"may not exist") is not None
        except RegistryError as exc:
            if re.search(r"UNSUPPORTED|\(405 Method Not Allowed\)", str(exc)):
                raise DeleteUnsupported(f"registry {self.host} does not delete manifests "
                                        "through the API (HTTP 405 UNSUPPORTED)") from None
            raise

    def _ref(self, repo: str, ref: str = "") -> str:
        return f"docker://{self.host}/{_name(repo, ref)}"

    def _skopeo(self, what: str, command: str, *args: str, gone: str = "") -> bytes | None:
        """stdout of ``skopeo COMMAND ARGS``; None when it failed in a way that ``gone``
        matches (no such thing); any other failure raises one RegistryError line."""
        verify = "=false" if is_loopback(self.host) else "=true"
        tls = ([f"--src-tls-verify{verify}", f"--dest-tls-verify{verify}"] if command == "copy"
               else [f"--tls-verify{verify}"])
        tries = 0
        for attempt in range(self.retries + 1):
            with self._authfile() as auth:
                argv = [self._exe, "--command-timeout", f"{self.timeout:g}s", command, *auth,
                        *tls, "--retry-times", str(self.retries), *args]
                try:
                    proc = subprocess.run(argv, capture_output=True, check=False,
                                          stdin=subprocess.DEVNULL,
                                          timeout=self.timeout + GRACE_S)
                except subprocess.TimeoutExpired:
                    raise RegistryError(f"registry {self.host} could not {what}: skopeo did not "
                                        f"finish within {self.timeout + GRACE_S:g}s; start it "
                                        "or check --registry") from None
            if proc.returncode == 0:
                return proc.stdout
            stderr = proc.stderr.decode(errors="replace")
            tries += 1 + stderr.count("Failed, retrying")
            message = skopeo_message(stderr)
            if gone and re.search(gone, message, re.IGNORECASE):
                return None
            if attempt == self.retries or not re.search(_SERVER_ERROR, message):
                break
            self._sleep(2**attempt)
        raise RegistryError(self._explain(what, message, tries))

    def _explain(self, what: str, message: str, tries: int) -> str:
        facts = {"host": self.host, "config": self.config or config_path(),
                 "timeout": self.timeout}
        reason, fix = scrub(message), "check the registry and its logs"
        if len(reason) > 240:
            reason = "..." + reason[-240:]
        for pattern, short, how in _DIAGNOSES:
            if re.search(pattern, message, re.IGNORECASE):
                reason, fix = (short.format(**facts) if short else reason), how
                break
        after = f" after {tries} tries" if tries > 1 else ""
        return f"registry {self.host} could not {what}{after} ({reason}); {fix.format(**facts)}"

    @contextlib.contextmanager
    def _authfile(self) -> Iterator[list[str]]:
        """skopeo's --authfile: docker's config.json, or, when its credsStore serves this
        host, a file of our own naming that store as the host's credential helper."""
        path = self.config or config_path()
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            yield []
            return
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot read the Docker config {path} ({type(exc).__name__}); fix "
                            "the JSON or point DOCKER_CONFIG at another folder") from None
        store = config.get("credsStore") if isinstance(config, dict) else None
        if not isinstance(store, str) or self.host in (config.get("credHelpers") or {}):
            yield ["--authfile", str(path)]
            return
        with tempfile.TemporaryDirectory(prefix="wheelforge-auth-") as folder:
            auth = Path(folder) / "auth.json"
            auth.write_text(json.dumps({"credHelpers": {self.host: store}}), encoding="utf-8")
            yield ["--authfile", str(auth)]
