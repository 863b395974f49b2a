"""The trust list and verification across issuers: partners, their code keys, forwarding with bounded waits."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import aiohttp
import asyncpg
import msgspec
from cryptography.hazmat.primitives.asymmetric import ed25519

from ecard.cards import REGIONS
from ecard.catalog import Item
from ecard.clients import Client, ClientDirectory
from ecard.codes import Token, check_signature
from ecard.federation import store
from ecard.federation.models import CodeKeyAnswer, PartnerAnswer
from ecard.federation.requestkey import TAGS, Audience, IssuerRequestKey
from ecard.kit import audit, peers, signing
from ecard.kit.clock import Clock, iso, to_datetime
from ecard.kit.crypto import b64u, b64u_decode
from ecard.kit.ids import new_id
from ecard.kit.jwk import parse_public_jwk, thumbprint
from ecard.kit.metrics import PARTNER_CALLS, PARTNER_SECONDS
from ecard.kit.principal import ClientKind
from ecard.kit.refusal import Refusal
from ecard.verify import REFUSALS, Venue, Verification

log = logging.getLogger("ecard.federation")

# Refusals a partner may answer that mean the same here; anything else from a partner is "unavailable".
RELAYED = frozenset(REFUSALS) - {
    "forbidden",
    "merchant_not_entitled",
    "issuer_unavailable",
    "database_unavailable",
    "cache_unavailable",
    "overloaded",
}
RELOAD_S = 1.0
# how far a partner's signed answer may be from our clock (as for signed requests)
ANSWER_WINDOW_S = 300
TAG = TAGS[Audience.FEDERATION]

# What a partner may say about a card, and the shape each value must have; the item decides which of them pass.
_PRINTABLE = r"[^\x00-\x1f\x7f]{1,64}"
ATTRIBUTE_SHAPES = {
    "pseudonym": re.compile(r"psn_[A-Za-z0-9_-]{1,64}"),
    "name_masked": re.compile(_PRINTABLE),
    "name": re.compile(_PRINTABLE),
    "id_number": re.compile(r"[0-9]{17}[0-9X]|[0-9]{15}"),
}


class PartnerVerdict(msgspec.Struct):
    """A partner's answer accepting a code, as far as it is read: anything else in it is ignored."""

    result: Literal["accepted"]
    verification_id: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
    card: dict[Annotated[str, msgspec.Meta(max_length=32)], Annotated[str, msgspec.Meta(max_length=128)]]


class MalformedAnswerError(Exception):
    """A partner answered 200 with something that is not a signed, well-formed accept."""


@dataclass(frozen=True)
class PartnerKey:
    kid: bytes
    public: ed25519.Ed25519PublicKey
    status: str


@dataclass(frozen=True)
class Partner:
    partner_id: str
    issuer: str
    name: str
    base_url: str
    region: str
    status: str
    key_id: str
    code_keys: dict[bytes, PartnerKey]
    keys_fetched_at: float | None


def _partner_keys(stored: list[store.CodeKey]) -> dict[bytes, PartnerKey]:
    keys: dict[bytes, PartnerKey] = {}
    for stored_key in stored:
        try:
            kid = b64u_decode(stored_key.kid)
            public = ed25519.Ed25519PublicKey.from_public_bytes(b64u_decode(stored_key.x))
        except ValueError:
            continue
        keys[kid] = PartnerKey(kid, public, stored_key.status)
    return keys


def _published_code_keys(published: list[Any]) -> list[store.CodeKey]:
    """The Ed25519 code keys of a partner's published set; anything else in it is skipped."""
    keys = []
    for jwk in published:
        if not isinstance(jwk, dict) or jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
            continue
        kid, x, status = jwk.get("kid"), jwk.get("x"), jwk.get("status", "active")
        if isinstance(kid, str) and isinstance(x, str) and status in {"active", "retired", "revoked"}:
            keys.append(store.CodeKey(kid=kid, x=x, status=status))
    return keys


def _partner(row: store.PartnerRow) -> Partner:
    return Partner(
        partner_id=row.partner_id,
        issuer=row.issuer,
        name=row.name,
        base_url=row.base_url.rstrip("/"),
        region=row.region,
        status=row.status,
        key_id=row.key_id,
        code_keys=_partner_keys(row.code_keys),
        keys_fetched_at=row.keys_fetched_at.timestamp() if row.keys_fetched_at is not None else None,
    )


def disclosed_card(card: dict[str, str], discloses: tuple[str, ...]) -> dict[str, str]:
    """What a partner's accept may tell our terminal: the item's attributes, each of its shape, and the region."""
    region = card.get("region")
    if region not in REGIONS:
        raise MalformedAnswerError("region")
    kept = {"region": region}
    for attribute in discloses:
        value = card.get(attribute)
        if value is None:
            continue
        shape = ATTRIBUTE_SHAPES.get(attribute)
        if shape is None or not shape.fullmatch(value):
            raise MalformedAnswerError(attribute)
        kept[attribute] = value
    return kept


