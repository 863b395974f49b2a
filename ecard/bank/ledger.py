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

_ACCOUNTS = """
CREATE TABLE IF NOT EXISTS accounts (
    account_id  TEXT PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('card', 'settlement', 'funding', 'payer', 'reservation')),
    balance_fen INTEGER NOT NULL DEFAULT 0,
    CHECK (kind NOT IN ('card', 'payer', 'reservation') OR balance_fen >= 0)
);
"""
# `counterparty` is the account a transfer's card side moves against: the bank's settlement or funding account, or
# (a disbursement credit) the payer's reservation. Payers' own movements (fund, reserve, release) have no card.
_TRANSFERS = """
CREATE TABLE IF NOT EXISTS transfers (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    transfer_id  TEXT NOT NULL UNIQUE,
    card_id      TEXT NOT NULL,
    direction    TEXT NOT NULL CHECK (direction IN ('debit', 'credit', '', 'fund', 'reserve', 'release')),
    amount_fen   INTEGER NOT NULL CHECK (amount_fen >= 0),
    memo         TEXT NOT NULL,
    counterparty TEXT NOT NULL CHECK (counterparty LIKE 'bank:%' OR counterparty LIKE 'reservation:%'),
    status       TEXT NOT NULL CHECK (status IN ('completed', 'reversed', 'voided')),
    at           TEXT NOT NULL,
    day          TEXT NOT NULL,
    reversed_at  TEXT
);
"""
# Funding accounts of payers (paying departments) and the reservations batches are paid from (issue 12).
_PAYERS = """
CREATE TABLE IF NOT EXISTS reservations (
    reservation_id TEXT PRIMARY KEY,
    payer_id       TEXT NOT NULL,
    amount_fen     INTEGER NOT NULL CHECK (amount_fen > 0),
    memo           TEXT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('held', 'released')),
    at             TEXT NOT NULL,
    released_fen   INTEGER NOT NULL DEFAULT 0,
    released_at    TEXT
);
"""
SCHEMA_VERSION = 2
# A ledger file from before issue 12 gets the wider CHECKs of accounts and transfers: SQLite changes a CHECK only by
# rebuilding the table (its "12 steps"), with foreign keys off and the old names kept in triggers while it does.
_UPGRADE = f"""
PRAGMA foreign_keys = OFF;
PRAGMA legacy_alter_table = ON;
BEGIN IMMEDIATE;
ALTER TABLE accounts RENAME TO accounts_v1;
{_ACCOUNTS}
INSERT INTO accounts (account_id, kind, balance_fen) SELECT account_id, kind, balance_fen FROM accounts_v1;
DROP TABLE accounts_v1;
ALTER TABLE transfers RENAME TO transfers_v1;
DROP INDEX IF EXISTS transfers_by_day;
{_TRANSFERS}
INSERT INTO transfers SELECT * FROM transfers_v1;
DROP TABLE transfers_v1;
COMMIT;
PRAGMA legacy_alter_table = OFF;
PRAGMA foreign_keys = ON;
"""  # noqa: S608 - constant schema text

_SCHEMA = f"""
{_ACCOUNTS}
{_TRANSFERS}
{_PAYERS}
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
"""  # noqa: S608 - constant schema text

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
class Reservation:
    """Money of a payer set aside for one batch: what is left of it is `amount_fen` less what was credited from it,
    until its release gives the rest back to the payer (`released_fen`)."""

    reservation_id: str
    payer_id: str
    amount_fen: int
    memo: str
    status: str
    at: str
    disbursed_fen: int
    released_fen: int
    released_at: str | None


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


def _payer_account(payer_id: str) -> str:
    return f"payer:{payer_id}"


