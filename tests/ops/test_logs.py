"""Logs tell operators what was refused and why, and never carry a name, ID number, code, password or key."""

from __future__ import annotations

import json
import logging
import re

import pyotp
import pytest
from cryptography.hazmat.primitives import serialization

from ecard.config import Settings
from ecard.kit.crypto import b64u
from ecard.kit.ids import new_id
from ecard.ops.logs import JsonFormatter
from tests.support import Actor, World, problem, totp_now

HOLDER_NAME = "欧阳明月"
WRONG_PASSWORD = "not-the-password-Xq7vZr2p"  # deliberately wrong, sent to the service
# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = frozenset(vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None))) | {"message", "asctime"}


def _private_material(actor: Actor) -> list[str]:
    raw = actor.key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    jwk_d = getattr(actor.key, "private_numbers", None)
    values = [b64u(raw), raw.hex()]
    if jwk_d is not None:
        values.append(b64u(jwk_d().private_value.to_bytes(32, "big")))
    else:
        values.append(
            b64u(
                actor.key.private_bytes(
                    serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
                )
            )
        )
    return values


def _everything_logged(records: list[logging.LogRecord]) -> list[str]:
    formatter = JsonFormatter()
    texts: list[str] = []
    for record in records:
        texts.append(record.getMessage())
        texts.append(repr(record.msg))
        texts.append(repr(record.args))
        texts.extend(repr(value) for key, value in vars(record).items() if key not in _STANDARD)
        texts.append(formatter.format(record))
    return texts


async def test_logs_carry_refusals_but_no_personal_data_codes_or_secrets(
    world: World, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    # enrolment, a code, and a hotel check-in that is shown the full name and ID number
    hotel = await world.merchant(["wl-011"], name="仙女山大酒店")
    device = await world.device(HOLDER_NAME)
    code = await world.code(device)
    accepted = await world.verify(hotel, code, "wl-011")
    assert accepted.status_code == 200, accepted.text
    card = accepted.json()["card"]
    assert card["name"] == HOLDER_NAME
    assert card["id_number"] == device.ids["id_number"]

    # refusals: a replay, and an item the hotel is not entitled to
    assert problem(await world.verify(hotel, code, "wl-011")) == (409, "code_already_used")
    assert problem(await world.verify(hotel, await world.code(device), "wl-030")) == (403, "merchant_not_entitled")

    # an operator fumbling the login: a wrong password, then the right one with a wrong TOTP
    password, uri = await world.app.state.operators.add("clerk-zhou")
    wrong = await world.client.post(
        "/v1/admin/sessions", json={"username": "clerk-zhou", "password": WRONG_PASSWORD, "totp": totp_now(uri)}
    )
    assert problem(wrong) == (401, "operator_credentials_invalid")
    bad_totp = "000000" if totp_now(uri) != "000000" else "111111"
    wrong = await world.client.post(
        "/v1/admin/sessions", json={"username": "clerk-zhou", "password": password, "totp": bad_totp}
    )
    assert problem(wrong) == (401, "operator_credentials_invalid")

    # someone typing their own name where the username goes, again and again: refused, locked out, throttled
    for _ in range(25):
        typed = await world.client.post(
            "/v1/admin/sessions", json={"username": HOLDER_NAME, "password": WRONG_PASSWORD, "totp": "123456"}
        )
        assert problem(typed)[1] in {"operator_credentials_invalid", "operator_locked", "too_many_requests"}
    assert problem(typed) == (429, "too_many_requests")

    # cardholder registrations that do not validate: a stray field, and an ID number with a bad check digit
    other_name, other_id = (
        "司马青云",
        device.ids["id_number"][:-1] + ("1" if device.ids["id_number"][-1] != "1" else "2"),
    )
    invalid = await world.admin(
        "POST",
        "/v1/admin/cardholders",
        {"name": other_name, "id_number": other_id, "region": "cq", "card_serial": "S-LOG-1", "phone": "13800000000"},
    )
    assert problem(invalid) == (400, "invalid_request")
    invalid = await world.admin(
        "POST",
        "/v1/admin/cardholders",
        {"name": other_name, "id_number": other_id, "region": "cq", "card_serial": "S-LOG-2"},
    )
    assert problem(invalid) == (400, "invalid_request")

    records = list(caplog.records)
    texts = _everything_logged(records)

    # The refusals were logged with their route, status and stable problem code.
    refused = {
        (getattr(r, "route", ""), getattr(r, "status", 0), getattr(r, "code", ""))
        for r in records
        if r.name == "ecard.access" and getattr(r, "status", 0) >= 400
    }
    assert ("/v1/verifications", 409, "code_already_used") in refused
    assert ("/v1/verifications", 403, "merchant_not_entitled") in refused
    assert ("/v1/admin/sessions", 401, "operator_credentials_invalid") in refused
    assert ("/v1/admin/sessions", 423, "operator_locked") in refused
    assert ("/v1/admin/sessions", 429, "too_many_requests") in refused
    assert ("/v1/admin/cardholders", 400, "invalid_request") in refused
    formatted = [json.loads(JsonFormatter().format(r)) for r in records if r.name == "ecard.access"]
    assert {"route": "/v1/verifications", "status": 409, "code": "code_already_used"}.items() <= next(
        entry for entry in formatted if entry.get("code") == "code_already_used"
    ).items()

    secrets = {
        "holder name": HOLDER_NAME,
        "holder ID number": device.ids["id_number"],
        "rejected holder name": other_name,
        "rejected ID number": other_id,
        "code": code,
        "code body": code[4:40],
        "operator password": password,
        "wrong password": WRONG_PASSWORD,
        "operator TOTP secret": pyotp.parse_uri(uri).secret,
        "operator session token": await world.operator_token(),
        "master secret": settings.secret_key or "",
    }
    for who, actor in (("hotel", hotel), ("device", device)):
        for n, value in enumerate(_private_material(actor)):
            secrets[f"{who} private key {n}"] = value
    assert all(secrets.values())
    for label, secret in secrets.items():
        leaked = [text for text in texts if secret in text]
        assert not leaked, f"{label} appears in the logs: {leaked[0][:300]}"


def test_payment_and_callback_ids_are_logged_and_nothing_off_the_list_is() -> None:
    ids = {"transfer_id": new_id("txn"), "refund_id": new_id("rfd"), "event_id": new_id("evt")}
    record = logging.LogRecord("ecard.payments", logging.WARNING, __file__, 1, "bank debit failed", None, None)
    for field, value in {**ids, "task": "callbacks", "holder": HOLDER_NAME, "id_number": "500101199001011234"}.items():
        setattr(record, field, value)

    entry = json.loads(JsonFormatter().format(record))

    assert {field: entry[field] for field in ids} == ids
    assert entry["task"] == "callbacks"
    # the identifiers say nothing about a person: a prefix and 26 characters of random Crockford base32
    assert all(re.fullmatch(r"(txn|rfd|evt)_[0-9a-hjkmnp-tv-z]{26}", value) for value in ids.values())
    assert "holder" not in entry
    assert "id_number" not in entry
    assert HOLDER_NAME not in json.dumps(entry, ensure_ascii=False)
