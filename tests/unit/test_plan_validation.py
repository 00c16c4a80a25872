"""parse_plan: every class of problem is reported, naming the action and the field."""

from __future__ import annotations

import copy
import json
from typing import Any

import msgspec
import pytest

from eventstore.errors import PlanValidationError
from eventstore.plan import Action, Condition, Plan, RequestSpec, RetryPolicy
from eventstore.plan_validation import PlanLimits, parse_plan, plan_problems

WELCOME: dict[str, Any] = {
    "id": "welcome-email",
    "input": {"user_id": "42"},
    "actions": [
        {
            "id": "fetch-user",
            "type": "http",
            "request": {
                "method": "GET",
                "url": "http://127.0.0.1:8080/users/{{input.user_id}}",
                "headers": {"Authorization": "Bearer {{secrets.API_TOKEN}}"},
                "timeout_s": 10,
            },
            "retry": {
                "max_attempts": 3,
                "backoff_factor": 2,
                "min_backoff_ms": 200,
                "max_backoff_ms": 10000,
            },
        },
        {
            "id": "send",
            "type": "http",
            "depends_on": ["fetch-user"],
            "when": {"path": "actions.fetch-user.output.tier", "equals": "premium"},
            "request": {
                "method": "POST",
                "url": "http://127.0.0.1:8080/send",
                "json": {"to": "{{actions.fetch-user.output.email}}"},
            },
        },
    ],
}


def welcome() -> dict[str, Any]:
    return copy.deepcopy(WELCOME)


def noop(action_id: str, *depends_on: str, **fields: Any) -> dict[str, Any]:
    return {"id": action_id, "type": "noop", "depends_on": list(depends_on), **fields}


def problems_of(document: Any, **limits: int) -> list[str]:
    with pytest.raises(PlanValidationError) as caught:
        parse_plan(document, limits=PlanLimits(**limits))
    assert str(caught.value) == "; ".join(caught.value.problems)
    return caught.value.problems


# --- valid documents --------------------------------------------------------------------------


def test_contract_example_parses_from_bytes_text_and_dict() -> None:
    from_dict = parse_plan(welcome())
    from_text = parse_plan(json.dumps(WELCOME))
    from_bytes = parse_plan(json.dumps(WELCOME).encode())

    assert from_dict == from_text == from_bytes
    assert from_dict.id == "welcome-email"
    assert from_dict.action("send").depends_on == ["fetch-user"]
    assert from_dict.action("fetch-user").retry == RetryPolicy(
        max_attempts=3, backoff_factor=2, min_backoff_ms=200, max_backoff_ms=10000
    )


def test_plan_object_round_trips_through_parse() -> None:
    plan = parse_plan(welcome())

    assert parse_plan(plan) == plan
    assert plan_problems(plan) == []


def test_utf8_bom_is_ignored() -> None:
    plan = parse_plan(b"\xef\xbb\xbf" + json.dumps(WELCOME).encode())

    assert plan.id == "welcome-email"


def test_typescript_camel_case_aliases_are_accepted() -> None:
    document = {
        "id": "ts",
        "actions": [
            {"id": "a", "type": "noop", "continueOnError": True, "timeoutMs": 2500},
            {
                "id": "b",
                "type": "noop",
                "dependsOn": ["a"],
                "runIf": "always",
                "retry": {
                    "maxAttempts": 5,
                    "minTimeoutInMs": 100,
                    "maxTimeoutInMs": 800,
                    "factor": 3,
                    "randomize": False,
                },
                "when": {"path": "actions.a.status", "notEquals": "completed"},
            },
        ],
        "queues": {"noop": {"concurrencyLimit": 4}},
    }

    plan = parse_plan(document)

    a, b = plan.actions
    assert a.continue_on_error is True
    assert a.timeout_s == 2.5
    assert b.depends_on == ["a"]
    assert b.run_if == "always"
    assert b.retry == RetryPolicy(
        max_attempts=5, min_backoff_ms=100, max_backoff_ms=800, backoff_factor=3, jitter=False
    )
    assert b.when == Condition(path="actions.a.status", not_equals="completed")
    assert plan.queues["noop"].concurrency_limit == 4


