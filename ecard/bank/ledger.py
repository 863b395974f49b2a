"""The stand-in bank's double-entry ledger: accounts, transfers and immutable entries in a SQLite file (WAL)."""

from __future__ import annotations

import datetime as dt
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from ecard.kit.clock import Clock, iso
from ecard.kit.refusal import Refusal

LEDGER_FILE = "bank.sqlite3"
SETTLEMENT = "bank:settlement"
FUNDING = "bank:funding"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    account_id  TEXT PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('card', 'settlement', 'funding')),
    balance_fen INTEGER NOT NULL DEFAULT 0,
    CHECK (kind <> 'card' OR balance_fen >= 0)
);
CREATE TABLE IF NOT EXISTS transfers (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    transfer_id  TEXT NOT NULL UNIQUE,
    card_id      TEXT NOT NULL,
    direction    TEXT NOT NULL CHECK (direction IN ('debit', 'credit', '')),
    amount_fen   INTEGER NOT NULL CHECK (amount_fen >= 0),
    memo         TEXT NOT NULL,
    counterparty TEXT NOT NULL CHECK (counterparty IN ('bank:settlement', 'bank:funding')),
    status       TEXT NOT NULL CHECK (status IN ('completed', 'reversed', 'voided')),
    at           TEXT NOT NULL,
    day          TEXT NOT NULL,
    reversed_at  TEXT
);
CREATE INDEX IF NOT EXISTS transfers_by_day ON transfers (day, seq);
CREATE TABLE IF NOT EXISTS entries (
    entry_id    INTEGER PRIMARY KEY AUTOINCREMENT,
    transfer_id TEXT NOT NULL REFERENCES transfers (transfer_id),
    account_id  TEXT NOT NULL REFERENCES accounts (account_id),
    amount_fen  INTEGER NOT NULL CHECK (amount_fen <> 0),
    kind        TEXT NOT NULL CHECK (kind IN ('transfer', 'reversal')),
    at          TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_by_transfer ON entries (transfer_id);
CREATE TRIGGER IF NOT EXISTS entries_move_balances AFTER INSERT ON entries BEGIN
    UPDATE accounts SET balance_fen = balance_fen + NEW.amount_fen WHERE account_id = NEW.account_id;
END;
CREATE TRIGGER IF NOT EXISTS entries_no_update BEFORE UPDATE ON entries BEGIN
    SELECT RAISE(ABORT, 'ledger entries are immutable');
END;
CREATE TRIGGER IF NOT EXISTS entries_no_delete BEFORE DELETE ON entries BEGIN
    SELECT RAISE(ABORT, 'ledger entries are immutable');
END;
CREATE TABLE IF NOT EXISTS nonces (
    keyid   TEXT NOT NULL,
    nonce   TEXT NOT NULL,
    created INTEGER NOT NULL,
    PRIMARY KEY (keyid, nonce)
);
INSERT OR IGNORE INTO accounts (account_id, kind) VALUES ('bank:settlement', 'settlement'), ('bank:funding', 'funding');
"""

_TRANSFER_COLUMNS = "transfer_id, card_id, direction, amount_fen, memo, status, at, reversed_at"


@dataclass(frozen=True)
class Transfer:
    transfer_id: str
    card_id: str
    direction: str
    amount_fen: int
    memo: str
    status: str
    at: str
    reversed_at: str | None


@dataclass(frozen=True)
class LedgerCheck:
    balanced: bool
    sum_fen: int
    unbalanced_transfers: list[str]
    balances_match: bool
    accounts: int
    entries: int


def _card_account(card_id: str) -> str:
    return f"card:{card_id}"


class Ledger:
    """One SQLite connection, used from one thread at a time; every write is one IMMEDIATE transaction."""

    def __init__(self, data_dir: Path, clock: Clock) -> None:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.path = data_dir / LEDGER_FILE
        self._clock = clock
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode = WAL")
        # FULL: a transfer answered 201 is on disk, also across a power cut
        self._db.execute("PRAGMA synchronous = FULL")
        self._db.execute("PRAGMA foreign_keys = ON")
        self._db.executescript(_SCHEMA)
        self.path.chmod(0o600)

    def close(self) -> None:
        self._db.close()

    def make(self, transfer_id: str, card_id: str, direction: str, amount_fen: int, memo: str) -> tuple[Transfer, bool]:
        """The transfer under this id, made now (True) or found made before with the same fields (False)."""
        with self._transaction():
            found = self._get(transfer_id, SETTLEMENT)
            if found is not None:
                if found.status == "voided":
                    raise Refusal("transfer_voided", "this transfer_id was voided by a reversal")
                if (found.card_id, found.direction, found.amount_fen, found.memo) != (
                    card_id,
                    direction,
                    amount_fen,
                    memo,
                ):
                    raise Refusal("transfer_conflict", "this transfer_id belongs to a different transfer")
                return found, False
            if self._get(transfer_id, FUNDING) is not None:
                raise Refusal("transfer_conflict", "this transfer_id belongs to a different transfer")
            sign = -1 if direction == "debit" else 1
            self._move(transfer_id, card_id, direction, amount_fen, memo, SETTLEMENT, sign)
            made = self._get(transfer_id, SETTLEMENT)
        assert made is not None
        return made, True

    def fund(self, transfer_id: str, card_id: str, amount_fen: int) -> int:
        """Money from outside the bank into a card's account (the test credit); the new balance."""
        with self._transaction():
            self._move(transfer_id, card_id, "credit", amount_fen, "test credit", FUNDING, 1)
            return self._balance(card_id)

    def reverse(self, transfer_id: str, memo: str) -> Transfer:
        """Undo a completed transfer with opposite entries, or void an id no transfer has used."""
        with self._transaction():
            found = self._get(transfer_id, SETTLEMENT)
            now = self._clock.now()
            if found is None:
                if self._get(transfer_id, FUNDING) is not None:
                    raise Refusal("transfer_conflict", "this transfer_id is not one of the issuer's transfers")
                self._db.execute(
                    "INSERT INTO transfers (transfer_id, card_id, direction, amount_fen, memo, counterparty, status,"
                    " at, day) VALUES (?, '', '', 0, ?, ?, 'voided', ?, ?)",
                    (transfer_id, memo, SETTLEMENT, iso(now), _day(now)),
                )
            elif found.status == "completed":
                if found.direction == "credit" and self._balance(found.card_id) < found.amount_fen:
                    raise Refusal("insufficient_funds", "the card has spent the money this credit brought")
                sign = 1 if found.direction == "debit" else -1
                self._entries(transfer_id, found.card_id, found.amount_fen * sign, SETTLEMENT, "reversal", iso(now))
                self._db.execute(
                    "UPDATE transfers SET status = 'reversed', reversed_at = ? WHERE transfer_id = ?",
                    (iso(now), transfer_id),
                )
            reversed_ = self._get(transfer_id, SETTLEMENT)
        assert reversed_ is not None
        return reversed_

    def get(self, transfer_id: str) -> Transfer | None:
        return self._get(transfer_id, SETTLEMENT)

    def on_day(self, day: dt.date) -> list[Transfer]:
        rows = self._db.execute(
            f"SELECT {_TRANSFER_COLUMNS} FROM transfers"  # noqa: S608 - a constant column list
            " WHERE day = ? AND counterparty = ? AND status <> 'voided' ORDER BY seq",
            (day.isoformat(), SETTLEMENT),
        ).fetchall()
        return [Transfer(**dict(row)) for row in rows]

    def balance(self, card_id: str) -> int:
        return self._balance(card_id)

    def check(self) -> LedgerCheck:
        """Every transfer's entries sum to zero, and every balance is the sum of its account's entries."""
        total = self._db.execute("SELECT COALESCE(SUM(amount_fen), 0) FROM entries").fetchone()[0]
        unbalanced = [
            row[0]
            for row in self._db.execute(
                "SELECT transfer_id FROM entries GROUP BY transfer_id HAVING SUM(amount_fen) <> 0"
            ).fetchall()
        ]
        mismatched = self._db.execute(
            "SELECT COUNT(*) FROM accounts a WHERE a.balance_fen <>"
            " (SELECT COALESCE(SUM(e.amount_fen), 0) FROM entries e WHERE e.account_id = a.account_id)"
            " OR (a.kind = 'card' AND a.balance_fen < 0)"
        ).fetchone()[0]
        accounts = self._db.execute("SELECT COUNT(*) FROM accounts").fetchone()[0]
        entries = self._db.execute("SELECT COUNT(*) FROM entries").fetchone()[0]
        return LedgerCheck(
            balanced=total == 0 and not unbalanced and mismatched == 0,
            sum_fen=int(total),
            unbalanced_transfers=unbalanced,
            balances_match=mismatched == 0,
            accounts=int(accounts),
            entries=int(entries),
        )

    def claim_nonce(self, keyid: str, nonce: str, created: int, forget_before: int) -> bool:
        """True the first time this key uses this nonce; nonces older than forget_before are dropped."""
        with self._transaction():
            self._db.execute("DELETE FROM nonces WHERE created < ?", (forget_before,))
            claimed = self._db.execute(
                "INSERT OR IGNORE INTO nonces (keyid, nonce, created) VALUES (?, ?, ?)", (keyid, nonce, created)
            )
            return claimed.rowcount == 1

    # -- inside a transaction ------------------------------------------------

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)

    def _get(self, transfer_id: str, counterparty: str) -> Transfer | None:
        row = self._db.execute(
            f"SELECT {_TRANSFER_COLUMNS} FROM transfers"  # noqa: S608 - a constant column list
            " WHERE transfer_id = ? AND counterparty = ?",
            (transfer_id, counterparty),
        ).fetchone()
        return None if row is None else Transfer(**dict(row))

    def _balance(self, card_id: str) -> int:
        row = self._db.execute(
            "SELECT balance_fen FROM accounts WHERE account_id = ?", (_card_account(card_id),)
        ).fetchone()
        return 0 if row is None else int(row[0])

    def _move(
        self, transfer_id: str, card_id: str, direction: str, amount_fen: int, memo: str, counterparty: str, sign: int
    ) -> None:
        if sign < 0 and self._balance(card_id) < amount_fen:
            raise Refusal("insufficient_funds", "the card's account holds less than this debit")
        now = self._clock.now()
        self._db.execute(
            "INSERT INTO transfers (transfer_id, card_id, direction, amount_fen, memo, counterparty, status, at, day)"
            " VALUES (?, ?, ?, ?, ?, ?, 'completed', ?, ?)",
            (transfer_id, card_id, direction, amount_fen, memo, counterparty, iso(now), _day(now)),
        )
        self._entries(transfer_id, card_id, amount_fen * sign, counterparty, "transfer", iso(now))

    def _entries(self, transfer_id: str, card_id: str, card_side: int, counterparty: str, kind: str, at: str) -> None:
        """Two entries of opposite sign: the card's account against the bank's counterparty account."""
        account = _card_account(card_id)
        self._db.execute("INSERT OR IGNORE INTO accounts (account_id, kind) VALUES (?, 'card')", (account,))
        self._db.executemany(
            "INSERT INTO entries (transfer_id, account_id, amount_fen, kind, at) VALUES (?, ?, ?, ?, ?)",
            [(transfer_id, account, card_side, kind, at), (transfer_id, counterparty, -card_side, kind, at)],
        )
        left = self._db.execute(
            "SELECT COALESCE(SUM(amount_fen), 0) FROM entries WHERE transfer_id = ?", (transfer_id,)
        ).fetchone()[0]
        if left != 0:
            raise RuntimeError(f"transfer {transfer_id} would leave the ledger unbalanced by {left}")


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any exception (a refusal included)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        self._db.execute("COMMIT" if kind is None else "ROLLBACK")


def _day(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC).date().isoformat()
