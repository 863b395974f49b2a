"""Builds the Litestar application from settings: wiring only."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from litestar import Litestar
from litestar.config.app import AppConfig
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin

from ecard.cards import CardholderAdminController, Cards, DeviceController, EnrolmentController
from ecard.catalog import Catalog, CatalogAdminController, CatalogController
from ecard.clients import Authenticator, ClientDirectory
from ecard.codes import CodeController, CodeIssuer, KeyRing
from ecard.config import Settings
from ecard.depth import Depth, DepthController
from ecard.kit.clock import Clock, SystemClock
from ecard.kit.crypto import Keys, load_master_key
from ecard.kit.infra import create_pool, create_redis
from ecard.kit.problems import (
    Refusal,
    http_exception_handler,
    internal_error_handler,
    not_utf8_handler,
    refusal_handler,
    validation_handler,
)
from ecard.merchants import MerchantAdminController, Merchants, VenueController
from ecard.operators import Operators, SessionController
from ecard.ops import EchoController, OpsController, access_middleware, configure
from ecard.risk import RiskEvents
from ecard.verify import VerificationController, VerifyDeps


def create_app(settings: Settings, clock: Clock | None = None) -> Litestar:
    clock = clock or SystemClock()

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        if not settings.database_url or not settings.redis_url:
            raise RuntimeError("ECARD_DATABASE_URL and ECARD_REDIS_URL must be set (`ecard serve` sets them)")
        pool = await create_pool(settings.database_url, settings.db_pool_min, settings.db_pool_max)
        redis = create_redis(settings.redis_url)
        keys = Keys.from_master(load_master_key(settings))
        directory = ClientDirectory(pool)
        catalog = Catalog(pool, clock)
        merchants = Merchants(pool, directory, catalog)
        cards = Cards(pool, keys, directory)
        ring = KeyRing.from_settings(pool, redis, keys, clock, settings)
        await ring.ensure_active()
        await ring.republish_revocations()
        state = app.state
        state.settings = settings
        state.clock = clock
        state.pool = pool
        state.redis = redis
        state.secret_keys = keys
        state.directory = directory
        state.catalog = catalog
        state.merchants = merchants
        state.depth = Depth(pool, catalog, clock)
        state.cards = cards
        state.key_ring = ring
        state.authenticator = Authenticator(directory, redis, settings.redis_prefix, clock, settings.signature_window_s)
        state.operators = Operators(pool, redis, keys, clock, settings.redis_prefix, settings.session_ttl_s)
        state.code_issuer = CodeIssuer(ring, cards, keys, clock, settings.issuer_id, settings.code_ttl_s)
        state.verify_deps = VerifyDeps(
            pool=pool,
            redis=redis,
            keys=keys,
            ring=ring,
            catalog=catalog,
            merchants=merchants,
            risk=RiskEvents(pool),
            clock=clock,
            issuer=settings.issuer_id,
            skew_s=settings.clock_skew_s,
            prefix=settings.redis_prefix,
        )
        refresher = asyncio.create_task(ring.keep_fresh())
        try:
            yield
        finally:
            refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refresher
            await redis.aclose()
            await pool.close()

    handlers: list[Any] = [
        OpsController,
        SessionController,
        CardholderAdminController,
        MerchantAdminController,
        VenueController,
        DepthController,
        EnrolmentController,
        DeviceController,
        CodeController,
        VerificationController,
        CatalogController,
        CatalogAdminController,
    ]
    if settings.load_echo:
        handlers.append(EchoController)

    return Litestar(
        route_handlers=handlers,
        lifespan=[lifespan],
        middleware=[access_middleware],
        exception_handlers={
            Refusal: refusal_handler,
            ValidationException: validation_handler,
            UnicodeDecodeError: not_utf8_handler,
            HTTPException: http_exception_handler,
            Exception: internal_error_handler,
        },
        openapi_config=OpenAPIConfig(
            title="ecard",
            version="1",
            description="The electronic social security card: enrolment, dynamic codes, verification. See API.md.",
            path="/schema",
            render_plugins=[ScalarRenderPlugin()],
        ),
        request_max_body_size=64 * 1024,
        on_app_init=[_quiet_defaults],
        debug=False,
    )


def _quiet_defaults(config: AppConfig) -> AppConfig:
    config.logging_config = None
    return config


def create_app_from_env() -> Litestar:
    """Factory for uvicorn workers: settings from the environment `ecard serve` prepared."""
    settings = Settings.from_env()
    configure(settings.log_level)
    return create_app(settings)
