"""Prometheus metrics, one set for the whole service however many workers serve it.

Under `ecard serve` every worker writes its values to files in PROMETHEUS_MULTIPROC_DIR (prometheus_client's
multiprocess mode, set up before any worker starts), and `/metrics` adds up all workers' files; a process
without that folder (tests, tools) keeps its values in memory.
"""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

REGISTRY = CollectorRegistry(auto_describe=True)
# set by `ecard serve` (ecard.ops.share_metrics) before this module is first imported
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"


def exposition() -> bytes:
    """The text form of every metric: all workers' when they share a folder, else this process's."""
    if folder := os.environ.get(MULTIPROCESS_ENV):
        _forget_dead_workers(Path(folder))
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(REGISTRY)


def _forget_dead_workers(folder: Path) -> None:
    """Drop the live gauges of workers that died (the server starts others in their place): a worker killed with
    work in flight must not count as busy for ever. Counters and histograms stay: their totals include it."""
    for path in folder.glob("gauge_live*_*.db"):
        pid = path.stem.rsplit("_", 1)[1]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            multiprocess.mark_process_dead(int(pid), str(folder))  # type: ignore[no-untyped-call]
        except PermissionError:
            continue  # a process of another user took the pid: not ours, but alive


VERIFICATIONS = Counter("ecard_verifications_total", "Verifications by result code", ["result"], registry=REGISTRY)
CODES_ISSUED = Counter("ecard_codes_issued_total", "Dynamic codes issued", ["format"], registry=REGISTRY)
REQUEST_SECONDS = Histogram(
    "ecard_request_seconds",
    "Request latency by route",
    ["route", "method", "status"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
    registry=REGISTRY,
)
VERIFY_SECONDS = Histogram(
    "ecard_verification_seconds",
    "Time to decide a verification",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25),
    registry=REGISTRY,
)
PARTNER_CALLS = Counter(
    "ecard_partner_calls_total",
    "Requests to partner issuers by partner and outcome (accepted, a refusal code, unavailable, circuit_open)",
    ["issuer", "outcome"],
    registry=REGISTRY,
)
PARTNER_SECONDS = Histogram(
    "ecard_partner_call_seconds",
    "Time a partner issuer took to answer a forwarded verification",
    ["issuer"],
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 0.8, 1.0, 2.5),
    registry=REGISTRY,
)
BANK_MISMATCHES = Counter(
    "ecard_bank_mismatches_total",
    "Bank answers about another movement than the one asked for (another card, amount, direction or id): never"
    " booked; the payment or refund waits for an operator",
    ["operation"],
    registry=REGISTRY,
)

# Argon2 lanes (ecard.kit.passwords): how full each is, what it ran and what it shed
ARGON2_BUSY = Gauge(
    "ecard_argon2_busy",
    "Argon2 hashes running or queued, by lane (pin, login)",
    ["lane"],
    registry=REGISTRY,
    multiprocess_mode="livesum",
)
ARGON2_RUNS = Counter("ecard_argon2_runs", "Argon2 hashes and checks run, by lane", ["lane"], registry=REGISTRY)
ARGON2_SHED = Counter(
    "ecard_argon2_shed", "Argon2 work refused 503 overloaded because its lane was full", ["lane"], registry=REGISTRY
)
SHED = Counter(
    "ecard_shed",
    "Requests refused 503 overloaded because a bounded queue stayed full, by what was full (cache_pool, database_pool)",
    ["reason"],
    registry=REGISTRY,
)
OPERATOR_LOGINS = Counter(
    "ecard_operator_logins",
    "Operator login attempts by outcome (opened, refused, locked, throttled, overloaded)",
    ["outcome"],
    registry=REGISTRY,
)

# background loops (ecard.kit.supervisor)
BACKGROUND_UP = Gauge(
    "ecard_background_up",
    "1 while the background task runs in every live worker, 0 while it waits to be restarted",
    ["task"],
    registry=REGISTRY,
    multiprocess_mode="livemin",
)
BACKGROUND_RESTARTS = Counter(
    "ecard_background_restarts",
    "Restarts of a background task after it failed or returned",
    ["task"],
    registry=REGISTRY,
)

# risk monitoring (ecard.risk)
RISK_EVENTS = Counter(
    "ecard_risk_events", "Risk events raised, by kind and severity", ["kind", "severity"], registry=REGISTRY
)
RISK_DROPPED = Counter(
    "ecard_risk_dropped",
    "Observations the risk rules never saw because their queue was full (verifications were not held up)",
    registry=REGISTRY,
)
