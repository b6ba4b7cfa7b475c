"""Removing a scratch engine's roots (core/engine.py remove_root)."""

from __future__ import annotations

import os
import subprocess

import pytest

from wheelforge.core import engine
from wheelforge.core.terminal import UserError


def test_a_stopped_engines_root_is_removed(tmp_path):
    root = tmp_path / "releases" / "abc"
    (root / "data" / "containerd").mkdir(parents=True)
    (root / "data" / "containerd" / "blob").write_text("x")
    engine.remove_root(root)
    assert not root.exists()
    engine.remove_root(root)  # already gone: nothing to do


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_a_root_with_a_mount_under_it_is_kept(tmp_path):
    """A dockerd killed with a container running leaves mounts (bind mounts of host
    folders among them): deleting through them would delete host files."""
    root = tmp_path / "releases" / "abc"
    held = root / "exec" / "rootfs"
    held.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(held)], check=True)
    try:
        (held / "host-file").write_text("keep me")
        with pytest.raises(UserError, match="still mounted") as caught:
            engine.remove_root(root)
        assert "\n" not in str(caught.value) and str(held) in str(caught.value)
        assert (held / "host-file").read_text() == "keep me"
    finally:
        subprocess.run(["umount", str(held)], check=True)
