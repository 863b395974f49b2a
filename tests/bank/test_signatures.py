"""With `--trust-keys`, the stand-in bank moves money only for requests signed with the issuer's request key."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from ecard.bank import BankRefused
from ecard.federation import IssuerRequestKey
from ecard.kit.jwk import ALG_ED25519
from ecard.kit.signing import sign_request
from tests.bank.conftest import KeySetServer, published, request_key
from tests.standins import StandinBank


async def send(bank: StandinBank, method: str, path: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=bank.base, timeout=10.0) as client:
        return await client.request(
            method, path, content=body or None, headers={"Content-Type": "application/json", **headers}
        )


def debit_body(transfer_id: str, card_id: str, amount_fen: int) -> bytes:
    body = {"transfer_id": transfer_id, "card_id": card_id, "direction": "debit", "amount_fen": amount_fen, "memo": ""}
    return json.dumps(body).encode()


async def test_requests_signed_with_the_issuer_request_key_move_money(
    signed_bank: StandinBank, issuer_key: IssuerRequestKey
) -> None:
    await signed_bank.credit("crd_signed", 1_000)
    adapter = signed_bank.adapter(signer=issuer_key)
    try:
        made = await adapter.debit("pay_signed", "crd_signed", 250, "bill")
        assert made.status == "completed"
        assert await adapter.debit("pay_signed", "crd_signed", 250, "bill") == made
        assert await adapter.transfer("pay_signed") == made
        assert await adapter.transfer("pay_unknown") is None
        assert await adapter.transfers_on(dt.date.fromisoformat(made.at[:10])) == [made]
        refund = await adapter.credit("ref_signed", "crd_signed", 50, "refund")
        assert refund.status == "completed"
        assert (await adapter.reverse("ref_signed", "undo")).status == "reversed"
    finally:
        await adapter.aclose()
    assert await signed_bank.balance("crd_signed") == 750


async def test_unsigned_requests_are_refused_when_the_bank_trusts_keys(signed_bank: StandinBank) -> None:
    await signed_bank.credit("crd_unsigned", 1_000)
    adapter = signed_bank.adapter(signer=None)
    try:
        with pytest.raises(BankRefused) as refused:
            await adapter.debit("pay_unsigned", "crd_unsigned", 100, "bill")
        assert refused.value.code == "signature_missing"
        with pytest.raises(BankRefused):
            await adapter.transfer("pay_unsigned")
        with pytest.raises(BankRefused):
            await adapter.transfers_on(dt.datetime.now(dt.UTC).date())
        with pytest.raises(BankRefused):
            await adapter.reverse("pay_unsigned", "")
    finally:
        await adapter.aclose()
    assert await signed_bank.balance("crd_unsigned") == 1_000
    assert (await signed_bank.ledger())["entries"] == 2


async def test_forged_tampered_stale_and_replayed_requests_are_refused(
    signed_bank: StandinBank, issuer_key: IssuerRequestKey
) -> None:
    await signed_bank.credit("crd_target", 1_000)
    url = f"{signed_bank.base}/v1/transfers"
    body = debit_body("pay_attack", "crd_target", 900)

    # another key claiming the issuer's key id
    forger = ed25519.Ed25519PrivateKey.generate()
    forged = sign_request("POST", url, body, forger, issuer_key.keyid, ALG_ED25519)
    # the issuer's signature over another body
    tampered = issuer_key.sign("POST", url, debit_body("pay_attack", "crd_target", 1))
    # a signature made long ago
    stale = sign_request(
        "POST", url, body, issuer_key.private, issuer_key.keyid, ALG_ED25519, created=time.time() - 900
    )
    # key ids the bank does not trust
    unknown_kid = sign_request("POST", url, body, forger, "cq:not-a-published-kid", ALG_ED25519)
    other_issuer = sign_request("POST", url, body, issuer_key.private, f"sc:{issuer_key.kid}", ALG_ED25519)
    cases = [
        (forged, "signature_invalid"),
        (tampered, "signature_invalid"),
        (stale, "signature_expired"),
        (unknown_kid, "unknown_client"),
        (other_issuer, "unknown_client"),
    ]
    for headers, code in cases:
        refused = await send(signed_bank, "POST", "/v1/transfers", body, headers)
        assert refused.status_code == 401, (code, refused.text)
        assert refused.json()["code"] == code
    assert await signed_bank.balance("crd_target") == 1_000

    # a genuine request goes through once; the same signed request again is a replay
    genuine = issuer_key.sign("POST", url, body)
    assert (await send(signed_bank, "POST", "/v1/transfers", body, genuine)).status_code == 201
    replayed = await send(signed_bank, "POST", "/v1/transfers", body, genuine)
    assert replayed.status_code == 401
    assert replayed.json()["code"] == "nonce_reused"
    assert await signed_bank.balance("crd_target") == 100

    # a signature for one path does not open another
    query_url = f"{signed_bank.base}/v1/transfers/pay_attack"
    moved = issuer_key.sign("GET", query_url, b"")
    other_path = await send(signed_bank, "GET", "/v1/transfers/pay_other", b"", moved)
    assert other_path.status_code == 401
    assert other_path.json()["code"] == "signature_invalid"


async def test_a_revoked_request_key_is_not_trusted(tmp_path: Path) -> None:
    active, revoked = request_key(), request_key()
    document = {"issuer": "cq", "keys": [published(active), published(revoked, "revoked")]}
    with KeySetServer(document) as served, StandinBank.running(tmp_path / "bank", trust_keys=served.url) as bank:
        await bank.credit("crd_revoked", 1_000)
        adapter = bank.adapter(signer=revoked)
        try:
            with pytest.raises(BankRefused) as refused:
                await adapter.debit("pay_revoked", "crd_revoked", 100, "bill")
            assert refused.value.code == "unknown_client"
        finally:
            await adapter.aclose()
        adapter = bank.adapter(signer=active)
        try:
            assert (await adapter.debit("pay_active", "crd_revoked", 100, "bill")).status == "completed"
        finally:
            await adapter.aclose()
        # fetched once on first use, once more for the unknown kid is rate-limited
        assert served.fetches == 1


async def test_without_trust_keys_the_bank_takes_unsigned_requests(bank: StandinBank) -> None:
    await bank.credit("crd_open", 100)
    adapter = bank.adapter(signer=None)
    try:
        assert (await adapter.debit("pay_open", "crd_open", 100, "bill")).status == "completed"
    finally:
        await adapter.aclose()