@dataclass
class Outcome:
    """What one call to a partner showed: it answers (True), it does not (False), or nothing yet (None)."""

    ok: bool | None = None


@dataclass
class Breaker:
    """Per partner and worker: after `threshold` failures in a row, refuse at once for `cooldown_s`, then try one."""

    threshold: int
    cooldown_s: float
    now: Callable[[], float] = time.monotonic
    failures: int = 0
    open_until: float = 0.0
    probing: bool = field(default=False)

    def allow(self) -> bool:
        if self.failures < self.threshold:
            return True
        if self.now() < self.open_until or self.probing:
            return False
        self.probing = True
        return True

    def succeeded(self) -> None:
        self.failures = 0
        self.probing = False

    def failed(self) -> None:
        self.failures += 1
        self.probing = False
        if self.failures >= self.threshold:
            self.open_until = self.now() + self.cooldown_s

    @contextlib.contextmanager
    def call(self) -> Iterator[Outcome]:
        """One allowed call: its outcome is recorded however the call ends.

        A call that ends with no outcome (cancelled because the terminal hung up, or our own error) frees the
        trial slot without counting against the partner; otherwise a cancelled trial would hold it forever."""
        outcome = Outcome()
        try:
            yield outcome
        finally:
            if outcome.ok is True:
                self.succeeded()
            elif outcome.ok is False:
                self.failed()
            else:
                self.probing = False


@dataclass(frozen=True)
class FederationSettings:
    issuer: str
    timeout_s: float
    refresh_s: float
    max_key_age_s: float
    breaker_threshold: int
    breaker_cooldown_s: float
    # the authorities partners' requests must be signed for: where this service answers them
    authorities: frozenset[str]


