"""A service killed (SIGKILL) in the middle of paying a batch: after the restart every row is paid exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path

import httpx

from tests.disbursements.conftest import Office
from tests.live import LiveEcard
from tests.payments.conftest import MerchantServer
from tests.standins import StandinBank

PEOPLE = 12


async def _until_paid_somewhere(bank: StandinBank, card_ids: list[str]) -> None:
    deadline = time.monotonic() + 30
    while not any([await bank.balance(card_id) for card_id in card_ids]):
        assert time.monotonic() < deadline, "no credit reached the bank"
        await asyncio.sleep(0.05)


async def test_a_service_killed_mid_payment_recovers_and_pays_every_row_once(
    service_urls: tuple[str, str], tmp_path: Path, office_server: MerchantServer
) -> None:
    live = await LiveEcard.create(
        "cq",
        service_urls,
        tmp_path / "cq",
        name="p12_disburse_crash",
        ECARD_CALLBACK_BASE_DELAY_S="0.1",
        ECARD_CALLBACK_POLL_S="0.1",
        ECARD_CALLBACK_ALLOW_LOOPBACK="1",
        ECARD_DISBURSEMENT_LEASE_S="2",
        ECARD_DISBURSEMENT_POLL_S="0.1",
        ECARD_DISBURSEMENT_CONCURRENCY="2",
    )
    with StandinBank.running(tmp_path / "bank", trust_keys=f"{live.base}/v1/issuer/request-keys") as bank:
        live.env["ECARD_BANK_URL"] = bank.base
        live.start()
        try:
            async with httpx.AsyncClient(base_url=live.base, timeout=60.0) as client:
                world = live.world(client)
                office = Office(world, bank, office_server.url)
                payer = await office.payer(funding_fen=1_000_000)
                people = [await office.person(f"居民{i}") for i in range(PEOPLE)]
                rows = [office.row(p, 1_000 + i) for i, p in enumerate(people)]
                made = (await office.create(payer, office.body(rows))).json()
                await bank.faults(hold_disbursements=True)
                assert (await office.approve(made["batch_id"])).status_code == 200
                await _until_paid_somewhere(bank, [p["card_id"] for p in people])
                live.kill()
                await bank.faults(hold_disbursements=False)

                live.start()
                deadline = time.monotonic() + 60
                while (await office.batch(payer, made["batch_id"]))["status"] != "completed":
                    assert time.monotonic() < deadline, "not completed after the restart"
                    await asyncio.sleep(0.2)
                done = await office.batch(payer, made["batch_id"])
                total = sum(1_000 + i for i in range(PEOPLE))
                assert (done["paid_fen"], done["counts"]["paid"]) == (total, PEOPLE)
                for i, person in enumerate(people):
                    assert await bank.balance(person["card_id"]) == 1_000 + i
                assert await bank.funding(payer.ids["merchant_id"]) == 1_000_000 - total
                deadline = time.monotonic() + 30
                while not any(json.loads(r.body)["event"] == "batch.completed" for r in office_server.received):
                    assert time.monotonic() < deadline, "no batch.completed callback"
                    await asyncio.sleep(0.1)
        finally:
            with contextlib.suppress(Exception):
                await bank.faults(hold_disbursements=False)
            live.stop()
        checked = await asyncio.to_thread(live.cli, "ledger", "check")
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert (await bank.ledger())["balanced"] is True
