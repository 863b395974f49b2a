"""API.md, "Disbursement (资金发放)": each request as shown, the refusals it names, paying through the stand-in bank."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ecard.config import Settings
from ecard.kit.signing import sign_request
from tests.contract.support import Integrator, problem_of
from tests.disbursements.conftest import event_of, second_operator
from tests.payments.conftest import MerchantServer, check_signed_by_issuer, until
from tests.standins import StandinBank
from tests.support import Actor, World

ALLOWANCE = "wl-022"  # 城乡居民最低生活保障金发放: a disbursement item
WATER = "wl-043"  # a payment item, not a disbursement item
BATCH = {"batch_id", "status", "rows_total", "amount_total_fen"}
# docs/contract-notes.md "Disbursement (issue 12)": every batch answer has the same shape, API.md's fields and these
BATCH_ADDED = {
    "item_code",
    "counts",
    "paid_fen",
    "out_batch_no",
    "description",
    "approvals",
    "failure_code",
    "created_at",
    "expires_at",
    "completed_at",
}
ROW = {"out_row_no", "status", "code", "amount_fen", "paid_at"}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # the payer looks for approved batches this often (ECARD_DISBURSEMENT_POLL_S); the threshold stays the default
    return dataclasses.replace(settings, disbursement_poll_s=0.05)


@pytest.fixture
def notify() -> Iterator[MerchantServer]:
    server = MerchantServer()
    server.up()
    try:
        yield server
    finally:
        server.down()


def _row(person: dict[str, str], amount_fen: Any = 60_000, **changed: Any) -> dict[str, Any]:
    """`{"out_row_no","id_number","name","amount_fen","memo"}`."""
    row = {
        "out_row_no": f"R{random.randint(0, 10**12)}",
        "id_number": person["id_number"],
        "name": person["name"],
        "amount_fen": amount_fen,
        "memo": "2026年11月低保金",
    }
    return {**row, **changed}


def _batch(notify_url: str, rows: list[dict[str, Any]], item_code: str = ALLOWANCE) -> dict[str, Any]:
    """`{"out_batch_no","item_code","description","notify_url","rows"}`."""
    return {
        "out_batch_no": f"B{random.randint(0, 10**12)}",
        "item_code": item_code,
        "description": "2026年11月城乡低保",
        "notify_url": notify_url,
        "rows": rows,
    }


async def _fund(bank: StandinBank, merchant_id: str, amount_fen: int) -> None:
    """The stand-in's `POST /test/funding` `{"merchant_id","amount_fen"}` → 201."""
    async with httpx.AsyncClient(base_url=bank.base) as client:
        answer = await client.post("/test/funding", json={"merchant_id": merchant_id, "amount_fen": amount_fen})
    assert answer.status_code == 201, answer.text


async def _funding(bank: StandinBank, merchant_id: str) -> int:
    """The stand-in's `GET /test/funding/{merchant_id}` → `{"balance_fen"}`."""
    async with httpx.AsyncClient(base_url=bank.base) as client:
        answer = await client.get(f"/test/funding/{merchant_id}")
    assert answer.status_code == 200, answer.text
    # docs/bank-protocol.md "Payers' funding accounts": the answer names the `merchant_id` too
    assert set(answer.json()) == {"balance_fen", "merchant_id"}
    return int(answer.json()["balance_fen"])


async def _payer(api: Integrator, items: list[str] | None = None) -> Actor:
    return await api.merchant(items or [ALLOWANCE], name="武隆区民政局")


async def _get(api: Integrator, payer: Actor, batch_id: str) -> dict[str, Any]:
    answer = await api.signed(payer, "GET", f"/v1/disbursements/{batch_id}")
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


async def _settled(api: Integrator, payer: Actor, batch_id: str) -> dict[str, Any]:
    """The batch once the payer has finished with it (completed or failed), polled as a paying department would."""
    seen = await _get(api, payer, batch_id)
    deadline = time.monotonic() + 60
    while seen["status"] not in {"completed", "failed"}:
        assert time.monotonic() < deadline, f"batch still {seen['status']}"
        await asyncio.sleep(0.02)
        seen = await _get(api, payer, batch_id)
    return seen


