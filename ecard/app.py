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

from ecard.bank import HttpBank
from ecard.cards import Cards
from ecard.cards.http import CardholderAdminController, DeviceController, EnrolmentController
from ecard.catalog import Catalog
from ecard.catalog.http import CatalogAdminController, CatalogController
from ecard.clients import Authenticator, ClientDirectory
from ecard.codes import CodeIssuer, KeyRing
from ecard.codes.http import CodeController
from ecard.config import Settings
from ecard.depth import Depth
from ecard.depth.http import DepthController
from ecard.federation import Federation, FederationSettings, IssuerRequestKey
from ecard.federation.http import FederationController, IssuerRequestKeyController, PartnerAdminController
from ecard.kit.clock import Clock, SystemClock
from ecard.kit.crypto import Keys, load_master_key
from ecard.kit.edge import provide
from ecard.kit.infra import create_pool, create_redis
from ecard.kit.peers import session as peer_session
from ecard.kit.problems import (
    http_exception_handler,
    internal_error_handler,
    not_utf8_handler,
    refusal_handler,
    validation_handler,
)
from ecard.kit.reference import OfflineRedoc
from ecard.kit.refusal import Refusal
from ecard.merchants import Merchants
from ecard.merchants.http import MerchantAdminController, VenueController
from ecard.operators import Operators
from ecard.operators.http import SessionController
from ecard.ops import configure
from ecard.ops.http import EchoController, OpsController, access_middleware
from ecard.payments import CallbackPolicy, Callbacks, Payments, Recovery
from ecard.payments.http import BillController, StatementController
from ecard.portal import Portals, Provider, SigningKeys
from ecard.portal.http import LoginController, OAuthController, PortalAdminController, ProviderController
from ecard.risk import RiskEvents
from ecard.verify import VerifyDeps
from ecard.verify.http import VerificationController
from ecard.yukuai import YukuaiLinks, YukuaiPlatform
from ecard.yukuai.http import YukuaiLinkController

# The collaborators routes are handed by name (see ecard.kit.edge.provide); each is built in the lifespan.
COLLABORATORS = ("authenticator", "operator_sessions")


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
        request_key = await IssuerRequestKey.load(pool, keys, settings.issuer_id)
        # one connection pool for every peer we call: partner issuers, the 渝快办 platform
        peers = peer_session()
        federation = Federation(
            pool,
            directory,
            request_key,
            clock,
            FederationSettings(
                issuer=settings.issuer_id,
                timeout_s=settings.partner_timeout_ms / 1000,
                refresh_s=settings.partner_refresh_s,
                max_key_age_s=settings.partner_keys_max_age_s,
                breaker_threshold=settings.partner_breaker_failures,
                breaker_cooldown_s=settings.partner_breaker_cooldown_s,
            ),
            peers,
        )
        await federation.reload()
        yukuai = (
            YukuaiLinks(
                pool,
                YukuaiPlatform(settings.yukuai_url, request_key, peers, settings.partner_timeout_ms / 1000),
                clock,
                settings.yukuai_prefix,
                settings.yukuai_consent_version,
            )
            if settings.yukuai_url
            else None
        )
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
        state.request_key = request_key
        state.federation = federation
        state.yukuai = yukuai
        state.authenticator = Authenticator(directory, redis, settings.redis_prefix, clock, settings.signature_window_s)
        state.operators = state.operator_sessions = Operators(
            pool, redis, keys, clock, settings.redis_prefix, settings.session_ttl_s
        )
        state.code_issuer = CodeIssuer(ring, cards, keys, clock, settings.issuer_id, settings.code_ttl_s)
        portal_keys = SigningKeys(pool, keys, clock)
        await portal_keys.ensure_active()
        state.portals = Portals(pool, catalog)
        state.portal_provider = Provider(
            pool,
            redis,
            keys,
            portal_keys,
            state.portals,
            clock,
            settings.public_url,
            settings.redis_prefix,
            settings.clock_skew_s,
        )
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
            forwarder=federation,
            linked=yukuai,
        )
        background = [asyncio.create_task(ring.keep_fresh()), asyncio.create_task(federation.keep_fresh())]
        bank = HttpBank(settings.bank_url, request_key, settings.bank_timeout_s) if settings.bank_url else None
        callbacks = Callbacks(
            pool,
            clock,
            request_key,
            CallbackPolicy(
                base_delay_s=settings.callback_base_delay_s,
                window_s=settings.callback_window_s,
                poll_s=settings.callback_poll_s,
                timeout_s=settings.callback_timeout_s,
            ),
        )
        state.bank = bank
        state.callbacks = callbacks
        state.payments = Payments(
            pool, redis, settings.redis_prefix, clock, merchants, catalog, cards, bank, callbacks.wake
        )
        background.append(asyncio.create_task(callbacks.run()))
        if bank is not None:
            state.recovery = Recovery(pool, clock, bank, settings.payment_recovery_grace_s)
            background.append(asyncio.create_task(state.recovery.run(settings.payment_recovery_interval_s)))
        try:
            yield
        finally:
            for task in background:
                task.cancel()
            for task in background:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await peers.close()
            await callbacks.aclose()
            if bank is not None:
                await bank.aclose()
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
        PartnerAdminController,
        IssuerRequestKeyController,
        FederationController,
        YukuaiLinkController,
        ProviderController,
        OAuthController,
        LoginController,
        PortalAdminController,
        BillController,
        StatementController,
    ]
    if settings.load_echo:
        handlers.append(EchoController)

    return Litestar(
        route_handlers=handlers,
        lifespan=[lifespan],
        dependencies={name: provide(name) for name in COLLABORATORS},
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
            render_plugins=[OfflineRedoc()],
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
