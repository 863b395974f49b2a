"""Verification requests and answers."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

Text = Annotated[str, msgspec.Meta(min_length=1, max_length=2048)]
ShortText = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class VerificationRequest(msgspec.Struct, forbid_unknown_fields=True):
    code: Text
    item_code: ShortText
    terminal_id: ShortText | None = None
    place: dict[str, Any] | None = None


class VerificationAnswer(msgspec.Struct):
    result: str
    verification_id: str
    item_code: str
    verified_at: str
    card: dict[str, str]
