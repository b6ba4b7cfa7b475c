"""Reading what the user hands the suite: arch lists, the manifest, the golden file.

Every problem is a UsageError with one line; the CLI prints it and exits 2.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

DEFAULT_MANIFEST = "/opt/wheelset/manifest.json"
ARCH_RE = re.compile(r"^gfx[0-9a-f]+$", re.IGNORECASE)
CHECK_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._+-]{0,127}$")


class UsageError(Exception):
    """A mistake in the command line or an input file; the message is one line."""


def parse_archs(text: str) -> tuple[str, ...]:
    """'gfx942;gfx950' or 'gfx942,gfx950' -> ('gfx942', 'gfx950')."""
    archs = tuple(a.strip() for a in re.split(r"[;,]", text) if a.strip())
    bad = [a for a in archs if not ARCH_RE.match(a)]
    if bad or not archs:
        raise UsageError(f"--archs {text!r}: expected gfx names separated by ';' or ',' "
                         f"(e.g. gfx942;gfx950), got {', '.join(bad) or 'nothing'}")
    return archs


def _read_json(path: str, what: str) -> Any:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{what} {path} is not valid JSON: {exc.msg} at line {exc.lineno}, "
                         f"column {exc.colno}") from None


def load_manifest(path: str) -> dict[str, Any]:
    """The wheelset manifest, checked for the shape the suite relies on."""
    data = _read_json(path, "manifest")

    def bad(detail: str) -> UsageError:
        return UsageError(f"manifest {path}: {detail}")

    if not isinstance(data, dict) or not isinstance(data.get("components"), dict):
        raise bad("expected an object with a 'components' object")
    archs = data.get("archs", [])
    if not isinstance(archs, list) or not all(isinstance(a, str) for a in archs):
        raise bad("'archs' must be a list of strings")
    for name, comp in data["components"].items():
        if not isinstance(comp, dict):
            raise bad(f"component {name!r} must be an object")
        imports = comp.get("imports", [])
        if not isinstance(imports, list) or not all(isinstance(i, str) for i in imports):
            raise bad(f"component {name!r}: 'imports' must be a list of module names")
        wheels = comp.get("wheels", [])
        if not isinstance(wheels, list):
            raise bad(f"component {name!r}: 'wheels' must be a list")
        for wheel in wheels:
            if not (isinstance(wheel, dict) and isinstance(wheel.get("distribution"), str)
                    and isinstance(wheel.get("version"), str)):
                raise bad(f"component {name!r}: each wheel needs 'distribution' and 'version'")
        smoke = comp.get("smoke", [])
        if not isinstance(smoke, list):
            raise bad(f"component {name!r}: 'smoke' must be a list")
        names = set()
        for check in smoke:
            if not (isinstance(check, dict) and isinstance(check.get("name"), str)
                    and CHECK_NAME_RE.match(check["name"])
                    and isinstance(check.get("run"), str)
                    and isinstance(check.get("gpu", False), bool)):
                raise bad(f"component {name!r}: each smoke check needs a 'name' (lowercase "
                          "letters, digits, . _ + -), a 'run' command and optionally 'gpu' "
                          "(true or false)")
            if check["name"] in names:
                raise bad(f"component {name!r}: smoke check {check['name']!r} is listed twice")
            names.add(check["name"])
        runtime_env = comp.get("runtime_env", {})
        if not isinstance(runtime_env, dict):
            raise bad(f"component {name!r}: 'runtime_env' must be an object")
    return data


def load_golden(path: str) -> list[dict[str, str]]:
    """The golden completions: a JSON list of {"prompt": ..., "completion": ...}."""
    data = _read_json(path, "golden file")
    ok = isinstance(data, list) and all(
        isinstance(e, dict) and isinstance(e.get("prompt"), str)
        and isinstance(e.get("completion"), str) for e in data)
    if not ok or not data:
        raise UsageError(f"golden file {path}: expected a non-empty JSON list of "
                         '{"prompt": ..., "completion": ...} objects')
    return [{"prompt": e["prompt"], "completion": e["completion"]} for e in data]