async def _approve(api: Integrator, batch_id: str, token: str | None = None) -> httpx.Response:
    """`POST /v1/admin/disbursements/{batch_id}/approve` `{"reason"}` with an operator's bearer session."""
    if token is None:
        return await api.admin("POST", f"/v1/admin/disbursements/{batch_id}/approve", {"reason": "核对无误"})
    return await api.client.post(
        f"/v1/admin/disbursements/{batch_id}/approve",
        json={"reason": "核对无误"},
        headers={"Authorization": f"Bearer {token}"},
    )


async def test_post_disbursements_json_is_201_replay_200_and_another_body_409(
    api: Integrator, notify: MerchantServer
) -> None:
    """→ 201 `{"batch_id","status","rows_total","amount_total_fen"}`; the same body → 200 the same batch; another
    body with that `out_batch_no` → 409 `idempotency_conflict`; a non-disbursement item → 403
    `merchant_not_entitled`."""
    payer = await _payer(api, [ALLOWANCE, WATER])
    people = [await api.cardholder(n) for n in ("李四", "王五")]
    body = _batch(notify.url, [_row(people[0], 60_000), _row(people[1], 45_000)])

    made = await api.signed(payer, "POST", "/v1/disbursements", body)

    assert made.status_code == 201, made.text
    batch = made.json()
    assert BATCH <= set(batch) <= BATCH | BATCH_ADDED
    assert (batch["status"], batch["rows_total"], batch["amount_total_fen"]) == ("awaiting_approval", 2, 105_000)
    again = await api.signed(payer, "POST", "/v1/disbursements", body)
    assert again.status_code == 200, again.text
    assert again.json()["batch_id"] == batch["batch_id"]
    other = {**body, "rows": [_row(people[0], 70_000)]}
    assert problem_of(await api.signed(payer, "POST", "/v1/disbursements", other)) == (409, "idempotency_conflict")
    water = _batch(notify.url, [_row(people[0])], item_code=WATER)
    assert problem_of(await api.signed(payer, "POST", "/v1/disbursements", water)) == (403, "merchant_not_entitled")


async def test_post_disbursements_as_text_csv_with_the_query_parameters(
    api: Integrator, notify: MerchantServer
) -> None:
    """`text/csv` with header `out_row_no,id_number,name,amount_fen,memo` and `out_batch_no`, `item_code`,
    `description`, `notify_url` as query parameters → 201."""
    payer = await _payer(api)
    person = await api.cardholder("李四")
    lines = ["out_row_no,id_number,name,amount_fen,memo", f"r-1,{person['id_number']},李四,60000,11月低保"]
    raw = ("\n".join(lines) + "\n").encode()
    query = httpx.QueryParams(
        {
            "out_batch_no": f"B{random.randint(0, 10**12)}",
            "item_code": ALLOWANCE,
            "description": "2026年11月城乡低保",
            "notify_url": notify.url,
        }
    )
    path = f"/v1/disbursements?{query}"
    url = f"{str(api.client.base_url).rstrip('/')}{path}"
    signature = sign_request("POST", url, raw, payer.key, payer.key_id, payer.alg, created=api.parties.clock.now())

    made = await api.client.post(path, content=raw, headers={"Content-Type": "text/csv", **signature})

    assert made.status_code == 201, made.text
    assert (made.json()["rows_total"], made.json()["amount_total_fen"]) == (1, 60_000)
    [row] = (await api.signed(payer, "GET", f"/v1/disbursements/{made.json()['batch_id']}/rows")).json()["items"]
    assert (row["out_row_no"], row["status"], row["amount_fen"]) == ("r-1", "ready", 60_000)


