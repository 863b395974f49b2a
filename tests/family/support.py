"""Families as the tests play them: guardians on their phones, members with or without one."""

from __future__ import annotations

import itertools
from datetime import date, datetime, timedelta, timezone

import httpx

from ecard.cards.models import check_digit
from tests.support import Actor, World, p256_actor

CHINA = timezone(timedelta(hours=8))


# The ID number's three sequence digits, drawn in turn: the people one test makes on the same birthday get numbers of
# their own (drawn at random, two of them shared one now and then, and the registry took the second for the first).
_SEQUENCE = itertools.count()


def born_on(birthday: date) -> str:
    """A made-up resident ID number (valid check digit) of someone born on `birthday`, not given out before by this
    process for that birthday (up to a thousand)."""
    body = f"500101{birthday:%Y%m%d}{next(_SEQUENCE) % 1000:03d}"
    return body + check_digit(body)


def today(world: World) -> date:
    """The service clock's date in China."""
    return datetime.fromtimestamp(world.clock.now(), CHINA).date()


def years_ago(world: World, years: int, days: int = 0) -> date:
    """The date `years` years and `days` days before the service clock's today (28 Feb for a 29 Feb)."""
    now = today(world)
    try:
        then = now.replace(year=now.year - years)
    except ValueError:
        then = now.replace(year=now.year - years, day=28)
    return then - timedelta(days=days)


async def member(world: World, name: str, birthday: date | None = None) -> dict[str, str]:
    """A cardholder without a phone (their card is registered; nothing enrolled)."""
    return await world.cardholder(name, born_on(birthday or years_ago(world, 80)))


async def add(world: World, guardian: Actor, person: dict[str, str], relation: str) -> httpx.Response:
    return await world.signed(
        guardian,
        "POST",
        f"/v1/cards/{guardian.ids['card_id']}/family",
        {"id_number": person["id_number"], "name": person["name"], "relation": relation},
    )


async def added(world: World, guardian: Actor, person: dict[str, str], relation: str) -> dict[str, str]:
    answer = await add(world, guardian, person, relation)
    assert answer.status_code == 201, answer.text
    body: dict[str, str] = answer.json()
    return body


async def consent(world: World, channel: Actor, link_id: str, person: dict[str, str]) -> httpx.Response:
    return await world.signed(
        channel,
        "POST",
        f"/v1/family/{link_id}/consent",
        {"id_number": person["id_number"], "name": person["name"]},
    )


async def code_for(world: World, guardian: Actor, card_id: str, accept: str | None = None) -> httpx.Response:
    headers = {"Accept": accept} if accept else None
    return await world.signed(guardian, "POST", "/v1/codes", {"card_id": card_id}, headers=headers)


async def enrol(world: World, person: dict[str, str]) -> Actor:
    """The person enrols a phone of their own (a newer enrolment retires the older phone)."""
    channel = await world.channel()
    phone = p256_actor()
    answer = await world.signed(
        channel,
        "POST",
        "/v1/enrolments",
        {"id_number": person["id_number"], "name": person["name"], "device_public_key": phone.jwk},
    )
    assert answer.status_code == 201, answer.text
    phone.key_id = answer.json()["device_key_id"]
    phone.ids.update(card_id=answer.json()["card_id"], device_id=answer.json()["device_id"])
    return phone


async def notice_kinds(world: World, device: Actor) -> list[tuple[str, str]]:
    answer = await world.signed(device, "GET", f"/v1/cards/{device.ids['card_id']}/notices")
    assert answer.status_code == 200, answer.text
    return [(n["kind"], str(n["detail"].get("link_id"))) for n in answer.json()["items"]]
