"""Read and tag images in a registry through the engine's own client, buildx imagetools.

`docker buildx imagetools` runs in the docker client: it logs in exactly as `docker push`
does (credential helpers, credential stores, `docker login`), and it reaches loopback
registries (127.0.0.1, localhost) over plain HTTP without any builder configuration.

Tagging copies a manifest by digest: `imagetools create --tag NEW REPO@DIGEST`. An image
index is copied unchanged by every buildx; a single image manifest only when buildx has
`--prefer-index` (0.13.1 does not: it wraps the manifest in a new index, a new digest).
`copy_tag` says when it cannot copy unchanged, so that the caller can copy it unchanged
with skopeo instead (publish/registry.py); every tag it sets is read back and checked.

`invoke push` and `invoke publish`: a cell's runtime image into a registry, then promotion.

Tags follow docker/metadata-action's conventions (publish/tags.py): a dated tag records each
build, a `sha-` tag the first image of each wheelforge revision; the floating tags
(`nightly-gfx942`, `nightly-gfx942-ckfree`, `latest`) are what users pull.

- The image goes up once, under a dated tag that nobody has used: `<cell>-YYYYMMDD`, and
  for a second image of the same day `<cell>-YYYYMMDD.1`, `.2`, ... A dated tag never
  moves. The digest is the one the registry holds (read back through the engine's client,
  checked against what the push reported), never a local image id.
- Two publishes of one cell at the same moment can choose the same free dated tag. Each
  reads its tag back after pushing; the one that finds another digest there tags its own
  digest (already in the registry) with the next free suffix instead. The registry API has
  no compare-and-set for tags, so a push that overwrites the tag after the other publish
  has read it back goes unnoticed: run one publish of a cell at a time (the nightly
  workflow's concurrency group does).
- Every other tag is set by digest through the engine's own client (publish/__init__.py), so
  credential helpers and stores work as they do for `docker push`.
- The floating tags move only on evidence: a smoke report for exactly this digest that
  passed, with at least one check that ran on a GPU (`--allow-cpu-smoke` overrides the GPU
  part, loudly). A report for a digest that is already published promotes it without
  pushing anything again.
- Retention (off with keep 0) keeps the newest N dated tags per cell and deletes older
  manifests through the registry API, never one that a kept, sha- or floating tag still
  points at. A registry that does not delete through the API turns retention off for the
  run, with one line; the publish itself still succeeds.
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
import re
from dataclasses import dataclass, replace
from pathlib import Path

from wheelforge.core import engine
from wheelforge.core.terminal import UserError
from wheelforge.publish.registry import DeleteUnsupported, Registry
from wheelforge.publish.tags import (
    dated_tags,
    deletable_digests,
    expired,
    floating_tags,
    next_dated_tag,
    sha_tag,
)
from wheelforge.smoke.report import gpu_check_names

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


def inspect_remote(ref: str) -> Remote | None:
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
    held = inspect_remote(f"{repository}:{tag}")
    if held is None or held.digest != digest:
        raise UserError(f"{repository}:{tag} points at {held.digest if held else 'nothing'} "
                        f"after tagging it as {digest}; the registry rewrote the manifest, "
                        "so tag with a registry that keeps manifests byte-exact")


CLAIM_TRIES = 5  # next dated tags tried when simultaneous publishes of a cell collide


@dataclass(frozen=True, kw_only=True)
class Published:
    cell: str
    registry: str
    repository: str
    digest: str
    tags: tuple[str, ...]  # the dated tag (and the sha- tag) of this digest
    pushed: bool = True  # False: already published, found by its smoke report's digest
    promoted: tuple[str, ...] = ()
    refused: str = ""  # why a given smoke report did not move the floating tags
    deleted: tuple[str, ...] = ()
    retention: str = "off"

    @property
    def ref(self) -> str:
        """REGISTRY/REPO@DIGEST: what the smoke suite should run."""
        return f"{self.registry}/{self.repository}@{self.digest}"


def push_image(manifest: dict, local_tag: str, registry: Registry, *, day: _dt.date) -> Published:
    """Push the image under a new dated tag, verify the digest, add the sha- tag once.

    The sha- tag names the wheelforge revision the wheel set was built from (the
    manifest's, the same as the image's revision label), not the checkout's now.
    """
    revision = manifest.get("wheelforge_revision", "")
    repo, cell = manifest["repository"], manifest["cell"]
    repository = f"{registry.host}/{repo}"
    existing = registry.tags(repo)  # a registry that is down fails here, before anything moves
    dated = next_dated_tag(existing, cell, day)
    remote = f"{repository}:{dated}"
    engine.docker(["tag", local_tag, remote])
    try:
        out = engine.docker(["push", remote], what=f"{remote} ", timeout=3600)
    finally:
        engine.docker(["rmi", remote], check=False)
    pushed = _pushed_digest(out.stdout.decode(errors="replace"))
    held = inspect_remote(remote)
    if held is not None and pushed and held.digest != pushed:
        held, dated = _claim_next(registry, repo, cell, day, pushed, lost=dated)
    if held is None or (pushed and held.digest != pushed):
        raise UserError(f"publish {cell}: the registry holds "
                        f"{held.digest if held else 'nothing'} under {dated}, but the push "
                        f"reported {pushed}; not tagging anything else", exit_code=1)
    engine.say(f"publish {cell}: pushed {repository}:{dated} = {held.digest}")
    sha = sha_tag(revision, cell) if re.fullmatch(r"[0-9a-f]{7,40}", revision) else None
    if sha and sha not in existing:  # set once: it never moves
        set_tag(registry, repo, held, sha)
    return Published(cell=cell, registry=registry.host, repository=repo, digest=held.digest,
                     tags=(dated, *([sha] if sha else [])))


def _claim_next(registry: Registry, repo: str, cell: str, day: _dt.date, digest: str, *,
                lost: str) -> tuple[Remote | None, str]:
    """Another publish of this cell took the same free dated tag at the same moment (its
    image is under `lost` now). Ours is in the registry by digest: tag it with the next
    free suffix, read that back, and go on while others keep winning (a few times)."""
    repository = f"{registry.host}/{repo}"
    ours = inspect_remote(f"{repository}@{digest}")
    dated = lost
    for _ in range(CLAIM_TRIES if ours is not None else 0):
        engine.say(f"publish {cell}: {lost} was taken by another image while pushing; "
                   f"trying the next free dated tag")
        dated = next_dated_tag([*registry.tags(repo), lost], cell, day)
        if not copy_tag(repository, ours, dated, check=False):
            registry.tag(repo, digest, dated)
        held = inspect_remote(f"{repository}:{dated}")
        if held is None or held.digest == digest:
            return held, dated
        lost = dated
    return inspect_remote(f"{repository}:{dated}"), dated


def find_published(manifest: dict, registry: Registry, digest: str) -> Published | None:
    """The cell's dated image with this digest, if the registry has one (newest first)."""
    repo, cell = manifest["repository"], manifest["cell"]
    for _, _, tag in reversed(dated_tags(registry.tags(repo), cell)):
        held = inspect_remote(f"{registry.host}/{repo}:{tag}")
        if held is not None and held.digest == digest:
            engine.say(f"publish {cell}: {digest} is already published as {tag}; "
                       "not pushing it again")
            return Published(cell=cell, registry=registry.host, repository=repo,
                             digest=digest, tags=(tag,), pushed=False)
    return None


