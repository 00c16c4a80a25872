"""Reading values stored by reference from pure code: a cache, and "fetch this and try again".

Pure code (``decide``, templates, conditions) cannot wait for the payload bucket. Where a value
stored by reference must be looked into (``{{actions.fetch.output.user.email}}`` when
``fetch``'s output is a marker), :func:`expand` takes it from the :class:`PayloadReader` made
current with :func:`reading_payloads`, or raises :class:`PayloadNeeded` naming what to fetch.
The caller (the orchestrator's processor, the StateManager) fetches those payloads, adds them
to the reader and runs the pure code again (``eventstore.jetstream.payloads.run_with_payloads``).

The result is as deterministic as the pure code itself: a reference names its content by
digest, so whatever the cache holds, a run either sees the one value a reference stands for or
raises :class:`PayloadNeeded`. A payload that cannot be had at all (expired, corrupt) makes
:func:`expand` raise :class:`PayloadUnavailableError`, which templates and conditions report
as their own errors (the action then fails, saying why).

Without a current reader every marker that must be looked into raises :class:`PayloadNeeded`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from eventstore.errors import TepError
from eventstore.payloads import PayloadRef, find_refs, payload_ref, replace_refs

__all__ = [
    "DEFAULT_CACHE_BYTES",
    "PayloadCache",
    "PayloadNeeded",
    "PayloadReader",
    "PayloadUnavailableError",
    "expand",
    "expand_all",
    "reading_payloads",
]

DEFAULT_CACHE_BYTES = 64 * 1024 * 1024
"""How many stored bytes of payloads a :class:`PayloadCache` keeps by default."""


class PayloadNeeded(TepError):
    """Values stored by reference are needed and not at hand: fetch ``refs``, then run again.

    Attributes:
        refs: the references to fetch (at least one).
    """

    def __init__(self, refs: list[PayloadRef]) -> None:
        self.refs = tuple(refs)
        super().__init__("payloads needed: " + ", ".join(ref.digest for ref in self.refs))


class PayloadUnavailableError(TepError, ValueError):
    """A value stored by reference cannot be read (the message says why)."""


class PayloadCache:
    """Recently used payload values, least recently used dropped first.

    The cost of an entry is its stored size (``ref.size``): a rough but stable measure of
    the memory its value takes. A value larger than the whole budget is not kept.

    Args:
        max_bytes: the budget, in stored bytes.
    """

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._values: OrderedDict[str, tuple[int, Any]] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._values)

    @property
    def size(self) -> int:
        """Stored bytes of the values kept."""
        return self._bytes

    def get(self, ref: PayloadRef) -> tuple[bool, Any]:
        """``(True, value)`` if the value is kept (now the most recently used), else
        ``(False, None)``."""
        entry = self._values.get(ref.digest)
        if entry is None:
            return False, None
        self._values.move_to_end(ref.digest)
        return True, entry[1]

    def put(self, ref: PayloadRef, value: Any) -> None:
        """Keep ``value`` for ``ref``, dropping the least recently used beyond the budget."""
        if ref.size > self.max_bytes:
            return
        old = self._values.pop(ref.digest, None)
        if old is not None:
            self._bytes -= old[0]
        self._values[ref.digest] = (ref.size, value)
        self._bytes += ref.size
        while self._bytes > self.max_bytes:
            _, (size, _) = self._values.popitem(last=False)
            self._bytes -= size


class PayloadReader:
    """What one run of pure code may read: the values fetched for it, then a shared cache.

    Values fetched for this run are held until it ends (so a cache too small for all of
    them cannot make a run ask for the same payload forever); failures are remembered as
    the reason to report.

    Args:
        cache: values kept across runs (``None``: none).
    """

    def __init__(self, cache: PayloadCache | None = None) -> None:
        self.cache = cache
        self._held: dict[str, Any] = {}
        self._failed: dict[str, str] = {}

    def add(self, ref: PayloadRef, value: Any) -> None:
        """The value fetched for ``ref``."""
        self._held[ref.digest] = value
        if self.cache is not None:
            self.cache.put(ref, value)

    def fail(self, ref: PayloadRef, reason: str) -> None:
        """``ref`` cannot be read, because of ``reason``."""
        self._failed[ref.digest] = reason

    def lookup(self, ref: PayloadRef) -> tuple[bool, Any]:
        """``(True, value)`` when the value is at hand, else ``(False, None)``.

        Raises:
            PayloadUnavailableError: the payload was found to be unreadable.
        """
        if ref.digest in self._held:
            return True, self._held[ref.digest]
        if ref.digest in self._failed:
            raise PayloadUnavailableError(self._failed[ref.digest])
        if self.cache is not None:
            found, value = self.cache.get(ref)
            if found:
                self._held[ref.digest] = value
                return True, value
        return False, None


_current: ContextVar[PayloadReader | None] = ContextVar("tep_payload_reader", default=None)


@contextmanager
def reading_payloads(reader: PayloadReader) -> Iterator[PayloadReader]:
    """Make ``reader`` the one :func:`expand` reads from, within the block."""
    token = _current.set(reader)
    try:
        yield reader
    finally:
        _current.reset(token)


def _lookup(ref: PayloadRef) -> tuple[bool, Any]:
    reader = _current.get()
    return (False, None) if reader is None else reader.lookup(ref)


def expand(value: Any) -> Any:
    """The value a marker stands for; any other value as it is.

    Only ``value`` itself is replaced, not markers inside it (see :func:`expand_all`).

    Raises:
        PayloadNeeded: the value is not at hand.
        PayloadUnavailableError: it cannot be read.
    """
    ref = payload_ref(value)
    if ref is None:
        return value
    found, resolved = _lookup(ref)
    if not found:
        raise PayloadNeeded([ref])
    return resolved


def expand_all(value: Any) -> Any:
    """``value`` with every marker in it replaced by what it stands for, also inside those.

    Raises:
        PayloadNeeded: values are not at hand (all of them named at once).
        PayloadUnavailableError: one cannot be read.
    """
    values: dict[str, Any] = {}
    pending = find_refs(value)
    while pending:
        missing: list[PayloadRef] = []
        found_now: list[Any] = []
        for ref in pending:
            found, resolved = _lookup(ref)
            if not found:
                missing.append(ref)
            elif ref.digest not in values:
                values[ref.digest] = resolved
                found_now.append(resolved)
        if missing:
            raise PayloadNeeded(missing)
        # A stored value may itself hold markers (a for-each's items): resolve those too.
        pending = [ref for ref in find_refs(found_now) if ref.digest not in values]
    if not values:
        return value
    return _replace_deep(value, values)


def _replace_deep(value: Any, values: dict[str, Any]) -> Any:
    """Replace markers by their values until none of those is left."""
    result = replace_refs(value, values)
    while any(ref.digest in values for ref in find_refs(result)):
        result = replace_refs(result, values)
    return result
