"""Family links as requested, answered and stored."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

Relation = Literal["parent", "child", "spouse", "other"]
LinkStatus = Literal["active", "pending_consent", "ended"]


class NewMember(msgspec.Struct, forbid_unknown_fields=True):
    id_number: Annotated[str, msgspec.Meta(max_length=64)]
    name: Annotated[str, msgspec.Meta(max_length=64)]
    relation: Relation


class AddedMember(msgspec.Struct):
    link_id: str
    member_card_id: str
    status: str


class Consent(msgspec.Struct, forbid_unknown_fields=True):
    """The member's own real-name check, as the channel made it."""

    id_number: Annotated[str, msgspec.Meta(max_length=64)]
    name: Annotated[str, msgspec.Meta(max_length=64)]


class LinkView(msgspec.Struct):
    """A link as either side sees it; `name_masked` is the other side's name, masked."""

    link_id: str
    relation: str
    status: str
    guardian_card_id: str
    member_card_id: str
    name_masked: str
    created_at: str
    consented_at: str | None = None
    ended_at: str | None = None
    ended_by: str | None = None
    # a member who was under 16 and has turned 16: the link lapses to pending_consent after this unless consented
    consent_due_at: str | None = None


class Links(msgspec.Struct):
    items: list[LinkView]


# --- rows as the store reads them ---------------------------------------------------------------


class LinkRow(msgspec.Struct, frozen=True):
    link_id: str
    guardian_card_id: str
    member_card_id: str
    relation: str
    status: str
    minor: bool
    created_at: datetime
    consented_at: datetime | None
    ended_at: datetime | None
    ended_by: str | None
