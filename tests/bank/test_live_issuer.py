"""The stand-in bank trusting a live ecard: the request key the issuer publishes is the one its adapter signs with."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ecard.bank import BankRefused
from ecard.config import Settings
from ecard.federation import Audience, IssuerRequestKey, IssuerRequestKeys
from ecard.kit.crypto import Keys, load_master_key
from ecard.kit.infra import create_pool
from tests.bank.conftest import request_key
from tests.live import LiveEcard
from tests.standins import StandinBank


async def live_request_key(live: LiveEcard) -> IssuerRequestKey:
    """The issuer's request key for the bank, exactly as the live installation's workers load it."""
    settings = Settings(database_url=live.env["ECARD_DATABASE_URL"], secret_key=live.env["ECARD_SECRET_KEY"])
    assert settings.database_url
    pool = await create_pool(settings.database_url, 1, 1)
    try:
        keys = await IssuerRequestKeys.load(pool, Keys.from_master(load_master_key(settings)), live.issuer)
        return keys.signer(Audience.BANK)
    finally:
        await pool.close()


async def test_the_bank_verifies_against_the_key_set_a_live_issuer_publishes(
    service_urls: tuple[str, str], tmp_path: Path
) -> None:
    live = await LiveEcard.create("cq", service_urls, tmp_path / "cq", name="bank_issuer")
    trust = f"{live.base}/v1/issuer/request-keys"
    with StandinBank.running(tmp_path / "bank", trust_keys=trust) as bank:
        await asyncio.to_thread(live.start)
        try:
            key = await live_request_key(live)
            await bank.credit("crd_live", 2_000)
            adapter = bank.adapter(signer=key)
            try:
                made = await adapter.debit("pay_live", "crd_live", 1_500, "bill")
                assert made.status == "completed"
                assert await adapter.transfer("pay_live") == made
            finally:
                await adapter.aclose()
            # a key of the same issuer that it does not publish
            impostor = request_key("cq")
            adapter = bank.adapter(signer=impostor)
            try:
                with pytest.raises(BankRefused) as refused:
                    await adapter.debit("pay_impostor", "crd_live", 500, "bill")
                assert refused.value.code == "unknown_client"
            finally:
                await adapter.aclose()
            assert await bank.balance("crd_live") == 500
        finally:
            await asyncio.to_thread(live.stop)
