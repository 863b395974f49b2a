"""Partner registration and issuer-to-issuer verification requests."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from ecard.verify import ShortText, TerminalId, Text

Issuer = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9-]{0,15}$")]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
BaseUrl = Annotated[str, msgspec.Meta(pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$", max_length=512)]


class NewPartner(msgspec.Struct, forbid_unknown_fields=True):
    issuer: Issuer
    name: Name
    base_url: BaseUrl
    public_key: dict[str, Any]
    # the region whose items the joint list is drawn against; the partner's issuer id unless given
    region: Issuer | None = None


class CodeKeyAnswer(msgspec.Struct):
    kid: str
    status: str


class PartnerAnswer(msgspec.Struct):
    partner_id: str
    key_id: str
    issuer: str
    name: str
    base_url: str
    region: str
    status: str
    code_keys: list[CodeKeyAnswer]
    keys_fetched_at: str | None


class PartnerList(msgspec.Struct):
    items: list[PartnerAnswer]


class PartnerMerchant(msgspec.Struct, forbid_unknown_fields=True):
    id: ShortText
    name: Name
    region: ShortText


class FederatedVerificationRequest(msgspec.Struct, forbid_unknown_fields=True):
    code: Text
    item_code: ShortText
    merchant: PartnerMerchant
    terminal_id: TerminalId | None = None
    place: dict[str, Any] | None = None
    # when the asking issuer stops waiting (unix seconds): a request still queued after it is not decided at all,
    # so a code is never used up by a verification whose answer nobody waits for
    answer_by: float | None = None