async def test_each_row_refusal_and_get_batch_and_rows_by_status(api: Integrator, notify: MerchantServer) -> None:
    """Row refusals `cardholder_not_found`, `identity_mismatch`, `card_cancelled`, `duplicate_row` (the same person
    twice, an `out_row_no` twice), `invalid_amount`; `GET /v1/disbursements/{batch_id}` and `.../rows?status=` →
    `{"items":[{"out_row_no","status","code","amount_fen","paid_at"}]}` with no name or ID number."""
    payer = await _payer(api)
    good, misnamed, gone, twice = [await api.cardholder(n) for n in ("李四", "王五", "赵六", "钱七")]
    assert (await api.card_status(gone["card_id"], "cancelled")).status_code == 200
    nobody = {"id_number": f"5001011990{random.randint(10**7, 10**8 - 1)}", "name": "无卡"}
    rows = [
        _row(good, 10_000, out_row_no="ok"),
        _row(nobody, out_row_no="nobody"),
        _row(misnamed, name="错名", out_row_no="misnamed"),
        _row(gone, out_row_no="gone"),
        _row(twice, out_row_no="twice-1"),
        _row(twice, out_row_no="twice-2"),
        _row(await api.cardholder("孙八"), out_row_no="ok"),
        _row(await api.cardholder("周九"), 0, out_row_no="zero"),
    ]

    made = await api.signed(payer, "POST", "/v1/disbursements", _batch(notify.url, rows))

    assert made.status_code == 201, made.text
    batch_id = made.json()["batch_id"]
    batch = await _get(api, payer, batch_id)
    assert BATCH | {"item_code", "counts", "paid_fen"} <= set(batch) <= BATCH | BATCH_ADDED
    assert batch["counts"] == {"ready": 2, "rejected": 6, "paid": 0, "failed": 0}
    assert (batch["item_code"], batch["paid_fen"], batch["rows_total"]) == (ALLOWANCE, 0, 8)
    # "merchant-signed or operator": the operator's desk reads the same batch
    by_operator = await api.admin("GET", f"/v1/disbursements/{batch_id}")
    assert by_operator.status_code == 200, by_operator.text
    assert by_operator.json() == batch
    answer = await api.signed(payer, "GET", f"/v1/disbursements/{batch_id}/rows?status=rejected")
    assert answer.status_code == 200, answer.text
    # docs/contract-notes.md "Disbursement (issue 12)": rows carry `row_no`, the page `next_after`
    assert set(answer.json()) <= {"items", "next_after"}
    items = answer.json()["items"]
    assert all(ROW <= set(r) <= ROW | {"row_no"} for r in items)
    assert [(r["out_row_no"], r["code"]) for r in items] == [
        ("nobody", "cardholder_not_found"),
        ("misnamed", "identity_mismatch"),
        ("gone", "card_cancelled"),
        ("twice-2", "duplicate_row"),
        ("ok", "duplicate_row"),
        ("zero", "invalid_amount"),
    ]
    for person in (good, misnamed, gone, twice):
        assert person["id_number"] not in answer.text
        assert person["name"] not in answer.text
    ready = await api.signed(payer, "GET", f"/v1/disbursements/{batch_id}/rows?status=ready")
    assert [r["out_row_no"] for r in ready.json()["items"]] == ["ok", "twice-1"]


