"""Text formatting for the terminal: durations, offsets, tables, progress bars. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from eventstore.events import ErrorInfo

__all__ = [
    "error_text",
    "format_duration",
    "format_offset",
    "format_table",
    "parse_timestamp",
    "progress_bar",
]


def parse_timestamp(timestamp: str | None) -> datetime | None:
    """An ISO 8601 timestamp as a datetime; ``None`` when missing or malformed."""
    if not timestamp:
        return None
    try:
        return datetime.fromisoformat(timestamp)
    except ValueError:
        return None


def format_duration(seconds: float | None) -> str:
    """``0.123`` -> ``123ms``, ``4.5`` -> ``4.50s``, ``75`` -> ``1m15s``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.2f}s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{rest:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def format_offset(seconds: float) -> str:
    """A time relative to the first event: ``+0.000s``, ``+12.345s``, ``+2m03.4s``."""
    if seconds < 60:
        return f"+{seconds:.3f}s"
    minutes, rest = divmod(seconds, 60)
    return f"+{int(minutes)}m{rest:04.1f}s"


def format_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """Left-aligned columns separated by two spaces; trailing blanks removed."""
    materialized = [list(headers), *[list(row) for row in rows]]
    widths = [max(len(row[i]) for row in materialized) for i in range(len(headers))]
    lines = []
    for row in materialized:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        lines.append("  ".join(cells).rstrip())
    return lines


def progress_bar(done: int, total: int, width: int = 30) -> str:
    """``[##########..........]  10/20  50%``."""
    fraction = done / total if total else 1.0
    filled = round(fraction * width)
    bar = "#" * filled + "." * (width - filled)
    return f"[{bar}] {done:>{len(str(total))}}/{total} {fraction:4.0%}"


def error_text(error: ErrorInfo | None) -> str:
    """``code HTTP status: message``; empty without an error."""
    if error is None:
        return ""
    status = f" HTTP {error.status_code}" if error.status_code is not None else ""
    return f"{error.code}{status}: {error.message}"
