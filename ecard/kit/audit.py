"""Append-only audit records of what operators and clients changed, chained by a keyed MAC.

Writing an entry is one INSERT in the caller's transaction and takes no lock, so audited writes (every
PIN check among them) never wait for each other. A sealer, one at a time across every host, chains the
entries afterwards: seal n carries HMAC-SHA-256(audit key, mac of seal n-1 ‖ n ‖ the entry: id, actor,
action, subject, detail and time). The audit key is derived from the master key; the database never
holds it. Entries are sealed in the order (inserting transaction id, entry id), and only those below the
oldest transaction of this database still running, so that no entry can later turn up in front of one
already sealed.

A chain that verifies shows that every sealed entry is as it was when sealed, that none between the
first and the last seal was removed, reordered or added, and that nobody without the key sealed
anything. It does not show
- that the newest entries were not removed with their seals (the tail): compare the head with an
  anchor kept outside the database (`verify_chain(..., anchor=...)`, `ecard audit verify --anchor`);
- who inserted an entry: whoever can write to the database can insert a row before it is sealed;
- anything about entries not sealed yet (normally a second or two: see `unsealed`).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec

from ecard.kit.infra import Conn

log = logging.getLogger("ecard.audit")

# One sealer at a time, on any host; any fixed number works as long as every host uses the same one.
_SEAL_LOCK = 0x61756474
_GENESIS = b"\x00" * 32
SEAL_BATCH = 1000


async def record(conn: Conn, actor: str, action: str, subject: str, detail: dict[str, Any]) -> None:
    """Append one entry inside the caller's transaction; never personal data in `detail`."""
    await conn.execute(
        "INSERT INTO audit_log (actor, action, subject, detail) VALUES ($1, $2, $3, $4)",
        actor,
        action,
        subject,
        detail,
    )


class ChainHead(msgspec.Struct, frozen=True):
    """A seal's position and MAC: the chain's head, or an anchor written down outside the database."""

    seq: int
    mac: bytes

    def text(self) -> str:
        return f"{self.seq}:{base64.urlsafe_b64encode(self.mac).rstrip(b'=').decode()}"

    @classmethod
    def parse(cls, text: str) -> ChainHead:
        """`SEQ:MAC` as `text()` writes it (MAC in base64url); ValueError when it is not that."""
        seq, _, mac = text.partition(":")
        raw = base64.urlsafe_b64decode(mac + "=" * (-len(mac) % 4))
        if not seq.isdigit() or int(seq) < 1 or len(raw) != 32:
            raise ValueError("an anchor is SEQ:MAC, as `ecard audit verify` prints the head")
        return cls(int(seq), raw)


class ChainCheck(msgspec.Struct, frozen=True):
    """What `verify_chain` found. When not `intact`, `broken_seq` / `broken_entry` name the first place
    where the chain does not hold and `why` says how."""

    intact: bool
    sealed: int
    unsealed: int
    head: ChainHead | None
    broken_seq: int | None = None
    broken_entry: int | None = None
    why: str = ""


class _Entry(msgspec.Struct, frozen=True):
    entry_id: int
    actor: str
    action: str
    subject: str
    detail: Any
    at: datetime


def _entry(row: asyncpg.Record) -> _Entry:
    return _Entry(row["entry_id"], row["actor"], row["action"], row["subject"], row["detail"], row["at"])


def _mac(key: bytes, prev: bytes, seq: int, entry: _Entry) -> bytes:
    # the entry as read back from the database (jsonb has its own key order and number forms), canonically
    body = [
        seq,
        entry.entry_id,
        entry.actor,
        entry.action,
        entry.subject,
        entry.detail,
        entry.at.astimezone(UTC).isoformat(),
    ]
    payload = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()
    return hmac.new(key, prev + payload, hashlib.sha256).digest()


# The oldest transaction id that may still write here: the snapshot's oldest running one, leaving out those
# that hold their transaction lock in another database of the cluster (transaction ids are cluster-wide, and
# another database's long transaction must not hold this chain back). One not known to be elsewhere, even
# for an instant (a transaction between taking its id and its lock), counts as ours: sealing waits for it.
_CUTOFF = """
WITH elsewhere AS (
    SELECT l.transactionid::text::bigint AS xid32 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
    WHERE l.locktype = 'transactionid' AND l.mode = 'ExclusiveLock' AND l.granted
      AND a.datid <> (SELECT oid FROM pg_database WHERE datname = current_database())
)
SELECT coalesce(
    (SELECT min(x) FROM pg_snapshot_xip(snap.s) AS x
     WHERE (x::text::bigint & 4294967295) NOT IN (SELECT xid32 FROM elsewhere)),
    pg_snapshot_xmax(snap.s))
FROM (SELECT pg_current_snapshot() AS s) AS snap
"""


