"""Redaction holds in every spelling a secret takes on the way, and mangles nothing else."""

from __future__ import annotations

import json
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import given
from hypothesis import strategies as st
from yarl import URL

from executor.redaction import REDACTED, Redactor

SECRET = 'S3cr3t-Zq9+/&"x ä'


def _lower_hex(text: str) -> str:
    """Percent escapes with lower-case hex digits."""
    head, *escapes = text.split("%")
    return head + "".join(f"%{e[:2].lower()}{e[2:]}" for e in escapes)


SPELLINGS = {
    "raw": SECRET,
    "quote": quote(SECRET),
    "quote safe=''": quote(SECRET, safe=""),
    "quote_plus": quote_plus(SECRET),
    "lower-case hex": _lower_hex(quote(SECRET, safe="")),
    "encoded twice": quote(quote(SECRET, safe=""), safe=""),
    "json": json.dumps(SECRET, ensure_ascii=False)[1:-1],
    "json ascii": json.dumps(SECRET)[1:-1],
    "json in json": json.dumps(json.dumps(SECRET))[3:-3],
    "yarl url path": URL("http://h/" + SECRET).raw_path.removeprefix("/"),
    "yarl url query": URL("http://h/").with_query(t=SECRET).raw_query_string[2:],
    "python repr": repr(SECRET)[1:-1],
    "bytes repr": repr(SECRET.encode())[2:-1],
    "mixed": 'S3cr3t-Zq9%2b/&\\"x+%C3%A4',
    "plus read as a space": 'S3cr3t-Zq9 /&"x ä',
}


@pytest.mark.parametrize("spelling", SPELLINGS.values(), ids=SPELLINGS.keys())
def test_every_spelling_is_redacted(spelling: str) -> None:
    redactor = Redactor([SECRET])

    assert redactor.scrub_text(f"before {spelling} after") == f"before {REDACTED} after"


def test_the_partly_encoded_url_form_from_the_issue_is_redacted() -> None:
    # yarl stored S3cr3t-Zq9+/&"x as S3cr3t-Zq9+/&%22x.
    redactor = Redactor(['S3cr3t-Zq9+/&"x'])

    assert str(URL('http://h/S3cr3t-Zq9+/&"x')) == "http://h/S3cr3t-Zq9+/&%22x"
    assert redactor.scrub_text("GET http://h/S3cr3t-Zq9+/&%22x returned HTTP 500") == (
        f"GET http://h/{REDACTED} returned HTTP 500"
    )


def test_characters_outside_the_basic_plane_in_json_escapes() -> None:
    secret = "emoji-\U0001f600-key"
    redactor = Redactor([secret])

    assert redactor.scrub_text(json.dumps(secret)) == f'"{REDACTED}"'
    assert redactor.scrub_text(quote(secret)) == REDACTED


def test_text_without_the_secret_is_left_alone() -> None:
    redactor = Redactor([SECRET])
    text = 'method GET S3cr3t-Zq9 and S3cr3t-Zq9+/&"y, %22 \\u00e4 + plus'

    assert redactor.scrub_text(text) == text


def test_a_secret_containing_another_is_replaced_whole() -> None:
    redactor = Redactor(["token-abcdefgh", "token-abcdefgh-suffix"])

    assert redactor.scrub_text("x token-abcdefgh-suffix y token-abcdefgh") == (
        f"x {REDACTED} y {REDACTED}"
    )


def test_the_cut_off_start_of_a_secret_at_the_end_of_a_cut_text_is_redacted() -> None:
    redactor = Redactor([SECRET])

    cut = 'POST http://h/ returned HTTP 500: {"path": "/S3cr3t-Zq9+/&%22'
    assert redactor.scrub_text(cut + "...") == cut[: cut.index("S3cr")] + REDACTED + "..."
    assert redactor.scrub_text("token S3cr3t\u2026") == f"token {REDACTED}\u2026"
    assert redactor.scrub_text("cut in an escape S3cr3t-Zq9+/&%2...") == (
        f"cut in an escape {REDACTED}..."
    )
    # Three characters are too few to tell; a text not cut, or a start in the middle of a
    # text, is no secret: the start of a secret is often an ordinary word.
    assert redactor.scrub_text("ends with S3c...") == "ends with S3c..."
    assert redactor.scrub_text("token S3cr3t") == "token S3cr3t"
    assert redactor.scrub_text("S3cr3t-Zq and more...") == "S3cr3t-Zq and more..."
    assert Redactor(["path-Zq9Xw7+/&x"]).scrub_text("in-path") == "in-path"


def test_scrub_walks_keys_lists_and_nested_values() -> None:
    redactor = Redactor([SECRET])

    scrubbed = redactor.scrub({SECRET: [quote(SECRET), {"n": 1, "s": f"x{SECRET}"}]})

    assert scrubbed == {REDACTED: [REDACTED, {"n": 1, "s": f"x{REDACTED}"}]}


def test_no_secrets_change_nothing() -> None:
    assert Redactor([]).scrub_text(SECRET) == SECRET


_SPELL_ONE = (
    lambda c: c,
    lambda c: quote(c, safe=""),
    lambda c: _lower_hex(quote(c, safe="")),
    lambda c: json.dumps(c)[1:-1],
    lambda c: json.dumps(c, ensure_ascii=False)[1:-1],
)


@given(
    secret=st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), max_codepoint=0x2FFF),
        min_size=8,
        max_size=24,
    ),
    choices=st.lists(st.integers(0, len(_SPELL_ONE) - 1), min_size=24, max_size=24),
    prefix=st.text(alphabet="abc -", max_size=5),
)
def test_any_mixture_of_spellings_per_character_is_redacted(
    secret: str, choices: list[int], prefix: str
) -> None:
    spelled = "".join(_SPELL_ONE[k](c) for k, c in zip(choices, secret, strict=False))

    scrubbed = Redactor([secret]).scrub_text(f"{prefix}<{spelled}>")

    assert scrubbed == f"{prefix}<{REDACTED}>"
