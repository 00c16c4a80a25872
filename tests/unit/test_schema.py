"""The committed JSON Schemas match the code, and real events and plans validate against them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from event_samples import ONE_OF_EACH, PLAN

from eventstore.codec import encode_event
from eventstore.events import EVENT_TYPES, ActionCompleted, ActionSkipped, Event
from eventstore.schema import (
    DEFAULT_SCHEMA_DIR,
    generate_schemas,
    main,
    stale_schema_files,
    write_schemas,
)

REGENERATE = "run `python -m eventstore.schema` and commit docs/schema/"


def load(relative: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((DEFAULT_SCHEMA_DIR / relative).read_text())
    return document


def test_committed_schemas_are_current() -> None:
    assert stale_schema_files() == [], REGENERATE


def test_there_is_one_schema_file_per_event_type() -> None:
    files = sorted(path.name for path in (DEFAULT_SCHEMA_DIR / "events").glob("*.json"))

    assert files == sorted(f"{event_type}.json" for event_type in EVENT_TYPES)


def test_schemas_are_valid_json_schema_documents() -> None:
    for relative, schema in generate_schemas().items():
        jsonschema.Draft202012Validator.check_schema(schema), relative


@pytest.mark.parametrize("event", ONE_OF_EACH, ids=lambda e: type(e).__struct_config__.tag)
def test_each_event_validates_against_its_own_and_the_union_schema(event: Event) -> None:
    tag = type(event).__struct_config__.tag
    document = json.loads(encode_event(event))

    jsonschema.validate(document, load(f"events/{tag}.json"))
    jsonschema.validate(document, load("events.json"))


def test_event_schema_shape_matches_the_struct() -> None:
    schema = load("events/action.completed.json")
    definition = schema["$defs"]["ActionCompleted"]

    assert definition["properties"]["type"] == {"enum": ["action.completed"]}
    assert set(definition["properties"]) == {"type", *ActionCompleted.__struct_encode_fields__}
    assert {"type", "execution_id", "action_id", "attempt", "output"} <= set(definition["required"])


def test_schema_rejects_a_wrong_event() -> None:
    document = json.loads(
        encode_event(ActionSkipped(execution_id="e", action_id="a", reason="condition_false"))
    )
    document["reason"] = "bored"

    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, load("events/action.skipped.json"))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**document, "type": "action.teleported"}, load("events.json"))


def test_plan_schema_accepts_a_plan_and_rejects_unknown_fields() -> None:
    schema = load("plan.json")
    document = json.loads(json.dumps(json.loads(encode_event(ONE_OF_EACH[0]))["plan"]))

    jsonschema.validate(document, schema)
    assert document["id"] == PLAN.id
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**document, "bogus": 1}, schema)


def test_descriptions_come_from_docstrings_without_indentation() -> None:
    action = load("plan.json")["$defs"]["Action"]

    assert action["description"].startswith("One step of a plan.")
    assert "\n    " not in action["description"]


def test_check_mode_reports_stale_and_extra_files(tmp_path: Path) -> None:
    write_schemas(tmp_path)
    assert main(["--check", "--out", str(tmp_path)]) == 0

    (tmp_path / "plan.json").write_text("{}\n")
    (tmp_path / "events" / "action.teleported.json").write_text("{}\n")

    assert stale_schema_files(tmp_path) == ["plan.json", "events/action.teleported.json"]
    assert main(["--check", "--out", str(tmp_path)]) == 1


def test_writing_removes_schemas_of_vanished_types(tmp_path: Path) -> None:
    (tmp_path / "events").mkdir()
    (tmp_path / "events" / "action.teleported.json").write_text("{}\n")

    assert main(["--out", str(tmp_path)]) == 0

    assert not (tmp_path / "events" / "action.teleported.json").exists()
    assert stale_schema_files(tmp_path) == []