def test_aliases_do_not_rename_keys_inside_user_data() -> None:
    document = welcome()
    document["input"] = {"dependsOn": 1}
    document["actions"][1]["request"]["json"] = {"maxAttempts": "{{input.dependsOn}}"}

    plan = parse_plan(document)

    assert plan.input == {"dependsOn": 1}
    assert plan.action("send").request == RequestSpec(
        method="POST", url="http://127.0.0.1:8080/send", json={"maxAttempts": "{{input.dependsOn}}"}
    )


def test_url_that_is_a_template_is_accepted() -> None:
    document = welcome()
    document["actions"][0]["request"]["url"] = "{{input.base_url}}"
    document["actions"][1]["request"]["url"] = "{{input.base_url}}/send"

    assert parse_plan(document).action("fetch-user").request is not None


def test_templates_may_reference_transitive_upstream_actions() -> None:
    document = {
        "id": "chain",
        "actions": [
            noop("a"),
            noop("b", "a"),
            noop("c", "b", input={"from_a": "{{actions.a.output.value}}"}),
        ],
    }

    assert parse_plan(document).action("c").input == {"from_a": "{{actions.a.output.value}}"}


def test_non_http_action_needs_no_request() -> None:
    plan = parse_plan({"id": "p", "actions": [{"id": "resize", "type": "images"}]})

    assert plan.actions[0].request is None
    assert plan.actions[0].queue_name == "images"


# --- document level ---------------------------------------------------------------------------


def test_document_over_size_limit_names_the_setting() -> None:
    raw = json.dumps(WELCOME).encode()

    (problem,) = problems_of(raw, max_plan_bytes=len(raw) - 1)

    assert "TEP_MAX_PLAN_BYTES" in problem
    assert str(len(raw) - 1) in problem


def test_malformed_json_reports_line_and_column() -> None:
    (problem,) = problems_of('{\n  "id": "p",\n  "actions": [1,]\n}')

    assert problem.startswith("malformed JSON at line 3, column 17")
    assert "trailing comma" in problem


def test_truncated_json_is_reported() -> None:
    (problem,) = problems_of('{"id": "p", "actions": [')

    assert "malformed JSON" in problem
    assert "ends early" in problem


@pytest.mark.parametrize("document", ["", "   \n", b""])
def test_empty_document_is_reported(document: str | bytes) -> None:
    (problem,) = problems_of(document)

    assert "empty" in problem


def test_top_level_must_be_an_object() -> None:
    (problem,) = problems_of("[1, 2]")

    assert problem == "plan: expected a JSON object, got an array"


def test_unknown_fields_are_reported_with_a_suggestion() -> None:
    document = welcome()
    document["descripton"] = "typo"
    document["actions"][1]["dependson"] = ["fetch-user"]
    document["actions"][1]["request"]["verb"] = "POST"

    problems = problems_of(document)

    assert problems == [
        'plan: unknown field "descripton" (did you mean "description"?)',
        'actions[1] ("send"): unknown field "dependson" (did you mean "depends_on"?)',
        'actions[1] ("send"): request: unknown field "verb"',
    ]


def test_wrong_types_and_enum_values_name_index_id_and_field() -> None:
    document = welcome()
    document["actions"][1]["request"]["method"] = "FETCH"
    document["actions"][0]["request"]["headers"] = {"X-Count": 3}
    document["actions"][0]["retry"]["max_attempts"] = "3"

    problems = problems_of(document)

    assert problems == [
        'actions[0] ("fetch-user"): request.headers.X-Count: expected str, got int',
        'actions[0] ("fetch-user"): retry.max_attempts: expected int, got str',
        'actions[1] ("send"): request.method: expected one of '
        "GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS",
    ]


def test_missing_required_fields_are_reported() -> None:
    problems = problems_of({"actions": [{"type": "noop"}, {"id": "b", "request": {}}]})

    assert problems == [
        'plan: missing required field "id"',
        'actions[0]: missing required field "id"',
        'actions[1] ("b"): request: missing required field "url"',
    ]


def test_actions_of_the_wrong_type_are_one_problem() -> None:
    assert problems_of({"id": "p", "actions": {"a": {}}}) == [
        "plan: actions: expected array, got object"
    ]


def test_non_object_actions_are_named_by_position() -> None:
    assert problems_of({"id": "p", "actions": ["a", None]}) == [
        "actions[0]: expected object, got str",
        "actions[1]: expected object, got null",
    ]


def test_alias_and_canonical_name_together_are_a_conflict() -> None:
    document = welcome()
    document["actions"][1]["dependsOn"] = ["fetch-user"]

    problems = problems_of(document)

    assert problems == [
        'actions[1] ("send"): "depends_on" and "dependsOn" both set depends_on',
    ]


