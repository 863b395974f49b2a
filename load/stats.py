"""Percentiles, CPU meters and the per-scenario figures the report prints and saves."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import psutil
from drive import Outcome

MB = 1024 * 1024


def percentile(ordered: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) of already sorted values, nearest rank."""
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def latency_ms(values: Sequence[float]) -> dict[str, float]:
    """Mean, p50, p95, p99 and max of latencies in seconds, as milliseconds."""
    ordered = sorted(values)
    mean = sum(ordered) / len(ordered) if ordered else float("nan")
    points = {"p50": 0.50, "p95": 0.95, "p99": 0.99, "max": 1.0}
    return {"mean": mean * 1e3, **{k: percentile(ordered, q) * 1e3 for k, q in points.items()}}


def rss_mb(process: psutil.Process) -> float:
    return float(process.memory_info().rss) / MB


def _cpu_s(process: psutil.Process) -> float:
    try:
        times = process.cpu_times()
    except psutil.Error:
        return 0.0
    return times.user + times.system


def _postmaster(port: int) -> psutil.Process | None:
    """The PostgreSQL server process listening on `port` of this machine."""
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and getattr(conn.laddr, "port", None) == port and conn.pid:
            return psutil.Process(conn.pid)
    return None


def db_backends(database_url: str | None) -> list[psutil.Process]:
    """The PostgreSQL backends serving the run's database (only the run uses it)."""
    if not database_url:
        return []
    parts = urlsplit(database_url)
    server = _postmaster(parts.port or 5432)
    if server is None:
        return []
    needle = f" {parts.path.lstrip('/')} "
    found = []
    for process in server.children():
        with contextlib.suppress(psutil.Error):
            if needle in " ".join(process.cmdline()):
                found.append(process)
    return found


@dataclass
class Meter:
    """CPU used during a scenario: by the app process, by the run's database backends, by the whole machine."""

    app: psutil.Process
    database_url: str | None = None
    wall: float = 0.0
    app_cpu: float = 0.0
    db_cpu: dict[int, float] = field(default_factory=dict)
    machine: Any = None

    def _db(self) -> dict[int, float]:
        return {p.pid: _cpu_s(p) for p in db_backends(self.database_url)}

    def start(self) -> Meter:
        self.db_cpu = self._db()
        self.app_cpu = _cpu_s(self.app)
        self.machine = psutil.cpu_times()
        self.wall = time.perf_counter()
        return self

    def read(self) -> dict[str, float]:
        wall = time.perf_counter() - self.wall
        app, now = _cpu_s(self.app), psutil.cpu_times()
        db = self._db()
        total = sum(now) - sum(self.machine)
        idle = (now.idle + now.iowait) - (self.machine.idle + self.machine.iowait)
        db_s = sum(cpu - self.db_cpu.get(pid, 0.0) for pid, cpu in db.items())
        return {
            "server_cpu_s": app - self.app_cpu,
            "server_cpu_pct": 100 * (app - self.app_cpu) / wall if wall else 0.0,
            "db_cpu_pct": 100 * db_s / wall if wall else 0.0,
            "machine_busy_pct": 100 * (1 - idle / total) if total else 0.0,
            "load_avg_1m": os.getloadavg()[0],
        }


def figures(outcome: Outcome, expected: int, meter: dict[str, float]) -> dict[str, Any]:
    """One scenario's figures: throughput, latencies, answers other than `expected`, CPU shares."""
    return {
        "requests": outcome.count,
        "seconds": round(outcome.elapsed_s, 3),
        "rps": round(outcome.rate, 1),
        "latency_ms": {k: round(v, 3) for k, v in latency_ms(outcome.latencies_s).items()},
        "statuses": {str(k): v for k, v in sorted(outcome.statuses.items())},
        "unexpected": sum(v for k, v in outcome.statuses.items() if k != expected),
        "unexpected_samples": outcome.unexpected,
        "client_cpu_pct": round(100 * outcome.client_cpu_s / outcome.elapsed_s, 1) if outcome.elapsed_s else 0.0,
        # CPU time of the app process per answered request: what the throughput of one whole core would be
        "server_cpu_ms_per_req": round(1000 * meter["server_cpu_s"] / outcome.count, 3) if outcome.count else 0.0,
        **{k: round(v, 1) for k, v in meter.items()},
    }
