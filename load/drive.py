"""Closed-loop (max throughput) and open-loop (fixed rate) drivers over raw connections, in 1..N processes."""

from __future__ import annotations

import asyncio
import dataclasses
import multiprocessing as mp
import resource
import time
from array import array
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.queues import Queue

from wire import Connection, run_loop

HOST = "127.0.0.1"
SAMPLE_ERRORS = 5
CHILD_TIMEOUT_S = 900


@dataclass
class Outcome:
    """What one driven batch saw: latencies of answered requests, statuses, and (when kept) bodies."""

    elapsed_s: float = 0.0
    latencies_s: array[float] = field(default_factory=lambda: array("d"))
    statuses: Counter[int] = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    # the status of each kept body, in the same order
    body_statuses: array[int] = field(default_factory=lambda: array("H"))
    client_cpu_s: float = 0.0

    @property
    def count(self) -> int:
        return len(self.latencies_s)

    @property
    def rate(self) -> float:
        return self.count / self.elapsed_s if self.elapsed_s > 0 else 0.0


@dataclass(frozen=True)
class Job:
    """A batch of pre-built requests and how to send them: closed loop (rate 0) or open loop at `rate` req/s."""

    port: int
    requests: Sequence[bytes]
    expected: int
    conns: int = 32
    duration_s: float = float("inf")
    rate: float = 0.0
    keep_bodies: bool = False
    start_at: float = 0.0

    def part(self, index: int, parts: int, start_at: float) -> Job:
        """This job's share for one of `parts` processes."""
        return dataclasses.replace(
            self,
            requests=self.requests[index::parts],
            conns=max(1, self.conns // parts),
            rate=self.rate / parts,
            start_at=start_at,
        )


class _Recorder:
    def __init__(self, job: Job) -> None:
        self.job = job
        self.outcome = Outcome()

    def add(self, latency_s: float, status: int, body: bytes) -> None:
        out = self.outcome
        out.latencies_s.append(latency_s)
        out.statuses[status] += 1
        if self.job.keep_bodies:
            out.bodies.append(body)
            out.body_statuses.append(status)
        if status != self.job.expected and len(out.unexpected) < SAMPLE_ERRORS:
            out.unexpected.append(f"{status} {body[:300].decode(errors='replace')}")


async def _connect(job: Job) -> list[Connection]:
    return list(await asyncio.gather(*(Connection.open(HOST, job.port) for _ in range(job.conns))))


async def _wait_start(job: Job) -> None:
    delay = job.start_at - time.time()
    if delay > 0:
        await asyncio.sleep(delay)


async def _closed(job: Job) -> Outcome:
    """Every connection sends its next request as soon as the previous is answered, until time or requests run out."""
    conns = await _connect(job)
    rec = _Recorder(job)
    await _wait_start(job)
    pending: Iterator[bytes] = iter(job.requests)
    started = time.perf_counter()
    deadline = started + job.duration_s
    last = started

    async def worker(conn: Connection) -> None:
        nonlocal last
        for request in pending:
            sent = time.perf_counter()
            if sent >= deadline:
                return
            status, body = await conn.exchange(request)
            last = time.perf_counter()
            rec.add(last - sent, status, body)

    await asyncio.gather(*(worker(c) for c in conns))
    rec.outcome.elapsed_s = last - started
    await asyncio.gather(*(c.close() for c in conns))
    return rec.outcome


async def _open(job: Job) -> Outcome:
    """Requests leave on a fixed schedule; latency counts from the scheduled time, so queueing is not hidden."""
    conns = await _connect(job)
    rec = _Recorder(job)
    queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
    await _wait_start(job)
    started = time.perf_counter()

    async def schedule() -> None:
        for i, request in enumerate(job.requests):
            due = started + i / job.rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            queue.put_nowait((due, request))
        for _ in conns:
            queue.put_nowait(None)

    async def worker(conn: Connection) -> None:
        while (item := await queue.get()) is not None:
            due, request = item
            status, body = await conn.exchange(request)
            rec.add(time.perf_counter() - due, status, body)

    await asyncio.gather(schedule(), *(worker(c) for c in conns))
    rec.outcome.elapsed_s = time.perf_counter() - started
    await asyncio.gather(*(c.close() for c in conns))
    return rec.outcome


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_here(job: Job) -> Outcome:
    """Drive one job in this process, on its own event loop."""
    cpu = _cpu_s()
    outcome = run_loop(_open(job) if job.rate > 0 else _closed(job))
    outcome.client_cpu_s = _cpu_s() - cpu
    return outcome


def _child(job: Job, results: Queue[Outcome]) -> None:
    results.put(run_here(job))


def merge(parts: Sequence[Outcome]) -> Outcome:
    """One outcome of several processes' (they started together, so the longest elapsed is the run's)."""
    total = Outcome(elapsed_s=max(p.elapsed_s for p in parts))
    for part in parts:
        total.latencies_s.extend(part.latencies_s)
        total.statuses.update(part.statuses)
        total.unexpected.extend(part.unexpected[: SAMPLE_ERRORS - len(total.unexpected)])
        total.bodies.extend(part.bodies)
        total.body_statuses.extend(part.body_statuses)
        total.client_cpu_s += part.client_cpu_s
    return total


def run(job: Job, procs: int = 1) -> Outcome:
    """Drive a job from `procs` forked processes that start at the same moment."""
    if procs <= 1:
        return run_here(job)
    ctx = mp.get_context("fork")
    results: Queue[Outcome] = ctx.Queue()
    start_at = time.time() + 0.5
    children = [ctx.Process(target=_child, args=(job.part(i, procs, start_at), results)) for i in range(procs)]
    for child in children:
        child.start()
    parts = [results.get(timeout=CHILD_TIMEOUT_S) for _ in children]
    for child in children:
        child.join()
    return merge(parts)
