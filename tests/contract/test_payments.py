"""API.md, "Payments (协约商户 拉起账单)": bills, paying with the PIN, refunds, callbacks, statements, the bank."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from ecard.kit.clock import to_datetime
from ecard.kit.jwk import parse_public_jwk
from ecard.kit.signing import parse_signature_params, verify_signature
from tests.contract.support import PIN, Integrator, problem_of
from tests.standins import StandinBank
from tests.support import Actor, World

WATER = "wl-043"


class Notified:
    """A merchant's `notify_url` on loopback: keeps what it is sent, answers `status` (500 until told otherwise)."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.received: list[tuple[dict[str, str], bytes]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                owner.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(owner.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/ecard/notify"

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.received]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def notified() -> Iterator[Notified]:
    server = Notified()
    try:
        yield server
    finally:
        server.close()


async def until(check: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Until the service has done on its own what `check` looks for (a callback delivered)."""
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.02)


def bill_body(notify_url: str, amount_fen: int = 4250, **changes: Any) -> dict[str, Any]:
    """`{"out_bill_no","item_code","amount_fen","description","notify_url","expires_in_s"}`."""
    return {
        "out_bill_no": f"W-2026-{random.randint(0, 10**9)}",
        "item_code": WATER,
        "amount_fen": amount_fen,
        "description": "2026年10月水费",
        "notify_url": notify_url,
        "expires_in_s": 3600,
        **changes,
    }


async def payer(api: Integrator, bank: StandinBank, balance_fen: int = 100_000) -> Actor:
    phone = await api.phone()
    assert (await api.pin(phone)).status_code == 204
    if balance_fen:
        await bank.credit(phone.ids["card_id"], balance_fen)
    return phone


async def bill_of(api: Integrator, merchant: Actor, body: dict[str, Any]) -> dict[str, Any]:
    answer = await api.signed(merchant, "POST", "/v1/bills", body)
    assert answer.status_code == 201, answer.text
    made: dict[str, Any] = answer.json()
    return made


async def pay(api: Integrator, phone: Actor, bill_id: str, pin: str = PIN) -> httpx.Response:
    """`POST /v1/bills/{bill_id}/pay` (device-signed) `{"pin"}`."""
    return await api.signed(phone, "POST", f"/v1/bills/{bill_id}/pay", {"pin": pin})


async def test_post_bills_answers_201_pending_with_the_pull_up_url(api: Integrator, notified: Notified) -> None:
    """`POST /v1/bills` (merchant-signed) → 201 `{"bill_id","status":"pending","pull_up_url":"ecard://pay?bill_id=...",
    "expires_at"}`."""
    water = await api.merchant([WATER], name="武隆区自来水公司")

    answer = await api.signed(water, "POST", "/v1/bills", bill_body(notified.url))

    assert answer.status_code == 201, answer.text
    bill = answer.json()
    assert bill["status"] == "pending"
    assert bill["pull_up_url"] == f"ecard://pay?bill_id={bill['bill_id']}"
    datetime.fromisoformat(bill["expires_at"])


async def test_the_same_out_bill_no_is_the_same_bill_or_idempotency_conflict(
    api: Integrator, notified: Notified
) -> None:
    """The same `out_bill_no` with the same body → 200 the same bill; with another body → 409
    `idempotency_conflict`."""
    water = await api.merchant([WATER])
    body = bill_body(notified.url)
    first = await bill_of(api, water, body)

    again = await api.signed(water, "POST", "/v1/bills", body)
    other = await api.signed(water, "POST", "/v1/bills", {**body, "amount_fen": 1})

    assert again.status_code == 200, again.text
    assert again.json()["bill_id"] == first["bill_id"]
    assert problem_of(other) == (409, "idempotency_conflict")


async def test_a_bill_must_be_for_a_payment_item_the_merchant_is_entitled_to(
    api: Integrator, notified: Notified
) -> None:
    """The item must be a payment item the merchant is entitled to."""
    water = await api.merchant([WATER, "wl-030"])

    identity_item = await api.signed(water, "POST", "/v1/bills", bill_body(notified.url, item_code="wl-030"))
    not_entitled = await api.signed(water, "POST", "/v1/bills", bill_body(notified.url, item_code="wl-042"))

    assert problem_of(identity_item) == (403, "merchant_not_entitled")
    assert problem_of(not_entitled) == (403, "merchant_not_entitled")


async def test_get_bill_device_signed_shows_merchant_item_amount_and_status(
    api: Integrator, bank: StandinBank, notified: Notified
) -> None:
    """`GET /v1/bills/{bill_id}` (device-signed) → merchant name, item, amount, status."""
    water = await api.merchant([WATER], name="武隆区自来水公司")
    bill = await bill_of(api, water, bill_body(notified.url, 4250))
    phone = await payer(api, bank)

    answer = await api.signed(phone, "GET", f"/v1/bills/{bill['bill_id']}")

    assert answer.status_code == 200, answer.text
    shown = answer.json()
    assert shown["merchant_name"] == "武隆区自来水公司"
    assert shown["item_code"] == WATER
    assert shown["amount_fen"] == 4250
    assert shown["status"] == "pending"


async def test_post_pay_with_the_pin_answers_paid_transaction_id_and_paid_at(
    api: Integrator, bank: StandinBank, notified: Notified
) -> None:
    """`POST /v1/bills/{bill_id}/pay` (device-signed) `{"pin"}` → 200 `{"status":"paid","transaction_id","paid_at"}`;
    money is integer fen."""
    water = await api.merchant([WATER])
    bill = await bill_of(api, water, bill_body(notified.url, 4250))
    phone = await payer(api, bank, 10_000)

    answer = await pay(api, phone, bill["bill_id"])

    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "paid"
    assert answer.json()["transaction_id"]
    datetime.fromisoformat(answer.json()["paid_at"])
    assert await bank.balance(phone.ids["card_id"]) == 10_000 - 4250


async def test_a_wrong_pin_is_pin_incorrect_with_attempts_left_and_the_fifth_locks(
    api: Integrator, bank: StandinBank, notified: Notified
) -> None:
    """Refusals: 403 `pin_incorrect` (with `attempts_left`), 423 `pin_locked` (after 5 wrong PINs)."""
    water = await api.merchant([WATER])
    bill = await bill_of(api, water, bill_body(notified.url))
    phone = await payer(api, bank)

    wrong = [await pay(api, phone, bill["bill_id"], "000000") for _ in range(4)]
    fifth = await pay(api, phone, bill["bill_id"], "000000")

    assert [problem_of(a) for a in wrong] == [(403, "pin_incorrect")] * 4
    assert [a.json()["attempts_left"] for a in wrong] == [4, 3, 2, 1]
    assert problem_of(fifth) == (423, "pin_locked")
    assert problem_of(await pay(api, phone, bill["bill_id"])) == (423, "pin_locked")


async def test_a_card_account_without_the_money_is_insufficient_funds(
    api: Integrator, bank: StandinBank, notified: Notified
) -> None:
    """Refusals: 402 `insufficient_funds`."""
    water = await api.merchant([WATER])
    bill = await bill_of(api, water, bill_body(notified.url, 4250))
    phone = await payer(api, bank, 100)

    assert problem_of(await pay(api, phone, bill["bill_id"])) == (402, "insufficient_funds")


@pytest.mark.parametrize("why", ["paid", "closed", "expired"])
async def test_a_paid_closed_or_expired_bill_is_bill_not_payable(
    world: World, api: Integrator, bank: StandinBank, notified: Notified, why: str
) -> None:
    """Refusals: 409 `bill_not_payable` (paid, closed, expired)."""
    water = await api.merchant([WATER])
    bill = await bill_of(api, water, bill_body(notified.url, 100, expires_in_s=60))
    phone = await payer(api, bank)
    if why == "paid":
        assert (await pay(api, phone, bill["bill_id"])).status_code == 200
    elif why == "closed":
        assert (await api.signed(water, "POST", f"/v1/bills/{bill['bill_id']}/close")).status_code == 200
    else:
        world.clock.advance(61)

    assert problem_of(await pay(api, phone, bill["bill_id"])) == (409, "bill_not_payable")


async def test_a_suspended_card_is_card_suspended(api: Integrator, bank: StandinBank, notified: Notified) -> None:
    """Refusals: 403 `card_suspended`."""
    water = await api.merchant([WATER])
    bill = await bill_of(api, water, bill_body(notified.url))
    phone = await payer(api, bank)
    assert (await api.card_status(phone.ids["card_id"], "suspended")).status_code == 200

    assert problem_of(await pay(api, phone, bill["bill_id"])) == (403, "card_suspended")


async def _cut_off_after_the_debit(api: Integrator, bank: StandinBank, phone: Actor, bill_id: str, after: int) -> None:
    """Pay while the bank holds its answers; give the request up once the bank has made the debit."""
    await bank.hold_debits()
    try:
        paying = asyncio.create_task(pay(api, phone, bill_id))
        deadline = time.monotonic() + 10
        while await bank.balance(phone.ids["card_id"]) != after:
            assert time.monotonic() < deadline, "the bank never made the debit"
            await asyncio.sleep(0.05)
        paying.cancel()
        with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
            await paying
    finally:
        await bank.release_debits()


async def test_while_an_attempt_is_unsettled_the_bill_reads_paying_and_pay_is_payment_in_progress(
    world: World, api: Integrator, bank: StandinBank, notified: Notified
) -> None:
    """A bill whose `status` reads `pending` can be paid; while an attempt is unsettled (say after a crash) it reads
    `paying`, and pay answers 409 `payment_in_progress` with `Retry-After`; it settles within a minute of the
    service being up again."""
    water = await api.merchant([WATER])
    # the bill outlives the recovery grace these tests give, so recovery completes it rather than reverses it
    bill = await bill_of(api, water, bill_body(notified.url, 4000, expires_in_s=2 * 3600))
    phone = await payer(api, bank, 10_000)
    await _cut_off_after_the_debit(api, bank, phone, bill["bill_id"], 6000)

    shown = await api.signed(phone, "GET", f"/v1/bills/{bill['bill_id']}")
    again = await pay(api, phone, bill["bill_id"])

    assert shown.json()["status"] == "paying"
    assert problem_of(again) == (409, "payment_in_progress")
    assert int(again.headers["Retry-After"]) > 0
    # these tests leave recovery an hour's grace; on its defaults (30 s grace, a look every 10 s) the attempt
    # settles within a minute, which tests/payments/test_recovery.py shows on a killed and restarted service
    world.clock.advance(world.app.state.settings.payment_recovery_grace_s + 1)
    await world.app.state.recovery.run_once()
    assert (await api.signed(water, "GET", f"/v1/bills/{bill['bill_id']}")).json()["status"] == "paid"


async def test_a_merchant_finds_its_bill_by_out_bill_no_and_by_bill_id(api: Integrator, notified: Notified) -> None:
    """`GET /v1/bills?out_bill_no=` and `GET /v1/bills/{bill_id}` (merchant-signed)."""
    water = await api.merchant([WATER])
    body = bill_body(notified.url)
    bill = await bill_of(api, water, body)

    by_number = await api.signed(water, "GET", f"/v1/bills?out_bill_no={body['out_bill_no']}")
    by_id = await api.signed(water, "GET", f"/v1/bills/{bill['bill_id']}")

    assert by_number.status_code == 200, by_number.text
    assert by_id.status_code == 200, by_id.text
    assert by_number.json()["bill_id"] == by_id.json()["bill_id"] == bill["bill_id"]
    assert by_id.json()["status"] == "pending"


async def test_post_close_closes_the_bill(api: Integrator, notified: Notified) -> None:
    """`POST /v1/bills/{bill_id}/close`."""
    water = await api.merchant([WATER])
    bill = await bill_of(api, water, bill_body(notified.url))

    answer = await api.signed(water, "POST", f"/v1/bills/{bill['bill_id']}/close")

    assert answer.status_code == 200, answer.text
    assert (await api.signed(water, "GET", f"/v1/bills/{bill['bill_id']}")).json()["status"] == "closed"


async def test_refunds_answer_201_never_more_than_paid_and_are_idempotent_on_out_refund_no(
    api: Integrator, bank: StandinBank, notified: Notified
) -> None:
    """`POST /v1/bills/{bill_id}/refunds` `{"out_refund_no","amount_fen","reason"}` → 201; more than was paid in all →
    409 `refund_exceeds_paid`; idempotent on `out_refund_no`."""
    water = await api.merchant([WATER])
    bill = await bill_of(api, water, bill_body(notified.url, 4250))
    phone = await payer(api, bank, 10_000)
    assert (await pay(api, phone, bill["bill_id"])).status_code == 200
    path = f"/v1/bills/{bill['bill_id']}/refunds"
    first = {"out_refund_no": "R-1", "amount_fen": 4000, "reason": "多收"}

    refunded = await api.signed(water, "POST", path, first)
    repeated = await api.signed(water, "POST", path, first)
    too_much = await api.signed(water, "POST", path, {"out_refund_no": "R-2", "amount_fen": 251, "reason": "多收"})

    assert refunded.status_code == 201, refunded.text
    assert repeated.status_code in (200, 201), repeated.text
    assert repeated.json()["refund_id"] == refunded.json()["refund_id"]
    assert problem_of(too_much) == (409, "refund_exceeds_paid")
    assert await bank.balance(phone.ids["card_id"]) == 10_000 - 4250 + 4000


async def test_callbacks_are_posted_signed_with_the_issuer_request_key_and_retried_until_2xx(
    api: Integrator, bank: StandinBank
) -> None:
    """Callbacks: `POST <notify_url>` `{"event":"bill.paid"|"bill.refunded"|"bill.closed","bill_id","out_bill_no",
    "amount_fen","at"}`, RFC 9421-signed with the issuer request key; retried with backoff until the merchant
    answers 2xx."""
    merchant_server = Notified(status=500)
    try:
        water = await api.merchant([WATER])
        paid_bill = await bill_of(api, water, bill_body(merchant_server.url, 4250))
        closed_bill = await bill_of(api, water, bill_body(merchant_server.url, 100))
        phone = await payer(api, bank)
        assert (await pay(api, phone, paid_bill["bill_id"])).status_code == 200
        refund = {"out_refund_no": "R-9", "amount_fen": 250, "reason": "多收"}
        assert (await api.signed(water, "POST", f"/v1/bills/{paid_bill['bill_id']}/refunds", refund)).status_code == 201
        assert (await api.signed(water, "POST", f"/v1/bills/{closed_bill['bill_id']}/close")).status_code == 200
        await until(lambda: len(merchant_server.received) >= 4)
        merchant_server.status = 200

        def delivered() -> set[str]:
            return {e["event"] for e in merchant_server.events()}

        await until(lambda: delivered() == {"bill.paid", "bill.refunded", "bill.closed"})
    finally:
        merchant_server.close()
    keys = (await api.client.get("/v1/issuer/request-keys")).json()
    for headers, body in merchant_server.received:
        event = json.loads(body)
        assert {"event", "bill_id", "out_bill_no", "amount_fen", "at"} <= event.keys()
        params = parse_signature_params(headers, has_body=True)
        jwk = next(k for k in keys["keys"] if params.keyid.endswith(f":{k['kid']}"))
        key, alg, _ = parse_public_jwk({n: jwk[n] for n in ("kty", "crv", "x")})
        verify_signature(params, key, alg, "POST", "/ecard/notify", "", headers, body)
    by_event = {e["event"]: e for e in merchant_server.events()}
    assert by_event["bill.paid"]["amount_fen"] == 4250
    assert by_event["bill.closed"]["bill_id"] == closed_bill["bill_id"]


async def test_get_statement_answers_the_days_bills_refunds_and_totals(
    world: World, api: Integrator, bank: StandinBank, notified: Notified
) -> None:
    """`GET /v1/statements/{date}` (merchant-signed) → that day's bills and refunds, and totals."""
    water = await api.merchant([WATER])
    bill = await bill_of(api, water, bill_body(notified.url, 4250))
    phone = await payer(api, bank)
    assert (await pay(api, phone, bill["bill_id"])).status_code == 200
    refund = {"out_refund_no": "R-1", "amount_fen": 250, "reason": "多收"}
    assert (await api.signed(water, "POST", f"/v1/bills/{bill['bill_id']}/refunds", refund)).status_code == 201
    today = to_datetime(world.clock.now()).date().isoformat()

    answer = await api.signed(water, "GET", f"/v1/statements/{today}")

    assert answer.status_code == 200, answer.text
    statement = answer.json()
    assert [b["bill_id"] for b in statement["bills"]] == [bill["bill_id"]]
    assert len(statement["refunds"]) == 1
    assert statement["totals"]["paid_fen"] == 4250
    assert statement["totals"]["refunded_fen"] == 250


async def test_the_bank_stand_in_takes_credits_and_tells_balances(bank: StandinBank) -> None:
    """For tests it also answers `POST /test/credits` `{"card_id","amount_fen"}` → 201 (money into that card's
    account) and `GET /test/accounts/{card_id}` → `{"balance_fen"}`."""
    card_id = f"crd_contract{random.randint(0, 10**9)}"
    async with httpx.AsyncClient(base_url=bank.base) as client:
        credited = await client.post("/test/credits", json={"card_id": card_id, "amount_fen": 1234})
        balance = await client.get(f"/test/accounts/{card_id}")

    assert credited.status_code == 201, credited.text
    assert balance.status_code == 200, balance.text
    assert balance.json()["balance_fen"] == 1234
