"""The crash hooks: a debit committed but not yet answered, a bank that restarts, a bank that is not there."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import httpx
import pytest

from ecard.bank import BankConflict, BankError, BankUnavailable, HttpBank, InsufficientFunds
from tests.bank.conftest import AnsweringServer
from tests.live import free_port
from tests.standins import StandinBank

DEADLINE_S = 10.0
# fails a call that hangs; how fast it gives up is for the load figures, not for a test on a shared machine
HANG_GUARD_S = 30.0


async def until_balance(bank: StandinBank, card_id: str, expected: int) -> None:
    """Until the bank shows the balance (the debit committed on its side), polling its test endpoint."""
    deadline = time.monotonic() + DEADLINE_S
    while await bank.balance(card_id) != expected:
        assert time.monotonic() < deadline, f"balance of {card_id} never became {expected}"
        await asyncio.sleep(0.02)


async def test_a_held_debit_is_committed_before_it_is_answered(bank: StandinBank) -> None:
    await bank.credit("crd_held", 1_000)
    await bank.hold_debits()
    adapter = bank.adapter(timeout_s=DEADLINE_S)
    try:
        pending = asyncio.create_task(adapter.debit("pay_held", "crd_held", 300, "bill"))
        await until_balance(bank, "crd_held", 700)
        assert not pending.done()
        # the bank already knows the transfer; asking for it, or replaying it, is answered at once
        found = await adapter.transfer("pay_held")
        assert found is not None
        assert found.status == "completed"
        assert await adapter.debit("pay_held", "crd_held", 300, "bill") == found
        # credits are never held
        assert (await adapter.credit("ref_during_hold", "crd_held", 1, "refund")).status == "completed"
        assert not pending.done()
        await bank.release_debits()
        assert await asyncio.wait_for(pending, DEADLINE_S) == found
    finally:
        await adapter.aclose()
    assert await bank.balance("crd_held") == 701
    assert (await bank.ledger())["balanced"] is True


async def test_held_credits_and_held_debits_are_switched_apart(bank: StandinBank) -> None:
    await bank.credit("crd_refund", 1_000)
    await bank.hold_credits()
    adapter = bank.adapter(timeout_s=DEADLINE_S)
    try:
        pending = asyncio.create_task(adapter.credit("ref_held", "crd_refund", 250, "refund"))
        await until_balance(bank, "crd_refund", 1_250)
        # debits flow while credits are held
        assert (await adapter.debit("pay_during_credit_hold", "crd_refund", 50, "bill")).status == "completed"
        assert not pending.done()
        async with httpx.AsyncClient(base_url=bank.base) as client:
            settings = await client.post("/test/faults", json={"hold_debits": True})
            assert settings.json() | {"hold_debits": True, "hold_credits": True} == settings.json()
            settings = await client.post("/test/faults", json={"hold_debits": False})
            assert settings.json() | {"hold_debits": False, "hold_credits": True} == settings.json()
            refused = await client.post("/test/faults", json={"hold_refunds": True})
            assert refused.status_code == 400
        await bank.release_credits()
        made = await asyncio.wait_for(pending, DEADLINE_S)
        assert (made.direction, made.amount_fen, made.status) == ("credit", 250, "completed")
    finally:
        await adapter.aclose()
    assert await bank.balance("crd_refund") == 1_200


async def test_a_client_that_gives_up_on_a_held_debit_finds_it_made_once(bank: StandinBank) -> None:
    """What ecard sees when it dies (or times out) between the bank's debit and its own commit."""
    await bank.credit("crd_gone", 1_000)
    await bank.hold_debits()
    impatient = bank.adapter(timeout_s=0.5)
    try:
        with pytest.raises(BankUnavailable):
            await impatient.debit("pay_gone", "crd_gone", 400, "bill")
    finally:
        await impatient.aclose()
    assert await bank.balance("crd_gone") == 600
    adapter = bank.adapter()
    try:
        found = await adapter.transfer("pay_gone")
        assert found is not None
        assert (found.status, found.amount_fen) == ("completed", 400)
        # retrying with the same id after the hang-up does not debit again, even while debits are held
        assert await adapter.debit("pay_gone", "crd_gone", 400, "bill") == found
        await bank.release_debits()
    finally:
        await adapter.aclose()
    assert await bank.balance("crd_gone") == 600
    assert (await bank.ledger())["balanced"] is True


