"""Prebuilt wheels from a package index: the per-wheel sha256 map and its checks.

An index source names pinned packages (`packages:`) and, optionally, the index
(`index:`; without it, pip's configured index) and `sha256: {WHEEL_FILE: HEX}`.
With the map, every wheel the component's build produces must be listed there
and match, or the wheel set is refused before it is swapped in: a vendor file
that changed under the same version never reaches a runtime image.
"""

from __future__ import annotations

import hashlib
import re
import urllib.error
import urllib.request
from pathlib import Path

from . import schema, wheelname
from .errors import UserError

SHA256_RE = re.compile(r"[0-9a-f]{64}")
INDEX_TIMEOUT_S = 10
normalize = wheelname.canonical  # a distribution name as installers compare it (PEP 503)


def requirement_name(req: str) -> str:
    return re.split(r"[=<>~!\[]", req)[0]


def sha256_map(src: schema.Where, packages: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """`source.sha256` of an index source: wheel file name -> hex, each naming a pinned
    package at its pinned version. Sorted by file name; () when absent."""
    node = schema.mapping(src, "sha256")
    if node is None:
        return ()
    if not node.node:
        raise src.fail("sha256", "lists no wheel; give {WHEEL_FILE_NAME: SHA256}, or remove it")
    pins = {normalize(requirement_name(p)): p.split("==", 1)[1] for p in packages}
    out = []
    for file, value in node.node.items():
        try:
            wheel = wheelname.parse(str(file))
        except ValueError:
            raise node.fail(file, f"{file!r} is not a wheel file name "
                                  f"({wheelname.FORM}); give the file's name") from None
        dist, version = wheel.name, wheel.version
        if dist not in pins:
            raise node.fail(file, f"{file!r} is not a wheel of source.packages "
                                  f"({', '.join(packages)}); fix the file name or add the package")
        if not wheelname.same_version(version, pins[dist]):
            raise node.fail(file, f"{file!r} is version {version}, source.packages pins "
                                  f"{pins[dist]}; list the pinned version's wheel")
        if not isinstance(value, str) or not SHA256_RE.fullmatch(value):
            raise node.fail(file, "must be a sha256 (64 lowercase hex digits); "
                                  "sha256sum FILE prints it")
        out.append((str(file), value))
    return tuple(sorted(out))


def verify(component: str, recipe_file: str, sha256s: tuple[tuple[str, str], ...],
           wheels: list[Path]) -> None:
    """Every wheel `component` produced is listed in its recipe's sha256 map and matches;
    else one UserError line naming the file. No map: nothing to check."""
    if not sha256s:
        return
    expected = dict(sha256s)
    for whl in wheels:
        if whl.name not in expected:
            raise UserError(f"{recipe_file}: source.sha256: {component} produced {whl.name}, "
                            f"which is not listed (listed: {', '.join(expected)}); refusing the "
                            f"wheel set; add the file with its sha256 if it is the right one")
        actual = hashlib.sha256(whl.read_bytes()).hexdigest()
        if actual != expected[whl.name]:
            raise UserError(f"{recipe_file}: source.sha256: {whl.name} has sha256 {actual}, "
                            f"the recipe lists {expected[whl.name]}; refusing the wheel set "
                            f"(the index served another file under this name)")


def check(b, finding, index_url: str) -> list:
    """`invoke check` of an index source: package names against outputs.wheels, and where
    the index answers, each pinned version's wheel files (and the sha256 map) on it."""
    src = b.source
    names = {normalize(requirement_name(p)): p for p in src.packages}
    out = [finding("ERROR", ("outputs", "wheels", i),
                   f"outputs.wheels {w!r} is not among the index packages "
                   f"({', '.join(src.packages)}); fix outputs.wheels or source.packages")
           for i, w in enumerate(b.wheels) if normalize(w) not in names]
    hashes = dict(src.wheel_sha256)
    read = True
    for norm, req in names.items():
        if "==" not in req:
            continue
        version = req.split("==", 1)[1]
        url = f"{index_url.rstrip('/')}/{norm}/"
        try:
            with urllib.request.urlopen(url, timeout=INDEX_TIMEOUT_S) as response:  # noqa: S310
                page = response.read().decode("utf-8", errors="replace")
        except (urllib.error.URLError, OSError, ValueError) as exc:
            out.append(finding("ok", ("source",), f"index {index_url} not readable here "
                               f"({getattr(exc, 'reason', exc)}); wheel file names not checked"))
            read = False
            break
        files = _index_files(page)
        prefix = f"{norm.replace('-', '_')}-{version}"
        if not any(f.lower().startswith((prefix + "-", prefix + "+")) for f in files):
            out.append(finding("ERROR", ("source", "packages"),
                               f"{req}: no wheel of that version at {url}; fix the pin"))
        for file, want in hashes.items():
            if normalize(file.split("-", 1)[0]) != norm:
                continue
            if file not in files:
                out.append(finding("ERROR", ("source", "sha256", file), f"{file} is not on "
                                   f"{url}; fix the file name in source.sha256"))
            elif files[file] and files[file] != want:
                out.append(finding("ERROR", ("source", "sha256", file), f"{file}: the index "
                                   f"gives sha256 {files[file]}, the recipe {want}; find out "
                                   f"which is right before changing either"))
    if not any(f.level == "ERROR" for f in out):
        listed = f"; {len(hashes)} wheel sha256s" if hashes else ""
        how = (f"names, wheel files{' and sha256s' if hashes else ''} checked on the index"
               if read else f"names checked against outputs.wheels{listed}")
        out.append(finding("ok", ("source",), f"prebuilt wheels {' '.join(src.packages)} "
                           f"({how})"))
    return out


def _index_files(page: str) -> dict[str, str]:
    """Wheel file name -> sha256 ('' when the page gives none) from a simple-index page."""
    out = {name.replace("%2B", "+"): "" for name in re.findall(r">\s*([^<>\s]+\.whl)\s*<", page)}
    for href, text in re.findall(r"<a\s[^>]*href=\"([^\"]*)\"[^>]*>\s*([^<>\s]+\.whl)\s*<", page):
        m = re.search(r"#sha256=([0-9a-f]{64})", href)
        out[text.replace("%2B", "+")] = m.group(1) if m else ""
    return out
