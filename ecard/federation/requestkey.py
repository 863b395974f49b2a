"""The issuer request key: what this issuer signs its own outgoing requests with (RFC 9421).

Partners, the bank and merchants' callback servers check those signatures against the key set published at
`GET /v1/issuer/request-keys`; the key id on the wire is `<issuer>:<kid>`, the kid an RFC 7638 thumbprint."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg
from cryptography.hazmat.primitives.asymmetric import ed25519

from ecard.federation import store
from ecard.kit.crypto import Keys
from ecard.kit.jwk import ALG_ED25519, load_private_jwk, private_jwk, public_jwk, thumbprint
from ecard.kit.signing import sign_request

_REQUEST_KEY_LOCK = 0x72716B79


@dataclass(frozen=True)
class IssuerRequestKey:
    issuer: str
    kid: str
    private: ed25519.Ed25519PrivateKey
    published: tuple[dict[str, Any], ...]

    @property
    def keyid(self) -> str:
        return f"{self.issuer}:{self.kid}"

    def sign(self, method: str, url: str, body: bytes) -> dict[str, str]:
        """Signature-Input, Signature and (with a body) Content-Digest headers for one request."""
        return sign_request(method, url, body, self.private, self.keyid, ALG_ED25519)

    def jwks(self) -> dict[str, Any]:
        return {"issuer": self.issuer, "keys": list(self.published)}

    @classmethod
    async def load(cls, pool: asyncpg.Pool, keys: Keys, issuer: str) -> IssuerRequestKey:
        """The active key, made on first use; safe from many workers at once."""
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _REQUEST_KEY_LOCK)
            rows = await store.request_keys(conn)
            if not any(r["status"] == "active" for r in rows):
                private = ed25519.Ed25519PrivateKey.generate()
                jwk = public_jwk(private.public_key())
                kid = thumbprint(jwk)
                sealed = keys.wrap_secret(private_jwk(private)["d"].encode(), f"request-key:{kid}")
                await store.insert_request_key(conn, kid, jwk, sealed)
                rows = await store.request_keys(conn)
        active = next(r for r in rows if r["status"] == "active")
        d = keys.unwrap_secret(bytes(active["private_key"]), f"request-key:{active['kid']}").decode()
        loaded, _ = load_private_jwk({**active["public_jwk"], "d": d})
        if not isinstance(loaded, ed25519.Ed25519PrivateKey):  # pragma: no cover - only Ed25519 keys are made
            raise TypeError("the issuer request key must be Ed25519")
        published = tuple(
            {**r["public_jwk"], "kid": r["kid"], "alg": "EdDSA", "use": "sig", "status": r["status"]} for r in rows
        )
        return cls(issuer=issuer, kid=str(active["kid"]), private=loaded, published=published)
