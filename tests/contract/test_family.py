"""API.md, "Family accounts (亲情服务)": each request as shown, and the refusals it names."""

from __future__ import annotations

from tests.contract.support import Integrator, problem_of
from tests.family.support import born_on, years_ago
from tests.support import World


async def test_post_family_adds_a_member_pending_until_a_channel_consents_then_codes_and_delete(
    api: Integrator,
) -> None:
    """`POST /v1/cards/{card_id}/family` `{"id_number","name","relation"}` → 201 `{"link_id","member_card_id",
    "status"}`; `POST /v1/family/{link_id}/consent` (channel-signed) → 200; `POST /v1/codes` `{"card_id"}` → a code
    for the member's card; `DELETE /v1/cards/{card_id}/family/{link_id}` → codes refused with 403
    `family_link_ended`."""
    phone = await api.phone("王小红")
    father = await api.cardholder("王大山")
    hospital = await api.merchant(["wl-040"], name="武隆区人民医院")
    body = {"id_number": father["id_number"], "name": "王大山", "relation": "parent"}

    added = await api.signed(phone, "POST", f"/v1/cards/{phone.ids['card_id']}/family", body)

    assert added.status_code == 201, added.text
    link = added.json()
    assert set(link) == {"link_id", "member_card_id", "status"}
    assert link["member_card_id"] == father["card_id"]
    assert link["status"] == "pending_consent"
    channel = await api.channel()
    # docs/contract-notes.md: the channel names the member it checked
    consented = await api.signed(
        channel,
        "POST",
        f"/v1/family/{link['link_id']}/consent",
        {"id_number": father["id_number"], "name": "王大山"},
    )
    assert consented.status_code == 200, consented.text

    minted = await api.signed(phone, "POST", "/v1/codes", {"card_id": father["card_id"]})
    assert minted.status_code == 201, minted.text
    checked = await api.verify(hospital, minted.json()["code"], "wl-040")
    assert checked.status_code == 200, checked.text
    assert checked.json()["card"]["name"] == "王大山"

    ended = await api.signed(phone, "DELETE", f"/v1/cards/{phone.ids['card_id']}/family/{link['link_id']}")
    assert ended.status_code == 200, ended.text
    refused = await api.signed(phone, "POST", "/v1/codes", {"card_id": father["card_id"]})
    assert problem_of(refused) == (403, "family_link_ended")


async def test_a_child_under_16_is_active_at_once_and_the_limits_are_409_family_limit(
    api: Integrator, world: World
) -> None:
    """A child under 16 is active at once; at most 1 spouse (409 `family_limit`); the member must hold a card
    (404 `cardholder_not_found`) under that name (403 `identity_mismatch`)."""
    phone = await api.phone("李梅")
    child_number = born_on(years_ago(world, 8))
    child = await api.admin(
        "POST",
        "/v1/admin/cardholders",
        {"name": "李小明", "id_number": child_number, "region": "cq", "card_serial": f"CQ-C-{child_number}"},
    )
    assert child.status_code == 201, child.text
    path = f"/v1/cards/{phone.ids['card_id']}/family"

    added = await api.signed(phone, "POST", path, {"id_number": child_number, "name": "李小明", "relation": "child"})
    assert added.status_code == 201, added.text
    assert added.json()["status"] == "active"

    first, second = await api.cardholder("李丈夫"), await api.cardholder("李二")
    spouse = {"id_number": first["id_number"], "name": "李丈夫", "relation": "spouse"}
    assert (await api.signed(phone, "POST", path, spouse)).status_code == 201
    again = {"id_number": second["id_number"], "name": "李二", "relation": "spouse"}
    assert problem_of(await api.signed(phone, "POST", path, again)) == (409, "family_limit")
    nobody = {"id_number": born_on(years_ago(world, 60)), "name": "李三", "relation": "other"}
    assert problem_of(await api.signed(phone, "POST", path, nobody)) == (404, "cardholder_not_found")
    misnamed = {"id_number": second["id_number"], "name": "李错名", "relation": "other"}
    assert problem_of(await api.signed(phone, "POST", path, misnamed)) == (403, "identity_mismatch")
