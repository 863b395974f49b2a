"""The adapter believes the bank only about what it asked: another transfer in the answer is a mismatch, never a
success; and it talks to the bank over https, plain http only to a stand-in on loopback."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ecard.bank import BankMismatch, HttpBank, check_bank_url
from tests.bank.conftest import AnsweringServer

ASKED = {"transfer_id": "txn_asked", "card_id": "crd_payer", "direction": "debit", "amount_fen": 4_250}


def transfer(**changes: Any) -> bytes:
    return json.dumps(
        {**ASKED, "memo": "bill", "status": "completed", "at": "2026-11-23T09:15:02Z", "reversed_at": None, **changes}
    ).encode()


@pytest.mark.parametrize(
    "changes",
    [
        {"transfer_id": "txn_other"},
        {"card_id": "crd_someone_else"},
        {"amount_fen": 1},
        {"direction": "credit"},
        {"status": "voided"},
    ],
    ids=["other-id", "other-card", "other-amount", "other-direction", "voided"],
)
async def test_a_debit_answered_with_another_movement_is_a_mismatch(changes: dict[str, Any]) -> None:
    with AnsweringServer(201, transfer(**changes)) as server:
        adapter = HttpBank(server.base, None, timeout_s=2.0)
        try:
            with pytest.raises(BankMismatch):
                await adapter.debit("txn_asked", "crd_payer", 4_250, "bill")
        finally:
            await adapter.aclose()


async def test_the_same_debit_answered_back_is_taken() -> None:
    with AnsweringServer(200, transfer()) as server:
        adapter = HttpBank(server.base, None, timeout_s=2.0)
        try:
            made = await adapter.debit("txn_asked", "crd_payer", 4_250, "bill")
        finally:
            await adapter.aclose()
    assert made.moves("crd_payer", "debit", 4_250)


async def test_a_look_up_answered_about_another_transfer_is_a_mismatch() -> None:
    with AnsweringServer(200, transfer(transfer_id="txn_other")) as server:
        adapter = HttpBank(server.base, None, timeout_s=2.0)
        try:
            with pytest.raises(BankMismatch):
                await adapter.transfer("txn_asked")
        finally:
            await adapter.aclose()


@pytest.mark.parametrize(
    "body", [transfer(), transfer(transfer_id="txn_other", status="reversed")], ids=["completed", "other-id"]
)
async def test_a_reversal_answered_with_anything_but_a_reversal_of_it_is_a_mismatch(body: bytes) -> None:
    with AnsweringServer(200, body) as server:
        adapter = HttpBank(server.base, None, timeout_s=2.0)
        try:
            with pytest.raises(BankMismatch):
                await adapter.reverse("txn_asked", "not completed")
        finally:
            await adapter.aclose()


@pytest.mark.parametrize(
    "url",
    [
        "https://bank.example",
        "https://bank.example:8443/api",
        "http://127.0.0.1:8100",
        "http://localhost:8100",
        "http://[::1]:8100",
    ],
)
def test_the_bank_is_reached_over_https_or_on_loopback(url: str) -> None:
    assert check_bank_url(url) == url


@pytest.mark.parametrize(
    "url",
    [
        "http://bank.example",
        "http://10.0.0.8:8100",
        "http://192.168.1.2",
        "ftp://bank.example",
        "https://user:secret@bank.example",
        "bank.example:8100",
        "https://",
    ],
)
def test_a_bank_url_in_the_clear_or_malformed_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="ECARD_BANK_URL") as refused:
        HttpBank(url, None)
    assert "secret" not in str(refused.value)
