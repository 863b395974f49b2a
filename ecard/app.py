"""Builds the Litestar application from settings: wiring only."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

from litestar import Litestar
from litestar.config.app import AppConfig
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, Reference, SecurityScheme

from ecard.bank import HttpBank
from ecard.cards import Cards, TicketPolicy, Tickets
from ecard.cards.http import (
    CardholderAdminController,
    DeviceController,
    EnrolmentController,
    PinResetController,
    TicketedEnrolmentController,
)
from ecard.catalog import Catalog
from ecard.catalog.http import CatalogAdminController, CatalogController
from ecard.clients import Authenticator, ClientDirectory
from ecard.codes import CodeIssuer, KeyRing, NumericCodes, NumericPolicy
from ecard.codes.http import CodeController, raw_code
from ecard.complaints import ComplaintPolicy, Complaints
from ecard.complaints.http import CardComplaintController, ComplaintAdminController, ComplaintController
from ecard.config import Settings
from ecard.console import Console
from ecard.console.http import ConsoleController, ConsoleLoginController
from ecard.depth import Depth
from ecard.depth.http import DepthController
from ecard.disbursements import DisbursementPolicy, Disbursements, Payer, PayerPolicy, item_reach
from ecard.disbursements.http import (
    DisbursementAdminController,
    DisbursementController,
    HolderDisbursementController,
)
from ecard.family import Family, FamilySettings
from ecard.family.http import FamilyConsentController, FamilyController
from ecard.federation import Audience, Federation, FederationSettings, IssuerRequestKeys
from ecard.federation.http import FederationController, IssuerRequestKeyController, PartnerAdminController
from ecard.h5 import PageSessions
from ecard.h5.http import H5Controller
from ecard.kit import heap
from ecard.kit.audit import AuditSealer
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
    too_deep_handler,
    validation_handler,
)
from ecard.kit.raw import RawHandler, RawRoutes
from ecard.kit.reference import OfflineRedoc
from ecard.kit.refusal import Refusal
from ecard.kit.signing import authority
from ecard.kit.supervisor import Supervisor
from ecard.merchants import Merchants
from ecard.merchants.http import MerchantAdminController, VenueController
from ecard.offline import OfflineTaps
from ecard.offline.http import OfflineTapController
from ecard.operators import Operators
from ecard.operators.http import SessionController
from ecard.ops import Readiness, ServiceInfo, configure
from ecard.ops.http import EchoController, OpsController, access_middleware
from ecard.partitions import Partitions
from ecard.payments import CallbackPolicy, Callbacks, Destinations, Payments, Recovery
from ecard.payments.http import BillController, StatementController
from ecard.portal import Held, Portals, Provider, SigningKeys
from ecard.portal.http import LoginController, OAuthController, PortalAdminController, ProviderController
from ecard.risk import AuditWatch, RiskEvents, RiskInbox, RiskSettings
from ecard.risk.http import RiskAdminController
from ecard.verify import VerifyDeps, verification_records
from ecard.verify.http import HistoryController, VerificationController, raw_verification
from ecard.yukuai import YukuaiLinks, YukuaiPlatform, check_platform_url
from ecard.yukuai.http import YukuaiLinkController

# The collaborators routes are handed by name (see ecard.kit.edge.provide); each is built in the lifespan.
COLLABORATORS = (
    "authenticator",
    "operator_sessions",
    "federation",
    "request_keys",
    "verify_deps",
    "yukuai",
    "portal_provider",
    "portals",
    "payments",
    "operators",
    "readiness",
    "cards",
    "code_issuer",
    "key_ring",
    "catalog",
    "merchants",
    "depth",
    # complaints and the service's published contacts (issue 14)
    "complaints",
    "service_info",
    # family accounts (issue 15)
    "family",
    # disbursement (issue 12)
    "disbursements",
    # risk monitoring (issue 14)
    "risk",
    # issue 15: numeric code, offline taps
    "numeric_codes",
    "offline_taps",
    # the operators' web console (issue 16)
    "console",
    # issue 16: the citizen pages' enrolment tickets and page sessions
    "tickets",
    "h5_sessions",
    "h5_frame_ancestors",
)


def create_app(settings: Settings, clock: Clock | None = None) -> Litestar:
    clock = clock or SystemClock()
    if settings.yukuai_url:
        check_platform_url(settings.yukuai_url)

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        if not settings.database_url or not settings.redis_url:
            raise RuntimeError("ECARD_DATABASE_URL and ECARD_REDIS_URL must be set (`ecard serve` sets them)")
        pool = await create_pool(
            settings.database_url, settings.db_pool_min, settings.db_pool_max, settings.db_pool_wait_s
        )
        # issue 13, read replica: reads that tolerate lag go to a streaming replica when one is configured
        replica = (
            await create_pool(
                settings.database_replica_url, settings.db_pool_min, settings.db_pool_max, settings.db_pool_wait_s
            )
            if settings.database_replica_url
            else None
        )
        redis = create_redis(settings.redis_url, settings.redis_pool_size, settings.redis_pool_wait_s)
        keys = Keys.from_master(load_master_key(settings))
        directory = ClientDirectory(pool, keys)
        catalog = Catalog(pool, clock)
        merchants = Merchants(pool, directory, catalog, replica)
        # risk monitoring (issue 14): the rules' queue, filled by cards (lockouts, enrolments) and verification
        risk_inbox = RiskInbox(settings.risk_queue_size, enabled=settings.risk_rules)
        cards = Cards(pool, keys, directory, clock, pin_reset_ttl_s=settings.pin_reset_ttl_s, signals=risk_inbox)
        risk = RiskEvents(pool, redis, cards, clock, _risk_settings(settings), risk_inbox)
        ring = KeyRing.from_settings(pool, redis, keys, clock, settings)
        await ring.ensure_active()
        await ring.republish_revocations()
        # one key per audience: partners, the 渝快办 platform, the bank, merchants' callback servers
        request_keys = await IssuerRequestKeys.load(pool, keys, settings.issuer_id)
        # one connection pool for every peer we call: partner issuers, the 渝快办 platform
        peers = peer_session()
        federation = Federation(
            pool,
            directory,
            request_keys.signer(Audience.FEDERATION),
            clock,
            FederationSettings(
                issuer=settings.issuer_id,
                timeout_s=settings.partner_timeout_ms / 1000,
                refresh_s=settings.partner_refresh_s,
                max_key_age_s=settings.partner_keys_max_age_s,
                breaker_threshold=settings.partner_breaker_failures,
                breaker_cooldown_s=settings.partner_breaker_cooldown_s,
                authorities=frozenset({authority(settings.public_url)}),
            ),
            peers,
        )
        await federation.reload()
        platform = (
            YukuaiPlatform(
                settings.yukuai_url,
                request_keys.signer(Audience.YUKUAI),
                peers,
                settings.partner_timeout_ms / 1000,
            )
            if settings.yukuai_url
            else None
        )
        yukuai = YukuaiLinks(pool, platform, cards, clock, settings.yukuai_prefix, settings.yukuai_consent_version)
        state = app.state
        state.settings = settings
        state.clock = clock
        state.pool = pool
        state.redis = redis
        state.readiness = Readiness(pool, redis)
        state.secret_keys = keys
        state.directory = directory
        state.catalog = catalog
        state.merchants = merchants
        state.depth = Depth(pool, catalog, merchants, lambda year: item_reach(pool, year), replica)
        state.cards = cards
        state.key_ring = ring
        state.request_keys = request_keys
        state.federation = federation
        state.yukuai = yukuai
        state.authenticator = Authenticator(directory, redis, settings.redis_prefix, clock, settings.signature_window_s)
        state.operators = state.operator_sessions = Operators(
            pool, redis, keys, clock, settings.redis_prefix, settings.session_ttl_s
        )
        # family accounts (issue 15): a guardian's device mints codes for the members it may show
        state.family = Family(
            pool,
            redis,
            cards,
            clock,
            FamilySettings(
                consent_grace_days=settings.family_consent_grace_days,
                match_failures=settings.family_match_failures,
                match_window_s=settings.family_match_window_s,
                redis_prefix=settings.redis_prefix,
            ),
        )
        state.code_issuer = CodeIssuer(
            ring, cards, keys, clock, settings.issuer_id, settings.code_ttl_s, delegations=state.family
        )
        portal_keys = SigningKeys(pool, keys, clock)
        await portal_keys.ensure_active()
        state.portals = Portals(pool, catalog)
        state.portal_provider = Provider(
            pool,
            Held(redis, settings.redis_prefix),
            keys,
            portal_keys,
            state.portals,
            cards,
            clock,
            settings.public_url,
            settings.clock_skew_s,
        )
        # issue 15: the numeric code, minted by devices and resolved by verification
        state.numeric_codes = NumericCodes(
            pool,
            redis,
            keys,
            cards,
            clock,
            settings.redis_prefix,
            NumericPolicy(
                issuer_digits=settings.numeric_issuer_digits,
                ttl_s=settings.code_ttl_s,
                skew_s=settings.clock_skew_s,
                guesses=settings.numeric_guesses,
                guess_window_s=settings.numeric_guess_window_s,
            ),
            delegations=state.family,
        )
        state.verify_deps = VerifyDeps(
            pool=pool,
            redis=redis,
            keys=keys,
            ring=ring,
            catalog=catalog,
            merchants=merchants,
            risk=risk,
            clock=clock,
            issuer=settings.issuer_id,
            skew_s=settings.clock_skew_s,
            prefix=settings.redis_prefix,
            records=verification_records(pool),  # issue 13 (perf): group commit of verification records
            forwarder=federation,
            linked=yukuai if platform is not None else None,
            numeric=state.numeric_codes,
            replica=replica,
        )
        # complaints and the service's published contacts (issue 14)
        state.complaints = Complaints(
            pool,
            redis,
            keys,
            clock,
            settings.redis_prefix,
            ComplaintPolicy(
                due_days=settings.complaint_due_days,
                per_source=settings.complaint_per_source,
                per_card=settings.complaint_per_card,
                window_s=settings.complaint_window_s,
            ),
        )
        state.service_info = ServiceInfo(
            issuer=settings.issuer_id,
            complaint_phone=settings.complaint_phone,
            complaint_url=settings.complaint_url or f"{settings.public_url}/v1/complaints",
            complaint_due_days=settings.complaint_due_days,
        )
        # issue 15: offline taps
        state.offline_taps = OfflineTaps(
            pool, state.verify_deps, clock, settings.offline_grace_s, settings.clock_skew_s
        )
        # the operators' web console (issue 16): CSRF tokens and audited reveals; every action is a room's service
        state.console = Console(pool, keys.csrf_key, cards, settings.session_ttl_s)
        # issue 16: the citizen pages (H5), opened by a channel's ticket, read with a device-minted page session
        state.tickets = Tickets(
            pool,
            redis,
            cards,
            clock,
            TicketPolicy(settings.public_url, settings.h5_ticket_redeems_per_source, settings.redis_prefix),
        )
        state.h5_sessions = PageSessions(
            redis,
            directory,
            settings.redis_prefix,
            settings.h5_session_ttl_s,
            https=settings.public_url.startswith("https://"),
        )
        state.h5_frame_ancestors = settings.h5_frame_ancestors
        # every background loop runs supervised: restarted after an unexpected exception, and metered
        background = Supervisor()
        state.background = background
        state.audit_sealer = AuditSealer(pool, keys.audit_key)
        background.start("audit_sealer", state.audit_sealer.run)
        background.start("issuer_keys", ring.keep_fresh)
        background.start("partner_keys", federation.keep_fresh)
        # issue 13, partitions: months of the append-only tables made ahead of time
        state.partitions = Partitions(pool, clock, settings.partitions_ahead_months)
        background.start("partitions", state.partitions.run)
        # risk monitoring (issue 14): the rules, and the periodic audit check
        state.risk = risk
        background.start("risk_rules", risk.run)
        audit_watch = AuditWatch(pool, redis, keys.audit_key, risk, settings.redis_prefix, settings.risk_audit_check_s)
        state.audit_watch = audit_watch
        background.start("audit_check", audit_watch.run)
        bank = (
            HttpBank(settings.bank_url, request_keys.signer(Audience.BANK), settings.bank_timeout_s)
            if settings.bank_url
            else None
        )
        destinations = Destinations(allow_loopback=settings.callback_allow_loopback)
        callbacks = Callbacks(
            pool,
            clock,
            request_keys.signer(Audience.CALLBACK),
            CallbackPolicy(
                base_delay_s=settings.callback_base_delay_s,
                window_s=settings.callback_window_s,
                poll_s=settings.callback_poll_s,
                deadline_s=settings.callback_timeout_s,
                concurrency=settings.callback_concurrency,
                per_merchant=settings.callback_per_merchant,
            ),
            destinations,
        )
        state.bank = bank
        state.callbacks = callbacks
        state.payments = Payments(
            pool,
            clock,
            merchants,
            catalog,
            cards,
            bank,
            callbacks.wake,
            destinations,
            settings.payment_recovery_grace_s,
        )
        background.start("callbacks", callbacks.run)
        if bank is not None:
            recovery = state.recovery = Recovery(pool, clock, bank, settings.payment_recovery_grace_s)
            background.start("payment_recovery", lambda: recovery.run(settings.payment_recovery_interval_s))
        # disbursement (issue 12): batches validated on upload, paid by a supervised payer once approved
        payer_box: list[Payer] = []

        def wake_disbursements() -> None:
            callbacks.wake()
            for payer in payer_box:
                payer.wake()

        state.disbursements = Disbursements(
            pool,
            clock,
            merchants,
            catalog,
            cards,
            destinations.check,
            wake_disbursements,
            DisbursementPolicy(settings.disbursement_dual_approval_fen, settings.disbursement_approval_ttl_s),
        )
        if bank is not None:
            payer_box.append(
                Payer(
                    pool,
                    clock,
                    bank,
                    state.disbursements,
                    callbacks.wake,
                    PayerPolicy(
                        concurrency=settings.disbursement_concurrency,
                        lease_s=settings.disbursement_lease_s,
                        poll_s=settings.disbursement_poll_s,
                        retries=settings.disbursement_retries,
                    ),
                )
            )
            state.payer = payer_box[0]
            background.start("disbursement_payer", payer_box[0].run)
        # the holder's timeline shows what was paid into the card beside its verifications
        state.verify_deps = dataclasses.replace(state.verify_deps, payouts=state.disbursements)
        # issue 13 (perf): what startup made lives until shutdown; full collections need not walk it again
        heap.settle()
        try:
            yield
        finally:
            heap.unsettle()
            await background.stop()
            await peers.close()
            await callbacks.aclose()
            if bank is not None:
                await bank.aclose()
            await redis.aclose()
            if replica is not None:
                await replica.close()
            await pool.close()

    handlers: list[Any] = [
        OpsController,
        SessionController,
        CardholderAdminController,
        MerchantAdminController,
        VenueController,
        DepthController,
        EnrolmentController,
        PinResetController,
        DeviceController,
        CodeController,
        VerificationController,
        HistoryController,
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
        # complaints (issue 14)
        ComplaintController,
        CardComplaintController,
        ComplaintAdminController,
        # family accounts (issue 15)
        FamilyController,
        FamilyConsentController,
        # disbursement (issue 12)
        DisbursementController,
        DisbursementAdminController,
        HolderDisbursementController,
        # risk monitoring (issue 14)
        RiskAdminController,
        # issue 15: offline taps
        OfflineTapController,
        # the operators' web console (issue 16)
        ConsoleLoginController,
        ConsoleController,
        # issue 16: the citizen pages (H5)
        TicketedEnrolmentController,
        H5Controller,
    ]
    if settings.load_echo:
        handlers.append(EchoController)

    app = Litestar(
        route_handlers=handlers,
        lifespan=[lifespan],
        dependencies={name: provide(name) for name in COLLABORATORS},
        exception_handlers={
            Refusal: refusal_handler,
            ValidationException: validation_handler,
            UnicodeDecodeError: not_utf8_handler,
            RecursionError: too_deep_handler,
            HTTPException: http_exception_handler,
            Exception: internal_error_handler,
        },
        openapi_config=OpenAPIConfig(
            title="ecard",
            version="1",
            description="The electronic social security card: enrolment, dynamic codes, verification. See API.md.",
            path="/schema",
            render_plugins=[OfflineRedoc()],
            components=Components(security_schemes=SECURITY_SCHEMES),
        ),
        request_max_body_size=MAX_BODY,
        on_app_init=[_quiet_defaults],
        debug=False,
    )
    # issue 13 (perf): the hot paths as raw routes in front of Litestar's router (ecard/kit/raw.py); the access log
    # and the latency histogram around both, once per request
    app.asgi_handler = access_middleware(RawRoutes(app.asgi_handler, RAW_ROUTES, MAX_BODY))
    return app


MAX_BODY = 64 * 1024
RAW_ROUTES: dict[tuple[str, str], RawHandler] = {
    ("POST", "/v1/verifications"): raw_verification,
    ("POST", "/v1/codes"): raw_code,
}


# How clients prove who they are, for readers of the OpenAPI document; API.md ("Signed requests") is the contract.
SECURITY_SCHEMES: dict[str, SecurityScheme | Reference] = {
    "rfc9421": SecurityScheme(
        type="apiKey",
        name="Signature",
        security_scheme_in="header",
        description=(
            "HTTP Message Signatures (RFC 9421), for every machine client (device, channel, merchant, terminal,"
            ' partner issuer): `Signature-Input: sig1=("@method" "@path" "@query" ["content-digest"]);'
            'created=<unix>;nonce="<random>";keyid="<key id>";alg="<ed25519|ecdsa-p256-sha256>"` and'
            " `Signature: sig1=:<base64>:`, with `Content-Digest: sha-256=:<base64>:` (RFC 9530) when there is a body."
            " `created` within 300 s of the server's clock; each nonce is accepted once; `keyid` is the key id the"
            " service answered when the public key was registered. Refusals: 401 `signature_missing`,"
            " `signature_invalid`, `signature_expired`, `nonce_reused`, `unknown_client`; 403 `client_disabled`."
            ' See API.md, "Signed requests".'
        ),
    ),
    "operator": SecurityScheme(
        type="http",
        scheme="bearer",
        description="An operator session: `POST /v1/admin/sessions` (password and TOTP) answers the token.",
    ),
}


def _risk_settings(settings: Settings) -> RiskSettings:
    return RiskSettings(
        velocity_window_s=settings.risk_velocity_window_s,
        velocity_max=settings.risk_velocity_max,
        travel_kmh=settings.risk_travel_kmh,
        travel_min_km=settings.risk_travel_min_km,
        pin_lockouts=settings.risk_pin_lockouts,
        pin_window_s=settings.risk_pin_window_s,
        churn_window_s=settings.risk_churn_window_s,
        churn_max=settings.risk_churn_max,
        harvest_window_s=settings.risk_harvest_window_s,
        harvest_cards=settings.risk_harvest_cards,
        act_on=settings.risk_act_on,
        batch_s=settings.risk_batch_s,
        prefix=settings.redis_prefix,
    )


def _quiet_defaults(config: AppConfig) -> AppConfig:
    config.logging_config = None
    return config


def create_app_from_env() -> Litestar:
    """Factory for uvicorn workers: settings from the environment `ecard serve` prepared."""
    settings = Settings.from_env()
    configure(settings.log_level)
    return create_app(settings)
