"""Run a runtime image with the ROCm device flags: the smoke suite, a shell, a command.

On a ROCm host the container gets /dev/kfd and /dev/dri, the groups that own them (by
number, so the image needs no matching group names), host IPC, a large /dev/shm, and the
seccomp and ptrace settings that ROCm's debugger interfaces need (seccomp unconfined,
SYS_PTRACE). On a host without them (CI, a laptop) the container runs without devices and
the smoke suite's GPU checks report why they were skipped.

The smoke suite (wheelforge/smoke/) is bind-mounted read-only into the image and runs as
the invoking user, given the image's digest (its registry digest when pulled, else its
local ID) for its report; the report is written into a folder only that user can write to
and copied out atomically. `smoke_on_host` runs the same suite on this host instead.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from wheelforge.core import engine
from wheelforge.core.settings import ROOT
from wheelforge.core.terminal import UserError

SMOKE_DIR = ROOT / "wheelforge" / "smoke"


def device_flags() -> list[str]:
    flags: list[str] = []
    groups: set[int] = set()
    for dev in ("/dev/kfd", "/dev/dri"):
        if os.path.exists(dev):
            flags += ["--device", dev]
            groups.add(os.stat(dev).st_gid)
            if dev == "/dev/dri":
                groups.update(p.stat().st_gid for p in Path(dev).glob("renderD*"))
    if not flags:
        return []
    for gid in sorted(groups):
        flags += ["--group-add", str(gid)]
    return [*flags, "--ipc=host", "--shm-size=16g", "--security-opt", "seccomp=unconfined",
            "--cap-add=SYS_PTRACE"]


def run(image: str, command: list[str], *, interactive: bool = False,
        extra: list[str] | None = None) -> int:
    """`docker run` IMAGE COMMAND with the device flags; returns the exit code."""
    if not command:
        raise UserError("run: give the command after --, e.g. "
                        "invoke run -- python -c 'import torch'")
    args = [engine.DOCKER, "run", "--rm", *(["-it"] if interactive else []), *device_flags(),
            *(extra or []), image, *command]
    return subprocess.call(args)


def smoke_in_image(image: str, suite_args: list[str], *, report: Path | None) -> int:
    """The smoke suite, bind-mounted read-only, run inside `image`."""
    if not engine.image_exists(image):
        raise UserError(f"smoke: image {image} not found locally; build it (invoke image) "
                        f"or pull it (invoke pull)")
    digest = image_digest(image)
    # The report folder stays the invoking user's own (mode 0700, as mkdtemp makes it):
    # the suite runs as that user's uid/gid, so it can write there and nobody else can.
    with tempfile.TemporaryDirectory(prefix="smoke-") as out:
        mounts = [*user_flags(), "-v", f"{SMOKE_DIR}:/opt/forge/smoke:ro", "-v", f"{out}:/out",
                  "-e", "PYTHONPATH=/opt/forge", "-e", "PYTHONDONTWRITEBYTECODE=1",
                  "-e", f"SMOKE_IMAGE_DIGEST={digest}"]
        code = run(image, ["python", "-m", "smoke", "--report", "/out/report.json",
                           *suite_args], extra=mounts)
        written = Path(out) / "report.json"
        if report is not None and written.exists():
            report.parent.mkdir(parents=True, exist_ok=True)
            tmp = report.with_name(f".{report.name}.tmp")
            tmp.write_bytes(written.read_bytes())
            tmp.replace(report)
    return code


def user_flags() -> list[str]:
    """Run as the invoking user (device access comes from --group-add, see device_flags)."""
    uid, gid = os.getuid(), os.getgid()
    return ["--user", f"{uid}:{gid}", *(["-e", "HOME=/tmp"] if uid != 0 else [])]


def smoke_on_host(suite_args: list[str], *, report: Path | None) -> int:
    args = [sys.executable, "-m", "wheelforge.smoke", *suite_args]
    if report is not None:
        args += ["--report", str(report)]
    return subprocess.call(args, cwd=ROOT)


def image_digest(image: str) -> str:
    """The registry digest of a pulled image, else its local id."""
    if "@" in image:
        return image.split("@", 1)[1]
    info = engine.image_inspect(image)
    repo_digests = info.get("RepoDigests") or []
    return repo_digests[0].split("@", 1)[1] if repo_digests else info["Id"]
