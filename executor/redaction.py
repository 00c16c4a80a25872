"""Finding secret values in text, in every spelling they take on the way. Pure.

A value handed to a target comes back, if it comes back, in whatever form the path gave it: raw,
percent-encoded by a URL library (often partly: ``S3cr3t-Zq9+/&"x`` becomes ``S3cr3t-Zq9+/&%22x``),
``+`` for a space, JSON-escaped (``\\"``, ``\\\\``, ``\\u00e4``), escaped twice over, or as a
Python ``repr``. One regular expression per secret lets each character appear in any of its
spellings (hex digits in either case), so every mixture is found. A text cut to a length
(ending in ``...``) right after the start of a secret has that start removed too.

Example:
    >>> redactor = Redactor(['S3cr3t-Zq9+/&"x'])
    >>> redactor.scrub_text("GET http://h/S3cr3t-Zq9+/&%22x failed")
    'GET http://h/[redacted] failed'
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

__all__ = ["PARTIAL_MIN_CHARS", "REDACTED", "Redactor", "spelling_pattern"]

REDACTED = "[redacted]"

PARTIAL_MIN_CHARS = 4
"""The shortest start of a secret removed from the end of a cut text."""

# %XX, or %25XX, %2525XX ... for each further round of URL encoding.
_PERCENT = "%(?:25)*"
# One or more backslashes: an escape, or an escape escaped again (JSON inside JSON).
_ESCAPE = r"\\+"
_SHORT_ESCAPES = {
    '"': '"',
    "\\": "\\",
    "/": "/",
    "'": "'",
    "\b": "b",
    "\f": "f",
    "\n": "n",
    "\r": "r",
    "\t": "t",
}
# Where a text was cut (as error messages quoting a response body are).
_CUT_MARK = re.compile(r"(?:\.\.\.|\u2026)\Z")
# A spelling cut in the middle (``%2``, ``\u00``) after the start of a secret.
_CUT_ESCAPE = re.compile(r"[%\\][%\\0-9a-fA-FuUx]{0,11}")
# The widest spelling of one character is about 40 characters (four bytes, each %2525XX).
_WIDEST_SPELLING = 40


def _hex(value: int, width: int) -> str:
    """``value`` in hexadecimal, each letter matching either case."""
    return "".join(
        f"[{digit}{digit.upper()}]" if digit.isalpha() else digit for digit in f"{value:0{width}x}"
    )


def _char_spellings(char: str) -> list[str]:
    """Regular expressions, one per way ``char`` may be written."""
    code = ord(char)
    utf8 = char.encode("utf-8", "surrogatepass")
    spellings = [
        "".join(_PERCENT + _hex(byte, 2) for byte in utf8),
        "".join(_ESCAPE + "x" + _hex(byte, 2) for byte in utf8),
    ]
    if code < 0x10000:
        spellings.append(_ESCAPE + "u" + _hex(code, 4))
    else:
        high = 0xD800 + ((code - 0x10000) >> 10)
        low = 0xDC00 + ((code - 0x10000) & 0x3FF)
        spellings.append(_ESCAPE + "u" + _hex(high, 4) + _ESCAPE + "u" + _hex(low, 4))
        spellings.append(_ESCAPE + "U" + _hex(code, 8))
    if code < 0x100:
        spellings.append(_ESCAPE + "x" + _hex(code, 2))
    if char in _SHORT_ESCAPES:
        spellings.append(_ESCAPE + re.escape(_SHORT_ESCAPES[char]))
    if char == " ":
        spellings.append(r"\+")
    elif char == "+":
        # A query decoder reads an unencoded + as a space.
        spellings.append(" ")
    spellings.append(r"\s" if char.isspace() else re.escape(char))
    return list(dict.fromkeys(spellings))


@lru_cache(maxsize=256)
def _units(secret: str) -> tuple[str, ...]:
    return tuple(f"(?:{'|'.join(_char_spellings(char))})" for char in secret)


def spelling_pattern(secret: str) -> str:
    """A regular expression matching ``secret`` in any mixture of its spellings.

    Example:
        >>> re.fullmatch(spelling_pattern('a "b'), 'a+%22b') is not None
        True
    """
    return "".join(_units(secret))


class _Tail:
    """Finds a cut-off start of one secret at the end of a text."""

    def __init__(self, secret: str) -> None:
        units = _units(secret)
        self.units = tuple(re.compile(unit) for unit in units)
        # Overlapping candidates: a lookahead for the first characters.
        self.starts = re.compile(f"(?=(?:{''.join(units[:PARTIAL_MIN_CHARS])}))")
        self.window = len(secret) * _WIDEST_SPELLING

    def start_before(self, text: str, end: int) -> int | None:
        """Where a start of the secret (at least :data:`PARTIAL_MIN_CHARS` characters, not
        all of it, maybe ending in half a spelling) that runs up to ``end`` begins, or
        ``None``."""
        for candidate in self.starts.finditer(text, max(0, end - self.window), end):
            position, matched = candidate.start(), 0
            while position < end and matched < len(self.units):
                hit = self.units[matched].match(text, position, end)
                if hit is None:
                    break
                position, matched = hit.end(), matched + 1
            cut = position == end or _CUT_ESCAPE.fullmatch(text, position, end) is not None
            if cut and PARTIAL_MIN_CHARS <= matched < len(self.units):
                return candidate.start()
        return None


class Redactor:
    """Replaces the given secrets, in every spelling, with :data:`REDACTED`.

    Build one per set of secrets (compiling is the costly part); scrubbing is one pass of one
    regular expression per text, plus a look at the text's end.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        # Longest first, so a secret containing another is replaced whole.
        ordered = sorted({s for s in secrets if s}, key=len, reverse=True)
        self._pattern = (
            re.compile("|".join(spelling_pattern(s) for s in ordered)) if ordered else None
        )
        self._tails = [_Tail(s) for s in ordered if len(s) > PARTIAL_MIN_CHARS]
        # Every spelling of a character starts with it, "%" or "\\" (space and + aside): a
        # text holding none of these for any first character holds no secret.
        firsts = {s[0] for s in ordered}
        plain = not any(first.isspace() or first == "+" for first in firsts)
        self._markers = frozenset(firsts | {"%", "\\"}) if plain else None

    def scrub_text(self, text: str) -> str:
        """``text`` with every spelling of every secret replaced."""
        if self._pattern is None:
            return text
        if self._markers is not None and not any(marker in text for marker in self._markers):
            return text
        text = self._pattern.sub(REDACTED, text)
        cut = _CUT_MARK.search(text)
        if cut is None:
            # Only a text that says it was cut is searched for a cut-off secret: the start of
            # a secret is often an ordinary word ("path", "sk_live_").
            return text
        for tail in self._tails:
            start = tail.start_before(text, cut.start())
            if start is not None:
                return text[:start] + REDACTED + text[cut.start() :]
        return text

    def scrub(self, value: Any) -> Any:
        """A JSON value with the secrets replaced in every string and key."""
        if isinstance(value, str):
            return self.scrub_text(value)
        if isinstance(value, dict):
            return {self.scrub_text(str(k)): self.scrub(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.scrub(item) for item in value]
        return value
