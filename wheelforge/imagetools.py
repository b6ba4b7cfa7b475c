"""Read and tag images in a registry through the engine's own client, buildx imagetools.

`docker buildx imagetools` runs in the docker client: it logs in exactly as `docker push`
does (credential helpers, credential stores, `docker login`), and it reaches loopback
registries (127.0.0.1, localhost) over plain HTTP without any builder configuration.

Tagging copies a manifest by digest: `imagetools create --tag NEW REPO@DIGEST`. An image
index is copied unchanged by every buildx; a single image manifest only when buildx has
`--prefer-index` (0.13.1 does not: it wraps the manifest in a new index, a new digest).
`copy_tag` says when it cannot copy unchanged, so that the caller can copy the bytes
through the registry API instead; every tag it sets is read back and checked.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass

from . import engine
from .errors import UserError

INDEX_TYPES = ("application/vnd.oci.image.index.v1+json",
               "application/vnd.docker.distribution.manifest.list.v2+json")
TIMEOUT = 600


@dataclass(frozen=True)
class Remote:
    """What a registry holds under a reference: the manifest's digest and media type."""

    digest: str
    media_type: str

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES


def inspect(ref: str) -> Remote | None:
    """The manifest `ref` (REGISTRY/REPO:TAG or @DIGEST) names, or None if there is none."""
    proc = engine.docker(["buildx", "imagetools", "inspect", "--format", "{{json .Manifest}}",
                          ref], check=False, timeout=TIMEOUT)
    if proc.returncode != 0:
        why = engine.last_line(proc.stderr)
        if why.endswith(": not found") or "manifest unknown" in why.lower():
            return None
        raise UserError(f"docker buildx imagetools inspect {ref} failed: {why}; check the "
                        f"registry and `docker login`")
    try:
        desc = json.loads(proc.stdout)
        digest, media_type = desc["digest"], desc["mediaType"]
    except (ValueError, KeyError, TypeError):
        raise UserError(f"docker buildx imagetools inspect {ref} gave no manifest descriptor; "
                        "update docker-buildx") from None
    if not re.fullmatch(r"sha256:[0-9a-f]{64}", str(digest)):
        raise UserError(f"docker buildx imagetools inspect {ref} gave the digest {digest!r}")
    return Remote(digest=digest, media_type=str(media_type))


@functools.cache
def can_copy_manifest() -> bool:
    """True when this buildx can tag a single manifest without wrapping it (--prefer-index)."""
    proc = engine.docker(["buildx", "imagetools", "create", "--help"], check=False, timeout=60)
    return "--prefer-index" in proc.stdout.decode(errors="replace")


def copy_tag(repository: str, source: Remote, tag: str, *, check: bool = True) -> bool:
    """Point REPOSITORY:TAG at `source`'s digest; False (nothing done) if this buildx cannot
    copy a single manifest unchanged. REPOSITORY is REGISTRY/REPO. With `check`, the tag is
    read back (see check_tag); without, the caller reads it back itself."""
    if not source.is_index and not can_copy_manifest():
        return False
    unchanged = ["--prefer-index=false"] if can_copy_manifest() else []
    target = f"{repository}:{tag}"
    engine.docker(["buildx", "imagetools", "create", *unchanged, "--tag", target,
                   f"{repository}@{source.digest}"], what=f"--tag {target} ", timeout=TIMEOUT)
    if check:
        check_tag(repository, tag, source.digest)
    return True


def check_tag(repository: str, tag: str, digest: str) -> None:
    """Read REPOSITORY:TAG back; a tag on any other digest is an error."""
    held = inspect(f"{repository}:{tag}")
    if held is None or held.digest != digest:
        raise UserError(f"{repository}:{tag} points at {held.digest if held else 'nothing'} "
                        f"after tagging it as {digest}; the registry rewrote the manifest, "
                        "so tag with a registry that keeps manifests byte-exact")