def _reservation_account(reservation_id: str) -> str:
    return f"reservation:{reservation_id}"


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
        if self._db.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION and self._has_table("accounts"):
            self._db.executescript(_UPGRADE)
        self._db.executescript(_SCHEMA)
        self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
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
            if self._taken(transfer_id):
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
                if self._taken(transfer_id):
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

    # -- payers' funding accounts and reservations (issue 12) -----------------

    def fund_payer(self, transfer_id: str, payer_id: str, amount_fen: int) -> int:
        """Money from outside the bank into a payer's funding account (the test funding); the new balance."""
        with self._transaction():
            self._account(_payer_account(payer_id), "payer")
            self._payer_move(transfer_id, "fund", amount_fen, "test funding", FUNDING, _payer_account(payer_id))
            return self._account_balance(_payer_account(payer_id))

    def payer_balance(self, payer_id: str) -> int:
        return self._account_balance(_payer_account(payer_id))

    def reserve(self, reservation_id: str, payer_id: str, amount_fen: int, memo: str) -> tuple[Reservation, bool]:
        """Set money of the payer aside under this id, made now (True) or found made before alike (False)."""
        with self._transaction():
            found = self._reservation(reservation_id)
            if found is not None:
                if (found.payer_id, found.amount_fen, found.memo) != (payer_id, amount_fen, memo):
                    raise Refusal("reservation_conflict", "this reservation_id belongs to a different reservation")
                return found, False
            if self._taken(reservation_id):
                raise Refusal("reservation_conflict", "this reservation_id is taken by a transfer")
            payer = _payer_account(payer_id)
            if self._account_balance(payer) < amount_fen:
                raise Refusal("insufficient_funds", "the payer's funding account holds less than this reservation")
            now = iso(self._clock.now())
            self._db.execute(
                "INSERT INTO reservations (reservation_id, payer_id, amount_fen, memo, status, at)"
                " VALUES (?, ?, ?, ?, 'held', ?)",
                (reservation_id, payer_id, amount_fen, memo, now),
            )
            self._account(_reservation_account(reservation_id), "reservation")
            self._payer_move(reservation_id, "reserve", amount_fen, memo, payer, _reservation_account(reservation_id))
            made = self._reservation(reservation_id)
        assert made is not None
        return made, True

    def reservation(self, reservation_id: str) -> Reservation | None:
        return self._reservation(reservation_id)

    def disburse(
        self, reservation_id: str, transfer_id: str, card_id: str, amount_fen: int, memo: str, refused: frozenset[str]
    ) -> tuple[Transfer, bool]:
        """Credit a card from a held reservation, made now (True) or found made before alike (False)."""
        counterparty = _reservation_account(reservation_id)
        with self._transaction():
            found = self._get(transfer_id, counterparty)
            if found is not None:
                if (found.card_id, found.direction, found.amount_fen, found.memo) != (
                    card_id,
                    "credit",
                    amount_fen,
                    memo,
                ):
                    raise Refusal("transfer_conflict", "this transfer_id belongs to a different transfer")
                return found, False
            if self._taken(transfer_id):
                raise Refusal("transfer_conflict", "this transfer_id belongs to a different transfer")
            reservation = self._reservation(reservation_id)
            if reservation is None:
                raise Refusal("reservation_not_found", "the bank has no reservation with this id")
            if reservation.status != "held":
                raise Refusal("reservation_released", "this reservation was released; nothing more is paid from it")
            if card_id in refused:
                raise Refusal("credit_refused", "the bank does not accept credits to this account")
            if self._account_balance(counterparty) < amount_fen:
                raise Refusal("reservation_exhausted", "what is left of the reservation is less than this credit")
            self._move(transfer_id, card_id, "credit", amount_fen, memo, counterparty, 1)
            made = self._get(transfer_id, counterparty)
        assert made is not None
        return made, True

    def release(self, reservation_id: str) -> Reservation:
        """Give what is left of a reservation back to its payer and close it (idempotent)."""
        with self._transaction():
            found = self._reservation(reservation_id)
            if found is None:
                raise Refusal("reservation_not_found", "the bank has no reservation with this id")
            if found.status == "held":
                account = _reservation_account(reservation_id)
                left = self._account_balance(account)
                now = iso(self._clock.now())
                if left > 0:
                    self._payer_move(
                        f"{reservation_id}~release",
                        "release",
                        left,
                        found.memo,
                        account,
                        _payer_account(found.payer_id),
                    )
                self._db.execute(
                    "UPDATE reservations SET status = 'released', released_fen = ?, released_at = ?"
                    " WHERE reservation_id = ?",
                    (left, now, reservation_id),
                )
            released = self._reservation(reservation_id)
        assert released is not None
        return released

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

    def _has_table(self, name: str) -> bool:
        found = self._db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone()
        return found is not None

    def _taken(self, transfer_id: str) -> bool:
        return self._db.execute("SELECT 1 FROM transfers WHERE transfer_id = ?", (transfer_id,)).fetchone() is not None

    def _account(self, account_id: str, kind: str) -> None:
        self._db.execute("INSERT OR IGNORE INTO accounts (account_id, kind) VALUES (?, ?)", (account_id, kind))

    def _account_balance(self, account_id: str) -> int:
        row = self._db.execute("SELECT balance_fen FROM accounts WHERE account_id = ?", (account_id,)).fetchone()
        return 0 if row is None else int(row[0])

    def _reservation(self, reservation_id: str) -> Reservation | None:
        row = self._db.execute(
            "SELECT r.reservation_id, r.payer_id, r.amount_fen, r.memo, r.status, r.at, r.released_fen, r.released_at,"
            " (SELECT COALESCE(SUM(t.amount_fen), 0) FROM transfers t"
            " WHERE t.counterparty = ? AND t.direction = 'credit')"
            " AS disbursed_fen"
            " FROM reservations r WHERE r.reservation_id = ?",
            (_reservation_account(reservation_id), reservation_id),
        ).fetchone()
        return None if row is None else Reservation(**dict(row))

    def _payer_move(self, transfer_id: str, kind: str, amount_fen: int, memo: str, source: str, target: str) -> None:
        """A movement between two non-card accounts (funding, payer, reservation): a transfer and its two entries."""
        now = self._clock.now()
        counterparty = target if target.startswith("reservation:") else source
        if not counterparty.startswith(("bank:", "reservation:")):
            counterparty = FUNDING
        self._db.execute(
            "INSERT INTO transfers (transfer_id, card_id, direction, amount_fen, memo, counterparty, status, at, day)"
            " VALUES (?, '', ?, ?, ?, ?, 'completed', ?, ?)",
            (transfer_id, kind, amount_fen, memo, counterparty, iso(now), _day(now)),
        )
        self._db.executemany(
            "INSERT INTO entries (transfer_id, account_id, amount_fen, kind, at) VALUES (?, ?, ?, 'transfer', ?)",
            [(transfer_id, source, -amount_fen, iso(now)), (transfer_id, target, amount_fen, iso(now))],
        )

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