def test_millisecond_timeout_alias_must_be_a_number() -> None:
    problems = problems_of({"id": "p", "actions": [noop("a", timeoutMs="soon")]})

    assert problems == ['actions[0] ("a"): timeoutMs: expected a number of milliseconds']


def test_shape_problems_and_graph_problems_are_reported_together() -> None:
    document = {
        "id": "p",
        "actions": [
            noop("a", "b", timeout_s="x"),
            noop("b", "a"),
            noop("c", "ghost"),
        ],
    }

    problems = problems_of(document)

    assert problems == [
        'actions[0] ("a"): timeout_s: expected float | null, got str',
        'action "c": depends_on references unknown action "ghost"',
        "cycle: a -> b -> a",
    ]


# --- plan level -------------------------------------------------------------------------------


def test_plan_id_must_not_be_empty() -> None:
    assert problems_of({"id": " ", "actions": [noop("a")]}) == ["plan: id must not be empty"]


def test_plan_needs_an_action() -> None:
    assert problems_of({"id": "p", "actions": []}) == [
        "plan: actions: a plan needs at least one action"
    ]


def test_too_many_actions_names_the_setting() -> None:
    document = {"id": "p", "actions": [noop(f"a{n}") for n in range(4)]}

    (problem,) = problems_of(document, max_actions=3)

    assert problem == "plan: actions: 4 actions, above the limit of 3 (setting TEP_MAX_ACTIONS)"


def test_plan_timeout_must_be_positive() -> None:
    problems = problems_of({"id": "p", "timeout_s": 0, "actions": [noop("a")]})

    assert problems == ["plan: timeout_s must be a positive number of seconds (got 0.0)"]


def test_queue_names_and_limits_are_checked() -> None:
    document = {
        "id": "p",
        "actions": [noop("a")],
        "queues": {"bad.name": {}, "noop": {"concurrency_limit": 0}},
    }

    assert problems_of(document) == [
        'plan: queues: queue name "bad.name" must match [A-Za-z0-9_-]{1,64}',
        "plan: queues.noop.concurrency_limit must be at least 1",
    ]


# --- actions and the graph --------------------------------------------------------------------


@pytest.mark.parametrize("bad_id", ["", "has space", "dot.ted", "x" * 65, "ünïcode"])
def test_action_ids_must_be_subject_safe(bad_id: str) -> None:
    (problem,) = problems_of({"id": "p", "actions": [noop(bad_id)]})

    assert problem == f'actions[0]: id "{bad_id}" must match [A-Za-z0-9_-]{{1,64}}'


def test_duplicate_ids_name_both_positions() -> None:
    problems = problems_of({"id": "p", "actions": [noop("a"), noop("b"), noop("a")]})

    assert problems == ['actions[2]: duplicate action id "a" (first used by actions[0])']


def test_unknown_dependency_is_named() -> None:
    document = welcome()
    document["actions"][1]["depends_on"] = ["fetch-user", "nope"]

    assert problems_of(document) == ['action "send": depends_on references unknown action "nope"']


def test_self_dependency_is_named_and_not_reported_as_a_cycle() -> None:
    problems = problems_of({"id": "p", "actions": [noop("a", "a")]})

    assert problems == ['action "a": depends_on lists the action itself']


def test_cycle_is_reported_with_its_path() -> None:
    document = {
        "id": "p",
        "actions": [noop("start"), noop("a", "start", "c"), noop("b", "a"), noop("c", "b")],
    }

    assert problems_of(document) == ["cycle: a -> c -> b -> a"]


def test_every_independent_cycle_is_reported() -> None:
    document = {
        "id": "p",
        "actions": [noop("a", "b"), noop("b", "a"), noop("x", "y"), noop("y", "x")],
    }

    assert problems_of(document) == ["cycle: a -> b -> a", "cycle: x -> y -> x"]


@pytest.mark.parametrize("field", ["type", "queue"])
def test_type_and_queue_must_be_subject_tokens(field: str) -> None:
    action = noop("a")
    action[field] = "emails.eu"

    assert problems_of({"id": "p", "actions": [action]}) == [
        f'action "a": {field}: "emails.eu" must match [A-Za-z0-9_-]{{1,64}}'
    ]


