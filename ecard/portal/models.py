"""Portals, login requests, grants and tokens of the OpenID Connect provider."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

# What a portal may be registered for; `name` and `id_number` only with an item that discloses them.
CLAIMS = ("name", "id_number", "region", "card_status")
Outcome = Literal["pending", "approved", "denied", "failed", "expired"]


class NewPortal(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    redirect_uris: list[str]
    jwks: dict[str, Any]
    claims: list[str]
    allowed_items: list[str]


class PortalAnswer(msgspec.Struct):
    client_id: str
    name: str
    redirect_uris: list[str]
    claims: list[str]
    allowed_items: list[str]


class PortalList(msgspec.Struct):
    items: list[PortalAnswer]


class Portal(msgspec.Struct, frozen=True):
    client_id: str
    name: str
    redirect_uris: tuple[str, ...]
    jwks: dict[str, list[dict[str, str]]]
    claims: tuple[str, ...]
    allowed_items: tuple[str, ...]


class Authorization(msgspec.Struct, frozen=True):
    """A pushed authorization request (RFC 9126), held until its `request_uri` is used or expires."""

    client_id: str
    redirect_uri: str
    scope: str
    state: str | None
    nonce: str | None
    code_challenge: str
    claims: tuple[str, ...]
    cross_device: bool
    expires_at: float


class LoginRequest(msgspec.Struct, frozen=True):
    """What the citizen approves in the app; `number` is shown on the portal's page in the cross-device style."""

    login_id: str
    client_id: str
    portal_name: str
    redirect_uri: str
    state: str | None
    nonce: str | None
    code_challenge: str
    claims: tuple[str, ...]
    number: int | None
    poll_secret_hash: str
    created_at: float
    expires_at: float


class Ending(msgspec.Struct, frozen=True):
    """How a login request ended, and where the portal's page or app goes next."""

    outcome: Outcome
    redirect_uri: str


class Grant(msgspec.Struct, frozen=True):
    """What an authorization code stands for until the portal redeems it (60 s, once)."""

    client_id: str
    redirect_uri: str
    code_challenge: str
    nonce: str | None
    card_id: str
    subject: str
    claims: tuple[str, ...]
    auth_time: int
    expires_at: float


class AccessGrant(msgspec.Struct, frozen=True):
    """What an access token stands for; kept under the token's hash, never the token itself."""

    client_id: str
    card_id: str
    subject: str
    claims: tuple[str, ...]
    scope: str
    expires_at: float


class LoginView(msgspec.Struct):
    login_id: str
    client_id: str
    portal_name: str
    claims: list[str]
    expires_at: str
    number_required: bool


class Approval(msgspec.Struct, forbid_unknown_fields=True):
    number: int | None = None


class RedirectAnswer(msgspec.Struct):
    redirect_uri: str


class LoginStatus(msgspec.Struct, omit_defaults=True):
    status: Outcome
    redirect_uri: str | None = None


class LoginEntry(msgspec.Struct):
    login_id: str
    client_id: str
    portal_name: str
    claims: list[str]
    outcome: str
    cross_device: bool
    at: str


class LoginHistory(msgspec.Struct):
    items: list[LoginEntry]
