"""A portal as its developers would write one: Authlib's OAuth client and joserfc, configured from discovery alone."""

from __future__ import annotations

import secrets
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pytest
from authlib import deprecate
from authlib.common.security import generate_token

# Authlib would rather run on its httpx fork (httpx2) and says so on import (through a filter of its own that
# shows the warning always); it works with httpx, which we use.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "The httpx module is deprecated", deprecate.AuthlibDeprecationWarning)
    from authlib.integrations.httpx_client import AsyncOAuth2Client
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet

from ecard.kit.jwk import private_jwk
from tests.support import Actor, Parties

DISCOVERY = "/.well-known/openid-configuration"


@dataclass
class Pushed:
    """What the portal keeps in its session between PAR and the callback."""

    request_uri: str
    expires_in: int
    verifier: str
    state: str
    nonce: str


class PortalClient:
    """One portal: a stock OpenID Connect client with private_key_jwt (ES256) and PKCE S256."""

    def __init__(
        self, base_url: str, actor: Actor, redirect_uri: str, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.base_url = base_url
        self.actor = actor
        self.redirect_uri = redirect_uri
        self.transport = transport
        self.metadata: dict[str, Any] = {}
        self.auth = PrivateKeyJWT(alg="ES256")
        # Authlib takes a joserfc key object for anything but RSA
        private = ECKey.import_key({**private_jwk(actor.key), "kid": actor.key_id})
        self.oauth = AsyncOAuth2Client(
            client_id=actor.ids["client_id"],
            client_secret=private,
            token_endpoint_auth_method=self.auth,
            revocation_endpoint_auth_method=self.auth,
            redirect_uri=redirect_uri,
            scope="openid",
            code_challenge_method="S256",
            transport=transport,
        )

    @property
    def client_id(self) -> str:
        return self.actor.ids["client_id"]

    async def discover(self) -> dict[str, Any]:
        async with httpx.AsyncClient(transport=self.transport, base_url=self.base_url) as http:
            answer = await http.get(DISCOVERY)
        assert answer.status_code == 200, answer.text
        self.metadata = answer.json()
        # the provider takes the issuer identifier as the assertion's only audience; Authlib's default would be
        # the URL of each endpoint called
        self.auth.token_endpoint = self.metadata["issuer"]
        return self.metadata

    async def aclose(self) -> None:
        await self.oauth.aclose()

    async def push_raw(self, params: dict[str, str], signed: bool = True) -> httpx.Response:
        """POST to the PAR endpoint with the client assertion Authlib makes (or, unsigned, the params alone)."""
        endpoint = self.metadata["pushed_authorization_request_endpoint"]
        auth = self.oauth.client_auth(self.auth) if signed else None
        answer: httpx.Response = await self.oauth.request("POST", endpoint, data=params, auth=auth, withhold_token=True)
        return answer

    def request_params(self, scope: str = "openid", **extra: str) -> tuple[dict[str, str], str, str, str]:
        """Authorization request parameters made by Authlib, with their verifier, state and nonce."""
        verifier = generate_token(48)
        nonce = secrets.token_urlsafe(16)
        url, state = self.oauth.create_authorization_url(
            self.metadata["authorization_endpoint"], code_verifier=verifier, nonce=nonce, scope=scope, **extra
        )
        return dict(parse_qsl(urlsplit(url).query)), verifier, state, nonce

    async def push(self, scope: str = "openid", **extra: str) -> Pushed:
        params, verifier, state, nonce = self.request_params(scope, **extra)
        answer = await self.push_raw(params)
        assert answer.status_code == 201, answer.text
        body = answer.json()
        return Pushed(body["request_uri"], body["expires_in"], verifier, state, nonce)

    def authorize_url(self, pushed: Pushed) -> str:
        query = urlencode({"client_id": self.client_id, "request_uri": pushed.request_uri})
        return f"{self.metadata['authorization_endpoint']}?{query}"

    def callback(self, redirect: str, pushed: Pushed) -> str:
        """The code from the redirect, after the checks a portal makes (RFC 9207 iss, state)."""
        assert redirect.startswith(self.redirect_uri), redirect
        params = dict(parse_qsl(urlsplit(redirect).query))
        assert params.get("iss") == self.metadata["issuer"], params
        assert params.get("state") == pushed.state, params
        assert "error" not in params, params
        return params["code"]

    async def redeem(self, code: str, pushed: Pushed, **overrides: str) -> dict[str, Any]:
        """Authlib's token request; raises Authlib's OAuthError on an error answer."""
        token: dict[str, Any] = await self.oauth.fetch_token(
            self.metadata["token_endpoint"],
            code=code,
            code_verifier=overrides.get("code_verifier", pushed.verifier),
            redirect_uri=overrides.get("redirect_uri", self.redirect_uri),
        )
        return token

    async def token_raw(self, form: dict[str, str]) -> httpx.Response:
        """POST to the token endpoint with Authlib's client assertion, the form as given."""
        auth = self.oauth.client_auth(self.auth)
        answer: httpx.Response = await self.oauth.request(
            "POST", self.metadata["token_endpoint"], data=form, auth=auth, withhold_token=True
        )
        return answer

    async def jwks(self) -> KeySet:
        async with httpx.AsyncClient(transport=self.transport) as http:
            answer = await http.get(self.metadata["jwks_uri"])
        assert answer.status_code == 200, answer.text
        return KeySet.import_key_set(answer.json())

    async def id_token_claims(self, id_token: str, pushed: Pushed) -> dict[str, Any]:
        """The id_token checked as OpenID Connect Core §3.1.3.7 asks, against the published JWKS."""
        decoded = jwt.decode(id_token, await self.jwks(), algorithms=["ES256"])
        assert decoded.header.get("kid"), decoded.header
        jwt.JWTClaimsRegistry(
            iss={"essential": True, "value": self.metadata["issuer"]},
            aud={"essential": True, "value": self.client_id},
            sub={"essential": True},
            exp={"essential": True},
            iat={"essential": True},
            auth_time={"essential": True},
            nonce={"essential": True, "value": pushed.nonce},
        ).validate(decoded.claims)
        return decoded.claims

    async def userinfo(self, access_token: str) -> httpx.Response:
        self.oauth.token = {"access_token": access_token, "token_type": "Bearer"}
        answer: httpx.Response = await self.oauth.get(self.metadata["userinfo_endpoint"])
        return answer

    async def revoke(self, access_token: str) -> httpx.Response:
        answer: httpx.Response = await self.oauth.revoke_token(
            self.metadata["revocation_endpoint"], token=access_token, token_type_hint="access_token"
        )
        return answer


async def start_login(parties: Parties, portal: PortalClient, **extra: str) -> tuple[Pushed, str]:
    """PAR and the same-device authorize (302 to the app): the pushed request and the login request's id."""
    pushed = await portal.push(**extra)
    answer = await parties.client.get(portal.authorize_url(pushed))
    assert answer.status_code == 302, answer.text
    link = answer.headers["location"]
    assert link.startswith("ecard://login?"), link
    return pushed, dict(parse_qsl(urlsplit(link).query))["login_id"]


async def same_device_login(parties: Parties, portal: PortalClient, device: Actor, **extra: str) -> tuple[Pushed, str]:
    """A login approved in the app: the pushed request and the redirect the app opens, with its code."""
    pushed, login_id = await start_login(parties, portal, **extra)
    approved = await parties.signed(device, "POST", f"/v1/logins/{login_id}/approve", {})
    assert approved.status_code == 200, approved.text
    redirect: str = approved.json()["redirect_uri"]
    return pushed, redirect


class _Callbacks(BaseHTTPRequestHandler):
    """The portal's redirect target: remembers each callback's query and says so."""

    seen: list[dict[str, str]]

    def do_GET(self) -> None:
        target = urlsplit(self.path)
        if target.path == "/callback":  # not the browser's favicon request
            self.seen.append(dict(parse_qsl(target.query)))
        body = b"<!doctype html><title>portal</title><p>signed in</p>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the signature http.server calls
        return


@pytest.fixture
def portal_site() -> Iterator[tuple[str, list[dict[str, str]]]]:
    """A tiny real HTTP server on loopback as the portal's callback: its URL and the callbacks it received."""
    seen: list[dict[str, str]] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("PortalCallbacks", (_Callbacks,), {"seen": seen}))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/callback", seen
    finally:
        server.shutdown()
        server.server_close()
