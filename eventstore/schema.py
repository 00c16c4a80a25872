"""JSON Schemas of the wire contract, generated from the structs into ``docs/schema/``.

Executors and clients in other languages validate against these files:

- ``plan.json``: the plan document (canonical snake_case field names);
- ``events.json``: any event (the tagged union, discriminated by ``type``);
- ``events/<type>.json``: one event type, e.g. ``events/action.completed.json``;
- ``state.json``: an execution's state as ``tep status --json`` and the KV view present it.

Regenerate after changing a struct::

    python -m eventstore.schema            # write the files
    python -m eventstore.schema --check    # exit 1 if the files on disk are stale
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from eventstore.events import EVENT_TYPES, Event
from eventstore.plan import Plan
from eventstore.state import ExecutionState

__all__ = [
    "DEFAULT_SCHEMA_DIR",
    "JSON_SCHEMA_DIALECT",
    "generate_schemas",
    "main",
    "render_schema",
    "stale_schema_files",
    "write_schemas",
]

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
DEFAULT_SCHEMA_DIR = Path(__file__).resolve().parents[1] / "docs" / "schema"


def _clean_descriptions(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            key: inspect.cleandoc(value)
            if key == "description" and isinstance(value, str)
            else _clean_descriptions(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_clean_descriptions(item) for item in node]
    return node


def _document(tp: Any, title: str) -> dict[str, Any]:
    schema = _clean_descriptions(msgspec.json.schema(tp))
    return {"$schema": JSON_SCHEMA_DIALECT, "title": title, **schema}


def generate_schemas() -> dict[str, dict[str, Any]]:
    """Every schema file, by path relative to the schema directory, in a stable order."""
    schemas = {
        "plan.json": _document(Plan, "tep plan"),
        "events.json": _document(Event, "tep event (any type, discriminated by `type`)"),
    }
    for event_type, cls in EVENT_TYPES.items():
        schemas[f"events/{event_type}.json"] = _document(cls, f"tep event {event_type}")
    schemas["state.json"] = _document(ExecutionState, "tep execution state")
    return schemas


def render_schema(schema: dict[str, Any]) -> str:
    """The file content for a schema: indented JSON with a trailing newline."""
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def write_schemas(directory: Path = DEFAULT_SCHEMA_DIR) -> list[Path]:
    """Write every schema under ``directory``; remove event schemas of types that no longer exist.

    Returns:
        The files written.
    """
    schemas = generate_schemas()
    written = []
    for relative, schema in schemas.items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render_schema(schema), encoding="utf-8")
        written.append(path)
    for path in sorted((directory / "events").glob("*.json")):
        if f"events/{path.name}" not in schemas:
            path.unlink()
    return written


def stale_schema_files(directory: Path = DEFAULT_SCHEMA_DIR) -> list[str]:
    """Relative paths whose content on disk differs from the generated schema (or is missing),
    plus event schema files no type generates any more. Empty when everything is current."""
    schemas = generate_schemas()
    stale = []
    for relative, schema in schemas.items():
        path = directory / relative
        if not path.is_file() or path.read_text(encoding="utf-8") != render_schema(schema):
            stale.append(relative)
    for path in sorted((directory / "events").glob("*.json")):
        if f"events/{path.name}" not in schemas:
            stale.append(f"events/{path.name}")
    return stale


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m eventstore.schema [--check] [--out DIR]``."""
    parser = argparse.ArgumentParser(
        prog="python -m eventstore.schema",
        description="Generate the JSON Schemas of plans and events.",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_SCHEMA_DIR, help="target directory")
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if the files are stale"
    )
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_schema_files(args.out)
        for relative in stale:
            sys.stderr.write(f"stale: {args.out / relative}\n")
        return 1 if stale else 0
    for path in write_schemas(args.out):
        sys.stdout.write(f"wrote {path}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
