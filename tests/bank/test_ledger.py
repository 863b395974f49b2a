"""The stand-in's ledger keeps its rules in the schema itself; no two stand-ins ever share one ledger folder."""

from __future__ import annotations

import socket
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecard.bank.embedded import remembered_port, running_standin
from ecard.bank.ledger import Ledger
from ecard.kit.clock import SystemClock
from ecard.kit.refusal import Refusal


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    made = Ledger(tmp_path / "ledger", SystemClock())
    made.fund("tcr_1", "crd_a", 1_000)
    made.make("pay_1", "crd_a", "debit", 400, "bill")
    yield made
    made.close()


def test_entries_cannot_be_changed_or_removed(ledger: Ledger) -> None:
    db = sqlite3.connect(ledger.path)
    try:
        with pytest.raises(sqlite3.IntegrityError, match="immutable"):
            db.execute("UPDATE entries SET amount_fen = 1")
        with pytest.raises(sqlite3.IntegrityError, match="immutable"):
            db.execute("DELETE FROM entries")
    finally:
        db.close()
    assert ledger.check().balanced


def test_the_schema_refuses_an_entry_that_would_overdraw_a_card(ledger: Ledger) -> None:
    db = sqlite3.connect(ledger.path)
    try:
        with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
            db.execute(
                "INSERT INTO entries (transfer_id, account_id, amount_fen, kind, at)"
                " VALUES ('pay_1', 'card:crd_a', -601, 'transfer', 'now')"
            )
    finally:
        db.close()
    assert ledger.balance("crd_a") == 600


def test_the_check_finds_an_unbalanced_transfer(ledger: Ledger) -> None:
    assert ledger.check().balanced
    db = sqlite3.connect(ledger.path)
    try:
        # one leg written behind the ledger's back
        db.execute(
            "INSERT INTO entries (transfer_id, account_id, amount_fen, kind, at)"
            " VALUES ('pay_1', 'bank:settlement', 5, 'transfer', 'now')"
        )
        db.commit()
    finally:
        db.close()
    checked = ledger.check()
    assert not checked.balanced
    assert checked.sum_fen == 5
    assert checked.unbalanced_transfers == ["pay_1"]


def test_a_refused_transfer_leaves_no_trace(ledger: Ledger) -> None:
    before = ledger.check()
    with pytest.raises(Refusal) as refused:
        ledger.make("pay_2", "crd_a", "debit", 601, "bill")
    assert refused.value.code == "insufficient_funds"
    with pytest.raises(Refusal) as conflict:
        ledger.make("tcr_1", "crd_a", "credit", 1_000, "test credit")
    assert conflict.value.code == "transfer_conflict"
    assert ledger.get("pay_2") is None
    assert ledger.check() == before


def test_a_bank_left_on_a_data_folder_is_stopped_before_another_starts(tmp_path: Path) -> None:
    folder, log = tmp_path / "standin-bank", tmp_path / "standin-bank.log"
    with running_standin(folder, None, log) as first, running_standin(folder, None, log) as second:
        assert second.pid != first.pid
        assert not psutil.pid_exists(first.pid) or psutil.Process(first.pid).status() == psutil.STATUS_ZOMBIE
        # the stray is gone, so its port is free again, and the new one takes it
        assert second.url == first.url
        assert httpx.get(f"{second.url}/healthz", timeout=5.0).status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{second.url}/healthz", timeout=2.0)


def test_the_stand_in_keeps_its_port_across_restarts_of_its_data_folder(tmp_path: Path) -> None:
    folder, log = tmp_path / "standin-bank", tmp_path / "standin-bank.log"
    with running_standin(folder, None, log) as first:
        assert first.moved_from is None
    with running_standin(folder, None, log) as again:
        assert again.url == first.url
        assert again.moved_from is None
    assert remembered_port(folder) == first.port


def test_a_stand_in_whose_port_was_taken_moves_and_says_so(tmp_path: Path) -> None:
    folder, log = tmp_path / "standin-bank", tmp_path / "standin-bank.log"
    with running_standin(folder, None, log) as first:
        port = first.port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen(1)
        with running_standin(folder, None, log) as moved:
            assert moved.port != port
            assert moved.moved_from == port
            assert httpx.get(f"{moved.url}/healthz", timeout=5.0).status_code == 200
    # and the new port is the one remembered for next time
    assert remembered_port(folder) == moved.port


Operation = tuple[str, str, str, int]
OPERATIONS = st.tuples(
    st.sampled_from(["fund", "debit", "credit", "reverse"]),
    st.sampled_from(["t1", "t2", "t3", "t4"]),
    st.sampled_from(["crd_a", "crd_b"]),
    st.integers(min_value=1, max_value=500),
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(OPERATIONS, max_size=25))
def test_any_sequence_of_transfers_keeps_the_ledger_balanced_and_no_card_below_zero(
    operations: list[Operation],
) -> None:
    """Against a model of what each card should hold: replays, conflicts, refusals and reversals included."""
    with tempfile.TemporaryDirectory() as folder:
        ledger = Ledger(Path(folder), SystemClock())
        model: dict[str, int] = {"crd_a": 0, "crd_b": 0}
        made: dict[str, tuple[str, str, int, str]] = {}
        funded = 0
        try:
            for kind, name, card_id, amount in operations:
                if kind == "fund":
                    funded += 1
                    ledger.fund(f"tcr_{funded}", card_id, amount)
                    model[card_id] += amount
                elif kind == "reverse":
                    _reverse(ledger, model, made, name)
                else:
                    _move(ledger, model, made, (name, card_id, kind, amount))
                checked = ledger.check()
                assert checked.balanced, checked
                assert {card: ledger.balance(card) for card in model} == model
                assert min(model.values()) >= 0
        finally:
            ledger.close()


def _move(
    ledger: Ledger, model: dict[str, int], made: dict[str, tuple[str, str, int, str]], request: Operation
) -> None:
    name, card_id, direction, amount = request
    before = made.get(name)
    refusal = None
    if before is None and direction == "debit" and model[card_id] < amount:
        refusal = "insufficient_funds"
    elif before is not None and before[3] == "voided":
        refusal = "transfer_voided"
    elif before is not None and before[:3] != (card_id, direction, amount):
        refusal = "transfer_conflict"
    if refusal is not None:
        with pytest.raises(Refusal) as refused:
            ledger.make(name, card_id, direction, amount, "m")
        assert refused.value.code == refusal
        return
    transfer, fresh = ledger.make(name, card_id, direction, amount, "m")
    assert fresh == (before is None)
    if fresh:
        model[card_id] += amount if direction == "credit" else -amount
        made[name] = (card_id, direction, amount, "completed")
    assert (transfer.card_id, transfer.direction, transfer.amount_fen, transfer.status) == made[name]


def _reverse(ledger: Ledger, model: dict[str, int], made: dict[str, tuple[str, str, int, str]], name: str) -> None:
    before = made.get(name)
    if before is not None and before[1] == "credit" and before[3] == "completed" and model[before[0]] < before[2]:
        with pytest.raises(Refusal) as refused:
            ledger.reverse(name, "undo")
        assert refused.value.code == "insufficient_funds"
        return
    transfer = ledger.reverse(name, "undo")
    if before is None:
        made[name] = ("", "", 0, "voided")
    elif before[3] == "completed":
        card_id, direction, amount, _ = before
        model[card_id] += amount if direction == "debit" else -amount
        made[name] = (card_id, direction, amount, "reversed")
    assert (transfer.card_id, transfer.direction, transfer.amount_fen, transfer.status) == made[name]
