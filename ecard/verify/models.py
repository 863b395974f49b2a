"""Verification requests and answers."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

Text = Annotated[str, msgspec.Meta(min_length=1, max_length=2048)]
ShortText = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
# PostgreSQL text and jsonb cannot hold U+0000, and a terminal id has no business with control characters.
TerminalId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$")]


class VerificationRequest(msgspec.Struct, forbid_unknown_fields=True):
    code: Text
    item_code: ShortText
    terminal_id: TerminalId | None = None
    place: dict[str, Any] | None = None


class VerificationAnswer(msgspec.Struct):
    result: str
    verification_id: str
    item_code: str
    verified_at: str
    card: dict[str, str]


def storable(value: Any) -> bool:
    """True when no string in a JSON value (keys included) holds U+0000, which PostgreSQL's jsonb refuses."""
    pending = [value]
    while pending:  # a loop, not recursion: the value's depth is the client's choice
        item = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return False
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return True