def test_http_action_needs_a_request() -> None:
    problems = problems_of({"id": "p", "actions": [{"id": "call"}]})

    assert problems == ['action "call": request: an action of type "http" needs a request']


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ftp://example.com/x", "must be an absolute http:// or https:// URL"),
        ("/relative/path", "must be an absolute http:// or https:// URL"),
        ("example.com/x", "must be an absolute http:// or https:// URL"),
        ("http:///no-host", "has no host"),
        ("http://example.com:99999/", "is not a valid URL"),
        ("http://example.com/a b", "contains whitespace"),
        ("mailto:{{input.to}}", "must be an absolute http:// or https:// URL"),
    ],
)
def test_bad_urls_are_rejected(url: str, expected: str) -> None:
    document = welcome()
    document["actions"][1]["request"]["url"] = url

    (problem,) = problems_of(document)

    assert problem.startswith(f'action "send": request.url: "{url}"')
    assert expected in problem


def test_url_with_template_in_host_or_path_is_checked_around_the_template() -> None:
    document = welcome()
    document["actions"][1]["request"]["url"] = (
        "https://{{input.region}}.api.example.com/{{input.p}}"
    )

    assert parse_plan(document).action("send").request is not None


def test_timeouts_must_be_positive() -> None:
    document = welcome()
    document["actions"][0]["timeout_s"] = -1
    document["actions"][0]["request"]["timeout_s"] = 0

    assert problems_of(document) == [
        'action "fetch-user": timeout_s must be a positive number of seconds (got -1.0)',
        'action "fetch-user": request.timeout_s must be a positive number of seconds (got 0.0)',
    ]


def test_retry_policy_sanity() -> None:
    document = welcome()
    document["actions"][0]["retry"] = {
        "max_attempts": 0,
        "backoff_factor": 0.5,
        "min_backoff_ms": -1,
        "max_backoff_ms": -5,
    }

    assert problems_of(document) == [
        'action "fetch-user": retry.max_attempts must be at least 1 (got 0)',
        'action "fetch-user": retry.backoff_factor must be at least 1 (1 = constant delay; '
        "got 0.5)",
        'action "fetch-user": retry.min_backoff_ms must not be negative (got -1)',
        'action "fetch-user": retry.max_backoff_ms must not be negative (got -5)',
        'action "fetch-user": retry.min_backoff_ms (-1) is above retry.max_backoff_ms (-5)',
    ]


def test_min_backoff_above_max_is_rejected() -> None:
    document = welcome()
    document["actions"][0]["retry"] = {"minTimeoutInMs": 5000, "maxTimeoutInMs": 1000}

    assert problems_of(document) == [
        'action "fetch-user": retry.min_backoff_ms (5000) is above retry.max_backoff_ms (1000)'
    ]


# --- templates --------------------------------------------------------------------------------


def test_malformed_template_names_action_and_field() -> None:
    document = welcome()
    document["actions"][1]["request"]["json"] = {"to": "{{actions.fetch-user.output.email"}

    (problem,) = problems_of(document)

    assert problem.startswith('action "send": request.json: unclosed template')


def test_template_with_unknown_root_is_rejected() -> None:
    document = welcome()
    document["actions"][1]["request"]["headers"] = {"X": "{{vars.HOME}}"}

    (problem,) = problems_of(document)

    assert problem.startswith('action "send": request.headers: {{vars.HOME}}: unknown namespace')


def test_template_referencing_unknown_action() -> None:
    document = welcome()
    document["actions"][1]["request"]["json"] = {"to": "{{actions.ghost.output.email}}"}

    assert problems_of(document) == [
        'action "send": request.json: template {{actions.ghost.output.email}} '
        'references unknown action "ghost"'
    ]


def test_template_referencing_an_action_that_is_not_upstream() -> None:
    document = {
        "id": "p",
        "actions": [noop("a"), noop("b", input="{{actions.a.output.x}}")],
    }

    assert problems_of(document) == [
        'action "b": input: template {{actions.a.output.x}} references action "a", '
        'which is not upstream of "b" (add it to depends_on)'
    ]


def test_template_referencing_a_downstream_action() -> None:
    document = {
        "id": "p",
        "actions": [noop("a", input="{{actions.b.status}}"), noop("b", "a")],
    }

    (problem,) = problems_of(document)

    assert 'action "a": input: template {{actions.b.status}} references action "b"' in problem


