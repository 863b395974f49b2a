"""The OpenID Connect provider's rules: portals, client authentication, PAR, login requests, codes and tokens."""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import asyncpg
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet

from ecard.cards import CardHolder, Cards
from ecard.catalog import Catalog
from ecard.kit import audit
from ecard.kit.clock import Clock, iso, to_datetime
from ecard.kit.crypto import Keys, b64u
from ecard.kit.ids import new_id, random_token
from ecard.kit.principal import ClientKind, Principal
from ecard.kit.refusal import Refusal
from ecard.portal import store
from ecard.portal.keys import ALG, SigningKeys
from ecard.portal.models import (
    CLAIMS,
    AccessGrant,
    Authorization,
    Ending,
    Grant,
    LoginEntry,
    LoginRequest,
    LoginStatus,
    LoginView,
    NewPortal,
    Portal,
    PortalAnswer,
)

PAR_TTL_S = 90
LOGIN_TTL_S = 120
CODE_TTL_S = 60
ACCESS_TTL_S = 300
ID_TOKEN_TTL_S = 300
# how long an ended login request, a spent code and a seen assertion are remembered after their lifetime
LINGER_S = 600
# a client assertion may live at most this long (Authlib's default is one hour); its jti is kept until it expires
MAX_ASSERTION_S = 3600
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
REQUEST_URI_PREFIX = "urn:ietf:params:oauth:request_uri:"
PERSONAL_CLAIMS = ("name", "id_number")
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
# RFC 7636: 43 to 128 characters of the unreserved set
_PKCE = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
# RFC 8252 private-use schemes are reverse domain names: cn.gov.cq.jkb
_PRIVATE_SCHEME = re.compile(r"[a-z][a-z0-9+\-]*(\.[a-z0-9+\-]+)+")

# Where discovery says each endpoint is, relative to the issuer.
PATHS = {
    "discovery": "/.well-known/openid-configuration",
    "jwks": "/oauth2/jwks",
    "par": "/oauth2/par",
    "authorize": "/oauth2/authorize",
    "token": "/oauth2/token",
    "userinfo": "/oauth2/userinfo",
    "revocation": "/oauth2/revoke",
}


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _field(refusal_code: str, detail: str, field: str) -> Refusal:
    return Refusal(refusal_code, detail, extra={"fields": [field]})


def with_params(uri: str, params: Mapping[str, str | None]) -> str:
    """`uri` with `params` added to its query (those that are None left out)."""
    parts = urlsplit(uri)
    added = urlencode({k: v for k, v in params.items() if v is not None})
    query = f"{parts.query}&{added}" if parts.query else added
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def _check_redirect_uri(uri: Any) -> str:
    """https, http on loopback (RFC 8252 §7.3) or a reverse-domain private-use scheme (§7.1); never a fragment."""
    if not isinstance(uri, str) or not 0 < len(uri) <= 512:
        raise _field("invalid_request", "each redirect URI must be 1 to 512 characters", "redirect_uris")
    parts = urlsplit(uri)
    if parts.fragment or "#" in uri:
        raise _field("invalid_request", "a redirect URI must not have a fragment", "redirect_uris")
    if parts.scheme == "https" and parts.hostname:
        return uri
    if parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS:
        return uri
    if _PRIVATE_SCHEME.fullmatch(parts.scheme) and parts.path:
        return uri
    raise _field(
        "invalid_request",
        "a redirect URI must be https, http on a loopback address, or a reverse-domain app scheme",
        "redirect_uris",
    )


def _check_jwks(jwks: dict[str, Any]) -> store.Jwks:
    """The portal's public P-256 keys (ES256), each with a `kid` (its RFC 7638 thumbprint when not given)."""
    listed = jwks.get("keys")
    if not isinstance(listed, list) or not 0 < len(listed) <= 5:
        raise _field("invalid_request", "jwks must hold 1 to 5 keys", "jwks")
    keys = []
    for jwk in listed:
        if not isinstance(jwk, dict) or jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
            raise _field("invalid_request", "portal keys must be P-256 (EC) public JWKs for ES256", "jwks")
        if "d" in jwk:
            raise _field("invalid_request", "send public keys only: a JWK holds a private key", "jwks")
        if jwk.get("alg", ALG) != ALG:
            raise _field("invalid_request", "portal keys are used with ES256", "jwks")
        try:
            key = ECKey.import_key({"kty": "EC", "crv": "P-256", "x": str(jwk.get("x")), "y": str(jwk.get("y"))})
        except (JoseError, ValueError, TypeError) as exc:
            raise _field("invalid_request", "a portal key is not a point on P-256", "jwks") from exc
        kid = jwk.get("kid") or key.thumbprint()
        if not isinstance(kid, str) or not 0 < len(kid) <= 128:
            raise _field("invalid_request", "a key's kid must be 1 to 128 characters", "jwks")
        public = {name: value for name, value in key.as_dict(private=False).items() if isinstance(value, str)}
        keys.append({**public, "kid": kid, "alg": ALG, "use": "sig"})
    if len({k["kid"] for k in keys}) != len(keys):
        raise _field("invalid_request", "each key needs a kid of its own", "jwks")
    return {"keys": keys}


