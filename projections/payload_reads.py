"""Execution states with their values stored by reference written out in full.

The KV view keeps references (``{"$ref": {"digest", "size", "bucket"}}``, see
:mod:`eventstore.payloads`), never the large values: the StateManager's reads return them as
they are unless the caller asks for the values (``resolve=True``, ``StateManager.output``).
"""

from __future__ import annotations

import msgspec

from eventstore.jetstream.payloads import PayloadStore
from eventstore.state import ExecutionState

__all__ = ["resolved_state"]


async def resolved_state(store: PayloadStore, state: ExecutionState) -> ExecutionState:
    """``state`` with every value stored by reference (input, outputs, resume data, items,
    earlier runs) replaced by the value itself; the plan, if present, as it is.

    Raises:
        PayloadMissingError, PayloadCorruptError: a value cannot be read.
    """
    plan = state.plan
    document = msgspec.to_builtins(msgspec.structs.replace(state, plan=None))
    resolved = await store.resolve(document)
    if resolved is document:
        return state
    full = msgspec.convert(resolved, ExecutionState)
    full.plan = plan
    return full
