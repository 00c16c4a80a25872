"""A handler type that kills its own executor process mid-call (``--handlers crashing_handlers``):
a request no executor survives."""

from __future__ import annotations

import os
import signal

from eventstore.events import ActionExecuteRequested
from executor import handler


@handler("crash")
async def crash(request: ActionExecuteRequested) -> None:
    """SIGKILL the executor running it."""
    os.kill(os.getpid(), signal.SIGKILL)
