"""``{{...}}`` templates: parsing references, finding them, rendering them."""

from __future__ import annotations

import re
from typing import Any

import pytest

from eventstore.templates import (
    MISSING,
    Reference,
    TemplateError,
    find_references,
    parse_path,
    parse_reference,
    render,
    resolve_path,
)

DISPATCH = frozenset({"input", "actions"})
CONTEXT: dict[str, Any] = {
    "input": {"user_id": "42", "count": 3, "tags": ["a", "b"], "flags": {"beta": True}},
    "actions": {
        "fetch-user": {
            "status": "completed",
            "attempts": 2,
            "output": {"email": "x@example.com", "items": [{"sku": "s1"}, {"sku": "s2"}]},
        }
    },
    "secrets": {"API_TOKEN": "t0ken"},
}


# --- parsing ----------------------------------------------------------------------------------


def test_parse_path_splits_dots_and_indexes() -> None:
    assert parse_path("a.b[0].c[12]") == ("a", "b", 0, "c", 12)


@pytest.mark.parametrize("path", ["a..b", ".a", "a.", "a[x]", "a]b", "a[0", "a[-1]"])
def test_malformed_paths_are_rejected(path: str) -> None:
    with pytest.raises(TemplateError):
        parse_path(path)


def test_parse_reference_kinds() -> None:
    assert parse_reference(" input.user_id ") == Reference(
        "input", None, ("user_id",), "input.user_id"
    )
    assert parse_reference("actions.fetch-user.output.items[1].sku") == Reference(
        "actions",
        "fetch-user",
        ("output", "items", 1, "sku"),
        "actions.fetch-user.output.items[1].sku",
    )
    assert parse_reference("secrets.API_TOKEN") == Reference(
        "secrets", "API_TOKEN", (), "secrets.API_TOKEN"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty template"),
        ("vars.HOME", "unknown namespace 'vars'"),
        ("env", "env.NAME"),
        ("index.x", "index has no fields"),
        ("execution.name", "use execution.id or execution.run"),
        ("plan", "use plan.id"),
        ("secrets", "secrets.NAME"),
        ("secrets.A.B", "secrets.NAME"),
        ("actions.a", "actions.<id>.output"),
        ("actions.a.result", "actions.<id>.output"),
    ],
)
def test_bad_references_say_what_is_expected(text: str, message: str) -> None:
    with pytest.raises(TemplateError, match=re.escape(message)):
        parse_reference(text)


# --- finding ----------------------------------------------------------------------------------


def test_find_references_walks_strings_lists_and_dict_keys() -> None:
    value = {
        "url": "http://h/{{input.user_id}}/{{ actions.fetch-user.output.email }}",
        "{{input.count}}": ["plain", {"deep": "{{secrets.API_TOKEN}}"}],
        "n": 5,
        "none": None,
    }

    refs = find_references(value)

    assert [ref.text for ref in refs] == [
        "input.user_id",
        "actions.fetch-user.output.email",
        "input.count",
        "secrets.API_TOKEN",
    ]


def test_find_references_in_plain_values_is_empty() -> None:
    assert find_references({"a": [1, "two", {"three": 3.0}], "b": True}) == []


@pytest.mark.parametrize("value", ["{{input.x", "a {{input.x}} b {{", ["ok", {"k": "{{"}]])
def test_unclosed_template_is_an_error(value: Any) -> None:
    with pytest.raises(TemplateError, match="unclosed template"):
        find_references(value)


def test_malformed_template_inside_a_value_is_an_error() -> None:
    with pytest.raises(TemplateError, match="unknown namespace"):
        find_references({"headers": {"X": "{{nope.x}}"}})


# --- resolving and rendering ------------------------------------------------------------------


def test_resolve_path_follows_dicts_and_lists() -> None:
    root = {"a": [{"b": 1}, {"b": 2}]}

    assert resolve_path(root, ("a", 1, "b")) == 2
    assert resolve_path(root, ("a", -1, "b")) == 2
    assert resolve_path(root, ("a", 5)) is MISSING
    assert resolve_path(root, ("a", "b")) is MISSING
    assert resolve_path(root, ("x",)) is MISSING


def test_whole_string_template_keeps_the_json_type() -> None:
    value = {"count": "{{input.count}}", "tags": "{{input.tags}}", "flags": "{{input.flags}}"}

    assert render(value, CONTEXT, kinds=DISPATCH) == {
        "count": 3,
        "tags": ["a", "b"],
        "flags": {"beta": True},
    }


def test_embedded_templates_render_as_text() -> None:
    rendered = render(
        "user {{input.user_id}} has {{input.count}} of {{input.tags}}", CONTEXT, kinds=DISPATCH
    )

    assert rendered == 'user 42 has 3 of ["a","b"]'


def test_action_outputs_status_and_attempts_resolve() -> None:
    value = [
        "{{actions.fetch-user.output.items[1].sku}}",
        "{{actions.fetch-user.status}}",
        "{{actions.fetch-user.attempts}}",
    ]

    assert render(value, CONTEXT, kinds=DISPATCH) == ["s2", "completed", 2]


def test_kinds_not_rendered_stay_as_templates() -> None:
    value = {"Authorization": "Bearer {{secrets.API_TOKEN}}", "id": "{{input.user_id}}"}

    at_dispatch = render(value, CONTEXT, kinds=DISPATCH)
    at_call = render(at_dispatch, CONTEXT, kinds=frozenset({"secrets"}))

    assert at_dispatch == {"Authorization": "Bearer {{secrets.API_TOKEN}}", "id": "42"}
    assert at_call == {"Authorization": "Bearer t0ken", "id": "42"}


def test_dict_keys_are_rendered() -> None:
    assert render({"{{input.user_id}}": 1}, CONTEXT, kinds=DISPATCH) == {"42": 1}


def test_values_without_templates_are_unchanged() -> None:
    value = {"a": [1, 2.5, None, True, "text"]}

    assert render(value, CONTEXT, kinds=DISPATCH) == value


@pytest.mark.parametrize(
    "template",
    [
        "{{input.missing}}",
        "x {{input.tags[9]}}",
        "{{actions.other.output.x}}",
        "{{actions.fetch-user.output.nope}}",
    ],
)
def test_reference_to_nothing_is_an_error(template: str) -> None:
    with pytest.raises(TemplateError, match="resolves to nothing"):
        render(template, CONTEXT, kinds=DISPATCH)


def test_missing_secret_is_an_error_when_secrets_are_rendered() -> None:
    with pytest.raises(TemplateError, match=r"secrets\.OTHER"):
        render("{{secrets.OTHER}}", CONTEXT, kinds=frozenset({"secrets"}))


def test_null_value_is_substituted_not_missing() -> None:
    context = {"input": {"maybe": None}}

    assert render({"v": "{{input.maybe}}"}, context, kinds=DISPATCH) == {"v": None}
    assert render("v={{input.maybe}}", context, kinds=DISPATCH) == "v=null"


def test_substituted_data_cannot_smuggle_in_a_secret_reference() -> None:
    context = {"input": {}, "actions": {"a": {"output": {"evil": "x {{secrets.TOKEN}}"}}}}
    with pytest.raises(TemplateError, match="secrets"):
        render("{{actions.a.output.evil}}", context, kinds=frozenset({"input", "actions"}))
    with pytest.raises(TemplateError, match="secrets"):
        render({"k": "v={{actions.a.output}}"}, context, kinds=frozenset({"input", "actions"}))
