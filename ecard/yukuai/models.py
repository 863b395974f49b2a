"""渝快码 link requests and answers."""

from __future__ import annotations

from typing import Annotated

import msgspec

AccountId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]


class LinkRequest(msgspec.Struct, forbid_unknown_fields=True):
    account_id: AccountId
    consent: bool


class LinkAnswer(msgspec.Struct):
    card_id: str
    account_id: str
    status: str
    consent_version: str
    consented_at: str
    revoked_at: str | None = None
