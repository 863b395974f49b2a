"""Complaint texts, contacts and replies are personal data: never in a log line, never in clear in the database."""

from __future__ import annotations

import logging
import re

import pytest

from ecard.ops.logs import JsonFormatter
from tests.complaints.support import file_from, from_address, read_with_code
from tests.support import World, problem

TEXT = "仙女山某酒店前台把我的身份证拍照发到了微信群 TEXT-7f3a9c"
CONTACT = "微信 ouyang-mingyue-13912345678"
REPLY = "已约谈该酒店并删除照片 REPLY-51be02"
_WRITTEN = (TEXT, CONTACT, REPLY)
# every six characters in a row of what the citizen and the operator wrote: a piece of it is a leak too. Six hex
# digits alone ("123456" of the phone number) turn up by chance in any sealed column rendered as hex, so those
# pieces are looked for as whole runs of ten or more instead (the phone number).
SECRETS = tuple(
    {piece for s in _WRITTEN for i in range(len(s) - 5) if re.search("[^0-9a-fA-F]", piece := s[i : i + 6])}
    | {run for s in _WRITTEN for run in re.findall("[0-9a-fA-F]{10,}", s)}
)
# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = frozenset(vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None))) | {"message", "asctime"}


def _everything_logged(records: list[logging.LogRecord]) -> str:
    formatter = JsonFormatter()
    texts: list[str] = []
    for record in records:
        texts += [record.getMessage(), repr(record.msg), repr(record.args), formatter.format(record)]
        texts += [repr(value) for key, value in vars(record).items() if key not in _STANDARD]
    return "\n".join(texts)


async def _whole_database(world: World) -> str:
    """Every row of every table, as PostgreSQL renders it (bytea as hex)."""
    pool = world.app.state.pool
    tables = await pool.fetch(
        "SELECT quote_ident(tablename) AS name FROM pg_tables WHERE schemaname = current_schema()"
    )
    rows: list[str] = []
    for table in tables:
        rows += [r[0] for r in await pool.fetch(f"SELECT row_to_json(t)::text FROM {table['name']} t")]
    return "\n".join(rows)


async def test_complaint_text_contact_and_replies_are_never_logged_nor_stored_in_clear(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    phone = await world.device()
    hotel = await world.merchant(["wl-011"], name="仙女山大酒店")

    # both channels, the desk reading and replying, the citizen reading the reply
    signed = await file_from(
        world, phone, {"category": "data_misuse", "text": TEXT, "merchant_id": hotel.ids["merchant_id"]}
    )
    public = await world.client.post(
        "/v1/complaints", json={"category": "data_misuse", "text": TEXT, "contact": CONTACT}
    )
    assert signed.status_code == public.status_code == 201, (signed.text, public.text)
    for filed in (signed.json(), public.json()):
        assert (await world.admin("GET", f"/v1/admin/complaints/{filed['complaint_id']}")).json()["text"] == TEXT
        replied = await world.admin(
            "POST", f"/v1/admin/complaints/{filed['complaint_id']}/replies", {"text": REPLY, "status": "resolved"}
        )
        assert replied.status_code == 201, replied.text
        seen = await read_with_code(world.client, filed["complaint_id"], filed["tracking_code"])
        assert seen.json()["replies"][0]["text"] == REPLY

    # refusals that carry the text: a link refused, a body that does not validate, a throttled filing, a reply
    # to a closed complaint
    refused = [
        await file_from(world, phone, {"category": "data_misuse", "text": TEXT, "verification_id": "vrf_x"}),
        await world.client.post("/v1/complaints", json={"category": "nope", "text": TEXT, "contact": CONTACT}),
        await world.client.post("/v1/complaints", json={"category": "other", "text": TEXT + "长" * 4000}),
        await world.admin(
            "POST",
            f"/v1/admin/complaints/{public.json()['complaint_id']}/replies",
            {"text": REPLY, "status": "accepted"},
        ),
    ]
    async with from_address(world, "203.0.113.9") as flooder:
        for _ in range(6):
            last = await flooder.post("/v1/complaints", json={"category": "other", "text": TEXT, "contact": CONTACT})
        refused.append(last)
    assert [problem(a)[0] for a in refused] == [403, 400, 400, 409, 429]
    for answer in refused:
        assert not any(secret in answer.text for secret in SECRETS), answer.text

    logged = _everything_logged(caplog.records)
    assert "request refused" in logged  # the service did log, and what it logged says why
    assert not [secret for secret in SECRETS if secret in logged]
    stored = await _whole_database(world)
    assert "complaint.filed" in stored  # the audit entries are there, without the text
    hexes = [secret.encode().hex() for secret in SECRETS]
    assert not [secret for secret in (*SECRETS, *hexes) if secret in stored]
    assert await world.audit_intact()