def test_template_referencing_its_own_action() -> None:
    document = {"id": "p", "actions": [noop("a", input="{{actions.a.output}}")]}

    (problem,) = problems_of(document)

    assert problem.startswith('action "a": input: template {{actions.a.output}} references')
    assert "itself" in problem


# --- conditions -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("when", "found"),
    [
        ({"path": "input.tier"}, "none"),
        ({"path": "input.tier", "equals": 1, "in": [1, 2]}, "equals, in"),
    ],
)
def test_condition_needs_exactly_one_operator(when: dict[str, Any], found: str) -> None:
    document = {"id": "p", "input": {"tier": 1}, "actions": [noop("a", when=when)]}

    assert problems_of(document) == [
        'action "a": when: needs exactly one operator of equals, not_equals, in, exists, '
        f"truthy (found {found})"
    ]


def test_condition_equals_null_counts_as_an_operator() -> None:
    document = {"id": "p", "actions": [noop("a", when={"path": "input.x", "equals": None})]}

    assert parse_plan(document).actions[0].when == Condition(path="input.x", equals=None)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("secrets.TOKEN", '"secrets.TOKEN" must start with "input." or "actions.<upstream id>."'),
        ("output.x", '"output.x" must start with "input." or "actions.<upstream id>."'),
        ("input", '"input" must name a value under input.'),
        ("actions.up", '"actions.up" must look like actions.<id>.output.<path>'),
        ("actions.up.result", '"actions.up.result" must look like actions.<id>.output.<path>'),
        ("input..x", "empty segment"),
        ("actions.ghost.status", 'references unknown action "ghost"'),
        ("actions.other.status", 'references action "other", which is not upstream of "a"'),
    ],
)
def test_condition_paths_are_checked(path: str, expected: str) -> None:
    document = {
        "id": "p",
        "actions": [
            noop("up"),
            noop("other"),
            noop("a", "up", when={"path": path, "truthy": True}),
        ],
    }

    (problem,) = problems_of(document)

    assert problem.startswith('action "a": when.path: ')
    assert expected in problem


def test_condition_on_upstream_status_is_accepted() -> None:
    document = {
        "id": "p",
        "actions": [noop("up"), noop("a", "up", when={"path": "actions.up.status", "in": ["x"]})],
    }

    assert parse_plan(document).action("a").when == Condition(path="actions.up.status", in_=["x"])


# --- problems are complete and stable ---------------------------------------------------------


def test_every_problem_is_listed_in_a_deterministic_order() -> None:
    document = {
        "id": "",
        "actions": [
            noop("a", "nope", timeout_s=0),
            noop("b", "c"),
            noop("c", "b"),
            noop("a"),
            {"id": "d", "request": {"url": "ftp://x"}},
        ],
    }

    first = problems_of(document)
    second = problems_of(json.dumps(document))

    assert first == second
    assert first == [
        "plan: id must not be empty",
        'action "a": depends_on references unknown action "nope"',
        'action "a": timeout_s must be a positive number of seconds (got 0.0)',
        'actions[3]: duplicate action id "a" (first used by actions[0])',
        'action "d": request.url: "ftp://x" must be an absolute http:// or https:// URL',
        "cycle: b -> c -> b",
    ]


def test_plan_problems_checks_plans_built_in_code() -> None:
    plan = Plan(
        id="p",
        actions=[
            Action(id="a", request=RequestSpec(url="http://x/{{actions.b.output.y}}")),
            Action(id="b", type="noop"),
        ],
    )

    assert plan_problems(plan) == [
        'action "a": request.url: template {{actions.b.output.y}} references action "b", '
        'which is not upstream of "a" (add it to depends_on)'
    ]
    with pytest.raises(PlanValidationError):
        parse_plan(plan)


def test_parsed_plan_encodes_back_to_a_valid_document() -> None:
    plan = parse_plan(welcome())

    assert parse_plan(msgspec.json.encode(plan)) == plan


def test_msgspec_error_paths_are_translated_to_the_action() -> None:
    from eventstore.plan_validation.shape import (
        translate_msgspec_error as _translate_msgspec_error,
    )

    document = {"id": "p", "actions": [{"id": "a"}, {"id": "x", "request": {"url": 1}}]}

    problem = _translate_msgspec_error(
        "Expected `str`, got `int` - at `$.actions[1].request.url`", document
    )

    assert problem == 'actions[1] ("x"): request.url: expected str, got int'
