"""`/metrics` of `ecard serve --workers 2` adds up both workers, whichever one answers the scrape."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from tests.live import LiveEcard

ROUTE = {"route": "/healthz", "method": "GET", "status": "200"}


class TwoWorkers(LiveEcard):
    def command(self) -> list[str]:
        return ["serve", "--port", str(self.port), "--workers", "2"]


def _healthz_count(samples: list[tuple[str, dict[str, str], float]]) -> float:
    return sum(value for name, labels, value in samples if name == "ecard_request_seconds_count" and labels == ROUTE)


def per_worker(folder: Path) -> dict[int, float]:
    """Each worker's own count of /healthz answers, read from the file it writes."""
    counts: dict[int, float] = {}
    for path in folder.glob("histogram_*.db"):
        merged = MultiProcessCollector.merge([str(path)], accumulate=True)  # type: ignore[no-untyped-call]
        samples = [(s.name, s.labels, s.value) for metric in merged for s in metric.samples]
        counts[int(path.stem.rsplit("_", 1)[1])] = _healthz_count(samples)
    return counts


def scraped(base: str) -> float:
    # a connection of its own each time, so that either worker may answer
    text = httpx.get(f"{base}/metrics", timeout=10, headers={"Connection": "close"}).text
    samples = [(s.name, s.labels, s.value) for family in text_string_to_metric_families(text) for s in family.samples]
    return _healthz_count(samples)


@pytest.fixture
def server(service_urls: tuple[str, str], tmp_path: Path) -> Iterator[TwoWorkers]:
    live = asyncio.run(TwoWorkers.create("cq", service_urls, tmp_path / "live", name="ops_workers"))
    assert isinstance(live, TwoWorkers)
    stale = tmp_path / "live" / "data" / "metrics" / "counter_999999.db"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"left over from an earlier run")
    started: list[psutil.Process] = []
    try:
        live.start()
        assert live.process is not None
        started = psutil.Process(live.process.pid).children(recursive=True)
        assert not stale.exists(), "the metrics folder is emptied when the service starts"
        yield live
    finally:
        live.stop()
        for process in started:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()


def test_metrics_add_up_every_workers_counts(server: TwoWorkers) -> None:
    folder = Path(server.env["ECARD_DATA_DIR"]) / "metrics"
    sent = 0
    # new connections until both workers have answered some (the kernel decides which one accepts)
    while len([n for n in per_worker(folder).values() if n > 0]) < 2:
        assert sent < 2000, f"one worker answered every request: {per_worker(folder)}"
        answer = httpx.get(f"{server.base}/healthz", timeout=10, headers={"Connection": "close"})
        assert answer.status_code == 200
        sent += 1

    counts = per_worker(folder)
    assert sum(counts.values()) == sent
    # every scrape, whichever worker answers it, sees the sum of both
    for _ in range(10):
        assert scraped(server.base) == sent
