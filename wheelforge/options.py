"""What a step of the flow is given: the recipe inputs and the build options.

Made from the command line's values and the settings (settings.py); shared by the
command-line layer (app.py, tasks.py), the flow (pipeline.py) and scripts such as
bench/. Nothing here prints or exits.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from . import bake, gitrefs, settings
from .errors import UserError
from .model import Inputs

SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def inputs(*, recipes: str | None, recipe: Iterable[str] = (), git_rewrite: Iterable[str] = (),
           src: Iterable[str] = (), only: Iterable[str] = ()) -> Inputs:
    """The recipe inputs; `--git-rewrite` values first, then WHEELFORGE_GIT_REWRITES."""
    return Inputs(
        recipes_dir=Path(recipes) if recipes else settings.RECIPES,
        recipe_overrides=dict(_pairs(recipe, "--recipe", "NAME=FILE", Path)),
        rewrites=gitrefs.parse_rewrites([*git_rewrite, *settings.current().git_rewrites]),
        src_overrides=dict(_pairs(src, "--src", "NAME=PATH", Path)),
        only=tuple(only),
    )


def _pairs(items: Iterable[str], flag: str, form: str, conv) -> list:
    out = []
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise UserError(f"{flag} {item!r}: write {form}")
        out.append((name, conv(value)))
    return out


def build_options(*, max_jobs: int | None = None, ca_bundle: str | None = "auto",
                  cache_from: Iterable[str] = (), cache_to: Iterable[str] = ()) -> bake.Options:
    """bake.Options from the command line's values and the settings."""
    current = settings.current()
    return bake.Options(
        sources=settings.SOURCES, exports=settings.EXPORTS,
        max_jobs=_max_jobs(max_jobs if max_jobs is not None else current.max_jobs),
        ca_bundle=ca_bundle_path(ca_bundle),
        index_url_env="WHEELFORGE_PIP_INDEX_URL" if current.pip_index_url else None,
        cache_from=tuple(cache_from), cache_to=tuple(cache_to))


def _max_jobs(value: int | str | None) -> int | None:
    if value is None:
        return None
    try:
        jobs = int(value)
    except ValueError:
        jobs = 0
    if jobs < 1:
        raise UserError(f"MAX_JOBS/--max-jobs {value!r}: give a whole number >= 1")
    return jobs


def ca_bundle_path(value: str | None) -> Path | None:
    """`auto`: the host's CA bundle (a proxy that re-signs TLS needs it in builds too)."""
    if value in (None, "", "none"):
        return None
    if value == "auto":
        for candidate in (os.environ.get("SSL_CERT_FILE"), SYSTEM_CA_BUNDLE):
            if candidate and Path(candidate).is_file():
                return Path(candidate)
        return None
    path = Path(value)
    if not path.is_file():
        raise UserError(f"--ca-bundle {value}: file not found")
    return path
