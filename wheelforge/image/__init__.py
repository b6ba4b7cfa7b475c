"""`invoke image`: a cell's wheel set -> its runtime image (docker/Dockerfile.clean), in which
nothing compiles.

Reads only wheels/<cell>/ (the previous step's output; jobs.py first checks that it is the
set the last `invoke wheels` for that cell planned). The wheel set enters as a named build
context and is bind-mounted for the install, never copied; inside the build it is checked
(RECORD, tags, the GPU-target and link audits) and installed with `pip --no-index`. The
build has no network, so the pinned pyelftools wheel for the link audit comes as the
`tools` context (core/rootfs.py); a base image this project makes is made first. The
manifest's runtime_env becomes the image's environment through Dockerfile.clean's four
NAME/VALUE slots (a cell with more than four is refused), and `runtime_apt` adds packages
to the manifest's. The image carries labels saying what is inside: the OCI ones (with the
wheelforge revision and the base image) and dev.wheelforge.* (cell, stack, archs and the
sha256 of the manifest).

After a build, `Built` records the image's size against its base image, the installed
wheels and the runtime apt packages it added (the rest is overhead, `images_summary`),
and the time of each part of Dockerfile.clean's step. `describe` says what a (pulled)
image holds, from its labels and its manifest.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from wheelforge.core import engine, rootfs, terminal, wheelset
from wheelforge.core.settings import ROOT
from wheelforge.core.terminal import UserError, did_you_mean
from wheelforge.recipes import matrix

SOURCE_URL = "https://github.com/wheelforge/wheelforge"


@dataclass(frozen=True, kw_only=True)
class Built:
    cell: str
    tag: str
    image_id: str
    size: int
    base_size: int
    installed_size: int
    seconds: float
    apt_packages: tuple[str, ...] = ()  # what the runtime apt step added (with dependencies)
    apt_size: int = 0
    phases: tuple[tuple[str, float], ...] = ()  # Dockerfile.clean's parts: (name, seconds)


def cell_dirs(root: Path, patterns: str | None) -> list[Path]:
    """Wheel sets under `root` whose cell id matches one of the comma-separated globs."""
    have = sorted(p for p in root.glob("*") if (p / wheelset.MANIFEST).is_file())
    if not have:
        raise UserError(f"{root}: no wheel sets; run `invoke wheels` first")
    if patterns is None:
        return have

    def miss(pattern: str) -> UserError:
        return UserError(f"--cells {pattern}: no wheel set matches"
                         f"{did_you_mean(pattern, [p.name for p in have])}; "
                         f"have: {', '.join(p.name for p in have)}")

    return matrix.choose(patterns, have, lambda p: p.name, miss)


def default_tag(manifest: dict) -> str:
    return f"{manifest.get('repository', 'wheelforge/runtime')}:{manifest['cell']}"


def env_args(manifest: dict) -> list[str]:
    """The manifest's runtime_env as Dockerfile.clean's NAME/VALUE slots (four at most)."""
    env = sorted((manifest.get("runtime_env") or {}).items())
    if len(env) > 4:
        raise UserError(f"{manifest['cell']}: runtime_env has {len(env)} variables; "
                        f"Dockerfile.clean has four slots (ENV1..ENV4): set fewer")
    return [arg for slot, (name, value) in enumerate(env, 1)
            for arg in ("--build-arg", f"ENV{slot}_NAME={name}",
                        "--build-arg", f"ENV{slot}_VALUE={value}")]


def labels_args(manifest: dict, manifest_sha: str) -> list[str]:
    values = {
        "IMAGE_SOURCE": SOURCE_URL, "IMAGE_REVISION": manifest.get("wheelforge_revision", ""),
        "IMAGE_VERSION": manifest["cell"], "IMAGE_CREATED": manifest.get("created", ""),
        "CELL": manifest["cell"], "STACK": manifest.get("stack", ""),
        "ARCHS": ";".join(manifest.get("archs", [])), "MANIFEST_SHA256": manifest_sha,
    }
    return [arg for k, v in values.items() for arg in ("--build-arg", f"{k}={v}")]


def build_image(cell_dir: Path, *, tag: str | None = None, builder: str | None = None,
                runtime_apt: str = "", no_cache: bool = False) -> Built:
    manifest = wheelset.read_manifest(cell_dir)
    manifest_sha = hashlib.sha256((cell_dir / wheelset.MANIFEST).read_bytes()).hexdigest()
    tag = tag or default_tag(manifest)
    base = manifest["runtime_image"]
    rootfs.ensure_images({base})
    args = ["build", *(["--builder", builder] if builder else []),
            "-f", str(ROOT / "docker" / "Dockerfile.clean"),
            "--build-context", f"wheels={cell_dir.resolve()}",
            # pyelftools for the link audit (no network in the build): core/rootfs.py
            "--build-context", f"tools={rootfs.tools_context()}",
            "--build-arg", f"RUNTIME_IMAGE={base}",
            # the manifest's runtime_apt is read inside the build; this adds to it
            "--build-arg", f"RUNTIME_APT={runtime_apt}",
            *labels_args(manifest, manifest_sha), *env_args(manifest),
            *(["--no-cache"] if no_cache else []),
            "--provenance=false", "--sbom=false", "--load", "-t", tag, str(ROOT)]
    engine.say(f"image: building {tag} from {cell_dir}")
    result = engine.run_build(args)
    if not result.ok:
        result.show_failed_output()
        marked = result.marked_error()
        raise UserError(f"image {manifest['cell']}: {marked or result.error}", exit_code=1)
    added = apt_added(base, tag)
    return Built(cell=manifest["cell"], tag=tag, image_id=engine.image_id(tag),
                 size=disk_usage(tag, "/"), base_size=disk_usage(base, "/"),
                 installed_size=disk_usage(tag, "/opt/venv/lib"), seconds=result.seconds,
                 apt_packages=tuple(sorted(added)), apt_size=sum(added.values()),
                 phases=tuple(result.phases().items()))


def apt_added(base: str, tag: str) -> dict[str, int]:
    """Debian packages in `tag` that `base` lacks: {package: installed bytes}."""
    def packages(ref: str) -> dict[str, int]:
        out = engine.docker(["run", "--rm", "--network=none", "--entrypoint", "dpkg-query", ref,
                             "-W", "-f", "${Package} ${Installed-Size}\\n"], check=False)
        if out.returncode != 0:  # not a Debian-based image: nothing to report
            return {}
        pairs = (line.split() for line in out.stdout.decode().splitlines())
        return {p[0]: int(p[1]) * 1024 if len(p) > 1 and p[1].isdigit() else 0 for p in pairs}
    before = packages(base)
    return {name: size for name, size in packages(tag).items() if name not in before}


def disk_usage(tag: str, path: str) -> int:
    """Bytes `path` occupies on disk inside image `tag` (du, one file system)."""
    out = engine.docker(["run", "--rm", "--network=none", "--entrypoint", "du", tag,
                         "-sx", "--block-size=1", path], what=f"(measuring {tag}) ").stdout
    return int(out.decode().split()[0])


def labels(tag: str) -> dict[str, str]:
    return engine.image_inspect(tag).get("Config", {}).get("Labels") or {}


def images_summary(built: list[Built]) -> str:
    rows = []
    for b in built:
        # the runtime apt packages are asked for (by the stack or a recipe): not overhead
        overhead = b.size - b.base_size - b.installed_size - b.apt_size
        apt = (f"{len(b.apt_packages)} pkgs, {terminal.size(b.apt_size)}" if b.apt_packages
               else "-")
        wanted = max(1, b.base_size + b.installed_size + b.apt_size)
        rows.append((b.cell, b.tag, f"{b.seconds:.1f}s", terminal.size(b.size),
                     terminal.size(b.base_size), terminal.size(b.installed_size), apt,
                     f"{overhead / wanted * 100:+.1f}%"))
    lines = [terminal.render(["cell", "image", "time", "size", "base", "wheels installed",
                              "runtime apt", "overhead"], rows)]
    for b in built:
        if b.apt_packages:
            lines.append(f"runtime apt in {b.cell}: {' '.join(b.apt_packages)}")
    return "\n".join(lines)


def describe(tag: str) -> str:
    """What a (pulled) image says about itself: its labels and its manifest's components."""
    lab = labels(tag)
    out = engine.docker(["run", "--rm", "--network=none", tag, "cat",
                         "/opt/wheelset/manifest.json"], check=False)
    lines = [f"{k} = {v}" for k, v in sorted(lab.items())]
    if out.returncode == 0:
        data = json.loads(out.stdout)
        for name, comp in sorted(data["components"].items()):
            wheels = ", ".join(f"{w['distribution']} {w['version']}" for w in comp["wheels"])
            lines.append(f"component {name}: {wheels or 'build-time only'}")
    return "\n".join(lines)
