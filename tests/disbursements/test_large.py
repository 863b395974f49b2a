"""A 10,000-row CSV: validated as it is read, paid, and every fen accounted for in both ledgers."""

from __future__ import annotations

import csv
import io
import json

from tests.clientkey import made_up_id_number
from tests.disbursements.conftest import Office
from tests.support import World, ecard_cli

ROWS = 10_000
KNOWN = 400


async def test_a_ten_thousand_row_csv_is_validated_paid_and_balanced(office: Office, world: World) -> None:
    payer = await office.payer(funding_fen=10**9)
    cards = world.app.state.cards
    known = []
    for i in range(KNOWN):
        number = made_up_id_number()
        made = await cards.register("op:test", f"居民{i}", number, "cq", f"L{number}")
        known.append((made.card_id, number, f"居民{i}"))
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["out_row_no", "id_number", "name", "amount_fen", "memo"])
    for i, (_, number, name) in enumerate(known):
        writer.writerow([f"k{i}", number, name, 100 + i, "补贴"])
    for i in range(ROWS - KNOWN):
        writer.writerow([f"u{i}", made_up_id_number(), "未登记", 100, "补贴"])
    body = office.body([])
    answer = await office.create_csv(payer, body, out.getvalue())
    assert answer.status_code == 201, answer.text
    made = answer.json()
    expected = sum(100 + i for i in range(KNOWN))
    assert made["rows_total"] == ROWS
    assert made["counts"] == {"ready": KNOWN, "rejected": ROWS - KNOWN, "paid": 0, "failed": 0}
    assert made["amount_total_fen"] == expected
    assert (await office.approve(made["batch_id"])).status_code == 200
    done = await office.settled(payer, made["batch_id"])
    assert (done["status"], done["paid_fen"], done["counts"]["paid"]) == ("completed", expected, KNOWN)
    card_id, _, _ = known[7]
    assert await office.bank.balance(card_id) == 107
    assert await office.bank.funding(payer.ids["merchant_id"]) == 10**9 - expected
    assert (await office.bank.ledger())["balanced"]
    checked = await ecard_cli(world, "ledger", "check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert json.loads(checked.stdout) == {"clean": True, "problems": []}
