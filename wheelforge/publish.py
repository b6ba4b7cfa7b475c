"""`invoke publish`: push a cell's runtime image and move its tags, smoke first.

Tags follow docker/metadata-action's conventions (tags.py): a dated tag records
each build, a `sha-` tag the first image of each wheelforge revision; the floating tags
(`nightly-gfx942`, `nightly-gfx942-ckfree`, `latest`) are what users pull, and
they move only to a digest whose smoke report passed. The image goes up under
its dated tag once; every other tag is then set by digest through the registry
API, after checking that the registry holds exactly the digest that was built.
Retention keeps the newest N dated tags per cell and deletes older manifests,
never one that a kept or floating tag still points at.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from dataclasses import dataclass, replace
from pathlib import Path

from . import engine, tags
from .errors import UserError
from .registry import Registry


@dataclass(frozen=True, kw_only=True)
class Published:
    cell: str
    repository: str
    digest: str
    tags: tuple[str, ...]
    promoted: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()


def push(manifest: dict, local_tag: str, registry: Registry, *, day: _dt.date) -> Published:
    """Push the image under its dated tag, verify the digest, add the sha- tag.

    The sha- tag names the wheelforge revision the wheel set was built from (the
    manifest's, the same as the image's revision label), not the checkout's now.
    """
    revision = manifest.get("wheelforge_revision", "")
    registry.ping()  # a registry that is down fails here, bounded, before anything moves
    repo, cell = manifest["repository"], manifest["cell"]
    dated = tags.dated_tag(cell, day)
    remote = f"{registry.host}/{repo}:{dated}"
    engine.docker(["tag", local_tag, remote])
    try:
        out = engine.docker(["push", remote], what=f"{remote} ", timeout=3600)
    finally:
        engine.docker(["rmi", remote], check=False)
    pushed = _pushed_digest(out.stdout.decode(errors="replace"))
    held = registry.resolve(repo, dated)
    if held is None or (pushed and held != pushed):
        raise UserError(f"publish {cell}: the registry holds {held} under {dated}, but the push "
                        f"reported {pushed}; not tagging anything else", exit_code=1)
    sha = tags.sha_tag(revision, cell) if re.fullmatch(r"[0-9a-f]{7,40}", revision) else None
    if sha and registry.resolve(repo, sha) is None:  # set once: it never moves
        registry.tag(repo, held, sha)
    return Published(cell=cell, repository=repo, digest=held,
                     tags=(dated, *([sha] if sha else [])))


def promote(manifest: dict, published: Published, registry: Registry, *,
            report: dict | None) -> Published:
    """Move the floating tags to the published digest, only if its smoke report passed."""
    cell = manifest["cell"]
    if report is None:
        engine.say(f"publish {cell}: no smoke report; floating tags stay where they are")
        return published
    if not report.get("passed"):
        failed = [c["name"] for c in report.get("checks", []) if c.get("status") == "fail"]
        engine.say(f"publish {cell}: smoke failed ({', '.join(failed) or 'see report'}); "
                   f"floating tags stay where they are")
        return published
    if report.get("image_digest") != published.digest:
        engine.say(f"publish {cell}: the smoke report is for {report.get('image_digest')}, not "
                   f"{published.digest}; floating tags stay where they are")
        return published
    floating = tags.floating_tags(channel=manifest["channel"], arch=manifest["arch"],
                                  variant=manifest["variant"],
                                  default_variant=manifest["default_variant"],
                                  default_arch=manifest["default_arch"])
    for tag in floating:
        registry.tag(published.repository, published.digest, tag)
    return replace(published, promoted=tuple(floating))


def retain(manifest: dict, published: Published, registry: Registry, *, keep: int) -> Published:
    """Delete the cell's dated images beyond the newest `keep` (and only those)."""
    repo, cell = published.repository, manifest["cell"]
    all_tags = registry.tags(repo)
    old = tags.expired(all_tags, cell, keep)
    if not old:
        return published
    kept = [t for t in all_tags if t not in old]
    old_map = {t: registry.resolve(repo, t) for t in old}
    kept_map = {t: registry.resolve(repo, t) for t in kept}
    doomed = tags.deletable_digests({t: d for t, d in old_map.items() if d},
                                    {t: d for t, d in kept_map.items() if d})
    for digest in sorted(doomed):
        registry.delete(repo, digest)
    gone = tuple(sorted(t for t, d in old_map.items() if d in doomed))
    return replace(published, deleted=gone)


def read_report(path: Path | None) -> dict | None:
    if path is None:
        return None
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"--smoke-report {path}: not found; run invoke smoke first") from None
    except ValueError as exc:
        raise UserError(f"--smoke-report {path}: not JSON ({exc})") from None


def _pushed_digest(output: str) -> str | None:
    m = re.search(r"digest: (sha256:[0-9a-f]{64})", output)
    return m.group(1) if m else None
