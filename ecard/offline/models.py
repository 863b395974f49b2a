"""Offline tap uploads and their answers."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

from ecard.verify import ShortText, Text

TapId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")]
# a tap without its offset would be read in whatever zone the terminal was set to
TappedAt = Annotated[datetime, msgspec.Meta(tz=True)]
# an upload fits the service's 64 KiB body limit with room to spare; a day of taps goes up in several
MAX_TAPS = 100


class Tap(msgspec.Struct, forbid_unknown_fields=True):
    tap_id: TapId
    code: Text
    item_code: ShortText
    tapped_at: TappedAt


class Upload(msgspec.Struct, forbid_unknown_fields=True):
    taps: Annotated[list[Tap], msgspec.Meta(min_length=1, max_length=MAX_TAPS)]


class TapResult(msgspec.Struct, frozen=True):
    tap_id: str
    # "accepted" or the refusal code the tap would have had online at its time
    result: str
    verification_id: str | None = None


class UploadAnswer(msgspec.Struct):
    results: list[TapResult]
