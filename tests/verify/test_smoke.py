"""The happy path, end to end: register, enrol, mint, verify."""

from __future__ import annotations

from tests.support import World


async def test_a_code_is_accepted_once_by_an_entitled_library(world: World) -> None:
    merchant = await world.merchant(["wl-030"])
    device = await world.device("张小三")
    code = await world.code(device)
    answer = await world.verify(merchant, code, "wl-030")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["result"] == "accepted"
    assert body["card"]["name_masked"] == "张*三"
    assert body["card"]["region"] == "cq"
    assert set(body["card"]) == {"pseudonym", "name_masked", "region"}
