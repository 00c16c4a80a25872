"""Parsing cron expressions into :class:`eventstore.cron.Cron` schedules. Pure.

Accepted forms (parsed by :func:`parse_cron`):

- five fields ``minute hour day-of-month month day-of-week``, as in crontab(5);
- six fields with seconds first, ``second minute hour day-of-month month day-of-week``, as
  nats-server and Quartz read them;
- ``@yearly`` (``@annually``), ``@monthly``, ``@weekly``, ``@daily`` (``@midnight``),
  ``@hourly``;
- ``@every <duration>``: a fixed period of whole seconds (``30s``, ``5m``, ``1h30m``, ``2d``),
  aligned to the Unix epoch in UTC (``@every 1h`` fires at the top of every UTC hour); the
  time zone plays no part.

A field is ``*``, a value, a range ``a-b``, a step ``*/n``, ``a-b/n`` or ``a/n`` (from ``a`` to
the field's end), or a comma-separated list of those. Months and weekdays take names
(``JAN``-``DEC``, ``SUN``-``SAT``, any case); weekday 0 and 7 are both Sunday; ``?`` means ``*``
in the day fields. When both day fields are restricted (neither starts with ``*``), a day
matches if either does (the classic cron rule); otherwise both must.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from eventstore.cron import Cron, CronError

__all__ = ["parse_cron"]

_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_WEEKDAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_DURATION = re.compile(r"(\d+)([dhms])")
_UNIT_S = {"d": 86_400, "h": 3_600, "m": 60, "s": 1}


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    name_base: int = 0


_SECOND_FIELD = _Field("second", 0, 59)
_MINUTE_FIELD = _Field("minute", 0, 59)
_HOUR_FIELD = _Field("hour", 0, 23)
_DOM_FIELD = _Field("day-of-month", 1, 31)
_MONTH_FIELD = _Field("month", 1, 12, _MONTHS, 1)
_DOW_FIELD = _Field("day-of-week", 0, 7, _WEEKDAYS, 0)


def parse_cron(expression: str) -> Cron:
    """Parse a cron expression (see the module docstring for the forms).

    Raises:
        CronError: the expression is malformed; one line naming the field and the problem.

    Example:
        >>> parse_cron("*/15 9-17 * * MON-FRI").minutes
        (0, 15, 30, 45)
    """
    text = " ".join(expression.split())
    if text.lower().startswith("@every"):
        return Cron(expression=text, every=_every_seconds(text, text[len("@every") :].strip()))
    if text.startswith("@"):
        expanded = _MACROS.get(text.lower())
        if expanded is None:
            raise CronError(
                f'cron expression "{text}": unknown macro; expected one of '
                + ", ".join(_MACROS)
                + " or @every <duration>"
            )
        return _parse_fields(text, expanded.split())
    return _parse_fields(text, text.split())


def _every_seconds(text: str, duration: str) -> int:
    if not duration:
        raise CronError(f'cron expression "{text}": @every needs a duration, e.g. @every 5m')
    parts = _DURATION.findall(duration.lower())
    if "".join(f"{n}{u}" for n, u in parts) != duration.lower():
        raise CronError(
            f'cron expression "{text}": @every duration "{duration}": expected whole '
            "numbers with units d, h, m, s, e.g. 30s, 5m, 1h30m"
        )
    seconds = sum(int(n) * _UNIT_S[u] for n, u in parts)
    if seconds < 1:
        raise CronError(f'cron expression "{text}": @every duration must be at least 1s')
    return seconds


def _parse_fields(text: str, fields: list[str]) -> Cron:
    if len(fields) == 5:
        fields = ["0", *fields]
    elif len(fields) != 6:
        raise CronError(
            f'cron expression "{text}": expected 5 fields (minute hour day-of-month month '
            f"day-of-week) or 6 (with seconds first), got {len(fields)}"
        )
    second, minute, hour, dom, month, dow = fields
    cron = Cron(
        expression=text,
        seconds=_sorted(_values(text, _SECOND_FIELD, second)),
        minutes=_sorted(_values(text, _MINUTE_FIELD, minute)),
        hours=_sorted(_values(text, _HOUR_FIELD, hour)),
        days=_sorted(_values(text, _DOM_FIELD, dom)),
        months=_sorted(_values(text, _MONTH_FIELD, month)),
        weekdays=_sorted({v % 7 for v in _values(text, _DOW_FIELD, dow)}),
        days_restricted=not dom.startswith(("*", "?")),
        weekdays_restricted=not dow.startswith(("*", "?")),
    )
    _check_reachable(text, cron)
    return cron


def _sorted(values: set[int]) -> tuple[int, ...]:
    return tuple(sorted(values))


def _check_reachable(text: str, cron: Cron) -> None:
    if cron.weekdays_restricted and cron.days_restricted:
        return  # either day field matching is enough, and weekdays occur every month
    longest = max(_DAYS_IN_MONTH[m - 1] for m in cron.months)
    if min(cron.days) > longest:
        names = ", ".join(_MONTHS[m - 1] for m in cron.months)
        raise CronError(
            f'cron expression "{text}": day-of-month field: day {min(cron.days)} never '
            f"occurs in {names}"
        )


def _values(text: str, field: _Field, spec: str) -> set[int]:
    def problem(message: str) -> CronError:
        return CronError(f'cron expression "{text}": {field.name} field "{spec}": {message}')

    if spec == "?" and field in (_DOM_FIELD, _DOW_FIELD):
        spec = "*"
    values: set[int] = set()
    for item in spec.split(","):
        if not item:
            raise problem("empty list item")
        base, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) < 1:
                raise problem(f'step "{step_text}" must be a whole number of at least 1')
            step = int(step_text)
        if base == "*":
            low, high = field.low, field.high
        else:
            first, dash, last = base.partition("-")
            low = _value(first, field, problem)
            high = _value(last, field, problem) if dash else (field.high if slash else low)
            if low > high:
                raise problem(f"range {low}-{high} runs backwards")
        values.update(range(low, high + 1, step))
    return values


def _value(token: str, field: _Field, problem: Callable[[str], CronError]) -> int:
    upper = token.upper()
    if upper in field.names:
        return field.names.index(upper) + field.name_base
    if not token.isdigit():
        expected = f"a number {field.low}-{field.high}"
        if field.names:
            expected += f" or a name {field.names[0]}-{field.names[-1]}"
        raise problem(f'"{token}" is not {expected}')
    value = int(token)
    if not field.low <= value <= field.high:
        raise problem(f"{value} is out of range {field.low}-{field.high}")
    return value
