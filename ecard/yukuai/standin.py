"""`ecard standin yukuai`: a small real HTTP server playing the 渝快办 platform, speaking docs/yukuai-protocol.md.

It keeps test accounts (with their real names), mints their 渝快码 (short-lived, single use on its side) and the
link tokens its app would hand a logged-in user, resolves and redeems them for ecard, and plays the platform's
venues verifying e-card codes as partner issuer `ykb`. Everything lives in memory."""

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
from ecard.kit.ids import random_token
from ecard.kit.jwk import ALG_ED25519, public_jwk, thumbprint
from ecard.kit.problems import refusal_handler
from ecard.kit.refusal import Refusal

AccountId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
SIGNATURE_WINDOW_S = 300
TRUST_REFRESH_S = 5.0
# the tag of the adapter protocol's requests, and of the federation protocol's (the platform as partner `ykb`)
TAG = "ecard-yukuai"
FEDERATION_TAG = "ecard-federation"


class NewAccount(msgspec.Struct, forbid_unknown_fields=True):
    account_id: AccountId
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    # the account's real-name ID number: the platform issues link tokens to real-name accounts only
    id_number: Annotated[str, msgspec.Meta(pattern=r"^[0-9]{17}[0-9X]$")] | None = None


class Resolve(msgspec.Struct, forbid_unknown_fields=True):
    code: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


class Redeem(msgspec.Struct, forbid_unknown_fields=True):
    link_token: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


class NewLinkToken(msgspec.Struct, forbid_unknown_fields=True):
    # 0 makes a token that has expired already (for tests of expiry)
    expires_in_s: Annotated[int, msgspec.Meta(ge=0, le=3600)] | None = None


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


@dataclass(frozen=True)
class Account:
    name: str
    id_number: str | None


@dataclass
class Platform:
    issuer: str
    code_ttl_s: int
    link_token_ttl_s: int
    prefix: str
    trust_url: str | None
    key: ed25519.Ed25519PrivateKey = field(default_factory=ed25519.Ed25519PrivateKey.generate)
    accounts: dict[str, Account] = field(default_factory=dict)
    codes: dict[str, Minted] = field(default_factory=dict)
    link_tokens: dict[str, Minted] = field(default_factory=dict)
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
            # ecard's key for this platform's protocol only: its keys for partners, the bank or callbacks sign
            # nothing the platform should act on
            self.trusted = {
                f"{body['issuer']}:{k['kid']}": ed25519.Ed25519PublicKey.from_public_bytes(b64u_decode(k["x"]))
                for k in body["keys"]
                if k.get("kty") == "OKP" and k.get("status", "active") == "active" and k.get("audience") == "yukuai"
            }
            self.trusted_at = time.monotonic()
        key = self.trusted.get(keyid)
        if key is None:
            raise Refusal("unknown_client", "no trusted ecard request key has this keyid")
        return key

    async def check_signature(self, request: Request[Any, Any, Any]) -> None:
        """ecard's requests are RFC 9421-signed with its request key for this platform, with this protocol's tag and
        for this server's authority; checked when a trust URL is set."""
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
        signing.require_peer(params, TAG, request.headers, signing.server_authorities(request.scope.get("server")))
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

    @post("/v1/link-tokens/redeem", status_code=200)
    async def redeem(request: Request[Any, Any, Any], data: Redeem) -> dict[str, Any]:
        """Whose account a link token proves, with its real name; the token is used up."""
        await platform.check_signature(request)
        minted = platform.link_tokens.get(data.link_token)
        if minted is None:
            raise Refusal("token_unknown", "no such link token")
        if time.time() >= minted.expires_at:
            raise Refusal("token_expired", "the link token has expired")
        if minted.used:
            raise Refusal("token_used", "the link token has been used")
        minted.used = True
        account = platform.accounts[minted.account_id]
        return {
            "account_id": minted.account_id,
            "name": account.name,
            "id_number": account.id_number,
            "expires_at": int(minted.expires_at),
        }

    @post("/test/accounts", status_code=201)
    async def add_account(data: NewAccount) -> dict[str, str]:
        platform.accounts[data.account_id] = Account(data.name, data.id_number)
        return {"account_id": data.account_id}

    @post("/test/accounts/{account_id:str}/link-tokens", status_code=201)
    async def link_token(account_id: str, data: NewLinkToken | None = None) -> dict[str, Any]:
        """What the 渝快办 app hands its logged-in user to link the account to an e-card (one use)."""
        account = platform.accounts.get(account_id)
        if account is None:
            raise Refusal("not_found", "no such account")
        if account.id_number is None:
            raise Refusal("real_name_required", "link tokens are issued to real-name accounts (with an id_number)")
        token = random_token(24)
        ttl_s = data.expires_in_s if data is not None and data.expires_in_s is not None else platform.link_token_ttl_s
        platform.link_tokens[token] = Minted(account_id, time.time() + ttl_s)
        return {"link_token": token, "expires_at": int(platform.link_tokens[token].expires_at)}

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
        keyid = f"{platform.issuer}:{platform.kid}"
        headers = signing.sign_request("POST", url, raw, platform.key, keyid, ALG_ED25519, tag=FEDERATION_TAG)
        async with httpx.AsyncClient(timeout=5.0) as client:
            answer = await client.post(url, content=raw, headers={"Content-Type": "application/json", **headers})
        return {"status": answer.status_code, "body": answer.json()}

    return Litestar(
        route_handlers=[healthz, request_keys, code_keys, resolve, redeem, add_account, link_token, mint, venue_check],
        exception_handlers={Refusal: refusal_handler},
        debug=False,
    )


def serve(
    host: str, port: int, trust_url: str | None, code_ttl_s: int, link_token_ttl_s: int, issuer: str, prefix: str
) -> None:
    platform = Platform(
        issuer=issuer, code_ttl_s=code_ttl_s, link_token_ttl_s=link_token_ttl_s, prefix=prefix, trust_url=trust_url
    )
    app = build(platform)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
