"""Rows that arrive together written in one statement and one commit (group commit, issue 13).

records = GroupCommit(functools.partial(store.record_many, pool))
row = await records.record(new)    # answered once the statement holding `new` has committed
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import asyncpg

New = TypeVar("New")
Written = TypeVar("Written")

# writes every row given in one statement and one commit; answers one result per row, in their order
WriteMany = Callable[[list[New]], Awaitable[list[Written]]]


class GroupCommit(Generic[New, Written]):
    """The rows that callers hand it within one turn of the event loop go to PostgreSQL as one `write_many`.

    A row waits at most for the writes already in flight (`in_flight` at once); whatever arrived meanwhile goes
    in the next. Each caller gets its answer only once the statement holding its own row has committed. A batch
    that hits a unique key written before (a retry whose first answer was lost) is written again one by one, so
    that only that caller gets the violation."""

    def __init__(self, write_many: WriteMany[New, Written], in_flight: int = 4, max_rows: int = 200) -> None:
        self._write_many = write_many
        self._in_flight_max = in_flight
        self._max_rows = max_rows
        self._in_flight = 0
        self._waiting: list[tuple[New, asyncio.Future[Written]]] = []
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def record(self, new: New) -> Written:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Written] = loop.create_future()
        self._waiting.append((new, future))
        self._schedule(loop)
        return await future

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        # on the next turn of the loop, so that every row arriving in this one joins the batch
        if not self._scheduled and self._waiting and self._in_flight < self._in_flight_max:
            self._scheduled = True
            loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        batch, self._waiting = self._waiting[: self._max_rows], self._waiting[self._max_rows :]
        self._in_flight += 1
        task = asyncio.get_running_loop().create_task(self._write(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self._schedule(asyncio.get_running_loop())

    async def _write(self, batch: list[tuple[New, asyncio.Future[Written]]]) -> None:
        try:
            try:
                written = await self._write_many([new for new, _ in batch])
            except asyncpg.UniqueViolationError:
                await self._one_by_one(batch)
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
            else:
                for (_, future), row in zip(batch, written, strict=True):
                    if not future.done():
                        future.set_result(row)
        finally:
            self._in_flight -= 1
            self._schedule(asyncio.get_running_loop())

    async def _one_by_one(self, batch: list[tuple[New, asyncio.Future[Written]]]) -> None:
        for new, future in batch:
            try:
                written = await self._write_many([new])
            except Exception as exc:
                if not future.done():
                    future.set_exception(exc)
            else:
                if not future.done():
                    future.set_result(written[0])
