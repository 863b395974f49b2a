"""`/metrics` of `ecard serve --workers 2` stays right when a worker is killed with work in flight: the server
starts another, the dead worker's counts stay in the totals, and its gauges no longer count it as busy."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from ecard.operators.models import LoginPolicy
from tests.ops.test_metrics_workers import TwoWorkers

LOGIN = {"lane": "login"}
DEADLINE_S = 30.0


def _value(samples: list[tuple[str, dict[str, str], float]], name: str) -> float:
    return sum(value for sample, labels, value in samples if sample == name and labels == LOGIN)


def busy_by_worker(folder: Path) -> dict[int, float]:
    """Each worker's own count of login hashes running or queued, read from the gauge file it writes."""
    busy: dict[int, float] = {}
    for path in folder.glob("gauge_livesum_*.db"):
        # a file a worker is still creating, or one just removed, is skipped
        with contextlib.suppress(FileNotFoundError, struct.error):
            merged = MultiProcessCollector.merge([str(path)], accumulate=False)  # type: ignore[no-untyped-call]
            samples = [(s.name, s.labels, s.value) for metric in merged for s in metric.samples]
            busy[int(path.stem.rsplit("_", 1)[1])] = sum(
                v for n, labels, v in samples if n == "ecard_argon2_busy" and labels.get("lane") == "login"
            )
    return busy


def scraped(base: str) -> list[tuple[str, dict[str, str], float]]:
    text = httpx.get(f"{base}/metrics", timeout=10, headers={"Connection": "close"}).text
    return [(s.name, s.labels, s.value) for family in text_string_to_metric_families(text) for s in family.samples]


@pytest.fixture
def server(service_urls: tuple[str, str], tmp_path: Path) -> Iterator[TwoWorkers]:
    live = asyncio.run(TwoWorkers.create("cq", service_urls, tmp_path / "live", name="scaleout_workers"))
    assert isinstance(live, TwoWorkers)
    started: list[psutil.Process] = []
    try:
        live.start()
        assert live.process is not None
        yield live
    finally:
        if live.process is not None and live.process.poll() is None:
            started = psutil.Process(live.process.pid).children(recursive=True)
        live.stop()
        for process in started:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()


async def _logins(base: str) -> list[httpx.Response | BaseException]:
    """Failed logins for usernames nobody has (hashed all the same), as many as one source may send at once."""
    policy = LoginPolicy()
    per_username = policy.pair_failures
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        return await asyncio.gather(
            *(
                client.post(
                    "/v1/admin/sessions",
                    json={"username": f"nobody-{n // per_username}", "password": "wrong-password-123", "totp": "1"},
                    headers={"Connection": "close"},
                )
                for n in range(policy.per_source)
            ),
            return_exceptions=True,
        )


def test_a_worker_killed_mid_hash_stays_in_the_totals_and_leaves_the_gauges(server: TwoWorkers) -> None:
    assert server.process is not None
    folder = Path(server.env["ECARD_DATA_DIR"]) / "metrics"
    # the workers, and the helper processes the server starts besides them
    workers = {child.pid for child in psutil.Process(server.process.pid).children()}

    async def race() -> tuple[int, float]:
        sending = asyncio.create_task(_logins(server.base))
        deadline = time.monotonic() + DEADLINE_S
        while not (busy := {pid: n for pid, n in busy_by_worker(folder).items() if n > 0 and pid in workers}):
            assert time.monotonic() < deadline, "no worker was ever seen hashing"
            await asyncio.sleep(0.01)
        victim = next(iter(busy))
        runs_before = _value(await asyncio.to_thread(scraped, server.base), "ecard_argon2_runs_total")
        os.kill(victim, signal.SIGKILL)
        await sending
        return victim, runs_before

    victim, runs_before = asyncio.run(race())

    deadline = time.monotonic() + DEADLINE_S
    while True:
        samples = scraped(server.base)
        alive = {child.pid for child in psutil.Process(server.process.pid).children()}
        # the server has started a worker in the dead one's place
        if len(alive) == len(workers) and victim not in alive and _value(samples, "ecard_argon2_busy") == 0:
            break
        assert time.monotonic() < deadline, f"still busy after the worker died: {busy_by_worker(folder)}"
        time.sleep(0.1)
    assert victim not in busy_by_worker(folder)
    # the dead worker's hashes are still counted
    assert _value(samples, "ecard_argon2_runs_total") >= runs_before
