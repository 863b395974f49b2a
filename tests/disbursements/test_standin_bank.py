"""The stand-in bank for disbursement: an old ledger file upgraded in place, and reservations that refuse."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from ecard.bank.ledger import LEDGER_FILE, Ledger
from ecard.kit.clock import SystemClock
from ecard.kit.refusal import Refusal

# The schema of accounts and transfers as issue 11 left them (narrower CHECKs), with one card's money in it.
_V1 = """
CREATE TABLE accounts (
    account_id  TEXT PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('card', 'settlement', 'funding')),
    balance_fen INTEGER NOT NULL DEFAULT 0,
    CHECK (kind <> 'card' OR balance_fen >= 0)
);
CREATE TABLE transfers (
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
CREATE INDEX transfers_by_day ON transfers (day, seq);
CREATE TABLE entries (
    entry_id    INTEGER PRIMARY KEY AUTOINCREMENT,
    transfer_id TEXT NOT NULL REFERENCES transfers (transfer_id),
    account_id  TEXT NOT NULL REFERENCES accounts (account_id),
    amount_fen  INTEGER NOT NULL CHECK (amount_fen <> 0),
    kind        TEXT NOT NULL CHECK (kind IN ('transfer', 'reversal')),
    at          TEXT NOT NULL
);
CREATE TRIGGER entries_move_balances AFTER INSERT ON entries BEGIN
    UPDATE accounts SET balance_fen = balance_fen + NEW.amount_fen WHERE account_id = NEW.account_id;
END;
INSERT INTO accounts (account_id, kind) VALUES ('bank:settlement', 'settlement'), ('bank:funding', 'funding'),
    ('card:crd_old', 'card');
INSERT INTO transfers (transfer_id, card_id, direction, amount_fen, memo, counterparty, status, at, day)
    VALUES ('tcr_old', 'crd_old', 'credit', 500, 'test credit', 'bank:funding', 'completed', 'x', '2026-01-01');
INSERT INTO entries (transfer_id, account_id, amount_fen, kind, at)
    VALUES ('tcr_old', 'card:crd_old', 500, 'transfer', 'x'), ('tcr_old', 'bank:funding', -500, 'transfer', 'x');
"""


def test_an_old_ledger_file_is_upgraded_and_pays_disbursements(tmp_path: Path) -> None:
    old = sqlite3.connect(tmp_path / LEDGER_FILE)
    old.executescript(_V1)
    old.close()
    ledger = Ledger(tmp_path, SystemClock())
    try:
        assert ledger.balance("crd_old") == 500
        ledger.fund_payer("tfd_1", "mch_office", 1_000)
        ledger.reserve("dsb_1:reserve", "mch_office", 600, "batch")
        ledger.disburse("dsb_1:reserve", "dsb_1:1", "crd_old", 200, "d", frozenset())
        released = ledger.release("dsb_1:reserve")
        assert (released.disbursed_fen, released.released_fen) == (200, 400)
        assert ledger.payer_balance("mch_office") == 800
        assert ledger.balance("crd_old") == 700
        assert ledger.check().balanced
    finally:
        ledger.close()


def test_reservations_refuse_what_they_do_not_cover(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path, SystemClock())
    try:
        ledger.fund_payer("tfd_2", "mch_poor", 100)
        with pytest.raises(Refusal) as short:
            ledger.reserve("r2", "mch_poor", 101, "batch")
        assert short.value.code == "insufficient_funds"
        assert ledger.payer_balance("mch_poor") == 100
        ledger.reserve("r2", "mch_poor", 100, "batch")
        with pytest.raises(Refusal) as other:
            ledger.reserve("r2", "mch_poor", 99, "batch")
        assert other.value.code == "reservation_conflict"
        with pytest.raises(Refusal) as exhausted:
            ledger.disburse("r2", "r2:1", "crd_x", 101, "d", frozenset())
        assert exhausted.value.code == "reservation_exhausted"
        with pytest.raises(Refusal) as refused:
            ledger.disburse("r2", "r2:1", "crd_x", 50, "d", frozenset({"crd_x"}))
        assert refused.value.code == "credit_refused"
        made, fresh = ledger.disburse("r2", "r2:1", "crd_x", 50, "d", frozenset())
        again, repeated = ledger.disburse("r2", "r2:1", "crd_x", 50, "d", frozenset())
        assert (fresh, repeated, again.transfer_id) == (True, False, made.transfer_id)
        ledger.release("r2")
        with pytest.raises(Refusal) as closed:
            ledger.disburse("r2", "r2:2", "crd_x", 10, "d", frozenset())
        assert closed.value.code == "reservation_released"
        assert (ledger.balance("crd_x"), ledger.payer_balance("mch_poor")) == (50, 50)
        assert ledger.check().balanced
    finally:
        ledger.close()