def set_tag(registry: Registry, repo: str, source: Remote, tag: str) -> None:
    """Point REPO:TAG at `source`'s digest, unchanged, through the engine's client."""
    repository = f"{registry.host}/{repo}"
    if not copy_tag(repository, source, tag):
        # This buildx would wrap a single manifest in a new index (a new digest): copy the
        # manifest unchanged with skopeo instead, then read the tag back.
        registry.tag(repo, source.digest, tag)
        check_tag(repository, tag, source.digest)


def refusal(report: dict, digest: str, *, allow_cpu_smoke: bool) -> str:
    """Why `report` cannot promote `digest` ('' when it can)."""
    if not report.get("passed"):
        failed = [c["name"] for c in report.get("checks", []) if c.get("status") == "fail"]
        return f"smoke failed ({', '.join(failed) or 'see the report'})"
    if report.get("image_digest") != digest:
        return (f"the smoke report is for {report.get('image_digest')}, not {digest}: smoke "
                f"the pushed image by digest (invoke smoke --image REGISTRY/REPO@DIGEST)")
    if not gpu_check_names(report) and not allow_cpu_smoke:
        device = (report.get("host") or {}).get("device") or "none"
        return (f"no smoke check ran on a GPU (device: {device}); smoke it on a GPU "
                f"machine (--require-gpu), or pass --allow-cpu-smoke to promote anyway")
    return ""


