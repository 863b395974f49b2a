"""What the partition keeper reports: a table's partitions, and the months it archived."""

from __future__ import annotations

from datetime import date

import msgspec


class Partition(msgspec.Struct, frozen=True):
    """One partition of `table`: a month (UTC), or the default partition (`month` None) for rows of no month."""

    table: str
    name: str
    month: date | None
    attached: bool = True


class Archived(msgspec.Struct, frozen=True):
    """A month detached, written to `path` (gzip CSV with a header, COPY's own format), checked and dropped."""

    table: str
    name: str
    month: date
    rows: int
    path: str
    sha256: str
