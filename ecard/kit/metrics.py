"""Prometheus metrics of this worker."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

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
