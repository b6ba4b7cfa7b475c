"""What the recipe and matrix models publish: the JSON Schema of each file kind, with which
editors complete and check recipes (recipes/schema/; the first line of each recipe and
matrix names its schema for yaml-language-server), and the key tables of docs/recipes.md.

`invoke schema` writes them from `RecipeModel` and `MatrixModel`; `invoke schema --check`
fails when the committed ones differ, as the unit tests do. Only that task and the tests
import this module: no command that builds reads it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from wheelforge.core.settings import RECIPES, ROOT
from wheelforge.core.terminal import UserError
from wheelforge.recipes.component import RecipeModel
from wheelforge.recipes.matrix import MatrixModel

MODELS: dict[str, type[BaseModel]] = {"recipe": RecipeModel, "matrix": MatrixModel}
SCHEMA_DIR = RECIPES / "schema"
DOCS = ROOT / "docs" / "recipes.md"


def schema_file(kind: str) -> Path:
    return SCHEMA_DIR / f"{kind}.schema.json"


def json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON Schema, without what pydantic adds for Python's sake: a title per
    key (the key itself) and `default: null` (absent, which YAML cannot write as null)."""
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            **_tidy(model.model_json_schema())}


def _tidy(node: Any) -> Any:
    if isinstance(node, list):
        return [_tidy(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _tidy(value) for key, value in node.items()
           if not (key == "default" and value is None)}
    if "properties" in out:
        out["properties"] = {key: {k: v for k, v in value.items() if k != "title"}
                             for key, value in out["properties"].items()}
    if "patternProperties" in out:  # a mapping whose names follow a pattern: no others
        out.setdefault("additionalProperties", False)
    return out


def schema_text(kind: str) -> str:
    return json.dumps(json_schema(MODELS[kind]), indent=2, ensure_ascii=False) + "\n"


def key_tables(model: type[BaseModel]) -> str:
    """Markdown: one table per mapping of the file (the file itself, then the mappings
    under it), each key with its type, its default and its description."""
    schema = json_schema(model)
    tables, todo = [], [("", "", schema)]
    while todo:
        prefix, kind, mapping = todo.pop(0)
        rows = []
        for key, value in mapping["properties"].items():
            path = prefix + key
            rows.append(f"| `{path}` | {_type(value)} | {_default(key, value, mapping)} | "
                        f"{value.get('description', '').replace('|', '&#124;')} |")
            todo += [(path + suffix, kind, schema["$defs"][ref.rsplit("/", 1)[1]])
                     for suffix, kind, ref in _mappings_under(value, schema["$defs"])]
        title = f"`{prefix.rstrip('.')}`{kind}: " if prefix else ""
        tables.append(f"**{title}{mapping['description']}**\n\n"
                      "| key | type | default | description |\n|---|---|---|---|\n"
                      + "\n".join(rows))
    return "\n\n".join(tables)


def _default(key: str, value: dict[str, Any], mapping: dict[str, Any]) -> str:
    if key in mapping.get("required", ()):
        return "required"
    if "default" not in value:
        return "optional"
    default = value["default"]
    return f"`{default if isinstance(default, str) and default else json.dumps(default)}`"


def _mappings_under(value: dict[str, Any], defs: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(how their keys are written after the key, which kind, $ref) of the mappings a value
    holds: a mapping, one of several kinds, a list of mappings, or mappings by name."""
    if "$ref" in value:
        return [(".", "", value["$ref"])]
    if "anyOf" in value:
        return [(".", f", {defs[m['$ref'].rsplit('/', 1)[1]]['title']}", m["$ref"])
                for m in value["anyOf"]]
    if "$ref" in value.get("items", {}):
        return [("[].", "", value["items"]["$ref"])]
    return [(".NAME.", "", v["$ref"]) for v in value.get("patternProperties", {}).values()
            if "$ref" in v]


def _type(value: dict[str, Any]) -> str:
    if "$ref" in value:
        return "mapping (below)"
    if "anyOf" in value:
        return "mapping of one kind (below)"
    if "enum" in value:
        return " or ".join(f"`{choice}`" for choice in value["enum"])
    if value["type"] == "array":
        return f"list of {_type(value['items'])}"
    if value["type"] == "object":
        values = [*value.get("patternProperties", {}).values(),
                  value.get("additionalProperties") or {"type": "string"}][0]
        return f"mapping of names to {_type(values)}"
    return {"string": "text", "boolean": "`true` or `false`", "number": "number"}[value["type"]]


def docs_text(text: str) -> str:
    """docs/recipes.md's text with the key tables between their markers made anew."""
    for kind, model in MODELS.items():
        start, end = f"<!-- keys:{kind} -->", f"<!-- /keys:{kind} -->"
        if start not in text or end not in text:
            raise UserError(f"{DOCS.relative_to(ROOT)}: no {start} ... {end} markers; add them "
                            f"where the {kind} key tables go")
        text = re.sub(f"{re.escape(start)}.*?{re.escape(end)}",
                      lambda _, m=model, s=start, e=end: f"{s}\n\n{key_tables(m)}\n\n{e}",
                      text, flags=re.DOTALL)
    return text


def published() -> dict[Path, str]:
    """Every file the models publish, with the text it must have."""
    out = {schema_file(kind): schema_text(kind) for kind in MODELS}
    out[DOCS] = docs_text(DOCS.read_text(encoding="utf-8"))
    return out


def stale(texts: dict[Path, str]) -> list[Path]:
    """The files of `texts` whose text on disk is not that."""
    return [path for path, text in texts.items()
            if not path.is_file() or path.read_text(encoding="utf-8") != text]


def publish(*, check: bool = False) -> None:
    """Write the stale files (each named on a line); with `check`, only name them, as an
    error."""
    texts = published()
    paths = stale(texts)
    if check and paths:
        raise UserError(f"not what the recipe and matrix models make: "
                        f"{', '.join(str(p.relative_to(ROOT)) for p in paths)}; run "
                        f"invoke schema", exit_code=1)
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(texts[path], encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)}")