async def test_an_approved_batch_is_paid_announced_and_listed_for_the_holder(
    api: Integrator, bank: StandinBank, notify: MerchantServer
) -> None:
    """Approve `{"reason"}` → 200; paid through the bank from the funding account (`POST /test/funding`,
    `GET /test/funding/{merchant_id}`); callback `batch.completed`; `GET /v1/cards/{card_id}/disbursements` →
    `{"items":[{"payer_name","item_code","item_name","amount_fen","memo","paid_at"}]}`; the depth report's
    disbursement level counts the beneficiaries paid."""
    payer = await _payer(api)
    merchant_id = payer.ids["merchant_id"]
    await _fund(bank, merchant_id, 100_000)
    assert await _funding(bank, merchant_id) == 100_000
    phone = await api.phone("陈七")
    depth = await api.admin("GET", "/v1/admin/depth")
    before = next(i for i in depth.json()["items"] if i["item_code"] == ALLOWANCE)["levels"]["disbursement"]
    holder = {"id_number": phone.ids["id_number"], "name": "陈七"}
    made = await api.signed(payer, "POST", "/v1/disbursements", _batch(notify.url, [_row(holder, 35_000)]))
    batch_id = made.json()["batch_id"]

    approved = await _approve(api, batch_id)

    assert approved.status_code == 200, approved.text
    done = await _settled(api, payer, batch_id)
    assert (done["status"], done["paid_fen"], done["counts"]["paid"]) == ("completed", 35_000, 1)
    assert await _funding(bank, merchant_id) == 65_000
    [paid] = (await api.signed(payer, "GET", f"/v1/disbursements/{batch_id}/rows?status=paid")).json()["items"]
    assert paid["paid_at"]
    await until(lambda: event_of(notify, "batch.completed") is not None)
    event = event_of(notify, "batch.completed")
    assert event is not None
    assert event["batch_id"] == batch_id
    received = next(r for r in notify.received if json.loads(r.body)["event"] == "batch.completed")
    check_signed_by_issuer(received, (await api.client.get("/v1/issuer/request-keys")).json(), notify.url)
    listed = await api.signed(phone, "GET", f"/v1/cards/{phone.ids['card_id']}/disbursements")
    assert listed.status_code == 200, listed.text
    [payout] = listed.json()["items"]
    # docs/contract-notes.md "Disbursement (issue 12)": the holder's list carries `batch_id` as well
    assert set(payout) == {"payer_name", "item_code", "item_name", "amount_fen", "memo", "paid_at", "batch_id"}
    assert (payout["payer_name"], payout["item_code"], payout["amount_fen"]) == ("武隆区民政局", ALLOWANCE, 35_000)
    depth = await api.admin("GET", "/v1/admin/depth")
    after = next(i for i in depth.json()["items"] if i["item_code"] == ALLOWANCE)
    assert after["levels"]["disbursement"] > before
    # docs/contract-notes.md "Disbursement (issue 12)": the beneficiaries say they were counted from the batches
    assert after["beneficiaries"]["source"] == "batches"


async def test_above_the_threshold_two_operators_approve_and_reject_takes_a_reason(
    api: Integrator, world: World, bank: StandinBank, notify: MerchantServer
) -> None:
    """A total above `ECARD_DISBURSEMENT_DUAL_APPROVAL_FEN` (10,000,000 fen) needs two operators; the same operator
    twice → 409 `approval_duplicate`; `.../reject` `{"reason"}` → 200, the batch `rejected`."""
    payer = await _payer(api)
    await _fund(bank, payer.ids["merchant_id"], 10_000_001)
    person = await api.cardholder("李四")
    made = await api.signed(payer, "POST", "/v1/disbursements", _batch(notify.url, [_row(person, 10_000_001)]))
    batch_id = made.json()["batch_id"]

    first = await _approve(api, batch_id)

    assert first.status_code == 200, first.text
    assert (await _get(api, payer, batch_id))["status"] == "awaiting_approval"
    assert problem_of(await _approve(api, batch_id)) == (409, "approval_duplicate")
    second = await _approve(api, batch_id, await second_operator(world))
    assert second.status_code == 200, second.text
    assert (await _settled(api, payer, batch_id))["status"] == "completed"
    other = await api.signed(payer, "POST", "/v1/disbursements", _batch(notify.url, [_row(person, 1_000)]))
    rejected = await api.admin(
        "POST", f"/v1/admin/disbursements/{other.json()['batch_id']}/reject", {"reason": "名单未经公示"}
    )
    assert rejected.status_code == 200, rejected.text
    assert rejected.json()["status"] == "rejected"


async def test_not_covered_by_the_funding_account_the_batch_fails_and_nothing_moves(
    api: Integrator, bank: StandinBank, notify: MerchantServer
) -> None:
    """The ready total is reserved first: not covered → the batch `failed` with `insufficient_funds`, nothing moved."""
    payer = await _payer(api)
    await _fund(bank, payer.ids["merchant_id"], 50_000)
    person = await api.cardholder("李四")
    made = await api.signed(payer, "POST", "/v1/disbursements", _batch(notify.url, [_row(person, 60_000)]))
    batch_id = made.json()["batch_id"]

    assert (await _approve(api, batch_id)).status_code == 200

    done = await _settled(api, payer, batch_id)
    # docs/contract-notes.md "Disbursement (issue 12)": the code is the batch's `failure_code`
    assert (done["status"], done["failure_code"], done["paid_fen"]) == ("failed", "insufficient_funds", 0)
    assert await _funding(bank, payer.ids["merchant_id"]) == 50_000
