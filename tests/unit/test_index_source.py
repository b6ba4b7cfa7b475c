"""Index sources: pip's configured index when no `index:`, and the per-wheel sha256 map."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import pytest

import wheelforge.recipes
from tests.unit.conftest import ROOT, small_matrix, write_set
from tests.unit.conftest import make_plan as plan_of
from wheelforge.build import bake
from wheelforge.core import types
from wheelforge.core.terminal import UserError
from wheelforge.core.types import IndexSource
from wheelforge.recipes import component
from wheelforge.recipes.component import load_recipe

WHL = "vendor_pkg-1.2.0-cp312-cp312-manylinux_2_28_x86_64.whl"
HEX = "ab" * 32


def vendor(source: dict[str, Any]) -> dict[str, Any]:
    return {"name": "vendor", "source": source,
            "steps": ['pip download --no-deps --only-binary=:all: --dest "$OUT" $PACKAGES'],
            "outputs": {"wheels": ["vendor-pkg"]}}


def load(tmp_path: Path, source: dict[str, Any]) -> types.Plan:
    return plan_of(write_set(tmp_path / "r", {"vendor": vendor(source)}, small_matrix()))


def build_of(p: types.Plan) -> types.Build:
    return next(iter(p.builds.values()))


def error(tmp_path: Path, source: dict[str, Any]) -> str:
    with pytest.raises(UserError) as exc:
        load(tmp_path, source)
    return str(exc.value)


def test_packages_alone_mean_pips_configured_index(tmp_path):
    p = load(tmp_path, {"packages": ["vendor-pkg==1.2.0"]})
    b = build_of(p)
    assert b.source.kind == "index" and b.source.url == ""
    spec = bake.spec(b)
    assert "INDEX_URL" not in spec["env"]  # the steps' pip uses its own configuration
    assert spec["env"]["PACKAGES"] == "vendor-pkg==1.2.0"
    assert "pip index" in b.source.label()


def test_an_index_url_still_reaches_the_steps(tmp_path):
    b = build_of(load(tmp_path, {"index": "https://example.invalid/simple",
                                 "packages": ["vendor-pkg==1.2.0"]}))
    assert bake.spec(b)["env"]["INDEX_URL"] == "https://example.invalid/simple"


def test_the_sha256_map_is_loaded_and_in_the_key(tmp_path):
    plain = build_of(load(tmp_path / "a", {"packages": ["vendor-pkg==1.2.0"]}))
    pinned = build_of(load(tmp_path / "b", {"packages": ["vendor-pkg==1.2.0"],
                                            "sha256": {WHL: HEX}}))
    other = build_of(load(tmp_path / "c", {"packages": ["vendor-pkg==1.2.0"],
                                           "sha256": {WHL: "cd" * 32}}))
    assert pinned.source.wheel_sha256 == ((WHL, HEX),)
    assert pinned.source.identity()["wheel_sha256"] == ((WHL, HEX),)
    assert "wheel_sha256" not in plain.source.identity()  # keys without a map stay as they were
    assert len({plain.key, pinned.key, other.key}) == 3


def test_recipe_object(tmp_path):
    path = tmp_path / "vendor.yaml"
    write_set(tmp_path, {"vendor": vendor({"packages": ["vendor-pkg==1.2.0"],
                                           "sha256": {WHL: HEX}})}, small_matrix())
    recipe = load_recipe(path, display="vendor.yaml", extra_variables=frozenset())
    assert recipe.source == IndexSource(url=None, nightly_url=None,
                                        packages=("vendor-pkg==1.2.0",), nightly_packages=(),
                                        sha256=((WHL, HEX),))


@pytest.mark.parametrize(("source", "message"), [
    ({"packages": ["vendor-pkg==1.2.0"], "sha256": {"vendor_pkg-1.2.0.tar.gz": HEX}},
     "source.sha256.vendor_pkg-1.2.0.tar.gz: 'vendor_pkg-1.2.0.tar.gz' is not a wheel file "
     "name (dist-version-python-abi-platform.whl); give the file's name"),
    ({"packages": ["vendor-pkg==1.2.0"],
      "sha256": {"other-1.2.0-py3-none-any.whl": HEX}},
     "source.sha256.other-1.2.0-py3-none-any.whl: 'other-1.2.0-py3-none-any.whl' is not a "
     "wheel of source.packages (vendor-pkg==1.2.0); fix the file name or add the package"),
    ({"packages": ["vendor-pkg==1.2.0"],
      "sha256": {"vendor_pkg-1.1.0-py3-none-any.whl": HEX}},
     "'vendor_pkg-1.1.0-py3-none-any.whl' is version 1.1.0, source.packages pins 1.2.0; "
     "list the pinned version's wheel"),
    ({"packages": ["vendor-pkg==1.2.0"], "sha256": {WHL: "ABC"}},
     f"source.sha256.{WHL}: 'ABC' is not a valid sha256 (64 lowercase hex digits); sha256sum "
     f"FILE prints it"),
    ({"packages": ["vendor-pkg==1.2.0"], "sha256": {}},
     "source.sha256: lists no wheel; give {WHEEL_FILE_NAME: SHA256}, or remove it"),
    ({"packages": []}, "source.packages: lists no package; name at least one name==version"),
    ({"packages": ["vendor-pkg"]},
     "source.packages[0]: 'vendor-pkg' is not pinned; write name==version"),
    ({"packages": ["vendor-pkg==1.2.0"], "sha256s": {WHL: HEX}},
     "source.sha256s: unknown key (did you mean 'sha256'?)"),
    ({"sdist": "vendor-pkg", "version": "1.2.0", "sha256": HEX,
      "packages": ["vendor-pkg==1.2.0"]},
     "source.packages: a source has one kind, this one has sdist and index; keep one"),
])
def test_bad_index_sources_are_one_line(tmp_path, source, message):
    text = error(tmp_path, source)
    assert re.fullmatch(r"r/vendor\.yaml:\d+: .*", text) and text.endswith(message), text


def test_verify_accepts_listed_matching_wheels(tmp_path):
    whl = tmp_path / WHL
    whl.write_bytes(b"the vendor's wheel")
    digest = hashlib.sha256(b"the vendor's wheel").hexdigest()
    component.verify_index_wheels("vendor", "r/vendor.yaml", ((WHL, digest),), [whl])
    component.verify_index_wheels("vendor", "r/vendor.yaml", (), [whl])  # no map: nothing to check


def test_verify_refuses_a_changed_wheel_in_one_line(tmp_path):
    whl = tmp_path / WHL
    whl.write_bytes(b"another file under the same name")
    with pytest.raises(UserError) as exc:
        component.verify_index_wheels("vendor", "r/vendor.yaml", ((WHL, HEX),), [whl])
    actual = hashlib.sha256(b"another file under the same name").hexdigest()
    assert str(exc.value) == (f"r/vendor.yaml: source.sha256: {WHL} has sha256 {actual}, the "
                              f"recipe lists {HEX}; refusing the wheel set (the index served "
                              f"another file under this name)")


def test_verify_refuses_an_unlisted_wheel(tmp_path):
    other = tmp_path / "vendor_pkg-1.2.0-cp311-cp311-manylinux_2_28_x86_64.whl"
    other.write_bytes(b"x")
    with pytest.raises(UserError, match=r"produced vendor_pkg-1\.2\.0-cp311-.*which is not "
                                        r"listed \(listed: vendor_pkg-1\.2\.0-cp312"):
        component.verify_index_wheels("vendor", "r/vendor.yaml", ((WHL, HEX),), [other])


def test_index_page_files_and_hashes():
    page = (f'<a href="../../files/{WHL}#sha256={HEX}">{WHL}</a>\n'
            '<a href="x/vendor_pkg-1.2.0-py3-none-any.whl">vendor_pkg-1.2.0-py3-none-any.whl</a>')
    assert component._index_files(page) == {WHL: HEX,
                                            "vendor_pkg-1.2.0-py3-none-any.whl": ""}


def test_the_alternative_vendor_recipes_plan(tmp_path):
    root = ROOT
    ins = types.Inputs(recipe_overrides={
        "flydsl": root / "recipes" / "alt" / "flydsl.pypi.yaml",
        "mori": root / "recipes" / "alt" / "mori.pypi.yaml"})
    _, recipes = wheelforge.recipes.load(ins)
    for name in ("flydsl", "mori"):
        src = recipes[name].source
        assert isinstance(src, IndexSource) and src.url is None and len(src.sha256) == 1
