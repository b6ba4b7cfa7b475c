"""Base images that no registry can give this host, made with debootstrap.

The demo stacks name images that this project makes itself (`docker import` of
a debootstrap root); production stacks name real images, pulled as usual.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from . import engine
from .errors import UserError
from .plan import ROOT

# Images this project can make without a registry: name -> (suite, extra packages).
MADE_HERE = {
    "wheelforge-demo/bookworm:base": ("bookworm", ["python3", "python3-venv",
                                                    "ca-certificates"]),
}
DEBIAN_MIRROR = os.environ.get("WHEELFORGE_DEBIAN_MIRROR", "http://deb.debian.org/debian")


def ensure_images(refs: set[str]) -> None:
    """Make each image of `refs` that is missing locally and that we know how to make."""
    for ref in sorted(refs):
        if ref in MADE_HERE and not engine.image_exists(ref):
            make_image(ref)


def make_image(ref: str) -> None:
    suite, packages = MADE_HERE[ref]
    if shutil.which("debootstrap") is None:
        raise UserError(f"{ref}: debootstrap is not installed; run ci/setup-host.sh")
    engine.say(f"base image: making {ref} with debootstrap ({suite}, minbase)")
    cache = ROOT / ".cache" / "base"
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        rootfs = Path(tmp) / "rootfs"
        proc = subprocess.run(
            ["debootstrap", "--variant=minbase", f"--include={','.join(packages)}", suite,
             str(rootfs), DEBIAN_MIRROR], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise UserError(f"{ref}: debootstrap failed: {engine.last_line(proc.stdout)}; "
                            f"check access to {DEBIAN_MIRROR}")
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run([engine.DOCKER, "import", "-", ref], stdin=tar.stdout,
                                  capture_output=True, check=False)
        tar.wait()
        if imported.returncode != 0:
            raise UserError(f"{ref}: docker import failed: {engine.last_line(imported.stderr)}")
    engine.say(f"base image: {ref} ready")
