"""渝快码 link requests and answers, and what the 渝快办 platform answers the adapter."""

from __future__ import annotations

from typing import Annotated

import msgspec

AccountId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
# what the 渝快办 app hands its logged-in user to prove the account is theirs: one use, minutes long
LinkToken = Annotated[str, msgspec.Meta(min_length=16, max_length=256, pattern=r"^[A-Za-z0-9_-]+$")]


class LinkRequest(msgspec.Struct, forbid_unknown_fields=True):
    account_id: AccountId
    consent: bool
    # optional in the shape only, so that a request without it is told what is missing (link_token_required)
    link_token: LinkToken | None = None


class LinkAnswer(msgspec.Struct):
    card_id: str
    account_id: str
    status: str
    consent_version: str
    consented_at: str
    revoked_at: str | None = None


class ResolvedCode(msgspec.Struct):
    """The platform's answer for a 渝快码: whose account it is (the code is used up)."""

    account_id: AccountId
    expires_at: int


class LinkProof(msgspec.Struct):
    """The platform's answer for a link token: the account it was issued for, and that account's real name."""

    account_id: AccountId
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    id_number: Annotated[str, msgspec.Meta(min_length=15, max_length=18, pattern=r"^[0-9]{15}([0-9]{2}[0-9Xx])?$")]
    expires_at: int