def _portal(row: store.PortalRow) -> Portal:
    return Portal(
        client_id=row.client_id,
        name=row.name,
        redirect_uris=tuple(row.redirect_uris),
        jwks=row.jwks,
        claims=tuple(row.claims),
        allowed_items=tuple(row.allowed_items),
    )


def _answer(portal: Portal) -> PortalAnswer:
    return PortalAnswer(
        client_id=portal.client_id,
        name=portal.name,
        redirect_uris=list(portal.redirect_uris),
        claims=list(portal.claims),
        allowed_items=list(portal.allowed_items),
    )


class Portals:
    """The registry of portals (OpenID Connect clients)."""

    def __init__(self, pool: asyncpg.Pool, catalog: Catalog) -> None:
        self._pool = pool
        self._catalog = catalog

    async def register(self, actor: str, new: NewPortal) -> PortalAnswer:
        name = new.name.strip()
        if not 0 < len(name) <= 128:
            raise _field("invalid_request", "name must be 1 to 128 characters", "name")
        if not 0 < len(new.redirect_uris) <= 10:
            raise _field("invalid_request", "give 1 to 10 redirect URIs", "redirect_uris")
        redirect_uris = [_check_redirect_uri(uri) for uri in new.redirect_uris]
        jwks = _check_jwks(new.jwks)
        if not 0 < len(new.allowed_items) <= 50:
            raise _field("invalid_request", "give 1 to 50 allowed items", "allowed_items")
        items = []
        for code in dict.fromkeys(new.allowed_items):
            _, item = await self._catalog.lookup(code)
            if "identity" not in item.functions:
                raise _field("invalid_request", f"{code} is not an identity item", "allowed_items")
            items.append(item)
        claims = list(dict.fromkeys(new.claims))
        unknown = [c for c in claims if c not in CLAIMS]
        if unknown:
            raise _field("invalid_request", f"claims must be among {list(CLAIMS)}", "claims")
        disclosed = {attribute for item in items for attribute in item.discloses}
        beyond = [c for c in claims if c in PERSONAL_CLAIMS and c not in disclosed]
        if beyond:
            raise _field(
                "invalid_request",
                f"no allowed item discloses {', '.join(beyond)}: the portal may not have it",
                "claims",
            )
        client_id = new_id("ptl")
        async with self._pool.acquire() as conn, conn.transaction():
            await store.insert_portal(conn, client_id, name, redirect_uris, jwks, claims, [i.item_code for i in items])
            await audit.record(conn, actor, "portal.registered", client_id, {"claims": claims})
        return PortalAnswer(client_id, name, redirect_uris, claims, [i.item_code for i in items])

    async def get(self, client_id: str) -> Portal | None:
        row = await store.portal(self._pool, client_id)
        return _portal(row) if row else None

    async def listing(self) -> list[PortalAnswer]:
        return [_answer(_portal(row)) for row in await store.portals(self._pool)]