async def test_the_ledger_survives_a_killed_and_a_stopped_bank(bank: StandinBank) -> None:
    await bank.credit("crd_durable", 5_000)
    adapter = bank.adapter()
    try:
        made = await adapter.debit("pay_durable", "crd_durable", 1_200, "bill")
        await adapter.reverse("pay_gone_before", "voided before the crash")
    finally:
        await adapter.aclose()

    bank.kill()
    bank.start()
    adapter = bank.adapter()
    try:
        assert await adapter.transfer("pay_durable") == made
        assert await bank.balance("crd_durable") == 3_800
        assert await adapter.debit("pay_durable", "crd_durable", 1_200, "bill") == made
        assert await bank.balance("crd_durable") == 3_800
        voided = await adapter.transfer("pay_gone_before")
        assert voided is not None
        assert voided.status == "voided"
        second = await adapter.debit("pay_after_restart", "crd_durable", 800, "bill")
    finally:
        await adapter.aclose()

    # an orderly stop while a debit is held: the bank still exits, and the held debit is kept
    await bank.hold_debits()
    held = bank.adapter(timeout_s=DEADLINE_S)
    try:
        pending = asyncio.create_task(held.debit("pay_held_at_stop", "crd_durable", 1_000, "bill"))
        await until_balance(bank, "crd_durable", 2_000)
        await asyncio.to_thread(bank.stop)
        with pytest.raises(BankUnavailable):
            await asyncio.wait_for(pending, DEADLINE_S)
    finally:
        await held.aclose()
    bank.start()
    adapter = bank.adapter()
    try:
        assert await adapter.transfer("pay_after_restart") == second
        found = await adapter.transfer("pay_held_at_stop")
        assert found is not None
        assert found.status == "completed"
    finally:
        await adapter.aclose()
    assert await bank.balance("crd_durable") == 2_000
    ledger = await bank.ledger()
    assert ledger["balanced"] is True
    assert ledger["entries"] == 8


async def test_no_bank_is_unavailable_not_a_hang() -> None:
    adapter = HttpBank(f"http://127.0.0.1:{free_port()}", None, timeout_s=2.0)
    try:
        with pytest.raises(BankUnavailable) as debit:
            await asyncio.wait_for(adapter.debit("pay_nowhere", "crd_x", 100, "bill"), HANG_GUARD_S)
        with pytest.raises(BankUnavailable) as lookup:
            await asyncio.wait_for(adapter.transfer("pay_nowhere"), HANG_GUARD_S)
    finally:
        await adapter.aclose()
    # refused connections, not a wait for the timeout
    assert isinstance(debit.value.__cause__, httpx.ConnectError)
    assert isinstance(lookup.value.__cause__, httpx.ConnectError)


async def test_a_bank_that_never_answers_is_given_up_on_at_the_timeout() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        adapter = HttpBank(f"http://127.0.0.1:{silent.getsockname()[1]}", None, timeout_s=0.3)
        try:
            # a bank that never answers is never answered for: the adapter's own timeout ends the call
            with pytest.raises(BankUnavailable) as raised:
                await asyncio.wait_for(adapter.debit("pay_silent", "crd_x", 100, "bill"), HANG_GUARD_S)
        finally:
            await adapter.aclose()
        assert isinstance(raised.value.__cause__, httpx.TimeoutException)


@pytest.mark.parametrize(
    ("status", "body"),
    [(503, b"down for maintenance"), (500, b'{"code":"internal_error"}'), (200, b"[]"), (201, b'{"status":"x"}')],
    ids=["503", "500", "not-an-object", "not-a-transfer"],
)
async def test_an_answer_outside_the_protocol_is_unavailable_not_success(status: int, body: bytes) -> None:
    with AnsweringServer(status, body) as server:
        adapter = HttpBank(server.base, None, timeout_s=2.0)
        try:
            with pytest.raises(BankUnavailable):
                await adapter.debit("pay_odd", "crd_x", 100, "bill")
        finally:
            await adapter.aclose()


async def test_a_404_that_is_not_the_banks_is_not_read_as_no_transfer() -> None:
    for body in (b"<html>not found</html>", b'{"code":"not_found"}'):
        with AnsweringServer(404, body) as server:
            adapter = HttpBank(server.base, None, timeout_s=2.0)
            try:
                with pytest.raises(BankError) as raised:
                    await adapter.transfer("pay_misrouted")
                assert not isinstance(raised.value, BankConflict | InsufficientFunds)
            finally:
                await adapter.aclose()


async def test_the_bank_cli_serves_its_ledger_from_the_data_folder_it_is_given(tmp_path: Path) -> None:
    with StandinBank.running(tmp_path / "first") as first:
        await first.credit("crd_cli", 42)
        folder = first.data
    assert (folder / "bank.sqlite3").stat().st_mode & 0o077 == 0
    reopened = StandinBank(tmp_path / "second")
    reopened.data = folder
    reopened.start()
    try:
        assert await reopened.balance("crd_cli") == 42
        assert "accepting UNSIGNED requests" in reopened.log.read_text()
    finally:
        reopened.kill()
