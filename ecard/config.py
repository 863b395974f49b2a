"""One typed settings object, read once from ECARD_* environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def _int(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from exc


def _float(env: dict[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be a number, got {raw!r}") from exc


def _kinds(env: dict[str, str], name: str, default: frozenset[str]) -> frozenset[str]:
    """A comma-separated list of words (`none` for an empty one)."""
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    return frozenset(word.strip() for word in raw.split(",") if word.strip() and word.strip() != "none")


@dataclass(frozen=True)
class Settings:
    """Everything the service can be told from outside."""

    database_url: str | None = None
    redis_url: str | None = None
    data_dir: Path = field(default_factory=lambda: Path(".ecard"))
    issuer_id: str = "cq"
    code_ttl_s: int = 60
    clock_skew_s: int = 30
    signature_window_s: int = 300
    session_ttl_s: int = 3600
    redis_prefix: str = "ecard:"
    # base64url of 32 random bytes; when unset the data folder's secret file is used
    secret_key: str | None = None
    # base64url of a raw Ed25519 private key; when unset issuer keys live (sealed) in the database
    issuer_signing_key: str | None = None
    db_pool_min: int = 2
    db_pool_max: int = 10
    load_echo: bool = False
    log_level: str = "INFO"
    # federation: how long to wait for a partner issuer, how often to refetch its code keys, how old they may get
    partner_timeout_ms: int = 800
    partner_refresh_s: int = 60
    partner_keys_max_age_s: int = 3600
    partner_breaker_failures: int = 3
    partner_breaker_cooldown_s: int = 5
    # the 渝快办 platform (渝快码): where its adapter talks to, the codes' prefix, the consent text's version
    yukuai_url: str | None = None
    yukuai_prefix: str = "YKM:"
    yukuai_consent_version: str = "ykb-link-consent-2025.1"
    # the absolute URL portals reach this service at: the OpenID Connect issuer identifier and endpoint base
    public_url: str = "http://127.0.0.1:8000"
    # the bank holding card accounts (docs/bank-protocol.md); unset: `ecard serve` embedded runs the stand-in
    bank_url: str | None = None
    bank_timeout_s: float = 2.0
    # payments: how long a pay (or refund) request holds its attempt (from its claim, and again from its bank call)
    # before recovery may settle it with the bank, and how often recovery looks; together they bound how long an
    # attempt cut off by a crash stays unsettled once the service is up again (30 + 10 s: within a minute)
    payment_recovery_grace_s: float = 30.0
    payment_recovery_interval_s: float = 10.0
    # merchant callbacks: backoff base (delay before retry n is uniform in [0, base·2^n]), how long to keep trying,
    # how often to look for due ones, the hard deadline of one attempt (resolve, connect, send, read), how many
    # deliveries one process runs at once and how many of one merchant's are in flight at most, and whether
    # notify_url may point at loopback over http (stand-ins and tests only)
    callback_base_delay_s: float = 5.0
    callback_window_s: float = 86400.0
    callback_poll_s: float = 1.0
    callback_timeout_s: float = 5.0
    callback_concurrency: int = 32
    callback_per_merchant: int = 2
    callback_allow_loopback: bool = False
    # how long a channel's PIN reset grant (POST /v1/devices/{id}/pin-reset) stays usable
    pin_reset_ttl_s: int = 300
    # complaints (issue 14): days an operator has to answer one; filings allowed per window from one source
    # address (unsigned) and from one card (device-signed); the complaint phone and URL GET /v1/service-info
    # publishes (the URL defaults to the online channel itself, public_url + /v1/complaints)
    complaint_due_days: int = 15
    complaint_per_source: int = 5
    complaint_per_card: int = 20
    complaint_window_s: int = 3600
    complaint_phone: str = "12333"
    complaint_url: str = ""
    # issue 13, partitions and read replica (docs/partitions.md): months of partitions kept made ahead, and a
    # streaming replica for reads that tolerate lag (card history, venues, depth); unset: the primary
    partitions_ahead_months: int = 3
    database_replica_url: str | None = None
    # family accounts (issue 15, docs/family.md): how long a member who turns 16 keeps a link without consent
    # (ECARD_FAMILY_CONSENT_GRACE_DAYS), and how many members a guardian may fail to match (wrong ID number or
    # name) per window before adding is refused for the rest of it (ECARD_FAMILY_MATCH_FAILURES, _WINDOW_S)
    family_consent_grace_days: int = 30
    family_match_failures: int = 10
    family_match_window_s: int = 86400
    # performance (issue 13): the Redis pool's size and how long a command queues for a busy pool's connection
    # before it is shed with 503 `overloaded` (ECARD_REDIS_POOL_SIZE, ECARD_REDIS_POOL_WAIT_S)
    redis_pool_size: int = 200
    redis_pool_wait_s: float = 1.0
    # how long a query queues for a connection of a database pool whose connections are all busy before it is
    # shed with 503 `overloaded` (ECARD_DB_POOL_WAIT_S; the pool's size is ECARD_DB_POOL_MAX)
    db_pool_wait_s: float = 5.0
    # disbursement (资金发放, issue 12): a batch whose ready total exceeds this needs two operators' approvals; a
    # batch not approved within the TTL expires; the payer's concurrent bank credits, its batch lease, how often it
    # looks for work, and how often a transient bank fault is retried for one row in one pass
    disbursement_dual_approval_fen: int = 10_000_000
    disbursement_approval_ttl_s: float = 7 * 86400.0
    disbursement_concurrency: int = 16
    disbursement_lease_s: float = 60.0
    disbursement_poll_s: float = 2.0
    disbursement_retries: int = 3
    # risk monitoring (issue 14, rules and actions; docs/risk.md): the rules' queue, their windows and thresholds,
    # the kinds whose high-severity events act on the card at once, and how often the audit chain is checked
    risk_rules: bool = True
    risk_queue_size: int = 10_000
    risk_batch_s: float = 0.05
    risk_velocity_window_s: int = 600
    risk_velocity_max: int = 20
    risk_travel_kmh: float = 300.0
    risk_travel_min_km: float = 5.0
    risk_pin_lockouts: int = 3
    risk_pin_window_s: int = 86_400
    risk_churn_window_s: int = 7 * 86_400
    risk_churn_max: int = 3
    risk_harvest_window_s: int = 900
    risk_harvest_cards: int = 20
    risk_act_on: frozenset[str] = frozenset({"impossible_travel", "pin_guessing"})
    risk_audit_check_s: float = 300.0
    # issue 15, numeric code and offline taps: the numeric code's two issuer digits (docs/numeric-code.md), the wrong
    # numeric codes one terminal may send per window before it is refused (429) for the window's rest, and how long
    # after a code's expiry an offline tap of it is still accepted (docs/offline-kit.md)
    numeric_issuer_digits: str = "50"
    numeric_guesses: int = 10
    numeric_guess_window_s: int = 300
    offline_grace_s: int = 86400
    # issue 16, citizen pages (H5; docs/h5.md): who may frame the pages (CSP frame-ancestors, the channel apps'
    # web views), how many ticketed enrolments one source address may try per 5 minutes, and a page session's life
    h5_frame_ancestors: str = "'self'"
    h5_ticket_redeems_per_source: int = 20
    h5_session_ttl_s: int = 900

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if environ is None else environ)
        return cls(
            database_url=env.get("ECARD_DATABASE_URL") or None,
            redis_url=env.get("ECARD_REDIS_URL") or None,
            data_dir=Path(env.get("ECARD_DATA_DIR") or ".ecard"),
            issuer_id=env.get("ECARD_ISSUER_ID") or "cq",
            code_ttl_s=_int(env, "ECARD_CODE_TTL_S", 60),
            clock_skew_s=_int(env, "ECARD_CLOCK_SKEW_S", 30),
            signature_window_s=_int(env, "ECARD_SIGNATURE_WINDOW_S", 300),
            session_ttl_s=_int(env, "ECARD_SESSION_TTL_S", 3600),
            redis_prefix=env.get("ECARD_REDIS_PREFIX") or "ecard:",
            secret_key=env.get("ECARD_SECRET_KEY") or None,
            issuer_signing_key=env.get("ECARD_ISSUER_SIGNING_KEY") or None,
            db_pool_min=_int(env, "ECARD_DB_POOL_MIN", 2),
            db_pool_max=_int(env, "ECARD_DB_POOL_MAX", 10),
            load_echo=(env.get("ECARD_LOAD_ECHO") or "") == "1",
            log_level=env.get("ECARD_LOG_LEVEL") or "INFO",
            partner_timeout_ms=_int(env, "ECARD_PARTNER_TIMEOUT_MS", 800),
            partner_refresh_s=_int(env, "ECARD_PARTNER_REFRESH_S", 60),
            partner_keys_max_age_s=_int(env, "ECARD_PARTNER_KEYS_MAX_AGE_S", 3600),
            partner_breaker_failures=_int(env, "ECARD_PARTNER_BREAKER_FAILURES", 3),
            partner_breaker_cooldown_s=_int(env, "ECARD_PARTNER_BREAKER_COOLDOWN_S", 5),
            yukuai_url=env.get("ECARD_YUKUAI_URL") or None,
            yukuai_prefix=env.get("ECARD_YUKUAI_PREFIX") or "YKM:",
            yukuai_consent_version=env.get("ECARD_YUKUAI_CONSENT_VERSION") or "ykb-link-consent-2025.1",
            public_url=(env.get("ECARD_PUBLIC_URL") or "http://127.0.0.1:8000").rstrip("/"),
            bank_url=env.get("ECARD_BANK_URL") or None,
            bank_timeout_s=_float(env, "ECARD_BANK_TIMEOUT_S", 2.0),
            payment_recovery_grace_s=_float(env, "ECARD_PAYMENT_RECOVERY_GRACE_S", 30.0),
            payment_recovery_interval_s=_float(env, "ECARD_PAYMENT_RECOVERY_INTERVAL_S", 10.0),
            callback_base_delay_s=_float(env, "ECARD_CALLBACK_BASE_DELAY_S", 5.0),
            callback_window_s=_float(env, "ECARD_CALLBACK_WINDOW_S", 86400.0),
            callback_poll_s=_float(env, "ECARD_CALLBACK_POLL_S", 1.0),
            callback_timeout_s=_float(env, "ECARD_CALLBACK_TIMEOUT_S", 5.0),
            callback_concurrency=_int(env, "ECARD_CALLBACK_CONCURRENCY", 32),
            callback_per_merchant=_int(env, "ECARD_CALLBACK_PER_MERCHANT", 2),
            callback_allow_loopback=(env.get("ECARD_CALLBACK_ALLOW_LOOPBACK") or "") == "1",
            pin_reset_ttl_s=_int(env, "ECARD_PIN_RESET_TTL_S", 300),
            complaint_due_days=_int(env, "ECARD_COMPLAINT_DUE_DAYS", 15),
            complaint_per_source=_int(env, "ECARD_COMPLAINT_PER_SOURCE", 5),
            complaint_per_card=_int(env, "ECARD_COMPLAINT_PER_CARD", 20),
            complaint_window_s=_int(env, "ECARD_COMPLAINT_WINDOW_S", 3600),
            complaint_phone=env.get("ECARD_COMPLAINT_PHONE") or "12333",
            complaint_url=env.get("ECARD_COMPLAINT_URL") or "",
            partitions_ahead_months=_int(env, "ECARD_PARTITIONS_AHEAD_MONTHS", 3),
            database_replica_url=env.get("ECARD_DATABASE_REPLICA_URL") or None,
            family_consent_grace_days=_int(env, "ECARD_FAMILY_CONSENT_GRACE_DAYS", 30),
            family_match_failures=_int(env, "ECARD_FAMILY_MATCH_FAILURES", 10),
            family_match_window_s=_int(env, "ECARD_FAMILY_MATCH_WINDOW_S", 86400),
            redis_pool_size=_int(env, "ECARD_REDIS_POOL_SIZE", 200),
            redis_pool_wait_s=_float(env, "ECARD_REDIS_POOL_WAIT_S", 1.0),
            db_pool_wait_s=_float(env, "ECARD_DB_POOL_WAIT_S", 5.0),
            disbursement_dual_approval_fen=_int(env, "ECARD_DISBURSEMENT_DUAL_APPROVAL_FEN", 10_000_000),
            disbursement_approval_ttl_s=_float(env, "ECARD_DISBURSEMENT_APPROVAL_TTL_S", 7 * 86400.0),
            disbursement_concurrency=_int(env, "ECARD_DISBURSEMENT_CONCURRENCY", 16),
            disbursement_lease_s=_float(env, "ECARD_DISBURSEMENT_LEASE_S", 60.0),
            disbursement_poll_s=_float(env, "ECARD_DISBURSEMENT_POLL_S", 2.0),
            disbursement_retries=_int(env, "ECARD_DISBURSEMENT_RETRIES", 3),
            risk_rules=(env.get("ECARD_RISK_RULES") or "1") != "0",
            risk_queue_size=_int(env, "ECARD_RISK_QUEUE_SIZE", 10_000),
            risk_batch_s=_float(env, "ECARD_RISK_BATCH_S", 0.05),
            risk_velocity_window_s=_int(env, "ECARD_RISK_VELOCITY_WINDOW_S", 600),
            risk_velocity_max=_int(env, "ECARD_RISK_VELOCITY_MAX", 20),
            risk_travel_kmh=_float(env, "ECARD_RISK_TRAVEL_KMH", 300.0),
            risk_travel_min_km=_float(env, "ECARD_RISK_TRAVEL_MIN_KM", 5.0),
            risk_pin_lockouts=_int(env, "ECARD_RISK_PIN_LOCKOUTS", 3),
            risk_pin_window_s=_int(env, "ECARD_RISK_PIN_WINDOW_S", 86_400),
            risk_churn_window_s=_int(env, "ECARD_RISK_CHURN_WINDOW_S", 7 * 86_400),
            risk_churn_max=_int(env, "ECARD_RISK_CHURN_MAX", 3),
            risk_harvest_window_s=_int(env, "ECARD_RISK_HARVEST_WINDOW_S", 900),
            risk_harvest_cards=_int(env, "ECARD_RISK_HARVEST_CARDS", 20),
            risk_act_on=_kinds(env, "ECARD_RISK_ACT_ON", frozenset({"impossible_travel", "pin_guessing"})),
            risk_audit_check_s=_float(env, "ECARD_RISK_AUDIT_CHECK_S", 300.0),
            numeric_issuer_digits=env.get("ECARD_NUMERIC_ISSUER_DIGITS") or "50",
            numeric_guesses=_int(env, "ECARD_NUMERIC_GUESSES", 10),
            numeric_guess_window_s=_int(env, "ECARD_NUMERIC_GUESS_WINDOW_S", 300),
            offline_grace_s=_int(env, "ECARD_OFFLINE_GRACE_S", 86400),
            h5_frame_ancestors=env.get("ECARD_H5_FRAME_ANCESTORS") or "'self'",
            h5_ticket_redeems_per_source=_int(env, "ECARD_H5_TICKET_REDEEMS_PER_SOURCE", 20),
            h5_session_ttl_s=_int(env, "ECARD_H5_SESSION_TTL_S", 900),
        )
