"""`ecard standin yukuai`: a small real HTTP server playing the 渝快办 platform, speaking docs/yukuai-protocol.md.

It keeps test accounts, mints their 渝快码 (short-lived, single use on its side), resolves them for ecard, and
plays the platform's venues verifying e-card codes as partner issuer `ykb`. Everything lives in memory."""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import dataclass, field
from typing import Annotated, Any

import httpx
import msgspec
import uvicorn
from cryptography.hazmat.primitives.asymmetric import ed25519
from litestar import Litestar, Request, get, post

from ecard.kit import signing
from ecard.kit.crypto import b64u_decode
from ecard.kit.jwk import ALG_ED25519, public_jwk, thumbprint
from ecard.kit.problems import refusal_handler
from ecard.kit.refusal import Refusal

AccountId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
SIGNATURE_WINDOW_S = 300
TRUST_REFRESH_S = 5.0


class NewAccount(msgspec.Struct, forbid_unknown_fields=True):
    account_id: AccountId
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class Resolve(msgspec.Struct, forbid_unknown_fields=True):
    code: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


class VenueCheck(msgspec.Struct, forbid_unknown_fields=True):
    """What a 渝快办 venue asks the platform to check: an e-card code, for an item, at one of its merchants."""

    ecard_url: str
    code: str
    item_code: str
    merchant: dict[str, str]
    terminal_id: str | None = None


@dataclass
class Minted:
    account_id: str
    expires_at: float
    used: bool = False


@dataclass
class Platform:
    issuer: str
    code_ttl_s: int
    prefix: str
    trust_url: str | None
    key: ed25519.Ed25519PrivateKey = field(default_factory=ed25519.Ed25519PrivateKey.generate)
    accounts: dict[str, str] = field(default_factory=dict)
    codes: dict[str, Minted] = field(default_factory=dict)
    nonces: dict[str, float] = field(default_factory=dict)
    trusted: dict[str, ed25519.Ed25519PublicKey] = field(default_factory=dict)
    trusted_at: float = 0.0

    @property
    def kid(self) -> str:
        return thumbprint(public_jwk(self.key.public_key()))

    async def _trusted_key(self, keyid: str) -> ed25519.Ed25519PublicKey:
        if keyid not in self.trusted or time.monotonic() - self.trusted_at > TRUST_REFRESH_S:
            assert self.trust_url is not None
            async with httpx.AsyncClient(timeout=5.0) as client:
                body = (await client.get(self.trust_url)).json()
            self.trusted = {
                f"{body['issuer']}:{k['kid']}": ed25519.Ed25519PublicKey.from_public_bytes(b64u_decode(k["x"]))
                for k in body["keys"]
                if k.get("kty") == "OKP" and k.get("status", "active") == "active"
            }
            self.trusted_at = time.monotonic()
        key = self.trusted.get(keyid)
        if key is None:
            raise Refusal("unknown_client", "no trusted ecard request key has this keyid")
        return key

    async def check_signature(self, request: Request[Any, Any, Any]) -> None:
        """ecard's requests are RFC 9421-signed with its issuer request key; checked when a trust URL is set."""
        if self.trust_url is None:
            return
        body = await request.body()
        params = signing.parse_signature_params(request.headers, has_body=bool(body))
        now = time.time()
        signing.check_window(params, now, SIGNATURE_WINDOW_S)
        key = await self._trusted_key(params.keyid)
        query = request.scope.get("query_string", b"").decode("latin-1")
        signing.verify_signature(
            params, key, ALG_ED25519, request.method, request.url.path, query, request.headers, body
        )
        self.nonces = {n: t for n, t in self.nonces.items() if t > now}
        if params.nonce in self.nonces:
            raise Refusal("nonce_reused", "this nonce has been used already")
        self.nonces[params.nonce] = now + 2 * SIGNATURE_WINDOW_S


def build(platform: Platform) -> Litestar:
    @get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @get("/v1/issuer/request-keys")
    async def request_keys() -> dict[str, Any]:
        jwk = {**public_jwk(platform.key.public_key()), "kid": platform.kid, "alg": "EdDSA", "status": "active"}
        return {"issuer": platform.issuer, "keys": [jwk]}

    @get("/v1/issuer/keys")
    async def code_keys() -> dict[str, Any]:
        # the platform makes no e-card codes: its 渝快码 are resolved online, never checked offline
        return {"issuer": platform.issuer, "keys": []}

    @post("/v1/codes/resolve", status_code=200)
    async def resolve(request: Request[Any, Any, Any], data: Resolve) -> dict[str, Any]:
        await platform.check_signature(request)
        minted = platform.codes.get(data.code)
        if minted is None:
            raise Refusal("code_unknown", "no such 渝快码")
        if time.time() > minted.expires_at:
            raise Refusal("code_expired", "the 渝快码 has expired")
        if minted.used:
            raise Refusal("code_used", "the 渝快码 has been used")
        minted.used = True
        return {"account_id": minted.account_id, "expires_at": int(minted.expires_at)}

    @get("/v1/accounts/{account_id:str}")
    async def account(request: Request[Any, Any, Any], account_id: str) -> dict[str, str]:
        await platform.check_signature(request)
        if account_id not in platform.accounts:
            raise Refusal("not_found", "no such account")
        return {"account_id": account_id, "status": "active"}

    @post("/test/accounts", status_code=201)
    async def add_account(data: NewAccount) -> dict[str, str]:
        platform.accounts[data.account_id] = data.name
        return {"account_id": data.account_id}

    @post("/test/accounts/{account_id:str}/codes", status_code=201)
    async def mint(account_id: str) -> dict[str, Any]:
        if account_id not in platform.accounts:
            raise Refusal("not_found", "no such account")
        code = platform.prefix + secrets.token_urlsafe(18)
        platform.codes[code] = Minted(account_id, time.time() + platform.code_ttl_s)
        return {"code": code, "expires_at": int(platform.codes[code].expires_at)}

    @post("/test/verifications", status_code=200)
    async def venue_check(data: VenueCheck) -> dict[str, Any]:
        """The platform verifying an e-card code at one of its own venues, as partner issuer `ykb`."""
        url = data.ecard_url.rstrip("/") + "/v1/federation/verifications"
        body = {"code": data.code, "item_code": data.item_code, "merchant": data.merchant}
        if data.terminal_id is not None:
            body["terminal_id"] = data.terminal_id
        raw = json.dumps(body, ensure_ascii=False).encode()
        headers = signing.sign_request("POST", url, raw, platform.key, f"{platform.issuer}:{platform.kid}", ALG_ED25519)
        async with httpx.AsyncClient(timeout=5.0) as client:
            answer = await client.post(url, content=raw, headers={"Content-Type": "application/json", **headers})
        return {"status": answer.status_code, "body": answer.json()}

    return Litestar(
        route_handlers=[healthz, request_keys, code_keys, resolve, account, add_account, mint, venue_check],
        exception_handlers={Refusal: refusal_handler},
        debug=False,
    )


def serve(host: str, port: int, trust_url: str | None, code_ttl_s: int, issuer: str, prefix: str) -> None:
    platform = Platform(issuer=issuer, code_ttl_s=code_ttl_s, prefix=prefix, trust_url=trust_url)
    app = build(platform)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