class Federation:
    """Partners (the trust list) and the forwarding of their codes to them."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        directory: ClientDirectory,
        signer: IssuerRequestKey,
        clock: Clock,
        settings: FederationSettings,
        http: aiohttp.ClientSession,
    ) -> None:
        self._pool = pool
        self._directory = directory
        self._signer = signer
        self._clock = clock
        self._settings = settings
        self._http = http
        self._partners: dict[str, Partner] = {}
        self._loaded_at = 0.0
        self._breakers: dict[str, Breaker] = {}
        # what partners decided, recorded in groups as local verifications are (issue 13)
        self._forwarded = store.forwarded_records(pool)

    @property
    def issuer(self) -> str:
        return self._settings.issuer

    @property
    def authorities(self) -> frozenset[str]:
        return self._settings.authorities

    # the trust list

    async def register(
        self, actor: str, issuer: str, name: str, base_url: str, public_key: Any, region: str | None
    ) -> PartnerAnswer:
        if issuer == self.issuer:
            raise Refusal("invalid_request", "a partner cannot have this issuer's own id", extra={"fields": ["issuer"]})
        insecure = peers.insecure(base_url)
        if insecure is not None:
            raise Refusal("invalid_request", f"base_url: {insecure}", extra={"fields": ["base_url"]})
        try:
            _, _, canonical = parse_public_jwk(public_key)
        except Refusal as refusal:
            raise Refusal(refusal.code, refusal.detail, extra={"fields": ["public_key"]}) from refusal
        kid = str(public_key.get("kid") or thumbprint(canonical))
        key_id = f"{issuer}:{kid}"
        async with self._pool.acquire() as conn, conn.transaction():
            row = await store.insert_partner(
                conn, new_id("ptn"), issuer, name, base_url.rstrip("/"), region or issuer, key_id
            )
            if row is None:
                raise Refusal("partner_exists", "a partner with this issuer is registered already")
            await self._directory.register(conn, ClientKind.PARTNER, row.partner_id, canonical, key_id=key_id)
            await audit.record(conn, actor, "partner.registered", row.partner_id, {"issuer": issuer})
        await self.reload()
        with contextlib.suppress(Refusal):
            await self.refresh_keys(issuer)
        return self._answer(self._partners[issuer])

    async def set_status(self, actor: str, issuer: str, status: str) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            partner_id = await store.set_partner_status(conn, issuer, status)
            if partner_id is None:
                raise Refusal("not_found", "no partner has this issuer")
            await self._directory.set_owner_status(conn, partner_id, "active" if status == "active" else "disabled")
            await audit.record(conn, actor, f"partner.{status}", partner_id, {"issuer": issuer})
        await self.reload()

    async def list(self) -> list[PartnerAnswer]:
        await self.reload()
        return [self._answer(p) for p in self._partners.values()]

    @staticmethod
    def _answer(partner: Partner) -> PartnerAnswer:
        return PartnerAnswer(
            partner_id=partner.partner_id,
            key_id=partner.key_id,
            issuer=partner.issuer,
            name=partner.name,
            base_url=partner.base_url,
            region=partner.region,
            status=partner.status,
            code_keys=[CodeKeyAnswer(b64u(kid), key.status) for kid, key in sorted(partner.code_keys.items())],
            keys_fetched_at=iso(partner.keys_fetched_at) if partner.keys_fetched_at is not None else None,
        )

    async def reload(self) -> None:
        self._partners = {row.issuer: _partner(row) for row in await store.partners(self._pool)}
        self._loaded_at = time.monotonic()

    async def partner(self, issuer: str) -> Partner | None:
        if time.monotonic() - self._loaded_at > RELOAD_S:
            await self.reload()
        return self._partners.get(issuer)

    async def partner_by_id(self, partner_id: str) -> Partner | None:
        if time.monotonic() - self._loaded_at > RELOAD_S:
            await self.reload()
        return next((p for p in self._partners.values() if p.partner_id == partner_id), None)

    async def refresh_keys(self, issuer: str) -> Partner:
        """Fetch a partner's published code keys now; a key it has revoked is refused from here on."""
        partner = await self.partner(issuer)
        if partner is None:
            raise Refusal("not_found", "no partner has this issuer")
        url = f"{partner.base_url}/v1/issuer/keys"
        try:
            answer = await peers.call(self._http, "GET", url, b"", {}, self._settings.timeout_s * 4)
        except peers.PeerUnreachableError as exc:
            log.warning("partner keys not refreshed", extra={"issuer": issuer, "why": str(exc)})
            raise Refusal("issuer_unavailable", f"the keys of issuer {issuer} could not be fetched") from exc
        body = answer.body if isinstance(answer.body, dict) else {}
        if answer.status != 200 or body.get("issuer") != issuer or not isinstance(body.get("keys"), list):
            log.warning("partner keys not refreshed", extra={"issuer": issuer, "status": answer.status})
            raise Refusal("issuer_unavailable", f"issuer {issuer} did not answer with its key set")
        await store.set_code_keys(
            self._pool, issuer, _published_code_keys(body["keys"]), to_datetime(self._clock.now())
        )
        await self.reload()
        return self._partners[issuer]

    async def keep_fresh(self) -> None:
        """Background: refresh every active partner's code keys every `refresh_s`."""
        while True:
            await asyncio.sleep(self._settings.refresh_s)
            with contextlib.suppress(Exception):
                await self.reload()
            for partner in list(self._partners.values()):
                if partner.status == "active":
                    with contextlib.suppress(Refusal, asyncpg.PostgresError, OSError):
                        await self.refresh_keys(partner.issuer)

    # verification across issuers

    def joint(self, item: Item, partner: Partner) -> bool:
        return self.issuer in item.regions and partner.region in item.regions

    async def _key(self, partner: Partner, kid: bytes) -> PartnerKey:
        age = self._clock.now() - (partner.keys_fetched_at or 0.0)
        if kid not in partner.code_keys or age > self._settings.max_key_age_s:
            # a key rotated in since the last fetch, or a set too old to trust: ask the partner now
            partner = await self.refresh_keys(partner.issuer)
        key = partner.code_keys.get(kid)
        if key is None:
            raise Refusal("unknown_key", "no key the code's issuer publishes has this kid")
        if key.status == "revoked":
            raise Refusal("key_revoked", "the code's issuer has revoked the key that signed it")
        return key

    async def forward(self, token: Token, code: str, item: Item, venue: Venue, now: float) -> Verification:
        """Ask the code's issuer to decide; record what it answered; answer the terminal in the same shape."""
        partner = await self.partner(token.issuer)
        if partner is None or partner.status != "active":
            raise Refusal("unknown_issuer", "this code comes from an issuer this service does not know")
        if not self.joint(item, partner):
            raise Refusal("item_not_in_joint_list", f"this item is not shared with issuer {partner.issuer}")
        key = await self._key(partner, token.kid)
        check_signature(token, key.public)
        body = {
            "code": code,
            "item_code": item.item_code,
            "merchant": {"id": venue.merchant_id, "name": venue.merchant_name, "region": venue.region},
            "terminal_id": venue.terminal_id,
            "place": venue.place,
            "answer_by": round(self._clock.now() + self._settings.timeout_s, 3),
        }
        remote_id, card = await self._decide(partner, body, item.discloses)
        verification_id = new_id("vrf")
        try:
            await self._forwarded.record(
                store.ForwardedRecord(
                    verification_id,
                    partner.issuer,
                    remote_id,
                    venue.merchant_id,
                    item.item_code,
                    venue.terminal_id,
                    venue.place,
                    sorted(k for k in card if k != "region"),
                    to_datetime(now),
                )
            )
        except asyncpg.UniqueViolationError as exc:
            # a partner's verification id names one verification: an accept under an id it gave before is not one
            PARTNER_CALLS.labels(issuer=partner.issuer, outcome="malformed").inc()
            log.warning("partner answer refused", extra={"issuer": partner.issuer, "why": "verification id reused"})
            raise Refusal("issuer_unavailable", f"issuer {partner.issuer} answered what it may not") from exc
        return Verification(verification_id, item.item_code, now, card)

    async def _partner_key(self, partner: Partner) -> Client:
        """The key the partner signs with, as the trust list holds it: its answers must verify with it."""
        client = await self._directory.get(partner.key_id)
        if client is None or client.kind is not ClientKind.PARTNER or client.owner_id != partner.partner_id:
            log.warning("partner key missing from the trust list", extra={"issuer": partner.issuer})
            raise Refusal("issuer_unavailable", f"issuer {partner.issuer} has no usable key on the trust list")
        return client

    async def _decide(
        self, partner: Partner, body: dict[str, Any], discloses: tuple[str, ...]
    ) -> tuple[str, dict[str, str]]:
        """The partner's decision: its verification id and what the card discloses, or its refusal."""
        breaker = self._breakers.setdefault(
            partner.issuer, Breaker(self._settings.breaker_threshold, self._settings.breaker_cooldown_s)
        )
        if not breaker.allow():
            PARTNER_CALLS.labels(issuer=partner.issuer, outcome="circuit_open").inc()
            raise Refusal("issuer_unavailable", f"issuer {partner.issuer} is not answering; try again shortly")
        with breaker.call() as outcome:
            partner_key = await self._partner_key(partner)
            url = f"{partner.base_url}/v1/federation/verifications"
            raw = json.dumps(body, ensure_ascii=False).encode()
            headers = {"Content-Type": "application/json", **self._signer.sign("POST", url, raw)}
            started = time.perf_counter()
            try:
                answer = await peers.call(self._http, "POST", url, raw, headers, self._settings.timeout_s)
            except peers.PeerUnreachableError as exc:
                outcome.ok = False
                PARTNER_CALLS.labels(issuer=partner.issuer, outcome="unavailable").inc()
                log.warning("partner unreachable", extra={"issuer": partner.issuer, "why": str(exc)})
                raise Refusal("issuer_unavailable", f"issuer {partner.issuer} could not be reached") from exc
            finally:
                PARTNER_SECONDS.labels(issuer=partner.issuer).observe(time.perf_counter() - started)
            if answer.status == 200:
                try:
                    decided = self._accepted(answer, headers, partner_key, discloses)
                except MalformedAnswerError as exc:
                    outcome.ok = False
                    PARTNER_CALLS.labels(issuer=partner.issuer, outcome="malformed").inc()
                    log.warning("partner answer refused", extra={"issuer": partner.issuer, "why": str(exc)})
                    raise Refusal("issuer_unavailable", f"issuer {partner.issuer} answered what it may not") from exc
                outcome.ok = True
                PARTNER_CALLS.labels(issuer=partner.issuer, outcome="accepted").inc()
                return decided
            code = answer.body.get("code") if isinstance(answer.body, dict) else None
            if 400 <= answer.status < 500 and code in RELAYED:
                outcome.ok = True
                PARTNER_CALLS.labels(issuer=partner.issuer, outcome=str(code)).inc()
                raise Refusal(str(code), f"issuer {partner.issuer} refused the code: {code}")
            outcome.ok = False
            PARTNER_CALLS.labels(issuer=partner.issuer, outcome="unavailable").inc()
            log.warning("partner refused us", extra={"issuer": partner.issuer, "status": answer.status})
            raise Refusal("issuer_unavailable", f"issuer {partner.issuer} could not decide ({answer.status})")

    def _accepted(
        self, answer: peers.PeerAnswer, sent: dict[str, str], partner_key: Client, discloses: tuple[str, ...]
    ) -> tuple[str, dict[str, str]]:
        """A 200 from a partner, believed only when signed by its key as the answer to our request, and well formed."""
        try:
            signing.verify_answer(
                answer.status,
                answer.headers,
                answer.raw,
                sent,
                partner_key.key,
                partner_key.alg,
                partner_key.key_id,
                TAG,
                self._clock.now(),
                ANSWER_WINDOW_S,
            )
        except Refusal as refusal:
            raise MalformedAnswerError(f"signature: {refusal.code}") from refusal
        try:
            verdict = msgspec.json.decode(answer.raw, type=PartnerVerdict)
        except msgspec.DecodeError as exc:
            raise MalformedAnswerError("shape") from exc
        return verdict.verification_id, disclosed_card(verdict.card, discloses)
