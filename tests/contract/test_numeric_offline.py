"""API.md, "Numeric codes and offline taps": each request as shown, and the answers and refusals it names."""

from __future__ import annotations

from typing import Any

from ecard.kit.clock import iso
from tests.contract.support import Integrator, problem_of
from tests.support import Actor, World

HOUR = 3600.0


async def _numeric(api: Integrator, phone: Actor) -> dict[str, Any]:
    answer = await api.signed(phone, "POST", "/v1/codes", {"form": "numeric"})
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def _upload(api: Integrator, terminal: Actor, taps: list[dict[str, str]]) -> list[dict[str, Any]]:
    answer = await api.signed(terminal, "POST", "/v1/offline-taps", {"taps": taps})
    assert answer.status_code == 200, answer.text
    assert set(answer.json()) == {"results"}
    results: list[dict[str, Any]] = answer.json()["results"]
    return results


def _tap(tap_id: str, code: str, at: float, item_code: str = "wl-029") -> dict[str, str]:
    """`{"tap_id","code","item_code","tapped_at"}`: the four fields of API.md, no others."""
    return {"tap_id": tap_id, "code": code, "item_code": item_code, "tapped_at": iso(at)}


async def test_post_codes_numeric_is_201_with_18_digits_verified_once_online(api: Integrator) -> None:
    """`POST /v1/codes` `{"form":"numeric"}` → 201 `{"code":"<18 digits>","expires_at"}`; online-verified, single use,
    the same refusals."""
    phone = await api.phone()
    library = await api.merchant(["wl-030"])

    minted = await _numeric(api, phone)

    # docs/contract-notes.md "Numeric codes and offline taps": `refresh_after` is answered too
    assert {"code", "expires_at"} <= set(minted) <= {"code", "expires_at", "refresh_after"}
    assert len(minted["code"]) == 18
    assert minted["code"].isdigit()
    checked = await api.verify(library, minted["code"], "wl-030")
    assert checked.status_code == 200, checked.text
    assert checked.json()["result"] == "accepted"
    assert checked.json()["card"]["name_masked"] == "张*三"
    assert problem_of(await api.verify(library, minted["code"], "wl-030")) == (409, "code_already_used")


async def test_a_numeric_code_expires_and_a_suspended_card_gets_none(api: Integrator, world: World) -> None:
    """The same refusals as EC1 codes: `code_expired`; 403 `card_suspended` for a suspended card."""
    phone = await api.phone()
    library = await api.merchant(["wl-030"])
    minted = await _numeric(api, phone)

    world.clock.offset = world.app.state.settings.code_ttl_s + 120
    refused = await api.verify(library, minted["code"], "wl-030")

    assert problem_of(refused)[1] == "code_expired"
    world.clock.offset = 0
    assert (await api.card_status(phone.ids["card_id"], "suspended")).status_code == 200
    suspended = await api.signed(phone, "POST", "/v1/codes", {"form": "numeric"})
    assert problem_of(suspended) == (403, "card_suspended")


async def test_post_offline_taps_answers_results_per_tap_and_the_same_again(api: Integrator, world: World) -> None:
    """`POST /v1/offline-taps` `{"taps":[{"tap_id","code","item_code","tapped_at"}]}` → 200
    `{"results":[{"tap_id","result","verification_id"}]}`; idempotent per `tap_id`; a code tapped twice → the second
    `code_already_used`; later than expiry plus `ECARD_OFFLINE_GRACE_S` → `code_expired`; a card suspended before
    `tapped_at` → `card_suspended`; each of the last three raises a risk event where API.md says so."""
    transit = await api.merchant(["wl-029"], name="武隆公交")
    bus = await world.terminal(transit, "bus-7")
    rider, late, lost = await api.phone("张小三"), await api.phone("李四"), await api.phone("王老五")
    typed = (await _numeric(api, await api.phone("赵六")))["code"]
    grace = world.app.state.settings.offline_grace_s
    ttl = world.app.state.settings.code_ttl_s
    world.clock.offset = -(ttl + grace + 2 * HOUR)
    stale, stale_at = await api.code(late), world.clock.now()
    world.clock.offset = -3 * HOUR
    fresh, fresh_at = await api.code(rider), world.clock.now()
    # the lost phone shows a code just before the card is suspended; the finder taps it a little later
    world.clock.offset = -20
    stolen, stolen_at = await api.code(lost), world.clock.now()
    world.clock.offset = 0
    assert (await api.card_status(lost.ids["card_id"], "suspended")).status_code == 200
    world.clock.offset = HOUR  # the bus is back at the depot and uploads
    taps = [
        _tap("tap-1", fresh, fresh_at + 5),
        _tap("tap-2", fresh, fresh_at + 60),
        _tap("tap-3", stale, stale_at + ttl + grace + 60),
        _tap("tap-4", stolen, stolen_at + 40),
        _tap("tap-5", typed, world.clock.now() - HOUR + 30),
    ]

    first = await _upload(api, bus, taps)

    assert [(r["tap_id"], r["result"]) for r in first] == [
        ("tap-1", "accepted"),
        ("tap-2", "code_already_used"),
        ("tap-3", "code_expired"),
        ("tap-4", "card_suspended"),
        # numeric codes are online-verified only: an offline terminal cannot check one
        ("tap-5", "malformed_code"),
    ]
    assert set(first[0]) == {"tap_id", "result", "verification_id"}
    assert first[0]["verification_id"]
    # docs/contract-notes.md "Numeric codes and offline taps": `verification_id` is present for accepted taps only
    assert all(set(r) <= {"tap_id", "result", "verification_id"} for r in first)
    assert await _upload(api, bus, taps) == first
    # docs/contract-notes.md "Numeric codes and offline taps": terminal keys only, a merchant's own key is 403
    by_merchant = await api.signed(transit, "POST", "/v1/offline-taps", {"taps": taps[:1]})
    assert problem_of(by_merchant) == (403, "forbidden")
    events = await api.admin("GET", "/v1/admin/risk/events?status=open")
    assert events.status_code == 200, events.text
    raised = {(e["kind"], e["card_id"]) for e in events.json()["items"]}
    # docs/contract-notes.md "Numeric codes and offline taps": the kinds are offline_double_tap and
    # offline_tap_blocked_card
    assert ("offline_double_tap", rider.ids["card_id"]) in raised
    assert ("offline_tap_blocked_card", lost.ids["card_id"]) in raised