class Provider:
    """The OpenID Connect provider: every rule between a portal's PAR and its last userinfo call."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        held: store.Held,
        keys: Keys,
        signing: SigningKeys,
        portals: Portals,
        cards: Cards,
        clock: Clock,
        issuer: str,
        skew_s: int,
    ) -> None:
        self._pool = pool
        self._held = held
        self._keys = keys
        self.signing = signing
        self.portals = portals
        self._cards = cards
        self._clock = clock
        self.issuer = issuer.rstrip("/")
        self._skew_s = skew_s

    def url(self, endpoint: str) -> str:
        return self.issuer + PATHS[endpoint]

    def discovery(self) -> dict[str, Any]:
        """The OpenID Provider metadata (OpenID Connect Discovery 1.0, RFC 8414, RFC 9126, RFC 9207)."""
        auth_methods = ["private_key_jwt"]
        return {
            "issuer": self.issuer,
            "authorization_endpoint": self.url("authorize"),
            "pushed_authorization_request_endpoint": self.url("par"),
            "require_pushed_authorization_requests": True,
            "token_endpoint": self.url("token"),
            "userinfo_endpoint": self.url("userinfo"),
            "jwks_uri": self.url("jwks"),
            "revocation_endpoint": self.url("revocation"),
            "scopes_supported": ["openid", *CLAIMS],
            "claims_supported": ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "amr", *CLAIMS],
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": [ALG],
            "token_endpoint_auth_methods_supported": auth_methods,
            "token_endpoint_auth_signing_alg_values_supported": [ALG],
            "revocation_endpoint_auth_methods_supported": auth_methods,
            "revocation_endpoint_auth_signing_alg_values_supported": [ALG],
            "code_challenge_methods_supported": ["S256"],
            "authorization_response_iss_parameter_supported": True,
            "prompt_values_supported": ["login"],
            "display_values_supported": ["page"],
            "request_parameter_supported": False,
            "claims_parameter_supported": False,
        }

    # -- client authentication (private_key_jwt, RFC 7523 §2.2)

    async def authenticate(self, form: Mapping[str, str]) -> Portal:
        """The portal whose client assertion this is; `invalid_client` for anything else, replays included."""
        if form.get("client_assertion_type") != JWT_BEARER or not form.get("client_assertion"):
            raise Refusal("invalid_client", "authenticate with private_key_jwt (client_assertion)")
        assertion = form["client_assertion"]
        try:
            payload = json.loads(jws.extract_compact(assertion.encode()).payload)
        except (JoseError, ValueError, TypeError) as exc:
            raise Refusal("invalid_client", "the client assertion is not a JWS") from exc
        client_id = payload.get("iss") if isinstance(payload, dict) else None
        if not isinstance(client_id, str) or (form.get("client_id") not in (None, client_id)):
            raise Refusal("invalid_client", "the client assertion's iss must be the client_id")
        portal = await self.portals.get(client_id)
        if portal is None:
            raise Refusal("invalid_client", "no portal has this client_id")
        now = self._clock.now()
        registry = jwt.JWTClaimsRegistry(
            now=lambda: int(now),
            leeway=self._skew_s,
            iss={"essential": True, "value": client_id},
            sub={"essential": True, "value": client_id},
            aud={"essential": True},
            exp={"essential": True},
            jti={"essential": True},
        )
        try:
            token = jwt.decode(assertion, KeySet.import_key_set(portal.jwks), algorithms=[ALG])  # type: ignore[arg-type]
            registry.validate(token.claims)
        except JoseError as exc:
            raise Refusal("invalid_client", f"the client assertion does not hold: {exc.error}") from exc
        claims = token.claims
        # the issuer identifier alone, as one string (RFC 7523bis, FAPI 2.0): an assertion made for an endpoint
        # URL, or for a list of audiences, could be replayed to another server that shares one of them
        if not isinstance(claims["aud"], str) or not secrets.compare_digest(claims["aud"], self.issuer):
            raise Refusal("invalid_client", "the client assertion's aud must be the issuer identifier (one string)")
        exp = float(claims["exp"])
        if exp - now > MAX_ASSERTION_S + self._skew_s:
            raise Refusal("invalid_client", f"a client assertion may live {MAX_ASSERTION_S} s at most")
        ttl_s = max(1, int(exp - now) + self._skew_s)
        if not await self._held.first_use_of_assertion(client_id, _digest(str(claims["jti"])), ttl_s):
            raise Refusal("invalid_client", "this client assertion (jti) has been used already")
        return portal

    # -- pushed authorization requests (RFC 9126)

    async def push(self, portal: Portal, form: Mapping[str, str]) -> tuple[str, int]:
        """Check and hold an authorization request; answers its single-use `request_uri` and lifetime."""
        for forbidden in ("request", "request_uri"):
            if forbidden in form:
                raise Refusal("invalid_request", f"{forbidden} is not accepted at the PAR endpoint")
        if form.get("response_type") != "code":
            raise Refusal("unsupported_response_type", "response_type must be code")
        redirect_uri = form.get("redirect_uri", "")
        if redirect_uri not in portal.redirect_uris:
            raise Refusal("invalid_request", "redirect_uri is not one the portal registered (exact match)")
        scopes = form.get("scope", "").split()
        if "openid" not in scopes:
            raise Refusal("invalid_scope", "scope must include openid")
        unknown = [s for s in scopes if s != "openid" and s not in CLAIMS]
        if unknown:
            raise Refusal("invalid_scope", "scope may hold openid and claim names only")
        # a claim the portal is not registered for is never asked, whatever the scope says
        named = [c for c in CLAIMS if c in scopes]
        claims = tuple(c for c in portal.claims if not named or c in named)
        challenge = form.get("code_challenge")
        if not challenge or form.get("code_challenge_method") != "S256":
            raise Refusal("invalid_request", "PKCE is required: code_challenge with code_challenge_method=S256")
        if not re.fullmatch(r"[A-Za-z0-9\-_]{43}", challenge):
            raise Refusal("invalid_request", "code_challenge must be a base64url SHA-256 digest")
        state, nonce = form.get("state"), form.get("nonce")
        if any(v is not None and len(v) > 512 for v in (state, nonce)):
            raise Refusal("invalid_request", "state and nonce may be 512 characters at most")
        prompt = form.get("prompt", "").split()
        if any(p not in ("login", "consent") for p in prompt):
            raise Refusal("invalid_request", "prompt may be login (or consent) only: the citizen always approves")
        held = Authorization(
            client_id=portal.client_id,
            redirect_uri=redirect_uri,
            scope=" ".join(["openid", *claims]),
            state=state,
            nonce=nonce,
            code_challenge=challenge,
            claims=claims,
            cross_device="login" in prompt and form.get("display") == "page",
            expires_at=self._clock.now() + PAR_TTL_S,
        )
        handle = random_token(32)
        await self._held.hold_request(handle, held, PAR_TTL_S + LINGER_S)
        return REQUEST_URI_PREFIX + handle, PAR_TTL_S

    # -- authorization: the request becomes a login request for the app

    async def authorize(self, client_id: str | None, request_uri: str | None) -> tuple[LoginRequest, str]:
        """The login request made from a pushed request (used once), and the waiting page's polling secret."""
        if not request_uri or not request_uri.startswith(REQUEST_URI_PREFIX):
            raise Refusal("invalid_request_uri", "authorize takes a request_uri from the PAR endpoint only")
        held = await self._held.take_request(request_uri.removeprefix(REQUEST_URI_PREFIX))
        if held is None:
            raise Refusal("invalid_request_uri", "this request_uri is unknown, used or expired")
        if held.client_id != client_id:
            raise Refusal("invalid_request_uri", "this request_uri belongs to another client")
        now = self._clock.now()
        if now > held.expires_at:
            raise Refusal("invalid_request_uri", "this request_uri has expired")
        portal = await self.portals.get(held.client_id)
        if portal is None:
            raise Refusal("invalid_request_uri", "the portal is no longer registered")
        secret = random_token(24)
        login = LoginRequest(
            login_id=new_id("lgn"),
            client_id=held.client_id,
            portal_name=portal.name,
            redirect_uri=held.redirect_uri,
            state=held.state,
            nonce=held.nonce,
            code_challenge=held.code_challenge,
            claims=held.claims,
            number=10 + secrets.randbelow(90) if held.cross_device else None,
            poll_secret_hash=_digest(secret),
            created_at=now,
            expires_at=now + LOGIN_TTL_S,
        )
        await self._held.hold_login(login, LOGIN_TTL_S + LINGER_S)
        return login, secret

    async def _login(self, login_id: str) -> tuple[LoginRequest, Ending | None]:
        login, ending = await self._held.login(login_id)
        if login is None:
            raise Refusal("login_not_found", "no login request has this id (or it ended long ago)")
        return login, ending

    def _refusal_redirect(self, login: LoginRequest, description: str) -> str:
        return with_params(
            login.redirect_uri,
            {"error": "access_denied", "error_description": description, "state": login.state, "iss": self.issuer},
        )

    async def _end(self, login: LoginRequest, ending: Ending) -> bool:
        """Record how the request ended; False when it had ended already (another answer came first)."""
        return await self._held.end(login.login_id, ending, LOGIN_TTL_S + LINGER_S)

    async def _open(self, login_id: str) -> LoginRequest:
        """A login request still waiting for the citizen; an expired one is ended here."""
        login, ending = await self._login(login_id)
        if ending is not None:
            if ending.outcome == "expired":
                raise Refusal("login_expired", "the login request has expired; start again at the portal")
            raise Refusal("login_closed", "the login request has been answered already")
        if self._clock.now() > login.expires_at:
            await self._end(login, Ending("expired", self._refusal_redirect(login, "the login request expired")))
            raise Refusal("login_expired", "the login request has expired; start again at the portal")
        return login

    async def _card(self, device: Principal) -> str:
        """The card the device carries; refuses a retired device and a suspended or cancelled card."""
        return (await self._cards.device_card(device.owner_id)).card_id

    async def view(self, device: Principal, login_id: str) -> LoginView:
        self._device(device)
        await self._card(device)
        login = await self._open(login_id)
        return LoginView(
            login_id=login.login_id,
            client_id=login.client_id,
            portal_name=login.portal_name,
            claims=list(login.claims),
            expires_at=iso(login.expires_at),
            number_required=login.number is not None,
        )

    async def approve(self, device: Principal, login_id: str, number: int | None) -> str:
        """The citizen's yes: a code for the portal, bound to the card; a wrong number ends the request."""
        self._device(device)
        holder = await self._holder(await self._card(device))
        login = await self._open(login_id)
        if login.number is not None and (number is None or not secrets.compare_digest(str(number), str(login.number))):
            await self._end(login, Ending("failed", self._refusal_redirect(login, "the number did not match")))
            raise Refusal("number_mismatch", "the number does not match the portal's page; the login has ended")
        now = self._clock.now()
        code = random_token(32)
        grant = Grant(
            client_id=login.client_id,
            redirect_uri=login.redirect_uri,
            code_challenge=login.code_challenge,
            nonce=login.nonce,
            card_id=holder.card_id,
            subject=self._keys.pseudonym(f"portal:{login.client_id}".encode(), holder.cardholder_id.encode()),
            claims=login.claims,
            auth_time=int(now),
            expires_at=now + CODE_TTL_S,
        )
        redirect = with_params(login.redirect_uri, {"code": code, "state": login.state, "iss": self.issuer})
        async with self._pool.acquire() as conn, conn.transaction():
            recorded = await store.record_login(
                conn,
                login.login_id,
                holder.card_id,
                login.client_id,
                list(login.claims),
                "approved",
                login.number is not None,
                to_datetime(now),
            )
            if not recorded:
                raise Refusal("login_closed", "the login request has been answered already")
            await self._held.hold_code(_digest(code), grant, CODE_TTL_S + 30)
            if not await self._end(login, Ending("approved", redirect)):
                await self._held.drop_code(_digest(code))
                raise Refusal("login_closed", "the login request has been answered already")
        return redirect

    async def deny(self, device: Principal, login_id: str) -> str:
        self._device(device)
        card_id = await self._card(device)
        login = await self._open(login_id)
        redirect = self._refusal_redirect(login, "the citizen declined")
        async with self._pool.acquire() as conn, conn.transaction():
            recorded = await store.record_login(
                conn,
                login.login_id,
                card_id,
                login.client_id,
                list(login.claims),
                "denied",
                login.number is not None,
                to_datetime(self._clock.now()),
            )
            if not recorded or not await self._end(login, Ending("denied", redirect)):
                raise Refusal("login_closed", "the login request has been answered already")
        return redirect

    async def status(self, login_id: str, secret: str) -> LoginStatus:
        """What the portal's waiting page learns: still pending, or where to go now."""
        login, ending = await self._login(login_id)
        if not secrets.compare_digest(_digest(secret), login.poll_secret_hash):
            raise Refusal("login_not_found", "no login request has this id (or it ended long ago)")
        if ending is None and self._clock.now() > login.expires_at:
            await self._end(login, Ending("expired", self._refusal_redirect(login, "the login request expired")))
            login, ending = await self._login(login_id)
        if ending is None:
            return LoginStatus(status="pending")
        return LoginStatus(status=ending.outcome, redirect_uri=ending.redirect_uri)

    @staticmethod
    def _device(device: Principal) -> None:
        if device.kind is not ClientKind.DEVICE:
            raise Refusal("forbidden", "only the citizen's app answers a login request")

    # -- the token endpoint, userinfo and revocation

    async def token(self, portal: Portal, form: Mapping[str, str]) -> dict[str, Any]:
        """Redeem an authorization code (once, within 60 s, with the PKCE verifier) for tokens."""
        if form.get("grant_type") != "authorization_code":
            raise Refusal("unsupported_grant_type", "grant_type must be authorization_code")
        code = form.get("code")
        if not code:
            raise Refusal("invalid_request", "code is missing")
        code_hash = _digest(code)
        grant = await self._held.take_code(code_hash)
        if grant is None:
            # RFC 9700 §4.2.4: a code used twice revokes what it was exchanged for
            if await self._held.revoke_spent(code_hash):
                raise Refusal("invalid_grant", "this code has been used already; its tokens are revoked")
            raise Refusal("invalid_grant", "the code is unknown or expired")
        now = self._clock.now()
        if grant.client_id != portal.client_id:
            raise Refusal("invalid_grant", "the code was issued to another client")
        if now > grant.expires_at:
            raise Refusal("invalid_grant", "the code has expired")
        if form.get("redirect_uri") != grant.redirect_uri:
            raise Refusal("invalid_grant", "redirect_uri differs from the authorization request's")
        verifier = form.get("code_verifier")
        if not verifier or not _PKCE.fullmatch(verifier):
            raise Refusal("invalid_grant", "code_verifier is missing or malformed (PKCE S256 is required)")
        if not secrets.compare_digest(b64u(hashlib.sha256(verifier.encode()).digest()), grant.code_challenge):
            raise Refusal("invalid_grant", "code_verifier does not match the code_challenge")
        values = await self._claim_values(grant.card_id, grant.claims)
        access_token = random_token(32)
        scope = " ".join(["openid", *grant.claims])
        access = AccessGrant(
            client_id=portal.client_id,
            card_id=grant.card_id,
            subject=grant.subject,
            claims=grant.claims,
            scope=scope,
            expires_at=now + ACCESS_TTL_S,
        )
        await self._held.hold_access(
            _digest(access_token), access, ACCESS_TTL_S + self._skew_s, code_hash, ACCESS_TTL_S + LINGER_S
        )
        id_claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": grant.subject,
            "aud": portal.client_id,
            "iat": int(now),
            "exp": int(now) + ID_TOKEN_TTL_S,
            "auth_time": grant.auth_time,
            "amr": ["hwk"],
            **values,
        }
        if grant.nonce is not None:
            id_claims["nonce"] = grant.nonce
        return {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": ACCESS_TTL_S,
            "scope": scope,
            "id_token": await self.signing.sign(id_claims),
        }

    async def _holder(self, card_id: str) -> CardHolder:
        holder = await self._cards.holder(card_id)
        if holder is None:
            raise Refusal("client_disabled", "this device no longer carries the e-card")
        return holder

    async def _claim_values(self, card_id: str, claims: tuple[str, ...]) -> dict[str, str]:
        holder = await self._cards.holder(card_id)
        if holder is None:
            raise Refusal("invalid_grant", "the card is no longer registered")
        if holder.status != "active":
            raise Refusal("invalid_grant", f"the card is {holder.status}")
        values: dict[str, str] = {}
        if "name" in claims:
            values["name"] = holder.name
        if "id_number" in claims:
            values["id_number"] = holder.id_number
        if "region" in claims:
            values["region"] = holder.region
        if "card_status" in claims:
            values["card_status"] = holder.status
        return values

    async def _access(self, access_token: str) -> AccessGrant | None:
        access = await self._held.access(_digest(access_token))
        return access if access is not None and self._clock.now() <= access.expires_at else None

    async def userinfo(self, access_token: str) -> dict[str, Any]:
        access = await self._access(access_token)
        if access is None:
            raise Refusal("invalid_token", "the access token is unknown, revoked or expired")
        try:
            values = await self._claim_values(access.card_id, access.claims)
        except Refusal as refusal:
            raise Refusal("invalid_token", refusal.detail) from refusal
        return {"sub": access.subject, **values}

    async def revoke(self, portal: Portal, form: Mapping[str, str]) -> None:
        """RFC 7009: revoke the portal's own token; an unknown token is no error."""
        access_token = form.get("token")
        if not access_token:
            raise Refusal("invalid_request", "token is missing")
        access = await self._access(access_token)
        if access is not None and access.client_id == portal.client_id:
            await self._held.drop_access(_digest(access_token))

    async def history(self, device: Principal, card_id: str, limit: int = 100) -> list[LoginEntry]:
        if device.parent_id != card_id:
            raise Refusal("forbidden", "a device may read its own card's logins only")
        return [
            LoginEntry(
                login_id=r.login_id,
                client_id=r.client_id,
                portal_name=r.portal_name,
                claims=r.claims,
                outcome=r.outcome,
                cross_device=r.cross_device,
                at=iso(r.at.timestamp()),
            )
            for r in await store.logins_of_card(self._pool, card_id, limit)
        ]
