"""`invoke push` and `invoke publish`: a cell's runtime image into a registry, then promotion.

The image goes up through the engine's own client (`docker push`); every tag is read and
set through skopeo (publish/registry.py), which is handed the config.json that docker
reads, so a login works as it does for `docker push` (`docker login`, credential helpers
and stores), and which reaches loopback registries (127.0.0.1, localhost) over plain
HTTP. Tagging copies a manifest by digest unchanged (`skopeo copy --all
--preserve-digests`): the same digest for a single image manifest and for an index,
whatever buildx is installed. Every tag set is read back and checked.

Tags follow docker/metadata-action's conventions (publish/tags.py): a dated tag records each
build, a `sha-` tag the first image of each wheelforge revision; the floating tags
(`nightly-gfx942`, `nightly-gfx942-ckfree`, `latest`) are what users pull.

- The image goes up once, under a dated tag that nobody has used: `<cell>-YYYYMMDD`, and
  for a second image of the same day `<cell>-YYYYMMDD.1`, `.2`, ... A dated tag never
  moves. The digest is the one the registry holds (read back from the registry, checked
  against what the push reported), never a local image id.
- Two publishes of one cell at the same moment can choose the same free dated tag. Each
  reads its tag back after pushing; the one that finds another digest there tags its own
  digest (already in the registry) with the next free suffix instead. The registry API has
  no compare-and-set for tags, so a push that overwrites the tag after the other publish
  has read it back goes unnoticed: run one publish of a cell at a time (the nightly
  workflow's concurrency group does).
- Every other tag is set by digest; a tag that reads back as another digest is an error.
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
    held = registry.resolve(repo, dated)
    if held is not None and pushed and held != pushed:
        held, dated = _claim_next(registry, repo, cell, day, pushed, lost=dated)
    if held is None or (pushed and held != pushed):
        raise UserError(f"publish {cell}: the registry holds {held or 'nothing'} under "
                        f"{dated}, but the push reported {pushed}; not tagging anything else",
                        exit_code=1)
    engine.say(f"publish {cell}: pushed {repository}:{dated} = {held}")
    sha = sha_tag(revision, cell) if re.fullmatch(r"[0-9a-f]{7,40}", revision) else None
    if sha and sha not in existing:  # set once: it never moves
        set_tag(registry, repo, held, sha)
    return Published(cell=cell, registry=registry.host, repository=repo, digest=held,
                     tags=(dated, *([sha] if sha else [])))


def _claim_next(registry: Registry, repo: str, cell: str, day: _dt.date, digest: str, *,
                lost: str) -> tuple[str | None, str]:
    """Another publish of this cell took the same free dated tag at the same moment (its
    image is under `lost` now). Ours is in the registry by digest: tag it with the next
    free suffix, read that back, and go on while others keep winning (a few times)."""
    dated = lost
    for _ in range(CLAIM_TRIES if registry.resolve(repo, digest) else 0):
        engine.say(f"publish {cell}: {lost} was taken by another image while pushing; "
                   f"trying the next free dated tag")
        dated = next_dated_tag([*registry.tags(repo), lost], cell, day)
        registry.tag(repo, digest, dated)
        held = registry.resolve(repo, dated)
        if held is None or held == digest:
            return held, dated
        lost = dated
    return registry.resolve(repo, dated), dated


def find_published(manifest: dict, registry: Registry, digest: str) -> Published | None:
    """The cell's dated image with this digest, if the registry has one (newest first)."""
    repo, cell = manifest["repository"], manifest["cell"]
    for _, _, tag in reversed(dated_tags(registry.tags(repo), cell)):
        if registry.resolve(repo, tag) == digest:
            engine.say(f"publish {cell}: {digest} is already published as {tag}; "
                       "not pushing it again")
            return Published(cell=cell, registry=registry.host, repository=repo,
                             digest=digest, tags=(tag,), pushed=False)
    return None


def set_tag(registry: Registry, repo: str, digest: str, tag: str) -> None:
    """Point REPO:TAG at `digest`, unchanged, and read it back: another digest is an error."""
    registry.tag(repo, digest, tag)
    held = registry.resolve(repo, tag)
    if held != digest:
        raise UserError(f"{registry.host}/{repo}:{tag} points at {held or 'nothing'} after "
                        f"tagging it as {digest}; the registry rewrote the manifest, so tag "
                        "with a registry that keeps manifests byte-exact")


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
    if registry.resolve(published.repository, published.digest) is None:
        raise UserError(f"publish {cell}: {published.ref} is gone from the registry; "
                        "publish it again", exit_code=1)
    for tag in floating:
        set_tag(registry, published.repository, published.digest, tag)
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
