"""The issuer request keys: what this issuer signs its own outgoing requests with (RFC 9421), one key per audience.

Partners, the 渝快办 platform, the bank and merchants' callback servers each get requests signed by a key of their
own, covering `@authority` and carrying the protocol's `tag`, so that a signature one of them receives is good
nowhere else. All are published at `GET /v1/issuer/request-keys`, each marked with its `audience`; the key id on
the wire is `<issuer>:<kid>`, the kid an RFC 7638 thumbprint."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

import asyncpg
import msgspec
from cryptography.hazmat.primitives.asymmetric import ed25519

from ecard.federation import store
from ecard.kit.crypto import Keys
from ecard.kit.jwk import ALG_ED25519, load_private_jwk, private_jwk, public_jwk, thumbprint
from ecard.kit.signing import sign_answer, sign_request

_REQUEST_KEY_LOCK = 0x72716B79


class Audience(StrEnum):
    """Who receives the requests a key signs."""

    FEDERATION = "federation"  # partner issuers (and the 渝快办 platform as partner `ykb`)
    YUKUAI = "yukuai"  # the 渝快办 platform's adapter protocol
    BANK = "bank"  # the bank holding card accounts
    CALLBACK = "callback"  # merchants' notify_url servers


# The RFC 9421 `tag` of each protocol: a receiver refuses a signature made for another one.
TAGS = {
    Audience.FEDERATION: "ecard-federation",
    Audience.YUKUAI: "ecard-yukuai",
    Audience.BANK: "ecard-bank",
    Audience.CALLBACK: "ecard-callback",
}


class PublishedKey(msgspec.Struct, frozen=True):
    """One request key as `GET /v1/issuer/request-keys` lists it: a public JWK with its kid and audience."""

    kty: str
    crv: str
    x: str
    kid: str
    alg: str
    use: str
    status: str
    audience: str


class RequestKeySet(msgspec.Struct, frozen=True):
    issuer: str
    keys: list[PublishedKey]


@dataclass(frozen=True)
class IssuerRequestKey:
    """This issuer's key for one audience."""

    issuer: str
    audience: Audience
    kid: str
    private: ed25519.Ed25519PrivateKey

    @property
    def keyid(self) -> str:
        return f"{self.issuer}:{self.kid}"

    @property
    def tag(self) -> str:
        return TAGS[self.audience]

    def sign(self, method: str, url: str, body: bytes) -> dict[str, str]:
        """Signature-Input, Signature and (with a body) Content-Digest headers for one request to this audience."""
        return sign_request(method, url, body, self.private, self.keyid, ALG_ED25519, tag=self.tag)

    def sign_answer(self, status: int, body: bytes, request_headers: Mapping[str, str]) -> dict[str, str]:
        """Headers that sign our answer to a request of this audience's protocol, bound to that request."""
        return sign_answer(status, body, request_headers, self.private, self.keyid, ALG_ED25519, self.tag)


@dataclass(frozen=True)
class IssuerRequestKeys:
    """The active key of every audience, and what is published of all of them."""

    issuer: str
    active: Mapping[Audience, IssuerRequestKey]
    published: tuple[PublishedKey, ...]

    def signer(self, audience: Audience) -> IssuerRequestKey:
        return self.active[audience]

    def key_set(self, audience: Audience | None = None) -> RequestKeySet:
        """The published keys (of one audience); partner keys first, as partners have always read the first one."""
        order = list(Audience)
        keys = sorted(
            (k for k in self.published if audience is None or k.audience == audience),
            key=lambda k: order.index(Audience(k.audience)),
        )
        return RequestKeySet(issuer=self.issuer, keys=keys)

    @classmethod
    async def load(cls, pool: asyncpg.Pool, keys: Keys, issuer: str) -> IssuerRequestKeys:
        """The active key of each audience, made on first use; safe from many workers at once."""
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _REQUEST_KEY_LOCK)
            rows = await store.request_keys(conn)
            for audience in set(Audience) - {Audience(r.audience) for r in rows if r.status == "active"}:
                private = ed25519.Ed25519PrivateKey.generate()
                jwk = public_jwk(private.public_key())
                kid = thumbprint(jwk)
                sealed = keys.wrap_secret(private_jwk(private)["d"].encode(), f"request-key:{kid}")
                await store.insert_request_key(conn, kid, audience.value, jwk, sealed)
                rows = await store.request_keys(conn)
        active: dict[Audience, IssuerRequestKey] = {}
        for row in rows:
            if row.status == "active":
                d = keys.unwrap_secret(row.private_key, f"request-key:{row.kid}").decode()
                loaded, _ = load_private_jwk({**row.public_jwk, "d": d})
                if not isinstance(loaded, ed25519.Ed25519PrivateKey):  # pragma: no cover - only Ed25519 keys are made
                    raise TypeError("an issuer request key must be Ed25519")
                active[Audience(row.audience)] = IssuerRequestKey(issuer, Audience(row.audience), row.kid, loaded)
        published = tuple(
            PublishedKey(
                kty=row.public_jwk["kty"],
                crv=row.public_jwk["crv"],
                x=row.public_jwk["x"],
                kid=row.kid,
                alg="EdDSA",
                use="sig",
                status=row.status,
                audience=row.audience,
            )
            for row in rows
        )
        return cls(issuer=issuer, active=active, published=published)