class AuditSealer:
    """Chains the entries written since the last seal (one host at a time), every `interval_s`."""

    def __init__(self, pool: asyncpg.Pool, key: bytes, interval_s: float = 1.0) -> None:
        self._pool = pool
        self._key = key
        self._interval = interval_s

    async def seal(self, *, wait: bool = False) -> int:
        """One round: seals up to SEAL_BATCH entries whose inserting transactions have all ended; how many.

        While another host's sealer has the turn this round seals nothing, unless `wait` says to wait for it."""
        async with self._pool.acquire() as conn, conn.transaction():
            if wait:
                await conn.execute("SELECT pg_advisory_xact_lock($1)", _SEAL_LOCK)
            elif not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", _SEAL_LOCK):
                return 0
            # every transaction of this database below this id has ended: its entries are all visible now, or never
            cutoff = await conn.fetchval(_CUTOFF)
            head = await conn.fetchrow("SELECT seq, entry_id, xid, mac FROM audit_seals ORDER BY seq DESC LIMIT 1")
            seq, after_xid, after_entry, prev = (
                (head["seq"], head["xid"], head["entry_id"], bytes(head["mac"])) if head else (0, 0, 0, _GENESIS)
            )
            rows = await conn.fetch(
                "SELECT entry_id, xid, actor, action, subject, detail, at FROM audit_log"
                " WHERE xid < $1 AND (xid, entry_id) > ($2::xid8, $3::bigint) ORDER BY xid, entry_id LIMIT $4",
                cutoff,
                after_xid,
                after_entry,
                SEAL_BATCH,
            )
            seqs, entries, xids, macs = [], [], [], []
            for row in rows:
                seq += 1
                prev = _mac(self._key, prev, seq, _entry(row))
                seqs.append(seq)
                entries.append(row["entry_id"])
                xids.append(row["xid"])
                macs.append(prev)
            if seqs:
                await conn.execute(
                    "INSERT INTO audit_seals (seq, entry_id, xid, mac)"
                    " SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::xid8[], $4::bytea[])",
                    seqs,
                    entries,
                    xids,
                    macs,
                )
            return len(seqs)

    async def run(self) -> None:
        """Seal until cancelled: at once while there is a backlog, else every interval."""
        while True:
            try:
                sealed = await self.seal()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("audit sealing round failed", extra={"error_type": type(exc).__name__})
                sealed = 0
            if sealed < SEAL_BATCH:
                await asyncio.sleep(self._interval)


async def verify_chain(pool: asyncpg.Pool, key: bytes, anchor: ChainHead | None = None) -> ChainCheck:
    """Check every seal against its entry and its predecessor, from the first to the head, in one snapshot.

    With `anchor` (a head written down earlier, outside the database), the chain must also still
    hold that seal with that MAC: removing the newest entries then shows too."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        unsealed = await conn.fetchval(
            "SELECT count(*) FROM audit_log a"
            " WHERE NOT EXISTS (SELECT 1 FROM audit_seals s WHERE s.entry_id = a.entry_id)"
        )
        prev, expected, head = _GENESIS, 1, None

        def broken(seq: int, entry: int | None, why: str) -> ChainCheck:
            return ChainCheck(
                intact=False,
                sealed=expected - 1,
                unsealed=unsealed,
                head=head,
                broken_seq=seq,
                broken_entry=entry,
                why=why,
            )

        async for row in conn.cursor(
            "SELECT s.seq, s.entry_id AS sealed_entry, s.xid AS sealed_xid, s.mac,"
            " a.entry_id, a.xid, a.actor, a.action, a.subject, a.detail, a.at"
            " FROM audit_seals s LEFT JOIN audit_log a ON a.entry_id = s.entry_id ORDER BY s.seq"
        ):
            seq, mac = row["seq"], bytes(row["mac"])
            if seq != expected:
                return broken(expected, None, f"seal {expected} is missing")
            if row["entry_id"] is None:
                return broken(seq, row["sealed_entry"], f"entry {row['sealed_entry']} (seal {seq}) is gone")
            if row["xid"] != row["sealed_xid"] or not hmac.compare_digest(_mac(key, prev, seq, _entry(row)), mac):
                why = f"entry {row['entry_id']} (seal {seq}) does not chain: changed, or sealed without the key"
                return broken(seq, row["entry_id"], why)
            prev, expected, head = mac, expected + 1, ChainHead(seq, mac)
            if anchor is not None and seq == anchor.seq and not hmac.compare_digest(mac, anchor.mac):
                return broken(seq, row["entry_id"], f"seal {seq} is not the anchor's: the chain was rewritten")
        if anchor is not None and (head is None or head.seq < anchor.seq):
            return broken(expected, None, f"the chain ends before the anchor's seal {anchor.seq}: entries were removed")
        if head is not None:
            # an entry that sorts before the head yet has no seal was slipped in behind the sealer's back
            slipped = await conn.fetchval(
                "SELECT a.entry_id FROM audit_log a, audit_seals h WHERE h.seq = $1"
                " AND (a.xid, a.entry_id) < (h.xid, h.entry_id)"
                " AND NOT EXISTS (SELECT 1 FROM audit_seals s WHERE s.entry_id = a.entry_id)"
                " ORDER BY a.xid, a.entry_id LIMIT 1",
                head.seq,
            )
            if slipped is not None:
                return broken(head.seq, slipped, f"entry {slipped} sorts before seal {head.seq} but is not sealed")
        return ChainCheck(intact=True, sealed=expected - 1, unsealed=unsealed, head=head)
