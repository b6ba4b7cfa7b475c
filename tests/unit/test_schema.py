"""The JSON Schemas and docs tables the recipe and matrix models publish: committed as the
models make them, named on the first line of every shipped recipe and matrix, accepting
every shipped file and refusing bad ones."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.unit.conftest import ROOT, run_invoke
from wheelforge.core.terminal import UserError
from wheelforge.recipes import reference

# The recipe sets in the repository; demo/vendor/recipes is the vendor rehearsal's.
SETS = [ROOT / "recipes", ROOT / "recipes" / "alt", ROOT / "demo" / "recipes",
        ROOT / "demo" / "vendor" / "recipes"]
SHIPPED = sorted(path for directory in SETS for path in directory.glob("*.yaml"))
MATRICES = [path for path in SHIPPED if path.name == "matrix.yaml"]
RECIPES = [path for path in SHIPPED if path.name != "matrix.yaml"]
BAD = Path(__file__).parent / "bad_recipes"
SCHEMA_LINE = re.compile(r"# yaml-language-server: \$schema=(\S+)")


def check_jsonschema(kind: str, files: list[Path]) -> subprocess.CompletedProcess:
    exe = shutil.which("check-jsonschema")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("check-jsonschema is missing in CI; pip install -r ci/requirements-dev.txt")
        pytest.skip("check-jsonschema is not installed; pip install check-jsonschema==0.39.0")
    return subprocess.run([exe, "--schemafile", str(reference.schema_file(kind)),
                           *map(str, files)], capture_output=True, text=True, check=False,
                          timeout=120)


def test_the_committed_schemas_and_tables_are_what_the_models_make():
    stale = reference.stale(reference.published())
    assert not stale, f"stale: {stale}; run invoke schema"


def test_publish_names_the_stale_files_then_writes_them(tmp_path: Path, monkeypatch, capsys):
    docs, schemas = tmp_path / "docs.md", tmp_path / "schema"
    docs.write_text(reference.DOCS.read_text().replace("| `steps` |", "| `stpes` |"))
    shutil.copytree(reference.SCHEMA_DIR, schemas)
    (schemas / "matrix.schema.json").unlink()
    for name, value in (("ROOT", tmp_path), ("DOCS", docs), ("SCHEMA_DIR", schemas)):
        monkeypatch.setattr(reference, name, value)
    with pytest.raises(UserError) as caught:
        reference.publish(check=True)
    assert str(caught.value) == ("not what the recipe and matrix models make: "
                                 "schema/matrix.schema.json, docs.md; run invoke schema")
    assert caught.value.exit_code == 1
    assert "`stpes`" in docs.read_text()  # a check writes nothing
    reference.publish()
    assert capsys.readouterr().out == "wrote schema/matrix.schema.json\nwrote docs.md\n"
    assert docs.read_text() == reference.DOCS.read_text()
    assert (schemas / "matrix.schema.json").read_text() == reference.schema_text("matrix")
    reference.publish(check=True)


def test_the_key_tables_are_made_between_their_markers_and_the_prose_is_kept():
    text = ("intro\n<!-- keys:recipe -->\nOLD TABLE\n<!-- /keys:recipe -->\nmiddle\n"
            "<!-- keys:matrix --><!-- /keys:matrix -->\nend\n")
    made = reference.docs_text(text)
    assert made.startswith("intro\n<!-- keys:recipe -->\n\n**A component recipe")
    assert "OLD TABLE" not in made and "\nmiddle\n" in made and made.endswith("-->\nend\n")
    assert "| `source.pin` | text | optional | The full commit the stable channel builds. |" \
        in made
    assert "| `stacks.NAME.runtime_toolchain` | `allowed` or `forbidden` | `forbidden` |" in made
    with pytest.raises(UserError, match=r"no <!-- keys:matrix --> \.\.\. <!-- /keys:matrix -->"):
        reference.docs_text("<!-- keys:recipe --><!-- /keys:recipe -->")


def test_invoke_schema_check_passes_on_the_committed_files():
    proc = run_invoke("schema", "--check")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shipped_recipe_and_matrix_names_its_schema_on_its_first_line(path: Path):
    first = path.read_text().splitlines()[0]
    match = SCHEMA_LINE.fullmatch(first)
    kind = "matrix" if path.name == "matrix.yaml" else "recipe"
    assert match, (f"{path.relative_to(ROOT)}: the first line must be '# yaml-language-server: "
                   f"$schema={os.path.relpath(reference.schema_file(kind), path.parent)}'")
    assert (path.parent / match[1]).resolve() == reference.schema_file(kind)


def test_every_recipe_file_of_the_repository_is_one_tested_here():
    tracked = subprocess.run(["git", "ls-files", "*.yaml"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout.split()
    assert sorted(ROOT / f for f in tracked if not f.startswith("tests/")) == SHIPPED
    assert len(MATRICES) == 3 and len(RECIPES) > 20


def test_every_shipped_recipe_is_valid_under_the_published_schema():
    result = check_jsonschema("recipe", RECIPES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_shipped_matrix_is_valid_under_the_published_schema():
    result = check_jsonschema("matrix", MATRICES)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(("kind", "case", "problem"), [
    ("recipe", "unknown_top_key", "Additional properties are not allowed ('stpes' was unexpected)"),
    ("recipe", "missing_steps", "'steps' is a required property"),
    ("recipe", "short_pin", "'622413b' does not match '^(?:[0-9a-f]{40})$'"),
    ("recipe", "branch_metachars", "'main;rm -rf /' does not match"),
    ("recipe", "env_reserved_out", "'OUT' should not be valid under"),
    ("recipe", "duplicate_list_item", "has non-unique elements"),
    ("matrix", "matrix_unknown_channel", "'nigthly' is not one of ['stable', 'nightly']"),
    ("matrix", "matrix_unknown_key",
     "Additional properties are not allowed ('known_arch' was unexpected)"),
    ("matrix", "matrix_variant_var_shadows_cell", "'archs' should not be valid under"),
])
def test_the_published_schema_refuses_bad_files(kind: str, case: str, problem: str):
    path = BAD / case / ("matrix.yaml" if kind == "matrix" else "app.yaml")
    result = check_jsonschema(kind, [path])
    assert result.returncode == 1, result.stdout + result.stderr
    assert problem in result.stdout, result.stdout
