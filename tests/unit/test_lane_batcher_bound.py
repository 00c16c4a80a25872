"""However many lanes wait, one process decides at most ``max_deciding`` executions at once."""

from __future__ import annotations

from typing import Any, cast

import anyio
import anyio.lowlevel
import pytest
from nats.aio.msg import Msg

from orchestrator.batch import LaneBatcher
from orchestrator.processor import EventProcessor

pytestmark = pytest.mark.anyio


class _Msg:
    def __init__(self, execution_id: str) -> None:
        self.subject = f"plan.submitted.{execution_id}"


class _Processor:
    """The single path, recording how many decisions are under way at once."""

    def __init__(self) -> None:
        self.now = 0
        self.most = 0
        self.handled = 0
        self.release = anyio.Event()
        self.full = anyio.Event()

    async def handle(self, msg: Any) -> None:
        self.now += 1
        self.most = max(self.most, self.now)
        if self.now == 3:
            self.full.set()
        await self.release.wait()
        self.now -= 1
        self.handled += 1


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_lanes_beyond_the_bound_wait_their_turn() -> None:
    processor = _Processor()
    batcher = LaneBatcher(cast(EventProcessor, processor), max_batch=8, max_deciding=3)
    lanes = [[cast(Msg, _Msg(f"e{n}"))] for n in range(20)]
    async with anyio.create_task_group() as group:
        for lane in lanes:
            group.start_soon(batcher.handle, lane)
        with anyio.fail_after(5):
            await processor.full.wait()
        for _ in range(100):  # give every other lane the chance to start deciding
            await anyio.lowlevel.checkpoint()
        assert processor.most == 3
        processor.release.set()
    assert processor.handled == 20 and processor.most == 3