def promote(manifest: dict, published: Published, registry: Registry, *,
            report: dict | None, allow_cpu_smoke: bool = False) -> Published:
    """Move the floating tags to the published digest, only on a report's evidence."""
    cell = manifest["cell"]
    if report is None:
        engine.say(f"publish {cell}: no smoke report; floating tags stay where they are")
        return published
    why = refusal(report, published.digest, allow_cpu_smoke=allow_cpu_smoke)
    if why:
        engine.say(f"publish {cell}: {why}; floating tags stay where they are")
        return replace(published, refused=why)
    gpu = gpu_check_names(report)
    if gpu:
        engine.say(f"publish {cell}: smoke passed with {len(gpu)} checks on a GPU "
                   f"({', '.join(gpu)})")
    else:
        bar = "!" * 78
        engine.say(f"{bar}\npublish {cell}: --allow-cpu-smoke: PROMOTING AN IMAGE THAT NO "
                   f"SMOKE CHECK RAN ON A GPU\n{bar}")
    floating = floating_tags(channel=manifest["channel"], arch=manifest["arch"],
                             variant=manifest["variant"],
                             default_variant=manifest["default_variant"],
                             default_arch=manifest["default_arch"])
    source = inspect_remote(published.ref)
    if source is None:
        raise UserError(f"publish {cell}: {published.ref} is gone from the registry; "
                        "publish it again", exit_code=1)
    for tag in floating:
        set_tag(registry, published.repository, source, tag)
    return replace(published, promoted=tuple(floating))


def retain(manifest: dict, published: Published, registry: Registry, *, keep: int) -> Published:
    """Delete the cell's dated images beyond the newest `keep` (keep 0: retention off)."""
    if keep < 0:
        raise UserError(f"--keep {keep}: give the number of dated images to keep per cell, "
                        "or 0 to turn retention off")
    if keep == 0:
        return replace(published, retention="off")
    repo, cell = published.repository, manifest["cell"]
    all_tags = registry.tags(repo)
    old = expired(all_tags, cell, keep)
    if not old:
        return replace(published, retention=f"kept {len(dated_tags(all_tags, cell))}")
    kept = [t for t in all_tags if t not in old]
    old_map = {t: registry.resolve(repo, t) for t in old}
    kept_map = {t: registry.resolve(repo, t) for t in kept}
    doomed = deletable_digests({t: d for t, d in old_map.items() if d},
                               {t: d for t, d in kept_map.items() if d})
    try:
        for digest in sorted(doomed):
            registry.delete(repo, digest)
    except DeleteUnsupported as exc:
        engine.say(f"publish {cell}: retention off: {exc}; the images stay (publish with "
                   f"--keep 0 to skip retention there)")
        return replace(published, retention="off (registry does not delete)")
    gone = tuple(sorted(t for t, d in old_map.items() if d in doomed))
    return replace(published, deleted=gone, retention=f"deleted {len(gone)}")


def read_report(path: Path | None) -> dict | None:
    if path is None:
        return None
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"--smoke-report {path}: not found; run invoke smoke first") from None
    except ValueError as exc:
        raise UserError(f"--smoke-report {path}: not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise UserError(f"--smoke-report {path}: not a smoke report (a JSON object)")
    return data


def write_refs(path: Path, done: list[Published]) -> None:
    """REGISTRY/REPO@DIGEST of each published cell, one a line, written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(f"{p.ref}\n" for p in done))
    tmp.replace(path)


def _pushed_digest(output: str) -> str | None:
    m = re.search(r"digest: (sha256:[0-9a-f]{64})", output)
    return m.group(1) if m else None
