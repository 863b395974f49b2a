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
        )
